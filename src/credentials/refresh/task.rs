//! The refresher's task: its state, its event loop, and what it does on
//! each event. The rules it applies are in [`crate::credentials::schedule`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch, Notify};

use super::{Command, Jitter, Options};
use crate::clock::{rfc3339_seconds, SharedClock};
use crate::credentials::issuer::{CredentialSource, FailureKind, FetchError};
use crate::credentials::persist::{self, Persist};
use crate::credentials::schedule::*;
use crate::credentials::snapshot::{Served, Snapshot};
use crate::credentials::Credentials;
use crate::role::Association;

mod restore;

type InFlight = Pin<Box<dyn Future<Output = Result<Credentials, FetchError>> + Send>>;

/// How long shutdown waits for the kept credentials to reach the disk.
const WRITER_GRACE: Duration = Duration::from_secs(5);

pub(super) struct Refresher {
    source: Arc<dyn CredentialSource>,
    clock: SharedClock,
    jitter: Jitter,
    fleet_draw: f64,
    budget: Option<CallBudget>,
    store: Option<persist::CredentialStore>,
    persist: Option<mpsc::UnboundedSender<Persist>>,
    /// Whether the next successful fetch is the first since the start or
    /// the last association change (its refresh is spread by the machine).
    first_refresh: bool,
    /// Whether the refresher is waiting for the budget (logged once).
    budget_spent: bool,
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
    pub(super) fn new(
        source: Arc<dyn CredentialSource>,
        association: Option<Association>,
        clock: SharedClock,
        options: Options,
        tx: watch::Sender<Arc<Snapshot>>,
        wake: Arc<Notify>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let boot = clock.boot_time();
        Refresher {
            source,
            clock,
            jitter: options.jitter,
            fleet_draw: options.fleet_draw,
            budget: options.budget,
            store: options.store,
            persist: None,
            first_refresh: true,
            budget_spent: false,
            tx,
            wake,
            commands,
            generation: 0,
            association,
            served: None,
            last_error: None,
            last_refresh: None,
            next_attempt_boot: boot,
            failures: 0,
            fetches: 0,
            in_flight: None,
        }
    }

    pub(super) async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut commands_open = true;
        let writer = match self.store.take() {
            Some(store) => {
                let (tx, task) = persist::spawn_writer(store.clone());
                self.persist = Some(tx);
                self.restore(store).await;
                Some(task)
            }
            None => None,
        };
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
        // Leave nothing behind to serve; the kept copy stays for the next
        // start, once it is on disk.
        self.served = None;
        self.publish();
        self.persist = None;
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(WRITER_GRACE, writer).await;
        }
    }

    fn send(&self, op: Persist) {
        if let Some(tx) = &self.persist {
            let _ = tx.send(op);
        }
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
        self.first_refresh = true;
        self.next_attempt_boot = self.clock.boot_time();
        self.send(Persist::Wipe("association changed"));
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
                self.send(Persist::Wipe("expired"));
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
        let boot = self.clock.boot_time();
        if self.in_flight.is_some() || boot < self.next_attempt_boot {
            return;
        }
        if let Some(budget) = &mut self.budget {
            if let Err(wait) = budget.take(boot) {
                if !self.budget_spent {
                    tracing::warn!(wait_s = wait.as_secs_f64().ceil(),
                        "call budget spent ({BUDGET_BURST} calls, then one per {}s): waiting before the next call",
                        BUDGET_INTERVAL.as_secs());
                }
                self.budget_spent = true;
                self.next_attempt_boot = boot + wait;
                return;
            }
            self.budget_spent = false;
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
                let (remaining, lifetime) = credentials.life(now);
                // Schedule relative to the remaining life as measured now.
                let delay = next_refresh_delay(
                    lifetime,
                    lifetime - remaining,
                    std::mem::take(&mut self.first_refresh),
                    self.fleet_draw,
                    (self.jitter)(),
                );
                tracing::info!(
                    role = %role,
                    source = self.source.kind(),
                    access_key_id = %credentials.access_key_id,
                    expiration = %rfc3339_seconds(credentials.expiration),
                    next_refresh_in_s = delay.as_secs(),
                    "credentials refreshed"
                );
                let served = Arc::new(Served {
                    credentials,
                    expires_boot: boot + remaining,
                });
                if let Some(association) = &self.association {
                    self.send(Persist::Store {
                        association: association.clone(),
                        served: served.clone(),
                        next_refresh: now + delay,
                    });
                }
                self.served = Some(served);
                self.last_refresh = Some(now);
                self.last_error = None;
                self.failures = 0;
                self.next_attempt_boot = boot + delay;
            }
            Err(err) => {
                self.failures += 1;
                let backoff = retry_delay(err.kind, self.failures, (self.jitter)());
                let mut delay = obey_retry_after(backoff, err.retry_after);
                if err.kind == FailureKind::Fatal {
                    tracing::error!(role = %role, error = %err.message, kind = ?err.kind, retry_in_s = delay.as_secs(),
                        "cannot assume the role; its credentials are no longer served");
                    self.served = None;
                    self.send(Persist::Wipe("the role cannot be assumed"));
                } else {
                    // Make one last attempt shortly before the served ones
                    // expire, unless the endpoint said when to come back.
                    if let Some(served) = self.served.as_ref().filter(|_| err.retry_after.is_none())
                    {
                        let last_chance = served.expires_boot.saturating_sub(LAST_CHANCE_LEAD);
                        if last_chance > boot {
                            delay = delay.min(last_chance - boot);
                        }
                    }
                    tracing::warn!(role = %role, error = %err.message, kind = ?err.kind, failures = self.failures,
                        retry_in_s = delay.as_secs(), retry_after_s = err.retry_after.map(|d| d.as_secs()),
                        still_serving = self.served.is_some(),
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
