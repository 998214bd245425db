//! Where the daemon keeps its files when the configuration does not say:
//! the directories systemd passes, else the system ones for root, else the
//! user's XDG directories.

use std::path::{Path, PathBuf};

/// State directory for a root daemon.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/hostrole";
/// Socket path used by a root daemon outside systemd.
pub const SYSTEM_CONTROL_SOCKET: &str = "/run/hostrole/control.sock";

/// The state directory used when none is configured: systemd's
/// `STATE_DIRECTORY`, else `/var/lib/hostrole` for root, else the user's
/// `$XDG_STATE_HOME/hostrole` (or `~/.local/state/hostrole`).
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = systemd_directory("STATE_DIRECTORY") {
        return dir;
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(SYSTEM_STATE_DIR);
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(xdg).join("hostrole");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/hostrole"),
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
/// `/run/hostrole` for root, else `$XDG_RUNTIME_DIR/hostrole`, else the
/// state directory.
pub fn default_socket_path(state_dir: &Path) -> PathBuf {
    if let Some(dir) = systemd_directory("RUNTIME_DIRECTORY") {
        return dir.join("control.sock");
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(SYSTEM_CONTROL_SOCKET);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("hostrole/control.sock");
    }
    state_dir.join("control.sock")
}

/// The socket a client talks to when none is given: the system one if it
/// exists, else the one a daemon of this user would create.
pub fn client_socket_path() -> PathBuf {
    let system = PathBuf::from(SYSTEM_CONTROL_SOCKET);
    if system.exists() {
        return system;
    }
    default_socket_path(&default_state_dir())
}
