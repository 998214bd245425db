//! A start that finds the last run's credentials kept in the state
//! directory.

use std::sync::Arc;

use super::Refresher;
use crate::clock::rfc3339_seconds;
use crate::credentials::persist::{CredentialStore, Persist};
use crate::credentials::schedule::restored_refresh_delay;
use crate::credentials::snapshot::Served;

impl Refresher {
    /// Serves the credentials kept by the last run, if they are for this
    /// issuer and association and have more than the refresh lead left,
    /// with the refresh that run had planned; removes them otherwise.
    pub(super) async fn restore(&mut self, store: CredentialStore) {
        let Some(association) = self.association.clone() else {
            // No role: whatever a last run kept goes, without a word.
            self.send(Persist::Wipe("no role is associated"));
            return;
        };
        let path = store.path();
        let loaded = tokio::task::spawn_blocking(move || store.load(&association))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let why_not = match loaded {
            Ok(None) => return,
            Err(why) => why,
            Ok(Some(restored)) => {
                let (now, boot) = (self.clock.now(), self.clock.boot_time());
                let c = &restored.credentials;
                let (remaining, lifetime) = c.life(now);
                let planned = restored
                    .next_refresh
                    .duration_since(now)
                    .unwrap_or_default();
                if let Some(delay) = restored_refresh_delay(remaining, lifetime, planned) {
                    tracing::info!(file = %path.display(), access_key_id = %c.access_key_id,
                        expiration = %rfc3339_seconds(c.expiration), next_refresh_in_s = delay.as_secs(),
                        "serving the credentials kept from the last run");
                    self.last_refresh = Some(c.last_updated);
                    self.served = Some(Arc::new(Served {
                        credentials: restored.credentials,
                        expires_boot: boot + remaining,
                    }));
                    self.next_attempt_boot = boot + delay;
                    self.first_refresh = false;
                    return;
                }
                format!(
                    "they have {}s left, within the refresh lead",
                    remaining.as_secs()
                )
            }
        };
        tracing::info!(file = %path.display(), reason = %why_not, "not using the kept credentials");
        self.send(Persist::Wipe("unusable at start"));
    }
}
