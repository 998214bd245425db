//! What the daemon says to and takes from systemd: the notification
//! protocol (`sd_notify`: readiness, a status line kept current, watchdog
//! pings, sent as datagrams to `$NOTIFY_SOCKET`; nothing without it), and
//! the listening sockets of socket activation (`LISTEN_PID`/`LISTEN_FDS`).

use std::io;
use std::os::fd::{AsFd, FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::refresh::Snapshot;

/// Sends `state` (e.g. `READY=1`) to the service manager; false if there is
/// none or the send failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket name.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    sent.is_ok()
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`, for this pid).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The one-line service status for systemd.
pub fn status_line(snapshot: &Snapshot, clock: &SharedClock) -> String {
    let Some(association) = &snapshot.association else {
        return "no role associated".into();
    };
    match snapshot.usable(clock.now(), clock.boot_time()) {
        Some(c) => format!(
            "role {}: serving {} until {}",
            association.role.name(),
            c.access_key_id,
            rfc3339_seconds(c.expiration)
        ),
        None => format!(
            "role {}: not serving: {}",
            association.role.name(),
            snapshot
                .last_error
                .as_deref()
                .unwrap_or("waiting for the first credentials")
        ),
    }
}

/// Tells systemd the daemon is ready (the listeners are bound), keeps its
/// status line current, and pings the watchdog from the event loop.
pub async fn report_status(
    mut snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    let mut last = status_line(&snapshots.borrow_and_update(), &clock);
    notify(&format!("READY=1\nSTATUS={last}"));
    let watchdog = watchdog_interval();
    let mut ping =
        tokio::time::interval(watchdog.map(|w| w / 2).unwrap_or(Duration::from_secs(30)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
            _ = ping.tick() => {
                if watchdog.is_some() {
                    notify("WATCHDOG=1");
                }
            }
        }
        // Expiry is a matter of time as well as of snapshots: recompute.
        let line = status_line(&snapshots.borrow_and_update(), &clock);
        if line != last {
            notify(&format!("STATUS={line}"));
            last = line;
        }
    }
    notify("STOPPING=1");
}

/// The first descriptor systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

/// Takes the TCP listeners passed by systemd socket activation, if any
/// were passed to this process (`LISTEN_PID` is ours). Each descriptor
/// must be a listening TCP socket (IPv4 or IPv6), as the unit promises;
/// anything else is refused, naming the descriptor, rather than used.
pub fn activated_listeners() -> io::Result<Option<Vec<TcpListener>>> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !pid_matches {
        return Ok(None);
    }
    let count: RawFd = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if n > 0 && n <= 64 => n,
        _ => return Ok(None),
    };
    let mut out = Vec::new();
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count {
        check_listening_tcp(fd)?;
        // SAFETY: systemd passes these descriptors to this process (LISTEN_PID
        // matched), each was just checked to be an open listening TCP
        // socket, and nothing else in the process has taken them.
        let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        std_listener.set_nonblocking(true)?;
        out.push(TcpListener::from_std(std_listener)?);
    }
    Ok(Some(out))
}

/// Whether `fd` is an open, listening, TCP stream socket.
fn check_listening_tcp(fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, SockaddrStorage};
    // SAFETY: only borrowed for the checks below; an fd number that is not
    // open makes them fail with EBADF, which is reported.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is {what}, not a listening TCP socket"),
        )
    };
    let sock_type = getsockopt(&borrowed.as_fd(), sockopt::SockType)
        .map_err(|e| bad(&format!("unusable ({e})")))?;
    if sock_type != SockType::Stream {
        return Err(bad("not a stream socket"));
    }
    if !getsockopt(&borrowed.as_fd(), sockopt::AcceptConn).map_err(|e| bad(&e.to_string()))? {
        return Err(bad("a socket that is not listening"));
    }
    let addr: SockaddrStorage = getsockname(fd).map_err(|e| bad(&e.to_string()))?;
    if addr.as_sockaddr_in().is_none() && addr.as_sockaddr_in6().is_none() {
        return Err(bad("not an IPv4 or IPv6 socket"));
    }
    Ok(())
}
