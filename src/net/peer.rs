//! Who is at the other end of a local connection.
//!
//! [`tcp_socket_owner`] asks the kernel, with one exact `NETLINK_SOCK_DIAG`
//! lookup, for the owner (uid and inode) of the caller's end of a loopback
//! TCP connection that we accepted; it never reads `/proc`. (For a Unix
//! socket peer, see [`crate::net::peergroups`].)

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// The owner of a socket, as the kernel's sock_diag reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwner {
    /// The uid that created the socket (the socket inode's owner).
    pub uid: u32,
    /// The socket's inode number, as `fstat` of its file descriptor reports it.
    pub inode: u64,
}

use super::netlink::*;

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// Finds the owner of the caller's socket on a TCP connection we accepted.
///
/// `peer` is the remote address of the accepted connection and `local` our
/// address on it; the caller's socket is the one whose local address is `peer`
/// and remote address is `local`. v4-mapped IPv6 addresses (as a dual-stack
/// listener sees v4 clients) are treated as IPv4: the kernel keeps v4 and
/// v4-mapped connections in the same table, so one `AF_INET` query finds
/// the caller's socket whether it is `AF_INET` or `AF_INET6`.
///
/// Returns `Ok(None)` when no such socket exists, and also when it no longer
/// belongs to an open file (closed, orphaned or in TIME_WAIT: the kernel
/// reports uid 0 and inode 0 for those, which must not read as root). The
/// uid is the socket creator's; the lookup runs in this process's network
/// namespace.
pub fn tcp_socket_owner(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<SocketOwner>> {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let local = SocketAddr::new(local.ip().to_canonical(), local.port());
    let family = match (peer.ip(), local.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "peer and local addresses are of different families",
            ))
        }
    };
    // One netlink socket per thread, kept: a query is then one send and
    // one receive. After any error it is dropped, so that a late reply to
    // a query that timed out can never answer the next one (replies also
    // carry the query's own sequence number).
    DIAG.with(|cell| {
        let mut kept = cell.borrow_mut();
        let fd = match kept.take() {
            Some(fd) => fd,
            None => diag_socket()?,
        };
        let seq = NEXT_SEQ.with(|n| {
            let seq = n.get();
            n.set(seq.wrapping_add(1).max(1));
            seq
        });
        let answer = query(&fd, family, peer, local, seq);
        if answer.is_ok() {
            *kept = Some(fd);
        }
        answer
    })
}

thread_local! {
    static DIAG: std::cell::RefCell<Option<OwnedFd>> = const { std::cell::RefCell::new(None) };
    static NEXT_SEQ: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
}

fn diag_socket() -> io::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &TimeVal::new(1, 0))?;
    Ok(fd)
}

/// One query on `fd`, numbered `seq`.
fn query(
    fd: &OwnedFd,
    family: i32,
    peer: SocketAddr,
    local: SocketAddr,
    seq: u32,
) -> io::Result<Option<SocketOwner>> {
    let request = Request {
        hdr: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST,
            seq,
            pid: 0,
        },
        req: InetDiagReqV2 {
            family: family as u8,
            protocol: libc::IPPROTO_TCP as u8,
            ext: 0,
            pad: 0,
            states: !0,
            id: InetDiagSockId {
                sport: peer.port().to_be(),
                dport: local.port().to_be(),
                src: addr_bytes(peer.ip()),
                dst: addr_bytes(local.ip()),
                interface: 0,
                cookie: [!0; 2],
            },
        },
    };
    let kernel = NetlinkAddr::new(0, 0);
    let sent = socket::sendto(
        fd.as_raw_fd(),
        as_bytes(&request),
        &kernel,
        MsgFlags::empty(),
    )?;
    if sent != size_of::<Request>() {
        return Err(io::Error::other("short write of sock_diag request"));
    }
    let mut buf = [0u8; 8192];
    // Datagrams not from the kernel (port id 0) are skipped, a few at most.
    for _ in 0..4 {
        let (len, from) =
            socket::recvfrom::<NetlinkAddr>(fd.as_raw_fd(), &mut buf).map_err(|e| match e {
                Errno::EAGAIN => {
                    io::Error::new(io::ErrorKind::TimedOut, "sock_diag query timed out")
                }
                e => e.into(),
            })?;
        if from.map(|a| a.pid()) != Some(0) {
            continue;
        }
        return parse_reply(&buf[..len.min(buf.len())], peer, local, seq);
    }
    Err(io::Error::other("no sock_diag reply from the kernel"))
}

/// Checks and reads the kernel's reply to our one request.
fn parse_reply(
    datagram: &[u8],
    peer: SocketAddr,
    local: SocketAddr,
    seq: u32,
) -> io::Result<Option<SocketOwner>> {
    let hdr = read_plain::<NlMsgHdr>(datagram).ok_or_else(|| invalid("short netlink reply"))?;
    let len = hdr.len as usize;
    if len < size_of::<NlMsgHdr>() || len > datagram.len() {
        return Err(invalid("truncated netlink message"));
    }
    if hdr.seq != seq {
        return Err(invalid("netlink reply to another request"));
    }
    let body = &datagram[size_of::<NlMsgHdr>()..len];
    match hdr.kind {
        NLMSG_ERROR => {
            let errno = read_plain::<i32>(body).ok_or_else(|| invalid("short netlink error"))?;
            match -errno {
                0 | libc::ENOENT => Ok(None),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        }
        NLMSG_DONE => Ok(None),
        SOCK_DIAG_BY_FAMILY => {
            let msg =
                read_plain::<InetDiagMsg>(body).ok_or_else(|| invalid("short sock_diag reply"))?;
            let id = &msg.id;
            let matches = u16::from_be(id.sport) == peer.port()
                && u16::from_be(id.dport) == local.port()
                && reply_addr(msg.family, id.src) == Some(peer.ip())
                && reply_addr(msg.family, id.dst) == Some(local.ip());
            if !matches {
                return Err(invalid("sock_diag reply does not match the query"));
            }
            let inode = u64::from(msg.inode);
            Ok((inode != 0).then_some(SocketOwner {
                uid: msg.uid,
                inode,
            }))
        }
        _ => Err(invalid("unexpected netlink message type")),
    }
}

/// An address as the network-order bytes of `inet_diag_sockid`.
fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The canonical address in a reply (v4-mapped reads as IPv4).
fn reply_addr(family: u8, bytes: [u8; 16]) -> Option<IpAddr> {
    match i32::from(family) {
        libc::AF_INET => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()),
        libc::AF_INET6 => Some(Ipv6Addr::from(bytes).to_canonical()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::geteuid;
    use socket2::{Domain, Socket, Type};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsFd, AsRawFd};

    fn inode_of(fd: impl AsFd) -> u64 {
        let stat = nix::sys::stat::fstat(fd.as_fd().as_raw_fd()).unwrap();
        stat.st_ino
    }

    fn owned(uid: u32, inode: u64) -> Option<SocketOwner> {
        Some(SocketOwner { uid, inode })
    }

    fn listen(addr: &str) -> TcpListener {
        let addr: SocketAddr = addr.parse().unwrap();
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        if addr.is_ipv6() {
            socket.set_only_v6(false).unwrap();
        }
        socket.bind(&addr.into()).unwrap();
        socket.listen(8).unwrap();
        socket.into()
    }

    /// A connection: (client, accepted, peer as we see it, local as we see it).
    fn connect(listener: &TcpListener, ip: &str) -> (TcpStream, TcpStream, SocketAddr, SocketAddr) {
        let target = SocketAddr::new(ip.parse().unwrap(), listener.local_addr().unwrap().port());
        let client = TcpStream::connect(target).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        (client, server, peer, local)
    }

    #[test]
    fn the_structs_have_the_sizes_of_the_kernel_headers() {
        assert_eq!(size_of::<NlMsgHdr>(), 16);
        assert_eq!(size_of::<InetDiagReqV2>(), 56);
        assert_eq!(size_of::<InetDiagMsg>(), 72);
    }

    /// Checks both directions of one connection from `ip` to a listener on `addr`.
    fn assert_finds_both_ends(addr: &str, ip: &str, client_family_v6: bool) {
        let listener = listen(addr);
        let (client, server, peer, local) = connect(&listener, ip);
        assert_eq!(client.local_addr().unwrap().is_ipv6(), client_family_v6);
        let uid = geteuid().as_raw();
        let caller = owned(uid, inode_of(&client));
        assert_eq!(tcp_socket_owner(peer, local).unwrap(), caller);
        let ours = owned(uid, inode_of(&server));
        assert_eq!(tcp_socket_owner(local, peer).unwrap(), ours);
    }

    #[test]
    fn a_v4_client_of_a_v4_listener_is_found() {
        assert_finds_both_ends("127.0.0.1:0", "127.0.0.1", false);
    }

    #[test]
    fn a_v6_client_of_a_v6_listener_is_found() {
        assert_finds_both_ends("[::1]:0", "::1", true);
    }

    #[test]
    fn a_v4_client_of_a_dual_stack_listener_is_found() {
        assert_finds_both_ends("[::]:0", "127.0.0.1", false);
    }

    #[test]
    fn a_v6_client_with_a_v4_mapped_address_of_a_v4_listener_is_found() {
        assert_finds_both_ends("127.0.0.1:0", "::ffff:127.0.0.1", true);
    }

    #[test]
    fn a_v6_client_with_a_v4_mapped_address_of_a_dual_stack_listener_is_found() {
        assert_finds_both_ends("[::]:0", "::ffff:127.0.0.1", true);
    }

    #[test]
    fn a_port_nobody_uses_is_not_found() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let listener = listen(addr);
            let local = listener.local_addr().unwrap();
            let unused = listen(addr).local_addr().unwrap();
            assert_eq!(tcp_socket_owner(unused, local).unwrap(), None);
        }
    }

    #[test]
    fn a_caller_that_closed_its_socket_is_not_found() {
        let listener = listen("127.0.0.1:0");
        let (client, server, peer, local) = connect(&listener, "127.0.0.1");
        drop(client);
        assert_eq!(tcp_socket_owner(peer, local).unwrap(), None);
        drop(server);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(tcp_socket_owner(peer, local).unwrap(), None);
    }

    #[test]
    fn the_uid_is_that_of_the_client_sockets_creator() {
        if !geteuid().is_root() {
            return;
        }
        let listener = listen("127.0.0.1:0");
        let target = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            // SAFETY: the raw syscall sets the fsuid of this thread only
            // (new sockets are owned by it); the thread ends right after.
            unsafe { libc::syscall(libc::SYS_setfsuid, 4242) };
            TcpStream::connect(target).unwrap()
        })
        .join()
        .unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let owner = tcp_socket_owner(peer, target).unwrap();
        assert_eq!(owner, owned(4242, inode_of(&client)));
    }

    #[test]
    fn lookups_on_the_kept_socket_each_get_their_own_answer() {
        let v4 = listen("127.0.0.1:0");
        let v6 = listen("[::1]:0");
        let (a, _sa, a_peer, a_local) = connect(&v4, "127.0.0.1");
        let (b, _sb, b_peer, b_local) = connect(&v6, "::1");
        let unused = listen("127.0.0.1:0").local_addr().unwrap();
        let uid = geteuid().as_raw();
        for _ in 0..200 {
            assert_eq!(
                tcp_socket_owner(a_peer, a_local).unwrap(),
                owned(uid, inode_of(&a))
            );
            assert_eq!(tcp_socket_owner(unused, a_local).unwrap(), None);
            assert_eq!(
                tcp_socket_owner(b_peer, b_local).unwrap(),
                owned(uid, inode_of(&b))
            );
        }
        // One socket served them all, and it is still kept.
        assert!(DIAG.with(|d| d.borrow().is_some()));
        // A lookup refused before it is sent leaves the kept socket usable.
        assert!(tcp_socket_owner(a_peer, b_local).is_err());
        assert_eq!(
            tcp_socket_owner(a_peer, a_local).unwrap(),
            owned(uid, inode_of(&a))
        );
    }

    #[test]
    fn a_reply_numbered_for_another_query_is_refused() {
        let hdr = NlMsgHdr {
            len: size_of::<NlMsgHdr>() as u32 + 4,
            kind: NLMSG_ERROR,
            flags: 0,
            seq: 7,
            pid: 0,
        };
        let mut datagram = as_bytes(&hdr).to_vec();
        datagram.extend_from_slice(&0i32.to_ne_bytes());
        let (peer, local) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert_eq!(parse_reply(&datagram, peer, local, 7).unwrap(), None);
        let err = parse_reply(&datagram, peer, local, 8).unwrap_err();
        assert!(err.to_string().contains("another request"), "{err}");
    }
}
