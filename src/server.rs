//! The network side: accept loops over TCP listeners, HTTP/1.1 with hyper,
//! bounded connections, graceful drain on shutdown.
//!
//! Each request is answered by [`crate::imds::handle`] from the latest
//! snapshot; nothing here waits on STS.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::access::{AllowList, Caller};
use crate::imds::{handle, Endpoint, Peer};
use crate::metrics::Metrics;
use crate::refresh::{RefresherHandle, Snapshot};

/// Most connections served at once; more are refused with a 503.
pub const MAX_CONNECTIONS: usize = 1024;
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
}

/// What one connection knows about itself.
#[derive(Debug)]
pub struct Conn {
    /// The caller's address.
    pub peer: Peer,
    /// Our address on this connection.
    pub local: Option<SocketAddr>,
    /// The TTL the next response is to be written with (0: leave as is).
    ttl: Arc<AtomicU32>,
    /// The system's TTL for this socket, restored after a token response.
    default_ttl: u32,
    /// The owner of the caller's socket, looked up once, when first needed.
    caller: OnceLock<Option<Caller>>,
}

impl Conn {
    fn caller(&self) -> Option<Caller> {
        *self
            .caller
            .get_or_init(|| match (self.peer.addr, self.local) {
                (Some(peer), Some(local)) => crate::access::caller(peer, local),
                _ => None,
            })
    }
}

impl App {
    /// Answers one request.
    pub fn respond<B>(&self, req: &Request<B>, conn: &Conn) -> Response<Full<Bytes>> {
        let peer = &conn.peer;
        let snapshot = self.snapshots.borrow().clone();
        let mut reply = handle(req, &snapshot, &self.endpoint, peer);
        drop(snapshot);
        if reply.stale {
            self.refresher.wake();
        }
        if reply.route.starts_with("credentials") {
            if let Some(list) = &self.access {
                let caller = conn.caller();
                if !caller.is_some_and(|c| list.allows(c.uid)) {
                    let pid = caller.and_then(|c| crate::access::pid_of_socket(c.inode));
                    tracing::warn!(
                        peer = ?peer.addr,
                        uid = caller.map(|c| c.uid),
                        pid,
                        route = reply.route,
                        "credentials refused: caller not in allowed-uids/allowed-gids"
                    );
                    reply.response = crate::imds::forbidden();
                }
            }
        }
        // A token response leaves with the configured hop limit, as on EC2;
        // every other response with the system's TTL.
        let token_issued = reply.route == "token" && reply.response.status().is_success();
        let ttl = if token_issued {
            u32::from(self.hop_limit)
        } else {
            conn.default_ttl
        };
        conn.ttl.store(ttl, Ordering::Relaxed);
        self.metrics
            .observe_request(reply.route, reply.response.status().as_u16());
        tracing::debug!(
            method = %req.method(),
            route = reply.route,
            status = reply.response.status().as_u16(),
            peer = ?peer.addr,
            "request"
        );
        reply.response.map(Full::new)
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
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
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
    // Every connection holds a slot until it ends: all slots free means
    // every connection has been answered and closed.
    let all = u32::try_from(MAX_CONNECTIONS).expect("connection cap fits u32");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all))
        .await
        .is_ok();
    if drained {
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
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => serve(stream, addr, &builder, &app, &slots, &stop),
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
        serve(stream, addr, &builder, &app, &slots, &stop);
    }
}

/// Serves one accepted connection on its own task.
fn serve(
    mut stream: TcpStream,
    addr: SocketAddr,
    builder: &hyper::server::conn::http1::Builder,
    app: &Arc<App>,
    slots: &Arc<Semaphore>,
    stop: &watch::Receiver<bool>,
) {
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        tracing::warn!(peer = %addr, "connection limit reached; refusing");
        tokio::spawn(async move {
            let _ = stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        });
        return;
    };
    let _ = stream.set_nodelay(true);
    let open = app.metrics.connection_opened();
    let local = stream.local_addr().ok();
    let stream = HopLimited::new(stream, local.is_some_and(|a| a.is_ipv6()));
    let conn_info = Arc::new(Conn {
        peer: Peer { addr: Some(addr) },
        local,
        ttl: stream.want.clone(),
        default_ttl: stream.applied,
        caller: OnceLock::new(),
    });
    // Set once the first request head has been read.
    let asked = Arc::new(tokio::sync::Notify::new());
    let app = app.clone();
    let service = {
        let asked = asked.clone();
        service_fn(move |req: Request<Incoming>| {
            asked.notify_one();
            let response = app.respond(&req, &conn_info);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut stop = stop.clone();
    tokio::spawn(async move {
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => Some(r),
            _ = stop.wait_for(|s| *s) => None,
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
        drop(permit);
    });
}

/// A connection whose IP TTL (IPv6 hop limit) can be changed between
/// responses: the handler stores the TTL the next response needs, and it is
/// set on the socket just before that response's first byte is written.
struct HopLimited {
    inner: TcpStream,
    /// Our end is an IPv6 socket (IPv4 clients of it come v4-mapped).
    v6: bool,
    want: Arc<AtomicU32>,
    applied: u32,
}

impl HopLimited {
    fn new(inner: TcpStream, v6: bool) -> Self {
        let sock = socket2::SockRef::from(&inner);
        let ttl = if v6 {
            sock.unicast_hops_v6()
        } else {
            sock.ttl_v4()
        };
        let applied = ttl.unwrap_or(0);
        Self {
            inner,
            v6,
            want: Arc::new(AtomicU32::new(applied)),
            applied,
        }
    }

    fn apply_ttl(&mut self) {
        let want = self.want.load(Ordering::Relaxed);
        if want == 0 || want == self.applied {
            return;
        }
        match self.set_ttl(want) {
            Ok(()) => self.applied = want,
            Err(e) => tracing::warn!(error = %e, ttl = want, "cannot set the IP TTL"),
        }
    }

    fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let sock = socket2::SockRef::from(&self.inner);
        if !self.v6 {
            return sock.set_ttl_v4(ttl);
        }
        sock.set_unicast_hops_v6(ttl)?;
        // A v4 client of a dual-stack listener: its packets use IP_TTL.
        let _ = sock.set_ttl_v4(ttl);
        Ok(())
    }
}

impl AsyncRead for HopLimited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HopLimited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.apply_ttl();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.apply_ttl();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
