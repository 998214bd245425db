//! Private files written whole or not at all: a temporary file created
//! fresh (never through a symbolic link, mode 0600), synced, renamed over
//! the target, and the directory synced, so that a crash or a full disk
//! leaves either the old file or the new one, never a torn one; and read
//! back only when they are still private.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use std::path::Path;
use zeroize::Zeroizing;

/// Replaces `dir/name` with `body`, atomically and durably.
pub fn write_private(dir: &Path, name: &str, body: &[u8]) -> io::Result<()> {
    write(dir, name, body, None)
}

/// As [`write_private`], the new file owned by `owner` (uid, gid) before
/// it takes the old one's place.
pub fn write_private_owned(
    dir: &Path,
    name: &str,
    body: &[u8],
    owner: (u32, u32),
) -> io::Result<()> {
    write(dir, name, body, Some(owner))
}

fn write(dir: &Path, name: &str, body: &[u8], owner: Option<(u32, u32)>) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    // A leftover of a crash (or anything planted there) is removed, not
    // followed: the file is then created anew.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.write_all(body)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Reads `path` if it is a regular file owned by this process's user that
/// no one else may read or write, and not over `max` bytes.
pub fn read_private(path: &Path, max: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let refuse = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => refuse("a symbolic link, not followed".into()),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(refuse(format!("owned by uid {}, not {euid}", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "mode {:o}: others may read or write it",
            meta.mode() & 0o777
        )));
    }
    if meta.len() > max {
        return Err(refuse(format!("larger than {max} bytes")));
    }
    // Never more than the size checked, should the file grow meanwhile
    // (what is read then fails to parse).
    let mut bytes = Zeroizing::new(Vec::with_capacity(max as usize));
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Removes `dir/name` durably; a file that is not there is not an error.
pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a rename or removal in `dir` itself durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_file_is_replaced_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        write_private(dir.path(), "f", b"one").unwrap();
        write_private(dir.path(), "f", b"two").unwrap();
        let path = dir.path().join("f");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!dir.path().join(".f.tmp").exists());
        remove(dir.path(), "f").unwrap();
        assert!(!path.exists());
        remove(dir.path(), "f").unwrap();
    }

    #[test]
    fn a_planted_link_at_the_temporary_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".f.tmp")).unwrap();
        write_private(dir.path(), "f", b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"secret");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        write_private(dir.path(), "f", b"old").unwrap();
        // The target is a non-empty directory: the rename fails.
        fs::create_dir(dir.path().join("g")).unwrap();
        fs::write(dir.path().join("g/x"), b"").unwrap();
        assert!(write_private(dir.path(), "g", b"new").is_err());
        assert!(!dir.path().join(".g.tmp").exists());
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"old");
    }
}
