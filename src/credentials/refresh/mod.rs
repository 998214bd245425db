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
//!
//! Fleet economy ([`Options`]): the first refresh after a start is spread
//! by the host's machine id ([`first_refresh_delay`]); a call budget
//! ([`CallBudget`]) bounds the calls whatever goes wrong; a `Retry-After`
//! is obeyed; and with a [`CredentialStore`] the last good credentials
//! survive a restart, together with their planned refresh, so that a
//! restart costs no call.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::clock::SharedClock;
use crate::credentials::issuer::CredentialSource;
pub use crate::credentials::persist::CredentialStore;
pub use crate::credentials::schedule::*;
pub use crate::credentials::snapshot::{Served, Snapshot};
use crate::role::Association;

mod task;

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

/// The refresher's source of jitter draws, each in `[0, 1)`.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// Jitter from the thread's random generator.
pub fn random_jitter() -> Jitter {
    use rand::Rng;
    Box::new(|| rand::thread_rng().gen())
}

/// How a refresher behaves beyond the refresh rules themselves.
pub struct Options {
    /// Jitter draws for later refreshes and retries.
    pub jitter: Jitter,
    /// This host's place in the fleet, in `[0, 1)` ([`fleet_draw`]): how
    /// far its first refresh after a start is moved earlier.
    pub fleet_draw: f64,
    /// The call budget, if calls cost anything.
    pub budget: Option<CallBudget>,
    /// Where the last good credentials are kept across restarts, if they are.
    pub store: Option<CredentialStore>,
}

impl Default for Options {
    /// Random jitter; no fleet spread, no budget, nothing kept.
    fn default() -> Self {
        Options {
            jitter: random_jitter(),
            fleet_draw: 0.0,
            budget: None,
            store: None,
        }
    }
}

/// Starts the refresher. It runs until `shutdown` completes, then waits
/// for the kept credentials to be on disk.
pub fn spawn(
    source: Arc<dyn CredentialSource>,
    association: Option<Association>,
    clock: SharedClock,
    options: Options,
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
    let refresher = task::Refresher::new(
        source,
        association,
        clock,
        options,
        tx,
        wake.clone(),
        cmd_rx,
    );
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
