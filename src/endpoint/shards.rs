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

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use super::conn::Serves;
use crate::metrics::Metrics;
use crate::net::peer::SocketOwner;

/// Most shards, whatever the number of cores: a metadata endpoint has no
/// use for more threads.
pub const MAX_SHARDS: usize = 8;

/// How many shards to run: one per core this process may run on (its CPU
/// affinity and cgroup quota, so `CPUAffinity=` and `CPUQuota=` in the
/// unit count), at most [`MAX_SHARDS`].
pub fn count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_SHARDS)
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
}

impl Shards {
    /// `n` shards (at least one), with the receiving end of each one's
    /// hand-offs.
    pub fn new(
        n: usize,
        metrics: &Metrics,
    ) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Box<Handoff>>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..n.max(1)).map(|_| mpsc::unbounded_channel()).unzip();
        let serving = (0..senders.len())
            .map(|i| metrics.thread_connections(i))
            .collect();
        let shards = Shards {
            serving,
            handoff: senders.into_boxed_slice(),
        };
        (Arc::new(shards), receivers)
    }

    /// The shard to serve a connection that shard `me` accepted and that
    /// stays open: the one serving the fewest, `me` unless another serves
    /// fewer.
    pub fn pick(&self, me: usize) -> usize {
        let load = |i: usize| self.load(i);
        let mut best = me;
        let mut fewest = load(me);
        for i in 0..self.serving.len() {
            let n = load(i);
            if n < fewest {
                best = i;
                fewest = n;
            }
        }
        best
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
        let (shards, _rx) = Shards::new(3, &Metrics::new());
        assert_eq!(shards.pick(1), 1, "all equal: the shard that accepted");
        let a = shards.serving(1);
        assert_eq!(shards.pick(1), 0, "the first of the least served");
        let b = shards.serving(0);
        assert_eq!(shards.pick(1), 2);
        assert_eq!(shards.pick(0), 2);
        let c = shards.serving(2);
        assert_eq!(shards.pick(2), 2, "ties stay where they were accepted");
        let d = shards.serving(2);
        assert_eq!(shards.pick(2), 0);
        drop((a, b, c, d));
        assert_eq!((shards.load(0), shards.load(1), shards.load(2)), (0, 0, 0));
    }

    #[test]
    fn one_shard_keeps_everything() {
        let (shards, rx) = Shards::new(0, &Metrics::new());
        assert_eq!(rx.len(), 1);
        let _a = shards.serving(0);
        assert_eq!(shards.pick(0), 0);
    }

    #[test]
    fn a_stopped_shard_gives_the_connection_back() {
        let (shards, mut rx) = Shards::new(2, &Metrics::new());
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
