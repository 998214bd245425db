//! What the refresher publishes: an immutable [`Snapshot`] of the role,
//! the credentials served for it (with their boot-clock deadline), and the
//! state of refreshing. Readers take the latest one and never wait.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::credentials::Credentials;
use crate::role::Association;

/// Credentials as served, with their deadline on the boot clock.
#[derive(Debug)]
pub struct Served {
    /// The credentials.
    pub credentials: Credentials,
    /// Boot-clock time at which they expire.
    pub expires_boot: Duration,
}

impl Served {
    /// Whether these may still be handed out.
    pub fn is_usable(&self, now: SystemTime, boot: Duration) -> bool {
        !self.credentials.is_expired(now) && boot < self.expires_boot
    }
}

/// What the endpoint serves, published by the refresher.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Incremented at every association change.
    pub generation: u64,
    /// The host's role, if any.
    pub association: Option<Association>,
    /// The credentials to serve, if any are usable.
    pub served: Option<Arc<Served>>,
    /// Why there are no credentials, or why the last refresh failed.
    pub last_error: Option<String>,
    /// When the last successful fetch happened.
    pub last_refresh: Option<SystemTime>,
    /// When the next fetch is planned (wall-clock estimate).
    pub next_refresh: Option<SystemTime>,
    /// Fetches started so far.
    pub fetches: u64,
    /// The credential source's kind.
    pub source: &'static str,
}

impl Snapshot {
    /// The credentials, if they may be served at this moment.
    pub fn usable(&self, now: SystemTime, boot: Duration) -> Option<&Credentials> {
        self.served
            .as_deref()
            .filter(|s| s.is_usable(now, boot))
            .map(|s| &s.credentials)
    }
}
