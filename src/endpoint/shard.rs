//! One shard ([`super::shards`]): a thread's accept loop on its copy of
//! each listener. It answers a connection that brings one whole request
//! at once (the quick path, [`crate::endpoint::quick`]), hands one that
//! stays open to the shard [`Shards::pick`] names, and serves what it
//! keeps with hyper within bounds: a slot per connection, keyed by who
//! the caller is ([`crate::endpoint::admit`]).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admit::{self, admit, refuse, Admitted};
use super::app::App;
use super::conn::Serves;
use super::quick::{self, Outcome, Rest};
use super::serve;
use super::shards::{Handoff, Shards};
use crate::net::accept::{accept_until, take_queued};
use crate::net::listen::{self, Deferral, Incoming};
use crate::net::peer::SocketOwner;
use crate::net::slots::Slots;

/// What every shard shares about one listener.
pub(super) struct Shared {
    serves: Serves,
    nodelay_inherited: bool,
    fixed_local: Option<SocketAddr>,
    deferral: Option<Mutex<Deferral>>,
}

impl Shared {
    /// A listener, taken from the runtime so that each shard registers
    /// its own copy, and what they share about it.
    pub(super) fn of(
        listener: tokio::net::TcpListener,
        serves: Serves,
        held: bool,
    ) -> io::Result<(std::net::TcpListener, Arc<Shared>)> {
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

/// What a shard serves: its copy of each listener, and the connections
/// other shards hand it.
pub(super) type Parts = (
    Vec<(std::net::TcpListener, Arc<Shared>)>,
    mpsc::UnboundedReceiver<Box<Handoff>>,
);

/// One shard: what it serves connections with.
#[derive(Clone)]
pub(super) struct Shard {
    pub(super) me: usize,
    pub(super) shards: Arc<Shards>,
    pub(super) app: Arc<App>,
    pub(super) slots: Arc<Slots>,
    pub(super) builder: hyper::server::conn::http1::Builder,
    pub(super) shutdown: CancellationToken,
    pub(super) tasks: TaskTracker,
}

impl Shard {
    /// Runs this shard on a thread of its own, pinned if shards are. The
    /// returned channel closes once it no longer accepts; the thread ends
    /// once `tasks` is closed and drained. Gives back what it was to serve
    /// if the thread cannot be started.
    pub(super) fn spawn(self, parts: Parts) -> Result<oneshot::Receiver<()>, (io::Error, Parts)> {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        let placement = self.shards.placement().cloned();
        if let Some(p) = placement.clone() {
            builder.on_thread_start(move || p.unpin());
        }
        let runtime = match builder.build() {
            Ok(r) => r,
            Err(e) => return Err((e, parts)),
        };
        let (accepting, done) = oneshot::channel::<()>();
        let (give, take) = std::sync::mpsc::sync_channel::<Parts>(1);
        let me = self.me;
        let spawned = std::thread::Builder::new()
            .name(format!("hostrole-shard{me}"))
            .spawn(move || {
                let Ok((listeners, handoffs)) = take.recv() else {
                    return;
                };
                if let Some(Err(e)) = placement.map(|p| p.pin(me)) {
                    tracing::warn!(shard = me, error = %e, "cannot pin a shard; it runs unpinned");
                }
                runtime.block_on(async move {
                    let tasks = self.tasks.clone();
                    self.serve(listeners, handoffs).await;
                    drop(accepting);
                    tasks.wait().await;
                })
            });
        match spawned {
            Ok(_) => {
                let _ = give.send(parts);
                Ok(done)
            }
            Err(e) => Err((e, parts)),
        }
    }

    /// Accepts on each listener, and serves connections other shards
    /// hand over, until shutdown.
    pub(super) async fn serve(
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
                // A connection that stays open goes to the shard on its
                // caller's CPU (pinned), or serving fewest.
                Rest::Serve(read) => {
                    let incoming = self
                        .shards
                        .placement()
                        .and_then(|_| socket2::SockRef::from(&stream).cpu_affinity().ok());
                    let to = self.shards.pick(self.me, incoming);
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
