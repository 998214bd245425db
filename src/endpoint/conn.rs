//! What one IMDS connection knows about itself, found once when it is
//! accepted: the caller (address, socket owner, whether it is this host),
//! its slot, and its socket, whose TTL is locked to the hop limit once a
//! token is given on it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::imds::Caller;
use crate::net::peer::{tcp_socket_owner, SocketOwner};
use crate::net::slots::Slot;

/// Time a client has to send a complete request head, from the accept.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's minimum buffer).
pub const MAX_REQUEST_HEAD_BYTES: usize = 8192;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 32;
/// At shutdown, how long a connection that has sent nothing yet gets to
/// send its request before it is closed.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// How long the rest of an answer the socket did not take at once may
/// take to leave.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one connection knows about itself, found once when it is accepted.
#[derive(Debug)]
pub struct Conn {
    /// The caller, as the handler sees it.
    pub caller: Caller,
    /// The owner of the caller's socket, when the caller is on this host:
    /// found when the connection is accepted if its slot or the allow-list
    /// needs it, else when a log line names it (see [`Conn::owner`]).
    owner: OnceLock<Option<SocketOwner>>,
    /// What the listener it came through serves.
    pub serves: Serves,
    /// The socket, to set its TTL (see [`Conn::lock_hop_limit`]).
    fd: RawFd,
    /// Our address on it.
    local: SocketAddr,
    /// The socket's TTL is the hop limit for the rest of its life.
    hop_locked: AtomicBool,
    /// This connection's slot, touched at every request; none for a
    /// connection answered at once and closed (see
    /// [`crate::endpoint::quick`]), which never waits for anything.
    pub slot: Option<Slot>,
}

impl Conn {
    /// Sets the socket's IP TTL (and IPv6 hop limit) to `hop_limit`, for
    /// good: every byte written from now on, the token's and any pipelined
    /// answer's, and every retransmission of an earlier one, leaves with
    /// it. Returning the TTL to the system's after the token would let the
    /// kernel retransmit a lost token segment, or a pipelined answer carry
    /// it, with the higher TTL.
    pub fn lock_hop_limit(&self, hop_limit: u8) -> io::Result<()> {
        if self.hop_locked.load(Ordering::Acquire) {
            return Ok(());
        }
        // SAFETY: `fd` is the connection's socket, owned by the hyper
        // connection that owns the service calling this; it stays open for
        // as long as that service can be called.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let sock = socket2::SockRef::from(&fd);
        let ttl = u32::from(hop_limit);
        if self.local.is_ipv6() {
            sock.set_unicast_hops_v6(ttl)?;
        }
        // Also on an IPv6 socket: an IPv4 client of a dual-stack listener
        // is sent IPv4 packets, whose TTL is IP_TTL.
        sock.set_ttl_v4(ttl)?;
        self.hop_locked.store(true, Ordering::Release);
        Ok(())
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The instance metadata service.
    Imds,
    /// The container credentials endpoint.
    Container,
}

impl Serves {
    /// Its name in logs.
    pub fn label(self) -> &'static str {
        match self {
            Serves::Imds => "imds",
            Serves::Container => "container",
        }
    }
}

impl Conn {
    /// A connection's state; its socket is `fd`, which must stay open for
    /// as long as this is used (whoever owns the socket owns this too).
    /// `owner` is `None` when it has not been looked up yet.
    pub fn new(
        caller: Caller,
        owner: Option<Option<SocketOwner>>,
        serves: Serves,
        fd: RawFd,
        local: SocketAddr,
        slot: Option<Slot>,
    ) -> Self {
        Conn {
            caller,
            owner: owner.map(OnceLock::from).unwrap_or_default(),
            serves,
            fd,
            local,
            hop_locked: AtomicBool::new(false),
            slot,
        }
    }

    /// The owner of the caller's socket: the one found at accept, else
    /// asked of the kernel now (once), while the socket is still open.
    pub fn owner(&self) -> Option<SocketOwner> {
        *self.owner.get_or_init(|| {
            let peer = self.caller.addr?;
            tcp_socket_owner(peer, self.local).ok().flatten()
        })
    }

    /// The owner of the caller's socket, if it has been looked up.
    pub fn owner_if_known(&self) -> Option<Option<SocketOwner>> {
        self.owner.get().copied()
    }
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
