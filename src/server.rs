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
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

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
}

impl App {
    /// Answers one request.
    pub fn respond<B>(&self, req: &Request<B>, peer: &Peer) -> Response<Full<Bytes>> {
        let snapshot = self.snapshots.borrow().clone();
        let reply = handle(req, &snapshot, &self.endpoint, peer);
        if reply.stale {
            self.refresher.wake();
        }
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
    let graceful = Arc::new(GracefulShutdown::new());
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
            graceful.clone(),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
    // Every accept loop has ended, so this is the last reference.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {}s; closing them", DRAIN_TIMEOUT.as_secs());
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    slots: Arc<Semaphore>,
    graceful: Arc<GracefulShutdown>,
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
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let (mut stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: log, pause briefly, keep going.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "connection limit reached; refusing");
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = app.metrics.connection_opened();
        let peer = Peer { addr: Some(addr) };
        let app = app.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let response = app.respond(&req, &peer);
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
            drop(open);
            drop(permit);
        });
    }
}
