//! When the refresher acts: how long before expiry a session is refreshed,
//! how far jitter moves that earlier, and how long it waits after each kind
//! of failure. Pure functions of durations and a jitter draw.

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
