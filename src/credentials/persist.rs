//! The last good credentials, kept in the state directory so that a
//! restart (a package upgrade, a reboot) serves them at once instead of
//! calling STS again.
//!
//! The file is private (0600, created fresh, never through a symbolic
//! link), written atomically, read only when it is a regular file of ours
//! that nobody else may read, and only for the same issuer, the same
//! association and the same session attributes (a session policy narrowed
//! since is applied at the restart, not at the next refresh). It is wiped when the role is removed or replaced, when the
//! credentials expire and when the role can no longer be assumed. Writes
//! happen on a blocking thread, in order, off the refresher's path.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::atomicfile;
use crate::clock::{from_unix_seconds, unix_seconds};
use crate::credentials::snapshot::Served;
use crate::credentials::Credentials;
use crate::role::Association;

/// The file, inside the state directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";
const FORMAT_VERSION: u32 = 1;
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Stored {
    version: u32,
    issuer: String,
    role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    session_name: String,
    /// The session attributes' fingerprint; empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    session_attributes: String,
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Zeroizing<String>,
    /// Unix seconds.
    expiration: u64,
    last_updated: u64,
    next_refresh: u64,
}

/// Credentials read back, with the refresh that was planned for them.
#[derive(Debug)]
pub struct Restored {
    /// The credentials.
    pub credentials: Credentials,
    /// When the daemon that stored them meant to refresh them.
    pub next_refresh: SystemTime,
}

/// The credentials file of one state directory, for one issuer.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
    issuer: &'static str,
    session_attributes: String,
}

impl CredentialStore {
    /// The store in `dir` for credentials of the `issuer` kind.
    pub fn new(dir: impl Into<PathBuf>, issuer: &'static str) -> Self {
        CredentialStore {
            dir: dir.into(),
            issuer,
            session_attributes: String::new(),
        }
    }

    /// The same store, for credentials issued with the session attributes
    /// whose fingerprint is `fingerprint` (empty: none).
    pub fn with_session_attributes(mut self, fingerprint: String) -> Self {
        self.session_attributes = fingerprint;
        self
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(CREDENTIALS_FILE)
    }

    /// Reads the stored credentials for `association`. `Ok(None)`: there
    /// are none. `Err`: there is a file that must not be used (another
    /// role or issuer, unsafe permissions, corrupt), and why; the caller
    /// wipes it.
    pub fn load(&self, association: &Association) -> Result<Option<Restored>, String> {
        let path = self.path();
        let bytes = match atomicfile::read_private(&path, MAX_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let stored: Stored =
            serde_json::from_slice(&bytes).map_err(|e| format!("corrupt ({e})"))?;
        if stored.version != FORMAT_VERSION {
            return Err(format!("unknown format version {}", stored.version));
        }
        if stored.issuer != self.issuer {
            return Err(format!("issued by {}, not {}", stored.issuer, self.issuer));
        }
        if stored.role_arn != association.role.as_str()
            || stored.external_id != association.external_id
            || stored.session_name != association.session_name
        {
            return Err(format!(
                "for another association ({} as {})",
                stored.role_arn, stored.session_name
            ));
        }
        if stored.session_attributes != self.session_attributes {
            return Err("issued with other session attributes".into());
        }
        if stored.access_key_id.is_empty()
            || stored.secret_access_key.is_empty()
            || stored.session_token.is_empty()
        {
            return Err("incomplete".into());
        }
        Ok(Some(Restored {
            credentials: Credentials {
                access_key_id: stored.access_key_id,
                secret_access_key: stored.secret_access_key,
                session_token: stored.session_token,
                expiration: from_unix_seconds(stored.expiration),
                last_updated: from_unix_seconds(stored.last_updated),
            },
            next_refresh: from_unix_seconds(stored.next_refresh),
        }))
    }

    /// Replaces the file with `credentials` for `association`.
    pub fn store(
        &self,
        association: &Association,
        credentials: &Credentials,
        next_refresh: SystemTime,
    ) -> io::Result<()> {
        let stored = Stored {
            version: FORMAT_VERSION,
            issuer: self.issuer.to_owned(),
            role_arn: association.role.to_string(),
            external_id: association.external_id.clone(),
            session_name: association.session_name.clone(),
            session_attributes: self.session_attributes.clone(),
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
            session_token: credentials.session_token.clone(),
            expiration: unix_seconds(credentials.expiration),
            last_updated: unix_seconds(credentials.last_updated),
            next_refresh: unix_seconds(next_refresh),
        };
        // Sized up front so that serializing never reallocates and leaves
        // a copy of the secret behind.
        let size = 1024 + stored.session_token.len() + stored.secret_access_key.len();
        let mut body = Zeroizing::new(Vec::with_capacity(size * 2));
        serde_json::to_writer(&mut *body, &stored).expect("plain data serializes");
        atomicfile::write_private(&self.dir, CREDENTIALS_FILE, &body)
    }

    /// Removes the file.
    pub fn wipe(&self) -> io::Result<()> {
        atomicfile::remove(&self.dir, CREDENTIALS_FILE)
    }
}

/// What the refresher asks the writer to do.
#[derive(Debug)]
pub enum Persist {
    /// Keep these credentials for this association.
    Store {
        /// The association they are for.
        association: Association,
        /// The credentials.
        served: Arc<Served>,
        /// The planned refresh.
        next_refresh: SystemTime,
    },
    /// Keep nothing.
    Wipe(&'static str),
}

/// Starts the writer: it applies requests in order, on a blocking thread,
/// skipping any that a later one supersedes. It ends once every sender is
/// gone and the last request is on disk.
pub fn spawn_writer(
    store: CredentialStore,
) -> (mpsc::UnboundedSender<Persist>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Persist>();
    let task = tokio::spawn(async move {
        while let Some(mut op) = rx.recv().await {
            while let Ok(later) = rx.try_recv() {
                op = later;
            }
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || apply(&store, op)).await;
        }
    });
    (tx, task)
}

fn apply(store: &CredentialStore, op: Persist) {
    let path = store.path();
    match op {
        Persist::Store {
            association,
            served,
            next_refresh,
        } => {
            if let Err(e) = store.store(&association, &served.credentials, next_refresh) {
                tracing::warn!(file = %path.display(), error = %e,
                    "cannot keep the credentials for a restart; a restart will call the issuer again");
            }
        }
        Persist::Wipe(why) => match store.wipe() {
            Ok(()) => tracing::debug!(file = %path.display(), why, "kept credentials removed"),
            Err(e) => tracing::error!(file = %path.display(), error = %e, why,
                "cannot remove the kept credentials; a restart may serve them"),
        },
    }
}

#[cfg(test)]
mod tests;
