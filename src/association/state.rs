//! Persistent state: the host's association and the one-daemon lock.
//!
//! The association is written atomically ([`atomicfile`]) so that a crash
//! or a full disk never leaves a file that cannot be read. A file that cannot be read is an error that
//! names it; it is never silently replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::atomicfile;
use crate::role::Association;

/// File holding the association, inside the state directory.
pub const ASSOCIATION_FILE: &str = "association.json";
/// Lock file held by the running daemon, inside the state directory.
pub const LOCK_FILE: &str = "hostrole.lock";
const FORMAT_VERSION: u32 = 1;

/// A state problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file exists but is not a valid association.
    #[error("{path} is corrupt ({reason}); it was left as it is: fix it, or remove it to start with no role")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another daemon holds the lock.
    #[error("another hostrole daemon is running with state directory {dir} (pid {pid})")]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it.
        pid: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Stored {
    version: u32,
    role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    session_name: String,
}

/// Reads the persisted association, if any.
pub fn load_association(dir: &Path) -> Result<Option<Association>, StateError> {
    let path = dir.join(ASSOCIATION_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.clone(),
        reason,
    };
    // Not text at all (say, a torn write on a filesystem without ordering
    // guarantees) is corrupt too, not an I/O error.
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if stored.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unknown format version {}",
            stored.version
        )));
    }
    // The same validation as any other source of an association; a file
    // that fails it is corrupt, and left alone.
    Association::new(
        &stored.role_arn,
        stored.external_id,
        Some(stored.session_name),
    )
    .map(Some)
    .map_err(|e| corrupt(e.to_string()))
}

/// Persists the association (or its absence) atomically.
pub fn store_association(dir: &Path, association: Option<&Association>) -> Result<(), StateError> {
    let result = match association {
        None => atomicfile::remove(dir, ASSOCIATION_FILE),
        Some(a) => {
            let stored = Stored {
                version: FORMAT_VERSION,
                role_arn: a.role.to_string(),
                external_id: a.external_id.clone(),
                session_name: a.session_name.clone(),
            };
            let mut body = serde_json::to_vec_pretty(&stored).expect("plain data serializes");
            body.push(b'\n');
            atomicfile::write_private(dir, ASSOCIATION_FILE, &body)
        }
    };
    result.map_err(|source| StateError::Io {
        path: dir.join(ASSOCIATION_FILE),
        source,
    })
}

/// The held one-daemon-per-host lock; released when dropped.
#[derive(Debug)]
pub struct HostLock {
    _lock: Flock<File>,
}

/// Takes the lock in `dir`, writing our pid into it; fails at once if
/// another daemon holds it.
pub fn lock(dir: &Path) -> Result<HostLock, StateError> {
    let path = dir.join(LOCK_FILE);
    let io_err = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(io_err)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(StateError::Locked {
                dir: dir.to_owned(),
                pid: pid.trim().to_owned(),
            });
        }
        Err((_, errno)) => return Err(io_err(io::Error::from(errno))),
    };
    lock.set_len(0).map_err(io_err)?;
    lock.rewind().map_err(io_err)?;
    writeln!(lock, "{}", std::process::id()).map_err(io_err)?;
    Ok(HostLock { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::RoleArn;

    fn assoc() -> Association {
        Association {
            role: RoleArn::parse("arn:aws:iam::123456789012:role/demo").unwrap(),
            external_id: Some("ext-1".into()),
            session_name: "host-1".into(),
        }
    }

    #[test]
    fn an_association_round_trips_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_association(dir.path()).unwrap(), None);
        store_association(dir.path(), Some(&assoc())).unwrap();
        assert_eq!(load_association(dir.path()).unwrap(), Some(assoc()));
        store_association(dir.path(), None).unwrap();
        assert_eq!(load_association(dir.path()).unwrap(), None);
        store_association(dir.path(), None).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ASSOCIATION_FILE);
        let bodies: [&[u8]; 4] = [
            b"{\"version\":1,\"role-arn\":",
            b"{\"version\":1,\"role-arn\":\"demo\",\"session-name\":\"x1\"}",
            b"",
            b"\x00\xff\xfe not text \x80",
        ];
        for body in bodies {
            fs::write(&path, body).unwrap();
            let err = load_association(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("corrupt") && err.contains(ASSOCIATION_FILE),
                "{err}"
            );
            assert_eq!(fs::read(&path).unwrap(), body, "left untouched");
        }
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        lock(dir.path()).unwrap();
    }
}
