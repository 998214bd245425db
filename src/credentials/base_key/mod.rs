//! Rotation of the base IAM user's access key, for a base identity whose
//! key lives in a credentials file the daemon may write.
//!
//! The IAM access-key lifecycle, at most two keys per user:
//! 1. `ListAccessKeys`: with two keys already, stop and name the other one
//!    (or delete it if it is inactive and `base-key-delete-inactive` says
//!    so);
//! 2. `CreateAccessKey`;
//! 3. `GetCallerIdentity` with the new key, retried while IAM propagates
//!    it (bounded): the new key is proven *before* it replaces the old
//!    one in the file, so the file never holds a key that does not work;
//! 4. the new key written into the file (atomically, 0600, same owner),
//!    and the daemon switched to it at once;
//! 5. `UpdateAccessKey` the old key to `Inactive`;
//! 6. `DeleteAccessKey` the old key after the grace period.
//!
//! Each step is announced in the [`journal`] first; [`Rotator::resume`]
//! finishes or undoes an unfinished rotation from the journal and from
//! which key the file holds (the file is the truth): the old key means
//! nothing was switched, so a key the rotation made is deleted; the new
//! key means it was proven, so the old key is made inactive and deleted
//! in its time. No step loses the one working key.

pub mod file;
pub mod iam;
pub mod journal;
mod steps;
mod task;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use self::file::{KeyFile, KeyFileError};
use self::iam::{CallError, Calls, Listed};
use self::journal::{JournalError, Record};
use crate::clock::{from_unix_seconds, rfc3339_seconds, unix_seconds, SharedClock};
use crate::credentials::issuer::sts::BaseCredentials;

pub use self::task::run;

/// How long a new key may take to work at STS before the rotation is
/// undone.
pub const VERIFY_WITHIN: Duration = Duration::from_secs(60);
/// How often a new key is tried meanwhile.
pub const VERIFY_EVERY: Duration = Duration::from_secs(2);

/// When and how the base key is rotated: the `base-key-*` configuration
/// keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseKeySettings {
    /// Rotate on its own once the key is this old.
    pub max_age: Option<Duration>,
    /// How long the old key stays, inactive, before it is deleted.
    pub grace: Duration,
    /// Delete an inactive second key that stands in the way.
    pub delete_inactive: bool,
}

/// The rotation settings, and how a new key is tried.
#[derive(Debug, Clone)]
pub struct Policy {
    /// As configured.
    pub settings: BaseKeySettings,
    /// See [`VERIFY_WITHIN`].
    pub verify_within: Duration,
    /// See [`VERIFY_EVERY`].
    pub verify_every: Duration,
}

/// Why a rotation did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The credentials file.
    #[error("{0}")]
    File(#[from] KeyFileError),
    /// The journal or the record.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// A call to IAM or STS.
    #[error("{0}")]
    Call(#[from] CallError),
    /// The daemon's base credentials are not the file's key.
    #[error("the base credentials in use ({in_use}) are not the key of profile {profile} in {path} ({in_file}): only that key can be rotated (are AWS_ACCESS_KEY_ID or AWS_PROFILE set for the daemon?)")]
    NotTheFilesKey {
        /// The key the daemon signs with.
        in_use: String,
        /// The file's key.
        in_file: String,
        /// The profile.
        profile: String,
        /// The file.
        path: String,
    },
    /// The user has two keys and the other one may not be touched.
    #[error("the IAM user already has two access keys, the most IAM allows: the other one is {other} ({state}{created}); delete it{hint}, then rotate again. Nothing was changed")]
    TwoKeys {
        /// The other key.
        other: String,
        /// `active` or `inactive`.
        state: &'static str,
        /// `, created …`, when known.
        created: String,
        /// How to have it deleted automatically, when it could be.
        hint: &'static str,
    },
    /// The new key did not work in time; it was deleted again.
    #[error("the new key {new} was refused by STS for {within_s} s ({why}); it was deleted and the old key {old} stays in use")]
    NewKeyRefused {
        /// The new key.
        new: String,
        /// The old one.
        old: String,
        /// How long it was tried.
        within_s: u64,
        /// The last refusal.
        why: String,
    },
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The key replaced.
    pub old: String,
    /// The key now in use.
    pub new: String,
    /// When the old key is (or was) deleted.
    pub old_deleted_at: SystemTime,
    /// A step that failed after the switch and is retried later.
    pub warning: Option<String>,
}

/// What `status` shows of the base key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseKeyStatus {
    /// The key id in use.
    pub key: Option<String>,
    /// When it was created (RFC 3339), if known.
    pub created: Option<String>,
    /// Its age in whole days, if known.
    pub age_days: Option<u64>,
    /// When a rotation last put it in place.
    pub last_rotation: Option<String>,
    /// An unfinished rotation, or the old key awaiting deletion.
    pub pending: Option<String>,
}

/// Rotates the base key; see the module documentation.
pub struct Rotator {
    calls: Calls,
    file: KeyFile,
    state_dir: PathBuf,
    base: BaseCredentials,
    policy: Policy,
    clock: SharedClock,
    /// One rotation (or resumption) at a time.
    busy: tokio::sync::Mutex<()>,
    /// Wakes the background task after a rotation.
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator")
            .field("file", &self.file)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Rotator {
    /// A rotator of `file`'s key, calling IAM and STS as `calls` says.
    pub fn new(
        calls: Calls,
        file: KeyFile,
        state_dir: PathBuf,
        base: BaseCredentials,
        policy: Policy,
        clock: SharedClock,
    ) -> Rotator {
        Rotator {
            calls,
            file,
            state_dir,
            base,
            policy,
            clock,
            busy: Default::default(),
            changed: Default::default(),
        }
    }

    /// The base key as `status` shows it.
    pub fn status(&self) -> BaseKeyStatus {
        let stamp = |s: u64| rfc3339_seconds(from_unix_seconds(s));
        // Until the next call loads it again (after a rotation), the key
        // in use is the file's.
        let key = self
            .base
            .key_id()
            .or_else(|| self.file.read().ok().map(|k| k.id));
        let record = Record::load(&self.state_dir).ok().flatten();
        let record = record.filter(|r| Some(&r.key) == key.as_ref());
        let pending = match journal::Journal::load(&self.state_dir) {
            Ok(None) => None,
            Ok(Some(j)) => Some(match j.deactivated_at {
                Some(at) => format!(
                    "old key {} inactive, deleted at {}",
                    j.old,
                    stamp(at + self.policy.settings.grace.as_secs())
                ),
                None => format!(
                    "rotation from {} unfinished, resumed at the next start or rotation",
                    j.old
                ),
            }),
            Err(e) => Some(e.to_string()),
        };
        BaseKeyStatus {
            key,
            created: record.as_ref().and_then(|r| r.created).map(stamp),
            age_days: record
                .as_ref()
                .and_then(|r| r.created)
                .map(|c| unix_seconds(self.clock.now()).saturating_sub(c) / 86_400),
            last_rotation: record.as_ref().and_then(|r| r.last_rotation).map(stamp),
            pending,
        }
    }

    /// The other key in the way of a new one, as the error names it.
    fn two_keys(&self, other: &Listed) -> RotationError {
        RotationError::TwoKeys {
            other: other.id.clone(),
            state: if other.active { "active" } else { "inactive" },
            created: other
                .created
                .map(|c| format!(", created {}", rfc3339_seconds(c)))
                .unwrap_or_default(),
            hint: if other.active {
                ""
            } else {
                " (or set base-key-delete-inactive = true to have an inactive one deleted)"
            },
        }
    }
}
