//! The rotation's background task: resumes an unfinished rotation at
//! start, deletes an old key when its grace period ends, and rotates on
//! its own when `base-key-max-age-days` is set and the key reaches that
//! age. A failure is logged and tried again later; it never stops the
//! daemon or the serving of credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::journal::Record;
use super::Rotator;
use crate::clock::{from_unix_seconds, unix_seconds};

/// Wait after a failed resumption or scheduled rotation.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(3600);
/// Longest single sleep: the wall clock is looked at again after it (a
/// suspended host, a clock set forward).
const MAX_SLEEP: Duration = Duration::from_secs(600);

/// Runs the rotation's background work until `stop` is cancelled.
pub async fn run(rotator: Arc<Rotator>, stop: CancellationToken) {
    {
        let mut not_before = SystemTime::UNIX_EPOCH;
        loop {
            let now = rotator.clock.now();
            let mut wake = now + MAX_SLEEP;
            let mut rotate_at = None;
            if now >= not_before {
                match rotator.resume().await {
                    Ok(Some(due)) => wake = wake.min(due),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "base key rotation: cannot finish the unfinished rotation; trying again in an hour");
                        not_before = now + RETRY_AFTER_FAILURE;
                    }
                }
                if let Some(max_age) = rotator.policy.settings.max_age {
                    match rotator.key_created().await {
                        Ok(created) => rotate_at = Some(created + max_age),
                        Err(e) => {
                            tracing::warn!(error = %e, "base key rotation: cannot tell the key's age; trying again in an hour");
                            not_before = now + RETRY_AFTER_FAILURE;
                        }
                    }
                }
            } else {
                wake = wake.min(not_before);
            }
            match rotate_at {
                Some(at) if at <= now => {
                    match rotator.rotate().await {
                        Ok(r) => {
                            tracing::info!(old = %r.old, new = %r.new, "base key rotated on schedule (base-key-max-age-days)")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "base key rotation on schedule failed; trying again in an hour");
                            not_before = now + RETRY_AFTER_FAILURE;
                        }
                    }
                    continue;
                }
                Some(at) => wake = wake.min(at),
                None => {}
            }
            let sleep = wake.duration_since(now).unwrap_or_default().min(MAX_SLEEP);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = rotator.changed.notified() => {}
                _ = tokio::time::sleep(sleep.max(Duration::from_secs(1))) => {}
            }
        }
    }
}

impl Rotator {
    /// When the key in the file was created: from the record, else asked
    /// of IAM once and recorded.
    async fn key_created(&self) -> Result<SystemTime, super::RotationError> {
        let key = self.file.read()?;
        if let Some(Record {
            created: Some(created),
            ..
        }) = Record::load(&self.state_dir)?.filter(|r| r.key == key.id)
        {
            return Ok(from_unix_seconds(created));
        }
        let listed = self.calls.list(&key).await?;
        let created = listed
            .iter()
            .find(|k| k.id == key.id)
            .and_then(|k| k.created)
            .unwrap_or_else(|| self.clock.now());
        Record {
            key: key.id,
            created: Some(unix_seconds(created)),
            last_rotation: None,
        }
        .save(&self.state_dir)?;
        Ok(created)
    }
}
