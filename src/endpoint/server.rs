//! The network side of the endpoint: bind, and start the shards
//! ([`crate::endpoint::shards`]), one thread per core, each accepting on
//! every listener ([`crate::endpoint::shard`]): answer a connection that
//! brings one whole request at once (the quick path,
//! [`crate::endpoint::quick`]), and serve every other with hyper within
//! bounds: a slot per connection, keyed by who the caller is
//! ([`crate::endpoint::admit`]).
//!
//! Each request is answered by [`App::respond`] from the latest snapshot;
//! nothing here waits on STS or decides policy.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::app::App;
pub use super::conn::Serves;
use super::shard::{Shard, Shared};
use super::shards::{self, Placement, Shards};
use crate::net::listen;
use crate::net::slots::Slots;

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
///
/// This task is the first shard ([`super::shards`]); each other shard is
/// a thread of its own, with a single-threaded runtime, that stays up
/// until `tasks` is closed and drained. With `pin`, every shard is a
/// thread of its own, pinned to a CPU, and this task only waits for them.
pub async fn run(
    listeners: Vec<Listening>,
    app: Arc<App>,
    pin: bool,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CALLER, true);
    let mut accepting = Vec::new();
    for listening in listeners {
        let serves = listening.serves;
        if let Ok(addr) = listening.listener.local_addr() {
            tracing::info!(%addr, serves = serves.label(), "listening");
        }
        match Shared::of(listening.listener, serves, listening.held) {
            Ok(a) => accepting.push(a),
            Err(e) => {
                tracing::error!(error = %e, serves = serves.label(), "cannot accept on a listener")
            }
        }
    }
    let n = shards::count();
    let placement = match pin.then(|| Placement::of(n)) {
        Some(Err(why)) => {
            tracing::warn!(threads = n, why, "pin-threads: not pinned");
            None
        }
        placed => placed.and_then(Result::ok),
    };
    let (shards, receivers) = Shards::new(n, placement, &app.metrics);
    let shard = |me| Shard {
        me,
        shards: shards.clone(),
        app: app.clone(),
        slots: slots.clone(),
        builder: http1_builder(),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    };
    let mut receivers = receivers.into_iter().enumerate();
    let first = receivers.next();
    let mut others = Vec::new();
    for (me, handoffs) in receivers {
        let mut theirs = Vec::new();
        for (listener, shared) in &accepting {
            match listener.try_clone() {
                Ok(l) => theirs.push((l, shared.clone())),
                Err(e) => {
                    tracing::warn!(shard = me, error = %e, "cannot share a listener with a shard")
                }
            }
        }
        match shard(me).spawn((theirs, handoffs)) {
            Ok(done) => others.push(done),
            Err((e, _)) => {
                tracing::warn!(shard = me, error = %e, "cannot start a shard; the others serve")
            }
        }
    }
    if let Some((me, handoffs)) = first {
        let parts = (accepting, handoffs);
        // Pinned, the first shard too is a thread of its own: the rest of
        // the daemon stays free to run on any CPU.
        let here = match shards.placement() {
            None => Some(parts),
            Some(_) => match shard(me).spawn(parts) {
                Ok(done) => {
                    others.push(done);
                    None
                }
                Err((e, parts)) => {
                    tracing::warn!(shard = me, error = %e, "cannot start a shard; it runs unpinned");
                    Some(parts)
                }
            },
        };
        if let Some((accepting, handoffs)) = here {
            shard(me).serve(accepting, handoffs).await;
        }
    }
    for done in others {
        let _ = done.await;
    }
}

fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    builder
}
