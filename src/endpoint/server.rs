//! The network side: accept loops over TCP listeners, HTTP/1.1 with hyper,
//! bounded connections, graceful drain on shutdown.
//!
//! Each request is answered by [`crate::endpoint::imds::handle`] from the latest
//! snapshot; nothing here waits on STS.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::credentials::refresh::{RefresherHandle, Snapshot};
use crate::endpoint::access::{AllowList, GroupCache};
use crate::endpoint::imds::{handle, Endpoint, Peer, ResponseTtl};
use crate::logbudget::LogBudget;
use crate::metrics::Metrics;
use crate::net::peer::{tcp_socket_owner, SocketOwner};
use crate::net::slots::{Holder, Slot, Slots, EVICT_GRACE};

/// Most connections served at once. Past it, the least recently active
/// connection of the caller holding the most is closed to make room; a 503
/// only when that cannot be done.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most connections one caller (a local uid, else an address) holds; past
/// it, that caller's own least recently active connection makes room.
pub const MAX_CONNECTIONS_PER_CALLER: usize = MAX_CONNECTIONS / 2;
/// Time a client has to send a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's minimum buffer).
pub const MAX_REQUEST_HEAD_BYTES: usize = 8192;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 32;
/// At shutdown, how long a connection that has sent nothing yet gets to
/// send its request before it is closed.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// How long in-flight requests get to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared state every connection reads.
#[derive(Debug)]
pub struct App {
    /// What the handler needs.
    pub endpoint: Endpoint,
    /// The latest snapshot from the refresher.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// To wake the refresher when credentials are found expired.
    pub refresher: RefresherHandle,
    /// Request, token and connection metrics.
    pub metrics: Arc<Metrics>,
    /// IP TTL / IPv6 hop limit of token responses.
    pub hop_limit: u8,
    /// Who may read credentials, when restricted.
    pub access: Option<AllowList>,
    /// This host's own addresses, for the hop-limit-1 source check.
    pub local_addrs: LocalAddrs,
    /// Callers' groups, for `allowed-gids`.
    pub groups: GroupCache,
    /// Log lines about refused requests, bounded.
    pub refusals: LogBudget,
    /// Log lines about refused connections, bounded.
    pub full: LogBudget,
}

/// What one connection knows about itself, found once when it is accepted.
#[derive(Debug)]
pub struct Conn {
    /// The caller, as the handler sees it.
    pub peer: Peer,
    /// The owner of the caller's socket, when the caller is on this host.
    pub owner: Option<SocketOwner>,
    /// The socket, to set its TTL (see [`Conn::lock_hop_limit`]).
    fd: RawFd,
    /// Our end is an IPv6 socket (IPv4 clients of it come v4-mapped).
    v6: bool,
    /// The socket's TTL is the hop limit for the rest of its life.
    hop_locked: AtomicBool,
    /// This connection's slot, touched at every request.
    slot: Slot,
}

impl Conn {
    /// Sets the socket's IP TTL (and IPv6 hop limit) to `hop_limit`, for
    /// good: every byte written from now on, the token's and any pipelined
    /// answer's, and every retransmission of an earlier one, leaves with
    /// it. Returning the TTL to the system's after the token would let the
    /// kernel retransmit a lost token segment, or a pipelined answer carry
    /// it, with the higher TTL.
    fn lock_hop_limit(&self, hop_limit: u8) -> io::Result<()> {
        if self.hop_locked.load(Ordering::Acquire) {
            return Ok(());
        }
        // SAFETY: `fd` is the connection's socket, owned by the hyper
        // connection that owns the service calling this; it stays open for
        // as long as that service can be called.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let sock = socket2::SockRef::from(&fd);
        let ttl = u32::from(hop_limit);
        if self.v6 {
            sock.set_unicast_hops_v6(ttl)?;
        }
        // Also on an IPv6 socket: an IPv4 client of a dual-stack listener
        // is sent IPv4 packets, whose TTL is IP_TTL.
        sock.set_ttl_v4(ttl)?;
        self.hop_locked.store(true, Ordering::Release);
        Ok(())
    }
}

impl App {
    /// Answers one request.
    pub fn respond<B>(&self, req: &Request<B>, conn: &Conn) -> Response<Full<Bytes>> {
        conn.slot.touch();
        let snapshot = self.snapshots.borrow().clone();
        let mut reply = handle(req, &snapshot, &self.endpoint, &conn.peer);
        drop(snapshot);
        if reply.stale {
            self.refresher.wake();
        }
        if let Some(why) = reply.refused {
            if let Some(suppressed) = self.refusals.take() {
                tracing::warn!(
                    peer = ?conn.peer.addr,
                    uid = conn.owner.map(|o| o.uid),
                    inode = conn.owner.map(|o| o.inode),
                    route = reply.route,
                    suppressed,
                    "{why}"
                );
            }
        }
        if reply.ttl == ResponseTtl::HopLimit {
            if let Err(e) = conn.lock_hop_limit(self.hop_limit) {
                // No token leaves without the hop limit.
                tracing::error!(error = %e, ttl = self.hop_limit, "cannot set the IP TTL; token withheld");
                reply.response = crate::endpoint::imds::unavailable();
            }
        }
        self.metrics
            .observe_request(reply.route, reply.response.status().as_u16());
        tracing::debug!(
            method = %req.method(),
            route = reply.route,
            status = reply.response.status().as_u16(),
            peer = ?conn.peer.addr,
            "request"
        );
        reply.response.map(Full::new)
    }

    /// What the handler is told about a newly accepted caller.
    async fn peer(&self, addr: SocketAddr, local: SocketAddr, owner: Option<SocketOwner>) -> Peer {
        let role_denied = match &self.access {
            None => false,
            Some(list) => match owner {
                Some(o) => !list.allows(o.uid, &self.groups).await,
                None => true,
            },
        };
        let not_local = self.hop_limit == 1 && !self.local_addrs.contains(addr.ip(), local.ip());
        Peer {
            addr: Some(addr),
            role_denied,
            not_local,
        }
    }
}

/// Binds each address.
pub async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, (SocketAddr, io::Error)> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        out.push(TcpListener::bind(addr).await.map_err(|e| (*addr, e))?);
    }
    Ok(out)
}

/// Takes the TCP listeners passed by systemd socket activation
/// (`LISTEN_PID`/`LISTEN_FDS`), if any were passed to this process.
pub fn listeners_from_systemd() -> io::Result<Option<Vec<TcpListener>>> {
    const SD_LISTEN_FDS_START: RawFd = 3;
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !pid_matches {
        return Ok(None);
    }
    let count: RawFd = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if n > 0 => n,
        _ => return Ok(None),
    };
    let mut out = Vec::new();
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count {
        // SAFETY: systemd passes these descriptors to this process (LISTEN_PID
        // matched) and nothing else in the process has taken them.
        let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std_listener.set_nonblocking(true)?;
        out.push(TcpListener::from_std(std_listener)?);
    }
    Ok(Some(out))
}

/// Serves on `listeners` until `shutdown` completes, then drains.
pub async fn run(listeners: Vec<TcpListener>, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CALLER, true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = tokio_util::task::TaskTracker::new();
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "listening");
        }
        loops.spawn(accept_loop(
            listener,
            app.clone(),
            slots.clone(),
            stop_rx.clone(),
            tracker.clone(),
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_ok()
    {
        tracing::info!("all connections drained");
    } else {
        tracing::warn!(
            "connections still open after {}s; closing them",
            DRAIN_TIMEOUT.as_secs()
        );
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
    tracker: tokio_util::task::TaskTracker,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let connections = stop.clone();
    let serve = |stream, addr| {
        if let Some(admitted) = admit(stream, addr, &slots, &app.full) {
            tracker.spawn(serve_connection(
                admitted,
                app.clone(),
                builder.clone(),
                connections.clone(),
            ));
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => serve(stream, addr),
            Err(e) => {
                // EMFILE and friends: log, pause briefly, keep going.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Stopping: connections the kernel has already completed are in the
    // listen queue; closing the listener would reset them. Take them all
    // and answer them before the listener goes.
    while let Ok(Ok((stream, addr))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await
    {
        serve(stream, addr);
    }
}

/// An accepted connection that has its slot.
struct Admitted {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    owner: Option<SocketOwner>,
    slot: Slot,
}

/// Takes a slot for an accepted connection, or refuses it with a 503.
fn admit(
    mut stream: TcpStream,
    peer: SocketAddr,
    slots: &Arc<Slots>,
    log: &LogBudget,
) -> Option<Admitted> {
    let local = stream.local_addr().ok()?;
    // One exact kernel query (sock_diag) for the caller's socket: the key
    // of its slot, and its uid for the allow-list.
    let owner = match tcp_socket_owner(peer, local) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "cannot look up the caller's socket");
            None
        }
    };
    let holder = match owner {
        Some(o) => Holder::Uid(o.uid),
        None => Holder::Addr(peer.ip().to_canonical()),
    };
    match slots.acquire(holder) {
        Ok(slot) => Some(Admitted {
            stream,
            peer,
            local,
            owner,
            slot,
        }),
        Err(why) => {
            if let Some(suppressed) = log.take() {
                tracing::warn!(%peer, %holder, suppressed, "{why}; refusing");
            }
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
            None
        }
    }
}

/// Serves one admitted connection until it closes, is evicted, or the
/// server stops.
async fn serve_connection(
    admitted: Admitted,
    app: Arc<App>,
    builder: hyper::server::conn::http1::Builder,
    mut stop: watch::Receiver<bool>,
) {
    let Admitted {
        stream,
        peer: addr,
        local,
        owner,
        slot,
    } = admitted;
    let _ = stream.set_nodelay(true);
    let open = app.metrics.connection_opened();
    let peer = app.peer(addr, local, owner).await;
    let evict = slot.evict.clone();
    let conn = Arc::new(Conn {
        peer,
        owner,
        fd: stream.as_raw_fd(),
        v6: local.is_ipv6(),
        hop_locked: AtomicBool::new(false),
        slot,
    });
    // Set once the first request head has been read.
    let asked = Arc::new(tokio::sync::Notify::new());
    let service = {
        let asked = asked.clone();
        service_fn(move |req: Request<Incoming>| {
            asked.notify_one();
            let response = app.respond(&req, &conn);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = async { let _ = stop.wait_for(|s| *s).await; } => None,
        _ = evict.notified() => {
            // Making room for a new caller: finish the request in progress,
            // if any, then close; at most EVICT_GRACE.
            tracing::debug!(peer = %addr, "closing the least recently active connection to make room");
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(EVICT_GRACE, conn.as_mut()).await {
                Ok(r) => Some(r),
                Err(_) => Some(Ok(())),
            }
        }
    };
    let result = match result {
        Some(r) => r,
        None => {
            // Stopping. A connection that has not sent its request yet
            // looks idle to hyper, which would close it unanswered: give
            // it a moment to send one first.
            let first = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = asked.notified() => None,
                _ = tokio::time::sleep(FIRST_REQUEST_GRACE) => None,
            };
            match first {
                Some(r) => r,
                None => {
                    // Finish the request in progress, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
    }
    drop(open);
}

/// This host's own addresses. With hop limit 1 a token goes only to a
/// caller whose source address is one of them: a container on the host's
/// own bridge reaches the host unrouted, so no TTL is decremented on the
/// way back and the hop limit alone cannot stop it. Loopback, and a caller
/// whose address is the one it called (the usual case on this host), are
/// known without asking; otherwise the interface addresses are read
/// (netlink, no file) at most once per [`LOCAL_ADDRS_MAX_AGE`].
#[derive(Debug, Default)]
pub struct LocalAddrs {
    cache: std::sync::Mutex<Option<(tokio::time::Instant, Vec<IpAddr>)>>,
}

/// How long the list of this host's addresses is reused.
pub const LOCAL_ADDRS_MAX_AGE: Duration = Duration::from_secs(1);

impl LocalAddrs {
    /// Whether `peer`, calling us at `local`, is this host itself.
    pub fn contains(&self, peer: IpAddr, local: IpAddr) -> bool {
        let peer = peer.to_canonical();
        if peer.is_loopback() || peer == local.to_canonical() {
            return true;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < LOCAL_ADDRS_MAX_AGE);
        if !fresh {
            match interface_addrs() {
                Ok(addrs) => *cache = Some((tokio::time::Instant::now(), addrs)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list this host's addresses");
                    *cache = None;
                }
            }
        }
        cache
            .as_ref()
            .is_some_and(|(_, addrs)| addrs.contains(&peer))
    }
}

fn interface_addrs() -> nix::Result<Vec<IpAddr>> {
    Ok(nix::ifaddrs::getifaddrs()?
        .filter_map(|i| {
            let a = i.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect())
}
