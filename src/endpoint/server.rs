//! The network side of the endpoint: accept on each TCP listener, find out
//! who the caller is once per connection, serve HTTP/1.1 with hyper within
//! bounds, and carry out what the handler decided (the response's TTL).
//!
//! Each request is answered from the latest snapshot by
//! [`crate::endpoint::imds::handle`], or on a container listener by
//! [`crate::endpoint::container::handle`]; nothing here waits on STS or
//! decides policy.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
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
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::access::GroupCache;
pub use super::conn::Serves;
use super::conn::{Conn, LocalAddrs};
use super::container;
use super::documents::unavailable;
use super::imds::{handle, Caller, Endpoint, Reply, ResponseTtl};
use crate::consumers::ConsumerTokens;
use crate::credentials::refresh::{RefresherHandle, Snapshot};
use crate::logbudget::LogBudget;
use crate::metrics::Metrics;
use crate::net::accept::{accept_until, take_queued};
use crate::net::listen;
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
    /// This host's own addresses, for the hop-limit-1 source check.
    pub local_addrs: LocalAddrs,
    /// Callers' groups, for `allowed-gids`.
    pub groups: GroupCache,
    /// Log lines about refused requests, bounded.
    pub refusals: LogBudget,
    /// Log lines about refused connections, bounded.
    pub full: LogBudget,
    /// The container endpoint's consumers and their tokens.
    pub consumers: Arc<ConsumerTokens>,
}

impl App {
    /// Answers one request.
    pub fn respond<B>(&self, req: &Request<B>, conn: &Conn) -> Response<Full<Bytes>> {
        conn.slot.touch();
        let snapshot = self.snapshots.borrow().clone();
        let (mut reply, consumer): (Reply, Option<String>) = match conn.serves {
            Serves::Imds => (handle(req, &snapshot, &self.endpoint, &conn.caller), None),
            Serves::Container => {
                let r = container::handle(
                    req,
                    &snapshot,
                    &self.endpoint,
                    &conn.caller,
                    &self.consumers,
                );
                (r.reply, r.consumer)
            }
        };
        drop(snapshot);
        if reply.stale {
            self.refresher.wake();
        }
        let route = reply.route.label();
        if let Some(why) = reply.refused {
            if let Some(suppressed) = self.refusals.take() {
                tracing::warn!(
                    peer = ?conn.caller.addr,
                    uid = conn.owner.map(|o| o.uid),
                    inode = conn.owner.map(|o| o.inode),
                    consumer = consumer.as_deref(),
                    route,
                    suppressed,
                    "{why}"
                );
            }
        }
        if reply.ttl == ResponseTtl::HopLimit {
            let hop_limit = self.endpoint.hop_limit;
            if let Err(e) = conn.lock_hop_limit(hop_limit) {
                // No token leaves without the hop limit.
                tracing::error!(error = %e, ttl = hop_limit, "cannot set the IP TTL; token withheld");
                reply.response = unavailable();
            }
        }
        self.metrics
            .observe_request(route, reply.response.status().as_u16());
        tracing::debug!(
            method = %req.method(),
            route,
            status = reply.response.status().as_u16(),
            peer = ?conn.caller.addr,
            consumer = consumer.as_deref(),
            "request"
        );
        reply.response.map(Full::new)
    }

    /// What the handler is told about a newly accepted caller: its user's
    /// groups are looked up (off the runtime, cached) only when the
    /// allow-list needs them; this host's addresses only with hop limit 1.
    async fn caller(
        &self,
        addr: SocketAddr,
        local: SocketAddr,
        owner: Option<SocketOwner>,
    ) -> Caller {
        let uid = owner.map(|o| o.uid);
        let groups = match (&self.endpoint.access, uid) {
            (Some(list), Some(uid)) if list.needs_groups(uid) => {
                Some(self.groups.groups_of(uid).await)
            }
            _ => None,
        };
        let on_this_host =
            self.endpoint.hop_limit > 1 || self.local_addrs.contains(addr.ip(), local.ip());
        Caller {
            addr: Some(addr),
            on_this_host,
            uid,
            groups,
        }
    }
}

/// Binds each address.
pub fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, (SocketAddr, io::Error)> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        out.push(listen::bind(*addr).map_err(|e| (*addr, e))?);
    }
    Ok(out)
}

/// Serves on `listeners` until `shutdown` is cancelled; then takes the
/// connections already queued and returns. Every connection is a task of
/// `tasks`, so the caller drains them by waiting on it.
pub async fn run(
    listeners: Vec<(TcpListener, Serves)>,
    app: Arc<App>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CALLER, true);
    let mut loops = tokio::task::JoinSet::new();
    for (listener, serves) in listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, serves = serves.label(), "listening");
        }
        loops.spawn(listen(
            listener,
            serves,
            app.clone(),
            slots.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

async fn listen(
    listener: TcpListener,
    serves: Serves,
    app: Arc<App>,
    slots: Arc<Slots>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let nodelay_inherited = listen::nodelay_for_accepted(&listener);
    let local = listen::fixed_local_addr(&listener);
    let mut serve = |stream: TcpStream, addr| {
        if !nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        if let Some(admitted) = admit(stream, addr, local, &slots, &app.full) {
            tasks.spawn(serve_connection(
                admitted,
                serves,
                app.clone(),
                builder.clone(),
                shutdown.clone(),
            ));
        }
    };
    accept_until(&listener, serves.label(), &shutdown, &mut serve).await;
    // Stopping: connections the kernel has already completed are in the
    // listen queue; closing the listener would reset them.
    take_queued(&listener, &mut serve).await;
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
    local: Option<SocketAddr>,
    slots: &Arc<Slots>,
    log: &LogBudget,
) -> Option<Admitted> {
    let local = match local {
        Some(local) => local,
        None => stream.local_addr().ok()?,
    };
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
    serves: Serves,
    app: Arc<App>,
    builder: hyper::server::conn::http1::Builder,
    shutdown: CancellationToken,
) {
    let Admitted {
        stream,
        peer: addr,
        local,
        owner,
        slot,
    } = admitted;
    let open = app.metrics.connection_opened();
    let caller = app.caller(addr, local, owner).await;
    let evict = slot.evict.clone();
    let conn = Arc::new(Conn::new(
        caller,
        owner,
        serves,
        stream.as_raw_fd(),
        local.is_ipv6(),
        slot,
    ));
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
        _ = shutdown.cancelled() => None,
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
