//! The temporary credentials issued for the host's role, and the flow that
//! keeps them fresh: an [`issuer`] fetches them, the [`refresh`] task
//! schedules fetches ([`schedule`]) and publishes [`snapshot`]s, [`revoke`] cuts a removed
//! role's sessions on the AWS side.
//!
//! Secrets live in [`Zeroizing`] buffers so they are wiped when dropped; no
//! type here implements `Display`, and `Debug` prints `** redacted **` in
//! place of the secret key and session token.

pub mod base_key;
pub mod issuer;
pub mod persist;
pub mod refresh;
pub mod revoke;
pub mod schedule;
pub mod snapshot;

use std::fmt;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::clock::rfc3339_seconds;

/// A set of temporary credentials.
pub struct Credentials {
    /// `ASIA…` access key id: not secret, safe to log.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Zeroizing<String>,
    /// The session token.
    pub session_token: Zeroizing<String>,
    /// When STS says they stop working.
    pub expiration: SystemTime,
    /// When they were obtained.
    pub last_updated: SystemTime,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &"** redacted **")
            .field("expiration", &rfc3339_seconds(self.expiration))
            .field("last_updated", &rfc3339_seconds(self.last_updated))
            .finish()
    }
}

impl Credentials {
    /// True once the wall clock has reached the expiry.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expiration
    }

    /// At `now`: how long they have left, and how long the session is (from
    /// issue to expiry, and never less than what is left).
    pub fn life(&self, now: SystemTime) -> (Duration, Duration) {
        let remaining = self.expiration.duration_since(now).unwrap_or_default();
        let lifetime = self
            .expiration
            .duration_since(self.last_updated)
            .unwrap_or_default()
            .max(remaining);
        (remaining, lifetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let c = Credentials {
            access_key_id: "ASIAEXAMPLEEXAMPLE12".into(),
            secret_access_key: Zeroizing::new("very-secret-key".into()),
            session_token: Zeroizing::new("very-secret-token".into()),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(3600),
            last_updated: SystemTime::UNIX_EPOCH,
        };
        let dbg = format!("{c:?}");
        assert!(dbg.contains("ASIAEXAMPLEEXAMPLE12"));
        assert!(!dbg.contains("very-secret"));
        assert!(dbg.contains("** redacted **"));
    }
}
