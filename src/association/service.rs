//! The one service that changes the host's role. Start-up, a reload of the
//! configuration and the control socket all go through it, so a change is
//! validated the same way ([`crate::role::Association::new`]), persisted off
//! the runtime, published to the refresher (which stops serving the old
//! role at once), audited with its source, optionally revoked on the AWS
//! side, and waited for until the new role's first credentials are in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use crate::association::state::{self, StateError};
use crate::credentials::refresh::{RefresherHandle, Snapshot};
use crate::credentials::revoke::SessionRevoker;
use crate::metrics::Metrics;
use crate::role::Association;

/// How long associate and replace wait for the new role's first credentials.
pub const FIRST_FETCH_WAIT: Duration = Duration::from_secs(10);

/// Where a change comes from, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configuration, read at start.
    ConfigStart,
    /// The configuration, re-read on SIGHUP.
    ConfigReload,
    /// `hostrole associate | replace | disassociate`.
    ControlSocket,
}

impl Source {
    /// The name in audit lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::ConfigStart => "config-start",
            Source::ConfigReload => "config-reload",
            Source::ControlSocket => "control-socket",
        }
    }
}

/// A change to the association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Give the host a role; refused when it has one.
    Associate(Association),
    /// Swap the role; refused when there is none.
    Replace(Association),
    /// Remove the role; refused when there is none.
    Disassociate,
}

impl Change {
    /// The operation's name in audit lines and messages.
    pub fn op(&self) -> &'static str {
        match self {
            Change::Associate(_) => "associate",
            Change::Replace(_) => "replace",
            Change::Disassociate => "disassociate",
        }
    }
}

/// Who asked, for the audit line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Actor {
    /// User id, when a user asked.
    pub uid: Option<u32>,
    /// Process id, when the kernel says.
    pub pid: Option<i32>,
}

/// The result of a change that was made: a warning when an optional part
/// (revoking the old sessions, the first fetch) did not work out.
pub type Changed = Option<String>;

/// Changes the association.
#[derive(Debug)]
pub struct AssociationService {
    refresher: RefresherHandle,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    revoker: Option<Arc<SessionRevoker>>,
    /// Serialises changes.
    changes: Mutex<()>,
}

impl AssociationService {
    /// The association to start with: the configured one wins and is
    /// persisted (audited as `config-start` when it differs from the saved
    /// one); otherwise the saved one. Runs before the refresher exists.
    pub fn at_start(
        state_dir: &Path,
        configured: Option<&Association>,
    ) -> Result<Option<Association>, StateError> {
        let persisted = state::load_association(state_dir)?;
        let Some(configured) = configured else {
            return Ok(persisted);
        };
        if persisted.as_ref() != Some(configured) {
            state::store_association(state_dir, Some(configured))?;
            tracing::info!(
                target: "audit",
                source = Source::ConfigStart.as_str(),
                old_role = persisted.as_ref().map(|a| a.role.as_str()).unwrap_or("none"),
                new_role = configured.role.as_str(),
                "association set from the configuration"
            );
        }
        Ok(Some(configured.clone()))
    }

    /// The service over a running refresher.
    pub fn new(
        refresher: RefresherHandle,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        state_dir: PathBuf,
        metrics: Arc<Metrics>,
        revoker: Option<Arc<SessionRevoker>>,
    ) -> Self {
        Self {
            refresher,
            snapshots,
            state_dir,
            metrics,
            revoker,
            changes: Mutex::new(()),
        }
    }

    /// The current association.
    pub fn current(&self) -> Option<Association> {
        self.snapshots.borrow().association.clone()
    }

    /// Carries out a change asked for by a user. `Err` says why nothing
    /// changed.
    pub async fn change(&self, change: Change, actor: Actor) -> Result<Changed, String> {
        let _serial = self.changes.lock().await;
        let op = change.op();
        let new = match (change, self.current()) {
            (Change::Associate(_), Some(current)) => {
                return Err(format!(
                    "a role is already associated ({}); use `hostrole replace` to change it",
                    current.role
                ))
            }
            (Change::Replace(_) | Change::Disassociate, None) => {
                return Err("no role is associated; use `hostrole associate` first".into())
            }
            (Change::Associate(a) | Change::Replace(a), _) => Some(a),
            (Change::Disassociate, Some(_)) => None,
        };
        self.set(new, op, actor, Source::ControlSocket).await
    }

    /// Applies the role of a re-read configuration whose role changed since
    /// the last load, if it differs from the current association. A
    /// configuration without a role changes nothing: the file never undoes
    /// what was done through the control socket.
    pub async fn apply_configured(
        &self,
        configured: Option<Association>,
    ) -> Result<Changed, String> {
        let _serial = self.changes.lock().await;
        let current = self.current();
        match configured {
            Some(new) if current.as_ref() != Some(&new) => {
                let op = if current.is_some() {
                    "replace"
                } else {
                    "associate"
                };
                self.set(Some(new), op, Actor::default(), Source::ConfigReload)
                    .await
            }
            _ => Ok(None),
        }
    }

    /// Persists and publishes a new association, and writes the audit line.
    /// Callers hold `changes`.
    async fn set(
        &self,
        new: Option<Association>,
        op: &'static str,
        actor: Actor,
        source: Source,
    ) -> Result<Changed, String> {
        let (uid, pid, source) = (actor.uid, actor.pid, source.as_str());
        let current = self.current();
        // The write ends with fsync: off the runtime, so a slow disk holds
        // up this change only, never the IMDS answers.
        let (dir, to_store) = (self.state_dir.clone(), new.clone());
        let stored =
            tokio::task::spawn_blocking(move || state::store_association(&dir, to_store.as_ref()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = stored {
            tracing::error!(target: "audit", uid, pid, op, source, error = %e, "change not saved; nothing changed");
            return Err(format!("cannot save the change, nothing changed: {e}"));
        }
        let old_role = current.as_ref().map(|a| a.role.to_string());
        let new_role = new.as_ref().map(|a| a.role.to_string());
        let published = self
            .refresher
            .set_association(new)
            .await
            .map_err(|e| e.to_string())?;
        if current.is_some() && old_role != new_role {
            self.metrics.observe_revocation();
        }
        tracing::info!(
            target: "audit",
            uid,
            pid,
            op,
            source,
            old_role = old_role.as_deref().unwrap_or("none"),
            new_role = new_role.as_deref().unwrap_or("none"),
            "association changed"
        );
        let mut warnings = Vec::new();
        if let (Some(old), true) = (&current, old_role != new_role) {
            warnings.extend(self.revoke(old, actor, op).await);
        }
        if published.association.is_some() {
            warnings.extend(self.await_first_fetch(published.generation).await);
        }
        Ok((!warnings.is_empty()).then(|| warnings.join("; ")))
    }

    /// The removed role's credentials are no longer served; with
    /// `revoke-sessions`, make them useless on the AWS side too.
    async fn revoke(&self, old: &Association, actor: Actor, op: &str) -> Option<String> {
        let revoker = self.revoker.as_ref()?;
        let (uid, pid) = (actor.uid, actor.pid);
        match revoker.revoke_older_sessions(&old.role).await {
            Ok(()) => {
                tracing::info!(target: "audit", uid, pid, op, role = %old.role,
                    "sessions issued before now revoked on the AWS side");
                None
            }
            Err(e) => {
                tracing::error!(target: "audit", uid, pid, op, role = %old.role, error = %e,
                    "could not revoke the removed role's sessions");
                Some(format!(
                    "the role was removed, but its sessions could not be revoked: {e}"
                ))
            }
        }
    }

    /// Waits (at most [`FIRST_FETCH_WAIT`]) for the first fetch of a newly
    /// associated role, so that a change returns with its credentials
    /// served, or says why not.
    async fn await_first_fetch(&self, generation: u64) -> Option<String> {
        let mut snapshots = self.snapshots.clone();
        let waited = tokio::time::timeout(
            FIRST_FETCH_WAIT,
            snapshots.wait_for(|s| {
                s.generation != generation || s.served.is_some() || s.last_error.is_some()
            }),
        )
        .await;
        match waited {
            Ok(Ok(s)) if s.generation == generation && s.served.is_none() => Some(format!(
                "the role is associated, but its credentials could not be obtained: {}",
                s.last_error.as_deref().unwrap_or("unknown error")
            )),
            Ok(_) => None,
            Err(_) => Some(format!(
                "the role is associated, but STS has not answered within {}s; its credentials will be served once it does",
                FIRST_FETCH_WAIT.as_secs()
            )),
        }
    }
}
