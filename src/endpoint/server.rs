//! The network side of the endpoint: accept on each TCP listener, answer
//! a connection that brings one whole request at once (the quick path,
//! [`crate::endpoint::quick`]), and serve every other with hyper within
//! bounds: a slot per connection, keyed by who the caller is
//! ([`crate::endpoint::admit`]). Each core's thread (a shard,
//! [`crate::endpoint::shards`]) accepts on every listener.
//!
//! Each request is answered by [`App::respond`] from the latest snapshot;
//! nothing here waits on STS or decides policy.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admit::{self, admit, refuse, Admitted};
use super::app::App;
pub use super::conn::Serves;
use super::quick::{self, Outcome, Rest};
use super::serve;
use super::shards::{self, Handoff, Shards};
use crate::net::accept::{accept_until, take_queued};
use crate::net::listen::{self, Deferral, Incoming};
use crate::net::peer::SocketOwner;
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
/// until `tasks` is closed and drained.
pub async fn run(
    listeners: Vec<Listening>,
    app: Arc<App>,
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
        match Shared::of(listening) {
            Ok(a) => accepting.push(a),
            Err(e) => {
                tracing::error!(error = %e, serves = serves.label(), "cannot accept on a listener")
            }
        }
    }
    let (shards, receivers) = Shards::new(shards::count(), &app.metrics);
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
        match shard(me).spawn(theirs, handoffs) {
            Ok(done) => others.push(done),
            Err(e) => {
                tracing::warn!(shard = me, error = %e, "cannot start a shard; the others serve")
            }
        }
    }
    if let Some((me, handoffs)) = first {
        shard(me).serve(accepting, handoffs).await;
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

/// What every shard shares about one listener.
struct Shared {
    serves: Serves,
    nodelay_inherited: bool,
    fixed_local: Option<SocketAddr>,
    deferral: Option<Mutex<Deferral>>,
}

impl Shared {
    /// The socket of `listening`, taken from the runtime so that each
    /// shard registers its own copy, and what they share about it.
    fn of(listening: Listening) -> io::Result<(std::net::TcpListener, Arc<Shared>)> {
        let Listening {
            listener,
            serves,
            held,
        } = listening;
        let listener = listener.into_std()?;
        let nodelay_inherited = listen::nodelay_for_accepted(&listener);
        let fixed_local = listen::fixed_local_addr(&listener);
        // A listener systemd holds defers accepting while that pays, unless
        // its unit already asks for it (DeferAcceptSec=, then left as it is).
        let deferral = (held && listen::defers_accept(&listener).is_ok_and(|on| !on))
            .then(|| Mutex::new(Deferral::default()));
        let shared = Shared {
            serves,
            nodelay_inherited,
            fixed_local,
            deferral,
        };
        Ok((listener, Arc::new(shared)))
    }
}

/// One shard: what it serves connections with.
#[derive(Clone)]
struct Shard {
    me: usize,
    shards: Arc<Shards>,
    app: Arc<App>,
    slots: Arc<Slots>,
    builder: hyper::server::conn::http1::Builder,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Shard {
    /// Runs this shard on a thread of its own. The returned channel
    /// closes once it no longer accepts; the thread ends once `tasks` is
    /// closed and drained.
    fn spawn(
        self,
        listeners: Vec<(std::net::TcpListener, Arc<Shared>)>,
        handoffs: mpsc::UnboundedReceiver<Box<Handoff>>,
    ) -> io::Result<oneshot::Receiver<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (accepting, done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("hostrole-shard{}", self.me))
            .spawn(move || {
                runtime.block_on(async move {
                    let tasks = self.tasks.clone();
                    self.serve(listeners, handoffs).await;
                    drop(accepting);
                    tasks.wait().await;
                })
            })?;
        Ok(done)
    }

    /// Accepts on each listener, and serves connections other shards
    /// hand over, until shutdown.
    async fn serve(
        self,
        listeners: Vec<(std::net::TcpListener, Arc<Shared>)>,
        handoffs: mpsc::UnboundedReceiver<Box<Handoff>>,
    ) {
        let mut loops = tokio::task::JoinSet::new();
        for (listener, shared) in listeners {
            loops.spawn(self.clone().listen(listener, shared));
        }
        loops.spawn(self.take_handoffs(handoffs));
        while loops.join_next().await.is_some() {}
    }

    async fn take_handoffs(self, mut handoffs: mpsc::UnboundedReceiver<Box<Handoff>>) {
        loop {
            let handoff = tokio::select! {
                h = handoffs.recv() => h,
                _ = self.shutdown.cancelled() => break,
            };
            match handoff {
                Some(h) => self.keep(*h),
                None => return,
            }
        }
        // Stopping: serve what was handed over; once closed, a shard
        // that accepts keeps what it accepts.
        handoffs.close();
        while let Ok(h) = handoffs.try_recv() {
            self.keep(*h);
        }
    }

    async fn listen(self, listener: std::net::TcpListener, shared: Arc<Shared>) {
        let serves = shared.serves;
        let listener = match Incoming::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, serves = serves.label(), "cannot accept on a listener");
                return;
            }
        };
        let mut serve = |stream: std::net::TcpStream, addr: SocketAddr| {
            if !shared.nodelay_inherited {
                let _ = stream.set_nodelay(true);
            }
            let Some(local) = shared.fixed_local.or_else(|| stream.local_addr().ok()) else {
                return;
            };
            let (stream, owner, rest) =
                match quick::answer(stream, addr, local, None, serves, &self.app) {
                    Outcome::Done => (None, None, None),
                    Outcome::Left {
                        stream,
                        owner,
                        rest,
                    } => (Some(stream), owner, Some(rest)),
                };
            if let Some(deferral) = &shared.deferral {
                let early = matches!(&rest, Some(Rest::Serve(read)) if read.is_empty());
                let mut deferral = deferral.lock().unwrap_or_else(PoisonError::into_inner);
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
            match rest {
                // A connection that stays open goes to the shard serving
                // fewest.
                Rest::Serve(read) => {
                    let to = self.shards.pick(self.me);
                    let handoff = Handoff {
                        stream,
                        peer: addr,
                        local,
                        owner,
                        read,
                        serves,
                        serving: self.shards.serving(to),
                    };
                    if to == self.me {
                        return self.keep(handoff);
                    }
                    if let Err(mut back) = self.shards.hand(to, Box::new(handoff)) {
                        back.serving = self.shards.serving(self.me);
                        self.keep(*back);
                    }
                }
                Rest::Write(rest) => {
                    if let Some(admitted) = self.admit(stream, addr, local, owner, false) {
                        self.tasks.spawn(admit::finish_answer(admitted, rest));
                    }
                }
            }
        };
        accept_until(&listener, serves.label(), &self.shutdown, &mut serve).await;
        // Stopping: connections the kernel has already completed are in the
        // listen queue; closing the listener would reset them.
        take_queued(&listener, &mut serve).await;
    }

    /// Serves a connection that stays open on this shard, with hyper.
    fn keep(&self, conn: Handoff) {
        let Handoff {
            stream,
            peer,
            local,
            owner,
            read,
            serves,
            serving,
        } = conn;
        let Some(admitted) = self.admit(stream, peer, local, owner, true) else {
            return;
        };
        let served = serve::connection(
            admitted,
            read,
            serves,
            self.app.clone(),
            self.builder.clone(),
            self.shutdown.clone(),
        );
        self.tasks.spawn(async move {
            served.await;
            drop(serving);
        });
    }

    /// Registers a connection with this shard's runtime and takes its
    /// slot. Without a slot, a connection not yet answered (`unanswered`)
    /// gets a 503; one whose answer has begun is just closed.
    fn admit(
        &self,
        stream: std::net::TcpStream,
        addr: SocketAddr,
        local: SocketAddr,
        owner: Option<Option<SocketOwner>>,
        unanswered: bool,
    ) -> Option<Admitted> {
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "cannot hand a connection to the runtime");
                return None;
            }
        };
        match admit(stream, addr, local, owner, &self.slots, &self.app.full) {
            Ok(a) => Some(a),
            Err(stream) => {
                if unanswered {
                    tokio::spawn(refuse(stream));
                }
                None
            }
        }
    }
}
