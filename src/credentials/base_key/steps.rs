//! The rotation's steps, and their resumption after a crash.

use aws_credential_types::provider::ProvideCredentials;

use super::file::AccessKey;
use super::journal::{Journal, Record};
use super::{Rotated, RotationError, Rotator};
use crate::clock::{from_unix_seconds, unix_seconds};

impl Rotator {
    /// Rotates the key now (after finishing or undoing an unfinished
    /// rotation); see the module documentation for the steps.
    pub async fn rotate(&self) -> Result<Rotated, RotationError> {
        let _busy = self.busy.lock().await;
        let result = self.rotate_locked().await;
        self.changed.notify_one();
        result
    }

    /// Finishes or undoes an unfinished rotation, and deletes an old key
    /// whose grace period is over. Returns when the next deletion is due.
    pub async fn resume(&self) -> Result<Option<std::time::SystemTime>, RotationError> {
        let _busy = self.busy.lock().await;
        self.resume_locked().await
    }

    async fn rotate_locked(&self) -> Result<Rotated, RotationError> {
        self.resume_locked().await?;
        let current = self.file.read()?;
        let in_use = self
            .base
            .provide_credentials()
            .await
            .map(|c| c.access_key_id().to_owned())
            .unwrap_or_else(|e| format!("none: {e}"));
        if in_use != current.id {
            return Err(RotationError::NotTheFilesKey {
                in_use,
                in_file: current.id.clone(),
                profile: self.file.profile.clone(),
                path: self.file.path.display().to_string(),
            });
        }
        // 1. At most two keys per user.
        for other in self
            .calls
            .list(&current)
            .await?
            .iter()
            .filter(|k| k.id != current.id)
        {
            if other.active || !self.policy.settings.delete_inactive {
                return Err(self.two_keys(other));
            }
            self.calls.delete(&current, &other.id).await?;
            tracing::info!(key = %other.id, "base key rotation: deleted the inactive second key");
        }
        // From here the user has one key, the old one: any other key
        // found while resuming was made by this rotation.
        let mut journal = Journal {
            old: current.id.clone(),
            new: None,
            started: unix_seconds(self.clock.now()),
            deactivated_at: None,
        };
        journal.save(&self.state_dir)?;
        // 2. The new key.
        let new = match self.calls.create(&current).await {
            Ok(k) => k,
            Err(e) => {
                Journal::clear(&self.state_dir)?;
                return Err(e.into());
            }
        };
        journal.new = Some(new.id.clone());
        journal.save(&self.state_dir)?;
        tracing::info!(old = %current.id, new = %new.id, "base key rotation: new key created");
        // 3. Proven before it replaces the old one.
        if let Err(e) = self
            .calls
            .wait_until_works(&new, self.policy.verify_within, self.policy.verify_every)
            .await
        {
            self.undo(&current, &new.id).await?;
            return Err(RotationError::NewKeyRefused {
                new: new.id,
                old: current.id,
                within_s: self.policy.verify_within.as_secs(),
                why: e.message,
            });
        }
        // 4. Into the file; the daemon signs with it from its next call.
        if let Err(e) = self.file.write(&new) {
            self.undo(&current, &new.id).await?;
            return Err(e.into());
        }
        self.base.forget();
        let now = unix_seconds(self.clock.now());
        Record {
            key: new.id.clone(),
            created: Some(now),
            last_rotation: Some(now),
        }
        .save(&self.state_dir)?;
        tracing::info!(old = %current.id, new = %new.id, "base key rotation: the new key is in use");
        // 5 and 6.
        let warning = self.retire(&new, &mut journal).await.err().map(|e| {
            format!("the new key is in use, but the old one could not be retired yet ({e}); the daemon retries")
        });
        Ok(Rotated {
            old: current.id,
            new: new.id,
            old_deleted_at: from_unix_seconds(journal.deactivated_at.unwrap_or(now))
                + self.policy.settings.grace,
            warning,
        })
    }

    /// Deletes the key a rotation made, the file still holding `old`.
    async fn undo(&self, old: &AccessKey, new: &str) -> Result<(), RotationError> {
        self.calls.delete(old, new).await?;
        Journal::clear(&self.state_dir)?;
        tracing::warn!(old = %old.id, new, "base key rotation undone: the new key was deleted");
        Ok(())
    }

    /// Makes the journal's old key inactive, then deletes it once its
    /// grace period is over, signing with `new`.
    async fn retire(&self, new: &AccessKey, journal: &mut Journal) -> Result<(), RotationError> {
        if journal.deactivated_at.is_none() {
            self.calls.deactivate(new, &journal.old).await?;
            journal.deactivated_at = Some(unix_seconds(self.clock.now()));
            journal.save(&self.state_dir)?;
            tracing::info!(key = %journal.old, "base key rotation: the old key is inactive");
        }
        let due = journal.deactivated_at.unwrap_or_default() + self.policy.settings.grace.as_secs();
        if unix_seconds(self.clock.now()) >= due {
            self.calls.delete(new, &journal.old).await?;
            Journal::clear(&self.state_dir)?;
            tracing::info!(key = %journal.old, "base key rotation: the old key is deleted");
        }
        Ok(())
    }

    pub(super) async fn resume_locked(
        &self,
    ) -> Result<Option<std::time::SystemTime>, RotationError> {
        let Some(mut journal) = Journal::load(&self.state_dir)? else {
            return Ok(None);
        };
        let in_file = self.file.read()?;
        if in_file.id == journal.old {
            // Not switched: whatever the rotation created goes.
            for made in self
                .calls
                .list(&in_file)
                .await?
                .into_iter()
                .filter(|k| k.id != journal.old)
            {
                self.calls.delete(&in_file, &made.id).await?;
                tracing::warn!(key = %made.id, "an unfinished base key rotation was undone: its new key was deleted");
            }
            Journal::clear(&self.state_dir)?;
            return Ok(None);
        }
        if journal.new.as_deref() != Some(in_file.id.as_str()) {
            tracing::warn!(
                in_file = %in_file.id,
                old = %journal.old,
                "the credentials file holds neither key of an unfinished base key rotation; it is abandoned, no key touched"
            );
            Journal::clear(&self.state_dir)?;
            return Ok(None);
        }
        // Switched, so proven: finish.
        if Record::load(&self.state_dir)?.is_none_or(|r| r.key != in_file.id) {
            let at = journal.started;
            Record {
                key: in_file.id.clone(),
                created: Some(at),
                last_rotation: Some(at),
            }
            .save(&self.state_dir)?;
        }
        self.retire(&in_file, &mut journal).await?;
        Ok(Journal::load(&self.state_dir)?
            .and_then(|j| j.deactivated_at)
            .map(|at| from_unix_seconds(at) + self.policy.settings.grace))
    }
}
