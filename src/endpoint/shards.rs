//! Serving on every core the way nginx's workers do: one single-threaded
//! runtime per core (a shard), each accepting on every listener. A
//! connection stays on the thread that took it: no task is stolen by
//! another thread, so its socket and its state stay in one core's cache,
//! and a thread the kernel preempts holds up only its own connections.
//!
//! Shards race to accept, which spreads short connections (those answered
//! at accept, [`crate::endpoint::quick`]) by how busy each shard is. A
//! connection that stays open (keep-alive) goes to the shard serving the
//! fewest such connections ([`Shards::pick`]): accepting in a burst, one
//! shard can take a whole queue before another thread wakes.
//!
//! With `pin-threads`, each shard is a thread of its own pinned to one CPU
//! ([`Placement`]), and a connection that stays open goes to the shard on
//! the CPU its packets come in on, which on loopback is the caller's,
//! unless that shard serves more than [`NEAR_SLACK`] more than the fewest.
//! A caller and the thread answering it then take turns on one core
//! rather than wait for each other's time slices on two.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use nix::sched::CpuSet;
use nix::unistd::Pid;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use super::conn::Serves;
use crate::metrics::Metrics;
use crate::net::peer::SocketOwner;

/// Most shards, whatever the number of cores: a metadata endpoint has no
/// use for more threads.
pub const MAX_SHARDS: usize = 8;

/// How many more open connections than the shard serving fewest a pinned
/// shard may serve and still be given one whose caller is on its CPU.
pub const NEAR_SLACK: i64 = 1;

/// How many shards to run: one per core this process may run on (its CPU
/// affinity and cgroup quota, so `CPUAffinity=` and `CPUQuota=` in the
/// unit count), at most [`MAX_SHARDS`].
pub fn count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_SHARDS)
}

/// Where pinned shards run: shard `i` on `cpus[i]`, each one of the CPUs
/// the process may run on (`all`), which the threads a shard starts get
/// back.
#[derive(Clone, Debug)]
pub struct Placement {
    cpus: Box<[usize]>,
    all: CpuSet,
}

impl Placement {
    /// One CPU for each of `n` shards, the first `n` this process may run
    /// on. Refused, saying why, for fewer than two shards, when the kernel
    /// does not say which CPUs those are, or when this process may not set
    /// a thread's CPUs (a seccomp filter denying `sched_setaffinity`, as
    /// the packaged unit's `~@resources` does): tried by setting the
    /// calling thread's to what they already are.
    pub fn of(n: usize) -> Result<Placement, &'static str> {
        if n < 2 {
            return Err("one thread");
        }
        let all = nix::sched::sched_getaffinity(Pid::from_raw(0))
            .map_err(|_| "the kernel does not say which CPUs this process may use")?;
        let cpus: Box<[usize]> = (0..CpuSet::count())
            .filter(|&c| all.is_set(c).unwrap_or(false))
            .take(n)
            .collect();
        if cpus.len() < n {
            return Err("fewer CPUs than threads");
        }
        nix::sched::sched_setaffinity(Pid::from_raw(0), &all).map_err(|_| {
            "sched_setaffinity is denied (the packaged unit needs SystemCallFilter=sched_setaffinity in a drop-in)"
        })?;
        Ok(Placement { cpus, all })
    }

    /// Pins the calling thread to shard `me`'s CPU.
    pub fn pin(&self, me: usize) -> nix::Result<()> {
        let mut one = CpuSet::new();
        one.set(self.cpus[me])?;
        nix::sched::sched_setaffinity(Pid::from_raw(0), &one)
    }

    /// Gives the calling thread every CPU the process may run on: for the
    /// threads a pinned shard's runtime starts (its blocking work).
    pub fn unpin(&self) {
        if let Err(e) = nix::sched::sched_setaffinity(Pid::from_raw(0), &self.all) {
            tracing::warn!(error = %e, "a blocking thread stays on its shard's CPU");
        }
    }
}

/// An accepted connection handed to another shard, to be served there.
pub struct Handoff {
    /// The socket, not yet registered with any runtime.
    pub stream: std::net::TcpStream,
    /// The caller's address.
    pub peer: SocketAddr,
    /// Ours.
    pub local: SocketAddr,
    /// The caller's socket owner, if already looked up.
    pub owner: Option<Option<SocketOwner>>,
    /// What was read from it at accept.
    pub read: Bytes,
    /// What its listener serves.
    pub serves: Serves,
    /// Counts it as served by the shard it is handed to from the moment
    /// it is handed, so that connections accepted in a burst are shared
    /// out by what each shard has, taken or on its way.
    pub serving: Serving,
}

/// The shards of one server: how many open connections each serves (the
/// gauge `hostrole_thread_connections`), and the way to hand one a
/// connection.
pub struct Shards {
    serving: Box<[Gauge]>,
    handoff: Box<[mpsc::UnboundedSender<Box<Handoff>>]>,
    placement: Option<Placement>,
}

impl Shards {
    /// `n` shards (at least one), pinned where `placement` says if
    /// anywhere, with the receiving end of each one's hand-offs.
    pub fn new(
        n: usize,
        placement: Option<Placement>,
        metrics: &Metrics,
    ) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Box<Handoff>>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..n.max(1)).map(|_| mpsc::unbounded_channel()).unzip();
        let serving = (0..senders.len())
            .map(|i| metrics.thread_connections(i))
            .collect();
        let placement = placement.filter(|p| p.cpus.len() == senders.len());
        let shards = Shards {
            placement,
            serving,
            handoff: senders.into_boxed_slice(),
        };
        (Arc::new(shards), receivers)
    }

    /// Where the shards are pinned, if they are.
    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_ref()
    }

    /// The shard to serve a connection that shard `me` accepted and that
    /// stays open, whose packets came in on CPU `incoming`
    /// (`SO_INCOMING_CPU`): when shards are pinned, the one on that CPU
    /// unless it serves more than [`NEAR_SLACK`] more than the one serving
    /// fewest; else the one serving fewest, `me` unless another serves
    /// fewer.
    pub fn pick(&self, me: usize, incoming: Option<usize>) -> usize {
        let mut best = me;
        let mut fewest = self.load(me);
        for i in 0..self.serving.len() {
            let n = self.load(i);
            if n < fewest {
                best = i;
                fewest = n;
            }
        }
        let near = self
            .placement
            .as_ref()
            .zip(incoming)
            .and_then(|(p, cpu)| p.cpus.iter().position(|&c| c == cpu));
        match near {
            Some(i) if self.load(i) <= fewest + NEAR_SLACK => i,
            _ => best,
        }
    }

    /// Hands `conn` to shard `to`; gives it back if that shard no longer
    /// takes any (it is stopping).
    pub fn hand(&self, to: usize, conn: Box<Handoff>) -> Result<(), Box<Handoff>> {
        self.handoff[to].send(conn).map_err(|e| e.0)
    }

    /// Counts a connection shard `i` serves, for as long as the returned
    /// guard lives.
    pub fn serving(&self, i: usize) -> Serving {
        self.serving[i].inc();
        Serving(self.serving[i].clone())
    }

    /// How many connections shard `i` serves now.
    pub fn load(&self, i: usize) -> i64 {
        self.serving[i].get()
    }
}

/// One connection a shard serves, counted in its gauge; see
/// [`Shards::serving`].
pub struct Serving(Gauge);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_shard_serving_fewest() {
        let (shards, _rx) = Shards::new(3, None, &Metrics::new());
        let pick = |me| shards.pick(me, None);
        assert_eq!(pick(1), 1, "all equal: the shard that accepted");
        let a = shards.serving(1);
        assert_eq!(pick(1), 0, "the first of the least served");
        let b = shards.serving(0);
        assert_eq!(pick(1), 2);
        assert_eq!(pick(0), 2);
        let c = shards.serving(2);
        assert_eq!(pick(2), 2, "ties stay where they were accepted");
        let d = shards.serving(2);
        assert_eq!(pick(2), 0);
        drop((a, b, c, d));
        assert_eq!((shards.load(0), shards.load(1), shards.load(2)), (0, 0, 0));
    }

    fn pinned(cpus: &[usize]) -> Option<Placement> {
        Some(Placement {
            cpus: cpus.into(),
            all: CpuSet::new(),
        })
    }

    #[test]
    fn a_connection_goes_to_the_pinned_shard_on_its_callers_cpu_within_the_slack() {
        let (free, _rx) = Shards::new(3, None, &Metrics::new());
        assert_eq!(free.pick(0, Some(5)), 0, "unpinned: the CPU says nothing");
        let (shards, _rx) = Shards::new(3, pinned(&[4, 5, 7]), &Metrics::new());
        assert_eq!(shards.pick(0, Some(5)), 1);
        assert_eq!(shards.pick(0, Some(7)), 2);
        assert_eq!(shards.pick(2, Some(4)), 0);
        assert_eq!(shards.pick(1, None), 1, "no CPU: the fewest");
        assert_eq!(shards.pick(1, Some(6)), 1, "no shard on 6: the fewest");
        let held: Vec<_> = (0..=NEAR_SLACK).map(|_| shards.serving(2)).collect();
        assert_eq!(shards.load(2), NEAR_SLACK + 1);
        assert_eq!(shards.pick(2, Some(7)), 0, "past the slack: the fewest");
        let a = shards.serving(0);
        assert_eq!(shards.pick(0, Some(7)), 1);
        let b = shards.serving(1);
        assert_eq!(shards.pick(0, Some(7)), 2, "within the slack again");
        drop((held, a, b));
    }

    #[test]
    fn a_placement_is_kept_only_for_as_many_shards() {
        let (shards, _rx) = Shards::new(2, pinned(&[0, 1, 2]), &Metrics::new());
        assert!(shards.placement().is_none());
        assert_eq!(shards.pick(0, Some(1)), 0);
        let (shards, _rx) = Shards::new(3, pinned(&[0, 1, 2]), &Metrics::new());
        assert!(shards.placement().is_some());
    }

    #[test]
    fn one_shard_keeps_everything() {
        let (shards, rx) = Shards::new(0, None, &Metrics::new());
        assert_eq!(rx.len(), 1);
        let _a = shards.serving(0);
        assert_eq!(shards.pick(0, None), 0);
        assert_eq!(shards.pick(0, Some(0)), 0);
        assert!(Placement::of(1).is_err(), "one shard is never pinned");
    }

    #[test]
    fn shards_are_pinned_one_to_each_cpu_and_what_they_start_is_not() {
        let mine = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        let allowed: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| mine.is_set(c).unwrap())
            .collect();
        assert!(Placement::of(allowed.len() + 1).is_err());
        if allowed.len() < 2 {
            assert!(Placement::of(allowed.len()).is_err());
            return;
        }
        let p = Placement::of(2).expect("two CPUs");
        assert_eq!(&p.cpus[..], &allowed[..2]);
        let on = |set: CpuSet| -> Vec<usize> {
            (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap())
                .collect()
        };
        // On a thread of its own: pinning changes only the calling thread.
        std::thread::spawn(move || {
            let now = || nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
            p.pin(1).unwrap();
            assert_eq!(on(now()), vec![allowed[1]]);
            p.unpin();
            assert_eq!(on(now()), allowed);
        })
        .join()
        .unwrap();
        assert_eq!(
            on(nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap()),
            on(mine)
        );
    }

    #[test]
    fn a_stopped_shard_gives_the_connection_back() {
        let (shards, mut rx) = Shards::new(2, None, &Metrics::new());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = |stream| {
            Box::new(Handoff {
                stream,
                peer: addr,
                local: addr,
                owner: None,
                read: Bytes::from_static(b"GET"),
                serves: Serves::Imds,
                serving: shards.serving(1),
            })
        };
        let s = std::net::TcpStream::connect(addr).unwrap();
        assert!(shards.hand(1, conn(s)).is_ok());
        assert_eq!(shards.load(1), 1, "counted on its way");
        let got = rx[1].try_recv().expect("handed over");
        assert_eq!(&got.read[..], b"GET");
        drop(got);
        assert_eq!(shards.load(1), 0);
        rx[1].close();
        let s = std::net::TcpStream::connect(addr).unwrap();
        let back = shards.hand(1, conn(s)).expect_err("shard 1 takes none");
        assert_eq!(&back.read[..], b"GET");
        drop(back);
        assert_eq!(shards.load(1), 0);
    }
}
