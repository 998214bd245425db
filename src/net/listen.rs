//! TCP listeners for the endpoint: bound with a listen queue deep enough
//! for a burst of fresh connections, and set up so that what every
//! accepted socket needs is set once, on the listener, not per connection.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
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

/// Sets TCP_NODELAY on `listener`; Linux copies it to every socket it
/// accepts. Returns whether it is set, so that when it is not the caller
/// sets it on each connection instead.
pub fn nodelay_for_accepted(listener: &TcpListener) -> bool {
    let sock = SockRef::from(listener);
    if let Err(e) = sock.set_tcp_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on the listener");
    }
    sock.tcp_nodelay().unwrap_or(false)
}

/// The local address of every connection `listener` accepts, when it is
/// bound to one address; `None` for a wildcard address, whose connections
/// each need their own `getsockname`.
pub fn fixed_local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
