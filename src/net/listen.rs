//! TCP listeners for the endpoint: bound with a listen queue deep enough
//! for a burst of fresh connections, and set up so that what every
//! accepted socket needs is set once, on the listener, not per connection.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpListener;

/// Listen queue asked for; the kernel caps it at `net.core.somaxconn`
/// (4096 by default since Linux 5.4). The runtime's own default, 128 here,
/// overflows when a few hundred clients each open a fresh connection per
/// request (the botocore and JS pattern): the kernel then drops the
/// handshake's last ACK and the client's request waits for a
/// retransmission, 200 ms or more.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds `addr` and listens with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    // As every server does: a restart can bind while connections of the
    // previous process are still in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// How long the kernel holds a connection that has sent nothing yet
/// before handing it over anyway, on a listener that defers (see
/// [`set_defer_accept`]).
pub const DEFER_ACCEPT_SECS: i32 = 1;

/// Asks the kernel to hand over a new connection on `listener` only once
/// its first bytes have arrived (TCP_DEFER_ACCEPT), or after
/// [`DEFER_ACCEPT_SECS`] without any; `false` hands every connection over
/// as soon as it is made.
///
/// With it, a connection that carries one request is read and answered at
/// accept (see [`crate::endpoint::quick`]) instead of waiting in the
/// runtime for its bytes, as it otherwise does whenever clients connect
/// well before they send (many clients at once do). A lone client pays the
/// server's wake-up once its request is sent, which it would otherwise
/// spend while writing it.
///
/// Only for a listener that outlives this process (socket activation): a
/// connection still waiting for its first byte lives in the kernel, not in
/// the accept queue, so a listener closed at a stop would reset it, while
/// one that systemd holds keeps it for the next start.
pub fn set_defer_accept(listener: &impl AsFd, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs: nix::libc::c_int = if on { DEFER_ACCEPT_SECS } else { 0 };
    // SAFETY: a plain setsockopt on a descriptor borrowed for the call,
    // with a pointer to a c_int that outlives it and its exact size.
    let r = unsafe {
        nix::libc::setsockopt(
            listener.as_fd().as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_DEFER_ACCEPT,
            (&secs as *const nix::libc::c_int).cast(),
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `listener` defers accepting (see [`set_defer_accept`]).
pub fn defers_accept(listener: &impl AsFd) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut secs: nix::libc::c_int = 0;
    let mut len = std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t;
    // SAFETY: a plain getsockopt on a descriptor borrowed for the call,
    // into a c_int that outlives it, with its exact size.
    let r = unsafe {
        nix::libc::getsockopt(
            listener.as_fd().as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_DEFER_ACCEPT,
            (&mut secs as *mut nix::libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(secs > 0)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Connections looked at before deciding whether to defer.
pub const DEFER_WINDOW: u32 = 256;
/// How long a listener defers before it looks again.
pub const DEFER_FOR: Duration = Duration::from_secs(1);

/// When a listener that may defer (see [`set_defer_accept`]) does.
///
/// Deferring pays when clients connect well before they send, as many
/// clients connecting at once do: most of their connections are otherwise
/// accepted with nothing to read yet (seven in ten at 16 clients that each
/// open a connection per request, here), and each waits in the runtime. It
/// costs a lone client the server's wake-up once its request is sent,
/// which otherwise overlaps the client's writing; such a client's
/// connection nearly always has its request by the time it is accepted
/// (one in twenty does not). So a listener defers when at least half of
/// [`DEFER_WINDOW`] connections had nothing to read at accept, and stops
/// [`DEFER_FOR`] later to look again.
#[derive(Debug, Clone, Default)]
pub struct Deferral {
    on_since: Option<Instant>,
    accepts: u32,
    early: u32,
}

impl Deferral {
    /// Counts a connection accepted at `now`, `early` if it had nothing to
    /// read yet. Returns the new setting when it changes.
    pub fn accepted(&mut self, early: bool, now: Instant) -> Option<bool> {
        if let Some(since) = self.on_since {
            if now.saturating_duration_since(since) < DEFER_FOR {
                return None;
            }
            self.on_since = None;
            return Some(false);
        }
        self.accepts += 1;
        self.early += u32::from(early);
        if self.accepts < DEFER_WINDOW {
            return None;
        }
        let defer = self.early * 2 >= self.accepts;
        self.accepts = 0;
        self.early = 0;
        if defer {
            self.on_since = Some(now);
            return Some(true);
        }
        None
    }

    /// Whether the listener is deferring.
    pub fn is_on(&self) -> bool {
        self.on_since.is_some()
    }
}

/// A listener whose connections come out as plain non-blocking sockets,
/// not yet registered with the runtime: a connection answered at once
/// (see [`crate::endpoint::quick`]) never is.
#[derive(Debug)]
pub struct Incoming(AsyncFd<mio::net::TcpListener>);

impl Incoming {
    /// Takes `std` over, in non-blocking mode. A listener the runtime
    /// has gives it up with `into_std`.
    pub fn from_std(std: std::net::TcpListener) -> io::Result<Self> {
        std.set_nonblocking(true)?;
        let mio = mio::net::TcpListener::from_std(std);
        // SAFETY: the mio listener owns its descriptor, which stays open
        // and the same for as long as the AsyncFd that owns it.
        let fd = unsafe { AsyncFd::register_with_interest(mio, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Incoming(fd))
    }

    /// Accepts one connection, waiting for one.
    pub async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(accepted) = ready.try_io(|l| l.get_ref().accept()) {
                return accepted.map(|(stream, addr)| (stream.into(), addr));
            }
        }
    }
}

impl AsFd for Incoming {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Sets TCP_NODELAY on `listener`; Linux copies it to every socket it
/// accepts. Returns whether it is set, so that when it is not the caller
/// sets it on each connection instead.
pub fn nodelay_for_accepted(listener: &impl AsFd) -> bool {
    let sock = SockRef::from(listener);
    if let Err(e) = sock.set_tcp_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on the listener");
    }
    sock.tcp_nodelay().unwrap_or(false)
}

/// The local address of every connection `listener` accepts, when it is
/// bound to one address; `None` for a wildcard address, whose connections
/// each need their own `getsockname`.
pub fn fixed_local_addr(listener: &impl AsFd) -> Option<SocketAddr> {
    SockRef::from(listener)
        .local_addr()
        .ok()?
        .as_socket()
        .filter(|a| !a.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` connections, `early` of them first, and returns the
    /// changes asked for.
    fn feed(d: &mut Deferral, n: u32, early: u32, now: Instant) -> Vec<bool> {
        (0..n).filter_map(|i| d.accepted(i < early, now)).collect()
    }

    #[test]
    fn a_listener_defers_when_half_its_connections_come_early_and_looks_again_later() {
        let t0 = Instant::now();
        let mut d = Deferral::default();
        // A lone client: one in twenty early.
        assert!(feed(&mut d, DEFER_WINDOW * 10, DEFER_WINDOW / 20, t0).is_empty());
        assert!(!d.is_on());
        // Just under half: not yet.
        assert!(feed(&mut d, DEFER_WINDOW, DEFER_WINDOW / 2 - 1, t0).is_empty());
        // Half of a whole window.
        assert!(feed(&mut d, DEFER_WINDOW - 1, DEFER_WINDOW / 2, t0).is_empty());
        assert_eq!(d.accepted(false, t0), Some(true));
        assert!(d.is_on());
        // While on, nothing is counted until DEFER_FOR has passed.
        assert!(feed(
            &mut d,
            DEFER_WINDOW * 4,
            DEFER_WINDOW * 4,
            t0 + DEFER_FOR / 2
        )
        .is_empty());
        assert_eq!(d.accepted(true, t0 + DEFER_FOR), Some(false));
        assert!(!d.is_on());
        // A fresh window after that: a window of all-early connections.
        assert_eq!(
            feed(&mut d, DEFER_WINDOW, DEFER_WINDOW, t0 + DEFER_FOR),
            vec![true]
        );
    }

    #[tokio::test]
    async fn the_listen_queue_takes_hundreds_of_connections_not_yet_accepted() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: each connection completes its handshake only if
        // the queue has room, otherwise connect waits for a SYN
        // retransmission (1 s) and times out.
        let conns: Vec<_> = (0..600)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"))
            })
            .collect();
        assert_eq!(conns.len(), 600);
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (plain, _) = listener.accept().await.unwrap();
        assert!(!plain.nodelay().unwrap(), "off by default");
        assert!(nodelay_for_accepted(&listener));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn the_local_address_is_fixed_only_for_a_listener_on_one_address() {
        let one = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(fixed_local_addr(&one), Some(one.local_addr().unwrap()));
        let any = bind("0.0.0.0:0".parse().unwrap()).unwrap();
        assert_eq!(fixed_local_addr(&any), None);
        let any6 = bind("[::]:0".parse().unwrap()).unwrap();
        assert_eq!(fixed_local_addr(&any6), None);
    }

    #[tokio::test]
    async fn a_deferring_listener_hands_a_connection_over_once_it_has_data() {
        use std::io::Write;
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(!defers_accept(&listener).unwrap());
        set_defer_accept(&listener, true).unwrap();
        assert!(defers_accept(&listener).unwrap());
        let listener = Incoming::from_std(listener.into_std().unwrap()).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(early.is_err(), "handed over before any data");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let (mut accepted, peer) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("handed over with its data")
            .unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut accepted, &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            b"GET / HTTP/1.1\r\n\r\n",
            "the data is there at accept"
        );
        set_defer_accept(&listener, false).unwrap();
        assert!(!defers_accept(&listener).unwrap());
        let _silent = std::net::TcpStream::connect(addr).unwrap();
        tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("handed over at once when not deferring")
            .unwrap();
    }

    #[tokio::test]
    async fn accepted_connections_are_non_blocking() {
        let bound = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = Incoming::from_std(bound.into_std().unwrap()).unwrap();
        let addr = fixed_local_addr(&listener).unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 8];
        let err = std::io::Read::read(&mut accepted, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_port_in_use_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
