//! Where the daemon keeps its files when the configuration does not say:
//! the directories systemd passes (the packaged service), else the user's
//! own XDG directories, root included, so that a daemon run by hand never
//! shares, or leaves behind, the packaged service's state.

use std::path::{Path, PathBuf};

/// The packaged service's state directory (systemd's `StateDirectory=`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/hostrole";
/// The packaged service's control socket (in its `RuntimeDirectory=`).
pub const SYSTEM_CONTROL_SOCKET: &str = "/run/hostrole/control.sock";

/// The state directory used when none is configured: systemd's
/// `STATE_DIRECTORY`, else `$XDG_STATE_HOME/hostrole`, else
/// `~/.local/state/hostrole` (the home from `HOME`, else the user database).
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = systemd_directory("STATE_DIRECTORY") {
        return dir;
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(xdg).join("hostrole");
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        });
    match home {
        Some(home) => home.join(".local/state/hostrole"),
        None => PathBuf::from(SYSTEM_STATE_DIR),
    }
}

/// The first directory systemd passes in `var` (`STATE_DIRECTORY`,
/// `RUNTIME_DIRECTORY`, …: several may be given, separated by `:`).
pub fn systemd_directory(var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var)?;
    let first = value.to_string_lossy().split(':').next()?.to_owned();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// The default socket path: systemd's `RUNTIME_DIRECTORY`, else
/// `$XDG_RUNTIME_DIR/hostrole`, else the state directory.
pub fn default_socket_path(state_dir: &Path) -> PathBuf {
    if let Some(dir) = systemd_directory("RUNTIME_DIRECTORY") {
        return dir.join("control.sock");
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("hostrole/control.sock");
    }
    state_dir.join("control.sock")
}

/// The socket a client talks to when none is given. Root talks to the
/// system daemon if its socket exists, else to a daemon of its own; anyone
/// else to a daemon of their own first (`$XDG_RUNTIME_DIR/hostrole`, then
/// their state directory), then to the system daemon.
pub fn client_socket_path() -> PathBuf {
    let mut own = Vec::new();
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        own.push(PathBuf::from(dir).join("hostrole/control.sock"));
    }
    own.push(default_state_dir().join("control.sock"));
    choose_socket(
        nix::unistd::geteuid().is_root(),
        &own,
        Path::new(SYSTEM_CONTROL_SOCKET),
        |p| p.exists(),
    )
}

/// The choice [`client_socket_path`] makes among `own` sockets (in order)
/// and the `system` one, given which exist. With none there, the system
/// socket for root, else the first of the caller's own; the error then
/// names it.
fn choose_socket(
    is_root: bool,
    own: &[PathBuf],
    system: &Path,
    exists: impl Fn(&Path) -> bool,
) -> PathBuf {
    if is_root && exists(system) {
        return system.to_path_buf();
    }
    if let Some(found) = own.iter().find(|p| exists(p)) {
        return found.clone();
    }
    if exists(system) || is_root {
        return system.to_path_buf();
    }
    own.first().cloned().unwrap_or_else(|| system.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(is_root: bool, present: &[&str]) -> PathBuf {
        let own = [
            PathBuf::from("/run/user/1000/hostrole/control.sock"),
            PathBuf::from("/home/u/.local/state/hostrole/control.sock"),
        ];
        choose_socket(is_root, &own, Path::new(SYSTEM_CONTROL_SOCKET), |p| {
            present.iter().any(|q| Path::new(q) == p)
        })
    }

    #[test]
    fn a_user_reaches_their_own_daemon_before_the_system_one() {
        let runtime = "/run/user/1000/hostrole/control.sock";
        let state = "/home/u/.local/state/hostrole/control.sock";
        let all = [runtime, state, SYSTEM_CONTROL_SOCKET];
        assert_eq!(pick(false, &all), Path::new(runtime));
        assert_eq!(
            pick(false, &[state, SYSTEM_CONTROL_SOCKET]),
            Path::new(state)
        );
        assert_eq!(
            pick(false, &[SYSTEM_CONTROL_SOCKET]),
            Path::new(SYSTEM_CONTROL_SOCKET)
        );
        // None running: the error names where their own daemon would be.
        assert_eq!(pick(false, &[]), Path::new(runtime));
    }

    #[test]
    fn root_reaches_the_system_daemon_first() {
        let runtime = "/run/user/1000/hostrole/control.sock";
        assert_eq!(
            pick(true, &[runtime, SYSTEM_CONTROL_SOCKET]),
            Path::new(SYSTEM_CONTROL_SOCKET)
        );
        assert_eq!(pick(true, &[runtime]), Path::new(runtime));
        assert_eq!(pick(true, &[]), Path::new(SYSTEM_CONTROL_SOCKET));
    }
}
