//! The groups of the process at the other end of a connected Unix socket
//! ([`unix_peer_groups`], `SO_PEERGROUPS`: as the kernel recorded them at
//! connect time, never from `/proc`), and [`is_member`], the one definition
//! of group membership for the control socket and the IMDS allow-list.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc;

/// `SO_PEERGROUPS` from `asm-generic/socket.h` (sparc has its own numbering).
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEERGROUPS: libc::c_int = 59;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEERGROUPS: libc::c_int = 0x3d;

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
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

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
