//! The network side of the endpoint: accept on each TCP listener, answer
//! a connection that brings one whole request at once (the quick path,
//! [`crate::endpoint::quick`]), and serve every other with hyper within
//! bounds: a slot per connection, keyed by who the caller is
//! ([`crate::endpoint::admit`]).
//!
//! Each request is answered by [`App::respond`] from the latest snapshot;
//! nothing here waits on STS or decides policy.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admit::{self, admit, refuse, Admitted, FirstBytes};
use super::app::App;
use super::conn::Conn;
pub use super::conn::Serves;
use super::quick::{self, Outcome, Rest};
use crate::net::accept::{accept_until, take_queued};
use crate::net::listen::{self, Deferral, Incoming};
use crate::net::prefixed::Prefixed;
use crate::net::slots::{Slots, EVICT_GRACE};

/// Most connections served at once. Past it, the least recently active
/// connection of the caller holding the most is closed to make room; a 503
/// only when that cannot be done.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most connections one caller (a local uid, else an address) holds; past
/// it, that caller's own least recently active connection makes room.
pub const MAX_CONNECTIONS_PER_CALLER: usize = MAX_CONNECTIONS / 2;
pub use super::conn::{
    FIRST_REQUEST_GRACE, HEADER_READ_TIMEOUT, MAX_HEADERS, MAX_REQUEST_HEAD_BYTES, WRITE_TIMEOUT,
};

/// A listener, what it serves, and whether it outlives this process
/// (passed by systemd), which lets it defer accepting (see
/// [`crate::net::listen::Deferral`]).
#[derive(Debug)]
pub struct Listening {
    /// The socket.
    pub listener: TcpListener,
    /// What it serves.
    pub serves: Serves,
    /// systemd holds it across restarts.
    pub held: bool,
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
    listeners: Vec<Listening>,
    app: Arc<App>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CALLER, true);
    let mut loops = tokio::task::JoinSet::new();
    for listening in listeners {
        if let Ok(addr) = listening.listener.local_addr() {
            tracing::info!(%addr, serves = listening.serves.label(), "listening");
        }
        loops.spawn(listen(
            listening,
            app.clone(),
            slots.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

async fn listen(
    listening: Listening,
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
    let Listening {
        listener,
        serves,
        held,
    } = listening;
    let listener = match Incoming::new(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, serves = serves.label(), "cannot accept on a listener");
            return;
        }
    };
    let nodelay_inherited = listen::nodelay_for_accepted(&listener);
    let fixed_local = listen::fixed_local_addr(&listener);
    // A listener systemd holds defers accepting while that pays, unless
    // its unit already asks for it (DeferAcceptSec=, then left as it is).
    let mut deferral =
        (held && listen::defers_accept(&listener).is_ok_and(|on| !on)).then(Deferral::default);
    let mut serve = |stream: std::net::TcpStream, addr: SocketAddr| {
        if !nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let Some(local) = fixed_local.or_else(|| stream.local_addr().ok()) else {
            return;
        };
        let (stream, owner, rest) = match quick::answer(stream, addr, local, None, serves, &app) {
            Outcome::Done => (None, None, None),
            Outcome::Left {
                stream,
                owner,
                rest,
            } => (Some(stream), owner, Some(rest)),
        };
        if let Some(deferral) = deferral.as_mut() {
            let early = matches!(&rest, Some(Rest::Serve(read)) if read.is_empty());
            if let Some(on) = deferral.accepted(early, std::time::Instant::now()) {
                match listen::set_defer_accept(&listener, on) {
                    Ok(()) => tracing::debug!(on, "accepting only connections with data"),
                    Err(e) => tracing::warn!(error = %e, "cannot change TCP_DEFER_ACCEPT"),
                }
            }
        }
        let (Some(stream), Some(rest)) = (stream, rest) else {
            return;
        };
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "cannot hand a connection to the runtime");
                return;
            }
        };
        let admitted = match admit(stream, addr, local, owner, &slots, &app.full) {
            Ok(a) => a,
            Err(stream) => {
                // A connection whose answer has begun is just closed.
                if matches!(rest, Rest::Serve(_)) {
                    tokio::spawn(refuse(stream));
                }
                return;
            }
        };
        match rest {
            Rest::Serve(read) => tasks.spawn(serve_connection(
                admitted,
                read,
                serves,
                app.clone(),
                builder.clone(),
                shutdown.clone(),
            )),
            Rest::Write(rest) => tasks.spawn(admit::finish_answer(admitted, rest)),
        };
    };
    accept_until(&listener, serves.label(), &shutdown, &mut serve).await;
    // Stopping: connections the kernel has already completed are in the
    // listen queue; closing the listener would reset them.
    take_queued(&listener, &mut serve).await;
}

/// Serves one admitted connection until it closes, is evicted, or the
/// server stops.
async fn serve_connection(
    admitted: Admitted,
    read: Bytes,
    serves: Serves,
    app: Arc<App>,
    mut builder: hyper::server::conn::http1::Builder,
    shutdown: CancellationToken,
) {
    // Nothing was there at accept: wait for the first bytes, and answer
    // on the quick path if they make a request it takes.
    let (admitted, read) = if read.is_empty() {
        match admit::first_bytes(admitted, serves, &app, &shutdown).await {
            FirstBytes::Done => return,
            FirstBytes::Stopping(admitted) => (admitted, read),
            FirstBytes::Serve(admitted, read, left) => {
                // The head's time runs from the accept.
                builder.header_read_timeout(left);
                (admitted, read)
            }
        }
    } else {
        (admitted, read)
    };
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
        Some(owner),
        serves,
        stream.as_raw_fd(),
        local,
        Some(slot),
    ));
    // Set once the first request head has been read.
    let asked = Arc::new(tokio::sync::Notify::new());
    let service = {
        let asked = asked.clone();
        service_fn(move |req: Request<Body>| {
            asked.notify_one();
            let response = app.respond(&req, &conn).map(Full::new);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(Prefixed::new(read, stream)), service);
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
