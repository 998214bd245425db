//! Base credentials that follow the files they come from.
//!
//! The SDK's profile provider parses the shared config and credentials
//! files once, so a key rewritten on disk (by an operator, by
//! `aws_signing_helper update`, by `hostrole rotate-base-key`) would never be
//! used until a restart. [`FreshBase`] looks at both files (device, inode,
//! size, modification time and a digest of the content) before every use
//! and builds the chain again when either changed, so the next call after a rewrite is
//! signed with the new key.
//!
//! What the chain gave is kept until it nears its expiry (static keys, which
//! have none, for 15 minutes, as the SDK's own cache does): a web identity
//! token or a role in the profile is not exchanged again at every call. The
//! kept credentials are dropped when STS refuses them
//! ([`FreshBase::forget`]), and the chain is built again after it failed,
//! so a `credential_process` that now prints a new key, or an SSO session
//! logged in again, is used at the next attempt.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, future, ProvideCredentials};
use aws_credential_types::Credentials;
use tokio::time::Instant;

/// How long credentials without an expiry are used before the chain is
/// asked again (the SDK's lazy cache uses the same).
pub const STATIC_KEEP: Duration = Duration::from_secs(15 * 60);
/// Credentials with less life than this left are fetched again first.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// One file as last seen: absent, or its identity, times and a digest of
/// its content (a rewrite within one clock tick keeps the times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen(Option<(u64, u64, u64, i64, i64, [u8; 32])>);

/// Files larger than this are not digested (the times still count).
const DIGEST_MAX_BYTES: u64 = 1 << 20;

impl Seen {
    fn of(path: &std::path::Path) -> Seen {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // Opened without blocking and checked on the open file: a named
        // pipe put in its place is never read.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path);
        let (meta, file) = match opened {
            Ok(f) => match f.metadata() {
                Ok(m) => (m, Some(f)),
                Err(_) => return Seen(None),
            },
            // Unreadable: its times still tell a change.
            Err(_) => match std::fs::metadata(path) {
                Ok(m) => (m, None),
                Err(_) => return Seen(None),
            },
        };
        let mut digest = [0; 32];
        if let Some(f) = file.filter(|_| meta.is_file() && meta.len() <= DIGEST_MAX_BYTES) {
            let mut bytes = Vec::new();
            if f.take(DIGEST_MAX_BYTES).read_to_end(&mut bytes).is_ok() {
                use sha2::Digest;
                digest = sha2::Sha256::digest(&bytes).into();
            }
        }
        Seen(Some((
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            digest,
        )))
    }
}

/// The two files the profile provider reads, where the SDK looks for them:
/// `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/`.
pub fn profile_files() -> [PathBuf; 2] {
    let home = std::env::var("HOME").unwrap_or_default();
    let file = |var: &str, name: &str| match std::env::var(var).ok().filter(|p| !p.is_empty()) {
        Some(p) => match p.strip_prefix("~/") {
            Some(rest) => PathBuf::from(&home).join(rest),
            None => PathBuf::from(p),
        },
        None => PathBuf::from(&home).join(".aws").join(name),
    };
    [
        file("AWS_CONFIG_FILE", "config"),
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    ]
}

struct State<C> {
    chain: Arc<C>,
    files: [Seen; 2],
    kept: Option<(Credentials, Instant)>,
}

/// The base credential chain, built again whenever the profile files
/// change; see the module documentation. Clones share one chain.
pub struct FreshBase<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    build: Box<dyn Fn() -> C + Send + Sync>,
    paths: [PathBuf; 2],
    state: Mutex<State<C>>,
}

impl<C> Clone for FreshBase<C> {
    fn clone(&self) -> Self {
        FreshBase {
            inner: self.inner.clone(),
        }
    }
}

impl<C> std::fmt::Debug for FreshBase<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshBase")
            .field("paths", &self.inner.paths)
            .finish_non_exhaustive()
    }
}

impl<C: ProvideCredentials + 'static> FreshBase<C> {
    /// A chain made by `build`, watching `paths`.
    pub fn new(paths: [PathBuf; 2], build: impl Fn() -> C + Send + Sync + 'static) -> Self {
        let files = [Seen::of(&paths[0]), Seen::of(&paths[1])];
        let chain = Arc::new(build());
        FreshBase {
            inner: Arc::new(Inner {
                build: Box::new(build),
                paths,
                state: Mutex::new(State {
                    chain,
                    files,
                    kept: None,
                }),
            }),
        }
    }

    /// Drops the kept credentials and the parsed files, so that the next
    /// use asks every source again (after STS refused the base identity).
    pub fn forget(&self) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.chain = Arc::new((self.inner.build)());
        state.kept = None;
    }

    /// The access key id of the credentials in use, if any were loaded.
    pub fn key_id(&self) -> Option<String> {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .kept
            .as_ref()
            .map(|(c, _)| c.access_key_id().to_owned())
    }

    /// The chain to ask, built again if a file changed; or credentials
    /// still good to use.
    fn current(&self) -> Result<Credentials, Arc<C>> {
        let files = [
            Seen::of(&self.inner.paths[0]),
            Seen::of(&self.inner.paths[1]),
        ];
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if files != state.files {
            tracing::info!(
                config = %self.inner.paths[0].display(),
                credentials = %self.inner.paths[1].display(),
                "the AWS config or credentials file changed: the base credentials are read again"
            );
            state.files = files;
            state.chain = Arc::new((self.inner.build)());
            state.kept = None;
        }
        match &state.kept {
            Some((c, at)) if still_good(c, *at) => Ok(c.clone()),
            _ => Err(state.chain.clone()),
        }
    }

    async fn provide(&self) -> provider::Result {
        let chain = match self.current() {
            Ok(kept) => return Ok(kept),
            Err(chain) => chain,
        };
        let fresh = match chain.provide_credentials().await {
            Ok(c) => c,
            Err(e) => {
                // Start from the files again next time: an SSO token cache
                // or a credential_process may be fixed without a file of
                // ours changing.
                self.forget();
                return Err(e);
            }
        };
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        // Only keep what the current chain gave: a file that changed
        // meanwhile has its own chain already.
        if Arc::ptr_eq(&state.chain, &chain) {
            let previous = state.kept.as_ref().map(|(c, _)| c.access_key_id());
            if previous != Some(fresh.access_key_id()) {
                tracing::info!(
                    key = fresh.access_key_id(),
                    "base credentials: access key in use"
                );
            }
            state.kept = Some((fresh.clone(), Instant::now()));
        }
        Ok(fresh)
    }
}

/// Whether credentials fetched at `at` may be used again now.
fn still_good(c: &Credentials, at: Instant) -> bool {
    match c.expiry() {
        Some(expiry) => expiry
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left > EXPIRY_MARGIN),
        None => at.elapsed() < STATIC_KEEP,
    }
}

impl<C: ProvideCredentials + 'static> ProvideCredentials for FreshBase<C> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.provide())
    }
}

#[cfg(test)]
mod tests;
