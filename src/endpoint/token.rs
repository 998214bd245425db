//! IMDSv2 session tokens.
//!
//! `PUT /latest/api/token` hands out a token that later `GET`s present in
//! `X-aws-ec2-metadata-token`. Tokens are stateless: a token is
//! `base64url(version ‖ expiry ‖ HMAC-SHA256(key, version ‖ boot id ‖ expiry))`,
//! with the expiry measured on `CLOCK_BOOTTIME` in milliseconds. The key is
//! kept (mode 0600) in the state directory, so a token stays valid across a
//! daemon restart: the Rust SDK keeps its token after a 401 until the token's
//! own TTL runs out. The boot id in the MAC makes every token of an earlier
//! boot invalid, since the boot clock starts again from zero.
//!
//! Whoever knows the key can mint tokens, so the key file must be one only
//! the daemon could have written: a regular file (never followed through a
//! symbolic link), owned by the daemon's effective uid, mode exactly 0600.
//! Anything else is refused, never repaired in place.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use nix::libc;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::clock::SharedClock;

/// Shortest token lifetime a client may ask for.
pub const MIN_TOKEN_TTL_SECONDS: u64 = 1;
/// Longest token lifetime a client may ask for (6 hours), as on EC2.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 21_600;
/// Longest token string accepted; ours are 55 characters.
pub const MAX_TOKEN_LEN: usize = 128;
/// File name of the key inside the state directory.
pub const KEY_FILE_NAME: &str = "token.key";

const TOKEN_VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const MAC_LEN: usize = 32;
const RAW_LEN: usize = 1 + 8 + MAC_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Why a presented token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token this daemon could have issued.
    #[error("malformed token")]
    Malformed,
    /// The MAC does not match: forged, or issued under another key or boot.
    #[error("token signature mismatch")]
    BadSignature,
    /// The token's lifetime is over.
    #[error("token expired")]
    Expired,
}

/// Failure to load or create the token key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or writing the key file failed.
    #[error("token key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The key file is not one only this daemon could have written.
    #[error("token key {path} {problem}; refusing to use it (remove it and a new key is created)")]
    Unsafe {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it: "is a symbolic link", "is owned by uid N,
        /// not M", "has mode 0644, want 0600", "is not a regular file".
        problem: String,
    },
}

/// Issues and checks session tokens.
pub struct TokenAuthority {
    key: Zeroizing<[u8; KEY_LEN]>,
    boot_id: String,
    clock: SharedClock,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("key", &"** redacted **")
            .field("boot_id", &self.boot_id)
            .finish()
    }
}

impl TokenAuthority {
    /// An authority with the given key and boot id.
    pub fn new(key: [u8; KEY_LEN], boot_id: String, clock: SharedClock) -> Self {
        TokenAuthority {
            key: Zeroizing::new(key),
            boot_id,
            clock,
        }
    }

    /// Loads the key from `dir/token.key`, creating it (0600) if absent, and
    /// binds tokens to this boot.
    pub fn load_or_create(dir: &Path, clock: SharedClock) -> Result<Self, KeyError> {
        let key = load_or_create_key(&dir.join(KEY_FILE_NAME))?;
        Ok(Self::new(*key, current_boot_id(), clock))
    }

    /// Issues a token valid for `ttl`.
    pub fn issue(&self, ttl: Duration) -> String {
        let expiry_ms = (self.clock.boot_time() + ttl).as_millis() as u64;
        let mut raw = [0u8; RAW_LEN];
        raw[0] = TOKEN_VERSION;
        raw[1..9].copy_from_slice(&expiry_ms.to_be_bytes());
        let mac = self.mac(&raw[..9]).finalize().into_bytes();
        raw[9..].copy_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a presented token: shape, MAC (in constant time), expiry.
    pub fn validate(&self, token: &str) -> Result<(), TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| TokenError::Malformed)?;
        if raw.len() != RAW_LEN || raw[0] != TOKEN_VERSION {
            return Err(TokenError::Malformed);
        }
        self.mac(&raw[..9])
            .verify_slice(&raw[9..])
            .map_err(|_| TokenError::BadSignature)?;
        let expiry_ms = u64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
        let now_ms = self.clock.boot_time().as_millis() as u64;
        if now_ms >= expiry_ms {
            return Err(TokenError::Expired);
        }
        // Defence in depth: never honour a lifetime longer than a client can ask for.
        if expiry_ms - now_ms > MAX_TOKEN_TTL_SECONDS * 1000 + 1000 {
            return Err(TokenError::BadSignature);
        }
        Ok(())
    }

    fn mac(&self, header: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        mac.update(&header[..1]);
        mac.update(self.boot_id.as_bytes());
        mac.update(&header[1..9]);
        mac
    }
}

/// The kernel's id of this boot; empty if the kernel does not say.
pub fn current_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn load_or_create_key(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let unsafe_key = |problem: String| KeyError::Unsafe {
        path: path.to_owned(),
        problem,
    };
    // O_NOFOLLOW: a symbolic link planted here is refused, not followed (File
    // adds O_CLOEXEC); O_NONBLOCK: a FIFO planted here cannot hang the start.
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    match opened {
        Ok(f) => {
            // fstat: the checks are about the file opened, not the name.
            check_key_file(&f.metadata().map_err(io_err)?).map_err(unsafe_key)?;
            let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
            f.take(KEY_LEN as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(io_err)?;
            if buf.len() == KEY_LEN {
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                key.copy_from_slice(&buf);
                return Ok(key);
            }
            // A key of the wrong size is not one we wrote: replacing it only
            // invalidates outstanding tokens.
            tracing::warn!(path = %path.display(), "token key has the wrong size; creating a new one");
            fs::remove_file(path).map_err(io_err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && path.is_symlink() => {
            return Err(unsafe_key("is a symbolic link".into()));
        }
        Err(e) => return Err(io_err(e)),
    }
    create_key(path).map_err(io_err)
}

/// A regular file owned by this process's effective uid, mode exactly 0600.
fn check_key_file(meta: &fs::Metadata) -> Result<(), String> {
    if !meta.file_type().is_file() {
        return Err("is not a regular file".into());
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(format!("is owned by uid {}, not {euid}", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o600 {
        return Err(format!("has mode {mode:04o}, want 0600"));
    }
    Ok(())
}

/// Creates a new key at `path`: written in full and synced under a temporary
/// name, then linked into place, so that a crash never leaves a short key
/// and nothing that appeared at `path` meanwhile is replaced.
fn create_key(path: &Path) -> io::Result<Zeroizing<[u8; KEY_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(&mut key[..]);
    let tmp = path.with_extension("key.tmp");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT | O_EXCL
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)?;
    // The umask may have cleared bits of 0600; the load checks for exactly 0600.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(&key[..])?;
    f.sync_all()?;
    drop(f);
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked?;
    // Make the new name durable (best effort: the key itself is synced).
    if let Some(dir) = path.parent().and_then(|d| fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    use std::time::SystemTime;

    fn authority(clock: SharedClock) -> TokenAuthority {
        TokenAuthority::new([7u8; KEY_LEN], "boot-a".into(), clock)
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_valid_until_its_ttl_runs_out() {
        let clock = ManualClock::new(SystemTime::now());
        let auth = authority(clock.clone());
        let t = auth.issue(Duration::from_secs(10));
        assert!(t.len() <= MAX_TOKEN_LEN);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(auth.validate(&t), Ok(()));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(auth.validate(&t), Ok(()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(auth.validate(&t), Err(TokenError::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn token_expiry_counts_suspend_but_ignores_wall_clock_steps() {
        let clock = ManualClock::new(SystemTime::now());
        let auth = authority(clock.clone());
        let t = auth.issue(Duration::from_secs(60));
        clock.jump_wall_ms(-86_400_000);
        assert_eq!(auth.validate(&t), Ok(()));
        clock.suspend_for(Duration::from_secs(61));
        assert_eq!(auth.validate(&t), Err(TokenError::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn tampered_foreign_and_garbage_tokens_are_refused() {
        let clock: SharedClock = ManualClock::new(SystemTime::now());
        let auth = authority(clock.clone());
        let t = auth.issue(Duration::from_secs(60));
        // Flip one character of the MAC.
        let mut bytes = t.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(auth.validate(&tampered), Err(TokenError::BadSignature));
        let other_key = TokenAuthority::new([8u8; KEY_LEN], "boot-a".into(), clock.clone());
        assert_eq!(other_key.validate(&t), Err(TokenError::BadSignature));
        let other_boot = TokenAuthority::new([7u8; KEY_LEN], "boot-b".into(), clock.clone());
        assert_eq!(other_boot.validate(&t), Err(TokenError::BadSignature));
        assert_eq!(auth.validate(""), Err(TokenError::Malformed));
        assert_eq!(auth.validate("not a token!"), Err(TokenError::Malformed));
        assert_eq!(auth.validate(&"A".repeat(500)), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let a = TokenAuthority::load_or_create(dir.path(), clock.clone()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let t = a.issue(Duration::from_secs(60));
        let b = TokenAuthority::load_or_create(dir.path(), clock).unwrap();
        assert_eq!(
            b.validate(&t),
            Ok(()),
            "a restarted daemon accepts earlier tokens"
        );
    }

    #[test]
    fn a_key_of_the_wrong_size_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        fs::write(&path, b"short").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        TokenAuthority::load_or_create(dir.path(), clock).unwrap();
        assert_eq!(fs::read(&path).unwrap().len(), KEY_LEN);
        assert!(!dir.path().join("token.key.tmp").exists());
    }

    #[test]
    fn a_directory_or_fifo_at_the_key_path_is_refused_without_hanging() {
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        for make in [
            |p: &Path| fs::create_dir(p).unwrap(),
            |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            make(&dir.path().join(KEY_FILE_NAME));
            let err = TokenAuthority::load_or_create(dir.path(), clock.clone()).unwrap_err();
            assert!(
                err.to_string().contains("token.key is not a regular file"),
                "{err}"
            );
        }
    }

    #[test]
    fn an_unreadable_key_location_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir");
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let err = TokenAuthority::load_or_create(&missing, clock).unwrap_err();
        assert!(err.to_string().contains("token key"), "{err}");
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
