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

use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::issuer::{CredentialSource, FailureKind, FetchError};
pub use crate::credentials::schedule::*;
pub use crate::credentials::snapshot::{Served, Snapshot};
use crate::credentials::Credentials;
use crate::role::Association;

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

/// The refresher's source of jitter draws, each in `[0, 1)`.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// Jitter from the thread's random generator.
pub fn random_jitter() -> Jitter {
    use rand::Rng;
    Box::new(|| rand::thread_rng().gen())
}

/// Starts the refresher with random jitter. It runs until `shutdown`
/// completes.
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
    spawn_with_jitter(source, association, clock, random_jitter(), shutdown)
}

/// Starts the refresher with the jitter draws `jitter` makes, so that a
/// test can fix them.
pub fn spawn_with_jitter(
    source: Arc<dyn CredentialSource>,
    association: Option<Association>,
    clock: SharedClock,
    jitter: Jitter,
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
        jitter,
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
    jitter: Jitter,
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
                let delay = refresh_delay(lifetime, (self.jitter)()).saturating_sub(elapsed);
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
                let mut delay = retry_delay(err.kind, self.failures, (self.jitter)());
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
