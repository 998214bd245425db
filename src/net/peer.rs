//! Who is at the other end of a local connection.
//!
//! [`tcp_socket_owner`] asks the kernel, with one exact `NETLINK_SOCK_DIAG`
//! lookup, for the owner (uid and inode) of the caller's end of a loopback
//! TCP connection that we accepted; it never reads `/proc`.
//! [`unix_peer_groups`] reads the supplementary groups of the process at the
//! other end of a connected Unix socket with `SO_PEERGROUPS`, and
//! [`is_member`] is the one definition of group membership.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

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

/// `SO_PEERGROUPS` from `asm-generic/socket.h` (sparc has its own numbering).
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEERGROUPS: libc::c_int = 59;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEERGROUPS: libc::c_int = 0x3d;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
/// `SOCK_DIAG_BY_FAMILY` from `linux/sock_diag.h`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const QUERY_SEQ: u32 = 1;

/// `struct nlmsghdr` from `linux/netlink.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_sockid` from `linux/inet_diag.h`; ports and addresses in
/// network byte order.
#[repr(C)]
#[derive(Clone, Copy)]
struct InetDiagSockId {
    sport: u16,
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2` from `linux/inet_diag.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

/// `struct inet_diag_msg` from `linux/inet_diag.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

/// A netlink request: header followed by the sock_diag request.
#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    hdr: NlMsgHdr,
    req: InetDiagReqV2,
}

// These sizes prove the structs have no padding, which `Plain` relies on.
const _: () = assert!(size_of::<NlMsgHdr>() == 16);
const _: () = assert!(size_of::<InetDiagSockId>() == 48);
const _: () = assert!(size_of::<InetDiagReqV2>() == 56);
const _: () = assert!(size_of::<InetDiagMsg>() == 72);
const _: () = assert!(size_of::<Request>() == 72);

/// Marker for structs that are plain bytes.
///
/// # Safety
/// Implementors are `repr(C)`, hold only integers and have no padding, so
/// every byte pattern is a valid value and every byte of a value is initialised.
unsafe trait Plain: Copy {}
// SAFETY: repr(C), integer fields only, sizes asserted above (no padding).
unsafe impl Plain for NlMsgHdr {}
// SAFETY: as above.
unsafe impl Plain for InetDiagMsg {}
// SAFETY: as above.
unsafe impl Plain for Request {}
// SAFETY: a plain integer.
unsafe impl Plain for i32 {}

fn as_bytes<T: Plain>(value: &T) -> &[u8] {
    // SAFETY: `T: Plain` has no padding, so all size_of::<T>() bytes behind the
    // reference are initialised; the slice borrows `value`.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

fn read_plain<T: Plain>(bytes: &[u8]) -> Option<T> {
    // SAFETY: the length is checked; `read_unaligned` needs no alignment, and
    // any byte pattern is a valid `T: Plain`.
    (bytes.len() >= size_of::<T>())
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

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
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &TimeVal::new(1, 0))?;
    let request = Request {
        hdr: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST,
            seq: QUERY_SEQ,
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
        return parse_reply(&buf[..len.min(buf.len())], peer, local);
    }
    Err(io::Error::other("no sock_diag reply from the kernel"))
}

/// Checks and reads the kernel's reply to our one request.
fn parse_reply(
    datagram: &[u8],
    peer: SocketAddr,
    local: SocketAddr,
) -> io::Result<Option<SocketOwner>> {
    let hdr = read_plain::<NlMsgHdr>(datagram).ok_or_else(|| invalid("short netlink reply"))?;
    let len = hdr.len as usize;
    if len < size_of::<NlMsgHdr>() || len > datagram.len() {
        return Err(invalid("truncated netlink message"));
    }
    if hdr.seq != QUERY_SEQ {
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

/// The supplementary groups of the process at the other end of a connected
/// Unix socket, as they were when it connected (`SO_PEERGROUPS`).
pub fn unix_peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let gid_size = size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    // The peer's credentials are fixed at connect time, so one retry with the
    // size the kernel asks for is enough.
    for _ in 0..2 {
        let mut len = (groups.len() * gid_size) as libc::socklen_t;
        // SAFETY: `fd` is a live borrowed descriptor; `groups` is writable for
        // `len` bytes and `len` is a valid socklen_t the kernel may update.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / gid_size);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
        groups.resize((len as usize).div_ceil(gid_size), 0);
    }
    Err(io::Error::other(
        "peer group list did not fit the size the kernel reported",
    ))
}

/// Whether a process with primary group `primary` and supplementary groups
/// `supplementary` is a member of group `gid`.
pub fn is_member(gid: u32, primary: u32, supplementary: &[u32]) -> bool {
    gid == primary || supplementary.contains(&gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{geteuid, getgroups};
    use socket2::{Domain, Socket, Type};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::net::UnixStream;

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
    fn a_socketpair_peer_has_our_own_groups() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let mut groups = unix_peer_groups(ours.as_fd()).unwrap();
        let mut expected: Vec<u32> = getgroups().unwrap().iter().map(|g| g.as_raw()).collect();
        groups.sort_unstable();
        expected.sort_unstable();
        assert_eq!(groups, expected);
    }

    #[test]
    fn a_peer_with_more_than_64_groups_is_read_in_full() {
        if !geteuid().is_root() {
            return;
        }
        let expected: Vec<u32> = (5000..5100).collect();
        let wanted = expected.clone();
        let (ours, _theirs) = std::thread::spawn(move || {
            // SAFETY: the raw syscall (unlike glibc's setgroups) changes the
            // groups of this thread only, from a valid slice; it ends right after.
            let rc = unsafe { libc::syscall(libc::SYS_setgroups, wanted.len(), wanted.as_ptr()) };
            assert_eq!(rc, 0);
            UnixStream::pair().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(unix_peer_groups(ours.as_fd()).unwrap(), expected);
    }

    #[test]
    fn membership_counts_the_primary_and_the_supplementary_groups() {
        assert!(is_member(10, 10, &[]));
        assert!(is_member(20, 10, &[30, 20]));
        assert!(!is_member(40, 10, &[30, 20]));
    }
}
