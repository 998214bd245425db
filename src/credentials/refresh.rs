//! The refresher: one owned task that keeps the served credentials fresh.
//!
//! It fetches at start (prefetch), then again when the remaining life falls
//! to [`refresh_lead`] of the session (half the session, at least 15
//! minutes, never later than 5 minutes before expiry), moved earlier by a
//! random jitter so that a fleet started together does not call STS
//! together. It is the only caller of the [`CredentialSource`], so at most
//! one STS call is in flight whatever the request load.
//!
//! Failures: transient ones, throttling and STS rejecting the host's base
//! credentials back off exponentially with jitter while the last good
//! credentials keep being served until they expire; a fatal one (access
//! denied, no such role) withdraws the credentials at once and retries
//! slowly.
//!
//! Expiry is tracked twice: the STS expiry is converted once, at fetch, to a
//! deadline on the boot clock (which counts suspend and ignores wall-clock
//! steps), and the wall clock is checked too. Credentials count as expired
//! when either says so. Sleeps are capped at [`MAX_SLEEP`] because tokio's
//! timers stop during suspend; the IMDS handler also wakes the refresher
//! when it finds the credentials expired.
//!
//! Everything it decides is published as an immutable [`Snapshot`] through a
//! `watch` channel; association changes come in as [`Command`]s and are
//! published before they are acknowledged. A fetch that was in flight for an
//! older association is discarded (generation check).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::issuer::{CredentialSource, FailureKind, FetchError};
use crate::credentials::Credentials;
use crate::role::Association;

/// Refresh no later than this before expiry (for sessions of 10 min or more).
pub const MIN_REFRESH_LEAD: Duration = Duration::from_secs(5 * 60);
/// Preferred minimum lead for short sessions.
pub const PREFERRED_MIN_LEAD: Duration = Duration::from_secs(15 * 60);
/// Largest random advance of a scheduled refresh.
pub const MAX_JITTER: Duration = Duration::from_secs(5 * 60);
/// Longest single sleep, so that a resume from suspend is noticed.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// First retry delay after a transient failure.
pub const RETRY_BASE: Duration = Duration::from_secs(2);
/// Longest retry delay after transient failures.
pub const RETRY_CAP: Duration = Duration::from_secs(120);
/// First retry delay after throttling.
pub const THROTTLE_BASE: Duration = Duration::from_secs(10);
/// Longest retry delay after throttling.
pub const THROTTLE_CAP: Duration = Duration::from_secs(300);
/// Longest retry delay while STS rejects the base credentials: they may be
/// rotated or renewed at any moment, and the served ones run out meanwhile.
pub const BASE_CREDENTIALS_RETRY_CAP: Duration = Duration::from_secs(60);
/// Retry delay after a fatal failure.
pub const FATAL_RETRY: Duration = Duration::from_secs(300);
/// A last attempt is made this long before the served credentials expire,
/// even if the backoff would wait longer.
pub const LAST_CHANCE_LEAD: Duration = Duration::from_secs(15);
/// Upper bound on one fetch, whatever the source does.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long before expiry a session of length `session` is refreshed.
pub fn refresh_lead(session: Duration) -> Duration {
    let preferred = (session / 2).max(PREFERRED_MIN_LEAD);
    let cap = if session >= MIN_REFRESH_LEAD * 2 {
        session - MIN_REFRESH_LEAD
    } else {
        session / 2
    };
    preferred.min(cap)
}

/// Delay after `lifetime` from issue, when to refresh, given a jitter draw
/// in `[0, 1)`: `lifetime - lead - jitter`.
pub fn refresh_delay(lifetime: Duration, jitter_draw: f64) -> Duration {
    let lead = refresh_lead(lifetime);
    let jitter = (lead / 5)
        .min(MAX_JITTER)
        .mul_f64(jitter_draw.clamp(0.0, 1.0));
    lifetime.saturating_sub(lead + jitter)
}

/// Retry delay after the `failures`-th consecutive failure (1-based), given a
/// jitter draw in `[0, 1)`: exponential, capped, in `[d/2, d]`.
pub fn retry_delay(kind: FailureKind, failures: u32, jitter_draw: f64) -> Duration {
    let (base, cap) = match kind {
        FailureKind::Transient => (RETRY_BASE, RETRY_CAP),
        FailureKind::Throttled => (THROTTLE_BASE, THROTTLE_CAP),
        FailureKind::BaseCredentialsRejected => (RETRY_BASE, BASE_CREDENTIALS_RETRY_CAP),
        FailureKind::Fatal => (FATAL_RETRY, FATAL_RETRY),
    };
    let exp = failures.saturating_sub(1).min(16);
    let d = base.saturating_mul(1u32 << exp).min(cap);
    d / 2 + (d / 2).mul_f64(jitter_draw.clamp(0.0, 1.0))
}

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

/// A change to the host's role.
#[derive(Debug)]
pub enum Command {
    /// Set (`Some`) or remove (`None`) the association. The reply is sent
    /// once the new snapshot is published.
    SetAssociation(Option<Association>, oneshot::Sender<Arc<Snapshot>>),
}

/// Talks to a running refresher.
#[derive(Debug, Clone)]
pub struct RefresherHandle {
    wake: Arc<Notify>,
    commands: mpsc::Sender<Command>,
}

/// The refresher has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the credential refresher is not running")]
pub struct RefresherGone;

impl RefresherHandle {
    /// Asks the refresher to look at the clocks again now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sets or removes the association. Returns once the change is
    /// published: the old role's credentials are no longer served, and the
    /// new role's first fetch has started.
    pub async fn set_association(
        &self,
        association: Option<Association>,
    ) -> Result<Arc<Snapshot>, RefresherGone> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::SetAssociation(association, tx))
            .await
            .map_err(|_| RefresherGone)?;
        rx.await.map_err(|_| RefresherGone)
    }
}

type InFlight = Pin<Box<dyn Future<Output = Result<Credentials, FetchError>> + Send>>;

/// Starts the refresher. It runs until `shutdown` completes.
pub fn spawn(
    source: Arc<dyn CredentialSource>,
    association: Option<Association>,
    clock: SharedClock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (
    watch::Receiver<Arc<Snapshot>>,
    RefresherHandle,
    tokio::task::JoinHandle<()>,
) {
    let initial = Arc::new(Snapshot {
        association: association.clone(),
        source: source.kind(),
        ..Snapshot::default()
    });
    let (tx, rx) = watch::channel(initial);
    let wake = Arc::new(Notify::new());
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let boot = clock.boot_time();
    let refresher = Refresher {
        source,
        clock,
        tx,
        wake: wake.clone(),
        commands: cmd_rx,
        generation: 0,
        association,
        served: None,
        last_error: None,
        last_refresh: None,
        next_attempt_boot: boot,
        failures: 0,
        fetches: 0,
        in_flight: None,
    };
    let task = tokio::spawn(refresher.run(shutdown));
    (
        rx,
        RefresherHandle {
            wake,
            commands: cmd_tx,
        },
        task,
    )
}

struct Refresher {
    source: Arc<dyn CredentialSource>,
    clock: SharedClock,
    tx: watch::Sender<Arc<Snapshot>>,
    wake: Arc<Notify>,
    commands: mpsc::Receiver<Command>,
    generation: u64,
    association: Option<Association>,
    served: Option<Arc<Served>>,
    last_error: Option<String>,
    last_refresh: Option<SystemTime>,
    next_attempt_boot: Duration,
    failures: u32,
    fetches: u64,
    in_flight: Option<(u64, InFlight)>,
}

enum Event {
    Shutdown,
    Command(Option<Command>),
    Fetched(u64, Result<Credentials, FetchError>),
    Wake,
}

async fn poll_in_flight(f: &mut Option<(u64, InFlight)>) -> (u64, Result<Credentials, FetchError>) {
    match f {
        Some((generation, fut)) => (*generation, fut.await),
        None => std::future::pending().await,
    }
}

impl Refresher {
    async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut commands_open = true;
        loop {
            self.drop_expired();
            self.maybe_start_fetch();
            self.publish();
            let sleep = self.sleep_duration();
            let event = tokio::select! {
                biased;
                _ = &mut shutdown => Event::Shutdown,
                cmd = self.commands.recv(), if commands_open => Event::Command(cmd),
                (generation, result) = poll_in_flight(&mut self.in_flight) => Event::Fetched(generation, result),
                _ = self.wake.notified() => Event::Wake,
                _ = tokio::time::sleep(sleep) => Event::Wake,
            };
            match event {
                Event::Shutdown => break,
                Event::Command(None) => commands_open = false,
                Event::Command(Some(Command::SetAssociation(association, reply))) => {
                    self.set_association(association);
                    self.drop_expired();
                    self.maybe_start_fetch();
                    self.publish();
                    let _ = reply.send(self.tx.borrow().clone());
                }
                Event::Fetched(generation, result) => {
                    self.in_flight = None;
                    if generation == self.generation {
                        self.on_fetched(result);
                    }
                }
                Event::Wake => {}
            }
        }
        // Leave nothing behind to serve.
        self.served = None;
        self.publish();
    }

    fn set_association(&mut self, association: Option<Association>) {
        let old = self.association.as_ref().map(|a| a.role.to_string());
        let new = association.as_ref().map(|a| a.role.to_string());
        self.generation += 1;
        self.association = association;
        // Withdraw the old role's credentials before anyone is told.
        self.served = None;
        self.in_flight = None;
        self.last_error = None;
        self.last_refresh = None;
        self.failures = 0;
        self.next_attempt_boot = self.clock.boot_time();
        tracing::debug!(
            old_role = old.as_deref().unwrap_or("none"),
            new_role = new.as_deref().unwrap_or("none"),
            generation = self.generation,
            "association swapped"
        );
    }

    fn drop_expired(&mut self) {
        let (now, boot) = (self.clock.now(), self.clock.boot_time());
        if let Some(served) = &self.served {
            if !served.is_usable(now, boot) {
                tracing::warn!(
                    access_key_id = %served.credentials.access_key_id,
                    expiration = %rfc3339_seconds(served.credentials.expiration),
                    "credentials expired; no longer serving them"
                );
                self.served = None;
                if self.last_error.is_none() {
                    self.last_error = Some("credentials expired before a refresh succeeded".into());
                }
                // A suspended host wakes here: fetch now unless backing off.
                if self.failures == 0 {
                    self.next_attempt_boot = self.next_attempt_boot.min(boot);
                }
            }
        }
    }

    fn maybe_start_fetch(&mut self) {
        let Some(association) = self.association.clone() else {
            return;
        };
        if self.in_flight.is_some() || self.clock.boot_time() < self.next_attempt_boot {
            return;
        }
        self.fetches += 1;
        let source = self.source.clone();
        let fut: InFlight = Box::pin(async move {
            match tokio::time::timeout(FETCH_TIMEOUT, source.fetch(&association)).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::transient(format!(
                    "no answer from the credential source within {}s",
                    FETCH_TIMEOUT.as_secs()
                ))),
            }
        });
        self.in_flight = Some((self.generation, fut));
    }

    fn on_fetched(&mut self, result: Result<Credentials, FetchError>) {
        let (now, boot) = (self.clock.now(), self.clock.boot_time());
        let role = self
            .association
            .as_ref()
            .map(|a| a.role.to_string())
            .unwrap_or_default();
        match result {
            Ok(credentials) => {
                let remaining = credentials
                    .expiration
                    .duration_since(now)
                    .unwrap_or_default();
                let lifetime = credentials
                    .expiration
                    .duration_since(credentials.last_updated)
                    .unwrap_or(remaining)
                    .max(remaining);
                // Schedule relative to the remaining life as measured now.
                let elapsed = lifetime - remaining;
                let delay =
                    refresh_delay(lifetime, rand::thread_rng().gen()).saturating_sub(elapsed);
                tracing::info!(
                    role = %role,
                    source = self.source.kind(),
                    access_key_id = %credentials.access_key_id,
                    expiration = %rfc3339_seconds(credentials.expiration),
                    next_refresh_in_s = delay.as_secs(),
                    "credentials refreshed"
                );
                self.served = Some(Arc::new(Served {
                    credentials,
                    expires_boot: boot + remaining,
                }));
                self.last_refresh = Some(now);
                self.last_error = None;
                self.failures = 0;
                self.next_attempt_boot = boot + delay;
            }
            Err(err) => {
                self.failures += 1;
                let mut delay = retry_delay(err.kind, self.failures, rand::thread_rng().gen());
                if err.kind == FailureKind::Fatal {
                    tracing::error!(role = %role, error = %err.message, kind = ?err.kind, retry_in_s = delay.as_secs(),
                        "cannot assume the role; its credentials are no longer served");
                    self.served = None;
                } else {
                    // Make one last attempt shortly before the served ones expire.
                    if let Some(served) = &self.served {
                        let last_chance = served.expires_boot.saturating_sub(LAST_CHANCE_LEAD);
                        if last_chance > boot {
                            delay = delay.min(last_chance - boot);
                        }
                    }
                    tracing::warn!(role = %role, error = %err.message, kind = ?err.kind, failures = self.failures,
                        retry_in_s = delay.as_secs(), still_serving = self.served.is_some(),
                        "credential refresh failed; will retry");
                }
                self.last_error = Some(err.message);
                self.next_attempt_boot = boot + delay.max(Duration::from_millis(100));
            }
        }
    }

    fn sleep_duration(&self) -> Duration {
        let boot = self.clock.boot_time();
        let mut until = MAX_SLEEP;
        if self.association.is_some() && self.in_flight.is_none() {
            until = until.min(self.next_attempt_boot.saturating_sub(boot));
        }
        if let Some(served) = &self.served {
            until = until.min(served.expires_boot.saturating_sub(boot));
            if let Ok(left) = served
                .credentials
                .expiration
                .duration_since(self.clock.now())
            {
                until = until.min(left);
            }
        }
        until.max(Duration::from_millis(1))
    }

    fn publish(&self) {
        let (now, boot) = (self.clock.now(), self.clock.boot_time());
        let next_refresh = self
            .association
            .as_ref()
            .map(|_| now + self.next_attempt_boot.saturating_sub(boot));
        let snapshot = Snapshot {
            generation: self.generation,
            association: self.association.clone(),
            served: self.served.clone(),
            last_error: self.last_error.clone(),
            last_refresh: self.last_refresh,
            next_refresh,
            fetches: self.fetches,
            source: self.source.kind(),
        };
        self.tx.send_replace(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn one_hour_sessions_refresh_with_half_an_hour_left() {
        assert_eq!(refresh_lead(60 * MIN), 30 * MIN);
        assert_eq!(refresh_delay(60 * MIN, 0.0), 30 * MIN);
        // Jitter only ever moves the refresh earlier, by at most 5 minutes.
        assert_eq!(refresh_delay(60 * MIN, 0.999_999).as_secs(), 25 * 60);
    }

    #[test]
    fn short_sessions_still_refresh_at_least_five_minutes_before_expiry() {
        assert_eq!(refresh_lead(15 * MIN), 10 * MIN);
        assert_eq!(refresh_lead(20 * MIN), 15 * MIN);
        assert_eq!(refresh_lead(12 * 60 * MIN), 6 * 60 * MIN);
        for minutes in [15u32, 16, 20, 30, 45, 60, 90, 120, 720] {
            let session = minutes * MIN;
            for draw in [0.0, 0.5, 0.999] {
                let delay = refresh_delay(session, draw);
                assert!(session - delay >= MIN_REFRESH_LEAD, "{minutes} min session");
                assert!(
                    delay >= Duration::from_secs(60),
                    "{minutes} min session refreshes too often"
                );
            }
        }
        // Very short local sessions refresh at half-life.
        assert_eq!(
            refresh_lead(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        let t = |n, d| retry_delay(FailureKind::Transient, n, d);
        assert_eq!(t(1, 0.0), Duration::from_secs(1));
        assert_eq!(t(1, 1.0), Duration::from_secs(2));
        assert_eq!(t(3, 1.0), Duration::from_secs(8));
        assert_eq!(t(30, 1.0), RETRY_CAP);
        assert_eq!(retry_delay(FailureKind::Throttled, 1, 1.0), THROTTLE_BASE);
        assert_eq!(retry_delay(FailureKind::Throttled, 10, 1.0), THROTTLE_CAP);
        let base = |n, d| retry_delay(FailureKind::BaseCredentialsRejected, n, d);
        assert_eq!(base(1, 1.0), RETRY_BASE);
        assert_eq!(base(30, 1.0), BASE_CREDENTIALS_RETRY_CAP);
        assert_eq!(retry_delay(FailureKind::Fatal, 1, 1.0), FATAL_RETRY);
    }
}
