//! When the refresher acts: how long before expiry a session is refreshed,
//! how far jitter moves that earlier, how far a host's first refresh is
//! spread across the fleet, how long it waits after each kind of failure,
//! and the budget that bounds its calls whatever goes wrong. Pure functions
//! of durations and draws, shared by the refresher and the fleet model
//! (`benches/fleet.rs`).

use std::time::Duration;

use crate::credentials::issuer::FailureKind;

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
/// Shortest wait between a successful fetch and the next one.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bound on one fetch, whatever the source does.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `Retry-After` obeyed: a broken or hostile endpoint cannot park
/// the refresher for longer than this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);
/// Sessions at least this long (STS's shortest) have their first refresh
/// spread across the fleet; shorter ones come from the local issuer or a
/// test double.
pub const FLEET_SPREAD_MIN_SESSION: Duration = Duration::from_secs(15 * 60);
/// The share of the lead over which a fleet's first refreshes are spread.
pub const FLEET_SPREAD: f64 = 0.9;
/// Calls the budget allows in a burst.
pub const BUDGET_BURST: u32 = 10;
/// One more call is allowed per this interval once the burst is spent: at
/// most 5 calls a minute in the long run, whatever goes wrong.
pub const BUDGET_INTERVAL: Duration = Duration::from_secs(12);

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

/// Delay after `lifetime` from issue, when to make a host's first refresh
/// after it starts: as [`refresh_delay`], moved earlier by `fleet_draw`
/// (this host's fixed place in `[0, 1)`, from its machine id) times
/// [`FLEET_SPREAD`] of that delay. Hosts booted together then refresh
/// spread over most of the time to their refresh instead of together, and
/// keep that spread: every later refresh comes one (jittered) period after
/// the previous one. The first refresh is never sooner than a tenth of the
/// plain delay: a start is not followed by a second call at once.
pub fn first_refresh_delay(lifetime: Duration, fleet_draw: f64, jitter_draw: f64) -> Duration {
    let delay = refresh_delay(lifetime, jitter_draw);
    if lifetime < FLEET_SPREAD_MIN_SESSION {
        return delay;
    }
    delay.saturating_sub(delay.mul_f64(FLEET_SPREAD * fleet_draw.clamp(0.0, 1.0)))
}

/// How long after a successful fetch to fetch again: the first refresh
/// since a start or an association change is spread by the host's place in
/// the fleet ([`first_refresh_delay`]), later ones are jittered
/// ([`refresh_delay`]); `elapsed` of the session has already passed, and
/// the wait is never under [`MIN_REFRESH_INTERVAL`], so that credentials
/// issued with next to no life left do not make the refresher call again
/// at once, and again.
pub fn next_refresh_delay(
    lifetime: Duration,
    elapsed: Duration,
    first: bool,
    fleet_draw: f64,
    jitter_draw: f64,
) -> Duration {
    let delay = if first {
        first_refresh_delay(lifetime, fleet_draw, jitter_draw)
    } else {
        refresh_delay(lifetime, jitter_draw)
    };
    delay.saturating_sub(elapsed).max(MIN_REFRESH_INTERVAL)
}

/// Whether credentials kept by a last run are served at a start, and when
/// they are refreshed: only with more than the refresh lead of their
/// `lifetime` `remaining`, at the refresh that run `planned` (from now),
/// but never later than the lead.
pub fn restored_refresh_delay(
    remaining: Duration,
    lifetime: Duration,
    planned: Duration,
) -> Option<Duration> {
    let lead = refresh_lead(lifetime);
    (remaining > lead).then(|| planned.min(remaining - lead))
}

/// A host's place in the fleet, in `[0, 1)`: a hash of its machine id, so
/// that it is the same at every start and independent between hosts.
pub fn fleet_draw(machine_id: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("hostrole fleet spread\n{}", machine_id.trim()));
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest[..8]);
    // 53 bits: exactly representable, strictly below 1.
    (u64::from_be_bytes(top) >> 11) as f64 / (1u64 << 53) as f64
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

/// The wait after a failure that came with a `Retry-After`: the endpoint's
/// own figure when it is longer than the backoff, capped at
/// [`RETRY_AFTER_CAP`].
pub fn obey_retry_after(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => backoff.max(asked.min(RETRY_AFTER_CAP)),
        None => backoff,
    }
}

/// A per-host budget of calls (a token bucket, kept as the time at which
/// the bucket would be full again): [`BUDGET_BURST`] calls at once, then
/// one per [`BUDGET_INTERVAL`]. Times are on the boot clock.
#[derive(Debug, Clone)]
pub struct CallBudget {
    burst: u32,
    interval: Duration,
    full_at: Duration,
}

impl Default for CallBudget {
    fn default() -> Self {
        CallBudget::new(BUDGET_BURST, BUDGET_INTERVAL)
    }
}

impl CallBudget {
    /// A full budget of `burst` calls, refilled one per `interval`.
    pub fn new(burst: u32, interval: Duration) -> Self {
        CallBudget {
            burst: burst.max(1),
            interval,
            full_at: Duration::ZERO,
        }
    }

    /// Takes one call at `now`, or says how long until one is available.
    pub fn take(&mut self, now: Duration) -> Result<(), Duration> {
        let full_at = self.full_at.max(now);
        let earliest = full_at.saturating_sub(self.interval * (self.burst - 1));
        if now < earliest {
            return Err(earliest - now);
        }
        self.full_at = full_at + self.interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
