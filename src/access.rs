//! Which local users may read credentials (`allowed-uids`, `allowed-gids`).
//!
//! For a caller on this host, the kernel knows which user owns the caller's
//! end of the TCP connection: `/proc/self/net/tcp` and `tcp6` list every
//! socket of this network namespace with its owner uid and inode. The
//! caller's socket is the one whose local address is our peer and whose
//! remote address is our local address. Its uid is checked against the
//! allowed uids, and its groups (from the user database) against the allowed
//! gids. A caller that cannot be found there (another network namespace, a
//! remote host) is refused: with an allow-list set, unknown means no.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The configured allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

/// Who is calling, as far as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Owner of the caller's socket.
    pub uid: u32,
    /// The socket's inode, to find the caller's pid for the log.
    pub inode: u64,
}

impl AllowList {
    /// An allow-list of these uids and gids.
    pub fn new(mut uids: Vec<u32>, mut gids: Vec<u32>) -> Self {
        uids.sort_unstable();
        uids.dedup();
        gids.sort_unstable();
        gids.dedup();
        Self { uids, gids }
    }

    /// Whether `uid` may read credentials: listed itself, or a member
    /// (primary or supplementary) of a listed group.
    pub fn allows(&self, uid: u32) -> bool {
        if self.uids.binary_search(&uid).is_ok() {
            return true;
        }
        if self.gids.is_empty() {
            return false;
        }
        groups_of(uid)
            .iter()
            .any(|g| self.gids.binary_search(g).is_ok())
    }
}

/// The primary and supplementary groups of `uid` in the user database.
fn groups_of(uid: u32) -> Vec<u32> {
    use nix::unistd::{Uid, User};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name.as_bytes()) else {
        return vec![user.gid.as_raw()];
    };
    match nix::unistd::getgrouplist(&name, user.gid) {
        Ok(groups) => groups.into_iter().map(|g| g.as_raw()).collect(),
        Err(_) => vec![user.gid.as_raw()],
    }
}

/// Finds the owner of the caller's end of the connection `peer` → `local`.
pub fn caller(peer: SocketAddr, local: SocketAddr) -> Option<Caller> {
    let table = if peer.is_ipv4() && local.is_ipv4() {
        "/proc/self/net/tcp"
    } else {
        "/proc/self/net/tcp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    find_caller(&text, peer, local)
}

/// [`caller`] over the text of a `/proc/net/tcp{,6}` table.
pub fn find_caller(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<Caller> {
    let want = (canonical(peer), canonical(local));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            return None;
        }
        let from = parse_endpoint(f[1])?;
        let to = parse_endpoint(f[2])?;
        if (canonical(from), canonical(to)) != want {
            return None;
        }
        Some(Caller {
            uid: f[7].parse().ok()?,
            inode: f[9].parse().ok()?,
        })
    })
}

fn canonical(a: SocketAddr) -> (IpAddr, u16) {
    (a.ip().to_canonical(), a.port())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit
/// word as the kernel holds it, printed in hex; the port in host order.
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_le_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The pid of a process holding the socket `inode`, for the log. Scans
/// `/proc/*/fd`; only called when a caller is refused.
pub fn pid_of_socket(inode: u64) -> Option<u32> {
    let want = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:053A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:053A 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:053A 01 00000000:00000000 00:00000000 00000000  1000        0 3333 1 0000000000000000 20 4 30 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:C351 00000000000000000000000001000000:053A 01 00000000:00000000 00:00000000 00000000   65534        0 4444 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:C352 0000000000000000FFFF00000100007F:053A 01 00000000:00000000 00:00000000 00000000   1001        0 5555 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn the_callers_end_of_an_ipv4_connection_names_its_owner() {
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:1338".parse().unwrap();
        assert_eq!(
            find_caller(TCP, peer, local),
            Some(Caller {
                uid: 1000,
                inode: 3333
            })
        );
        // Our own end (local → peer) is not the caller's.
        assert_eq!(find_caller(TCP, local, peer).map(|c| c.inode), Some(2222));
        assert_eq!(
            find_caller(TCP, "127.0.0.1:50001".parse().unwrap(), local),
            None
        );
    }

    #[test]
    fn ipv6_and_v4_mapped_entries_are_found() {
        let local6: SocketAddr = "[::1]:1338".parse().unwrap();
        let peer6: SocketAddr = "[::1]:50001".parse().unwrap();
        assert_eq!(find_caller(TCP6, peer6, local6).map(|c| c.uid), Some(65534));
        // A v4 client of a [::] listener shows up v4-mapped on both sides.
        let peer: SocketAddr = "[::ffff:127.0.0.1]:50002".parse().unwrap();
        let local: SocketAddr = "[::ffff:127.0.0.1]:1338".parse().unwrap();
        assert_eq!(find_caller(TCP6, peer, local).map(|c| c.uid), Some(1001));
        let peer4: SocketAddr = "127.0.0.1:50002".parse().unwrap();
        let local4: SocketAddr = "127.0.0.1:1338".parse().unwrap();
        assert_eq!(find_caller(TCP6, peer4, local4).map(|c| c.uid), Some(1001));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let table = "header\n garbage\n 0: ZZ:QQ 0100007F:053A 01 x x x 7 0 9\n";
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:1338".parse().unwrap();
        assert_eq!(find_caller(table, peer, local), None);
    }

    #[test]
    fn uids_are_allowed_by_number_and_by_group() {
        let list = AllowList::new(vec![1000], vec![]);
        assert!(list.allows(1000));
        assert!(!list.allows(0));
        // root's primary group is 0 on every system.
        let by_group = AllowList::new(vec![], vec![0]);
        assert!(by_group.allows(0));
        assert!(!by_group.allows(4_000_000));
    }
}
