use super::*;

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

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
    assert_eq!(
        t(3, 0.0),
        Duration::from_secs(4),
        "the second half of the window"
    );
    let base = |n, d| retry_delay(FailureKind::BaseCredentialsRejected, n, d);
    assert_eq!(base(1, 1.0), RETRY_BASE);
    assert_eq!(base(30, 1.0), BASE_CREDENTIALS_RETRY_CAP);
    assert_eq!(retry_delay(FailureKind::Fatal, 1, 1.0), FATAL_RETRY);
}

#[test]
fn retry_after_lengthens_the_wait_but_never_beyond_an_hour() {
    let s = Duration::from_secs;
    assert_eq!(obey_retry_after(s(10), None), s(10));
    assert_eq!(obey_retry_after(s(10), Some(s(3))), s(10));
    assert_eq!(obey_retry_after(s(10), Some(s(90))), s(90));
    assert_eq!(obey_retry_after(s(10), Some(s(86_400))), RETRY_AFTER_CAP);
}

#[test]
fn the_first_refresh_is_spread_over_most_of_the_delay_by_the_machine() {
    // 12 h sessions: the refresh is 6 h in; hosts spread over 90% of it.
    let session = 12 * 60 * MIN;
    assert_eq!(first_refresh_delay(session, 0.0, 0.0), 6 * 60 * MIN);
    assert_eq!(
        first_refresh_delay(session, 0.5, 0.0),
        6 * 60 * MIN - 162 * MIN
    );
    let earliest = first_refresh_delay(session, 0.999_999, 0.999_999);
    assert!(earliest >= 35 * MIN && earliest < 36 * MIN, "{earliest:?}");
    // Short sessions too: never a second call right after a start,
    // whatever the machine's draw and the jitter.
    for session in [15 * MIN, HOUR] {
        for draw in [0.0, 0.5, 0.999_999] {
            for jitter in [0.0, 0.999_999] {
                let first = first_refresh_delay(session, draw, jitter);
                let plain = refresh_delay(session, jitter);
                let ten_seconds = Duration::from_secs(10);
                assert!(
                    first >= plain / 10 && first > ten_seconds,
                    "{session:?} {draw} {jitter}: {first:?}"
                );
            }
        }
    }
    // Never later than the plain schedule; never spread below 15 min.
    for draw in [0.0, 0.3, 0.9] {
        assert!(first_refresh_delay(HOUR, draw, 0.5) <= refresh_delay(HOUR, 0.5));
    }
    // From STS's shortest session, 15 minutes, up.
    assert!(first_refresh_delay(15 * MIN, 0.9, 0.0) < refresh_delay(15 * MIN, 0.0));
    let short = Duration::from_secs(600);
    assert_eq!(
        first_refresh_delay(short, 0.9, 0.0),
        refresh_delay(short, 0.0)
    );
}

#[test]
fn kept_credentials_are_served_only_past_the_lead_and_refreshed_by_it() {
    // 1 h sessions: the lead is 30 minutes.
    assert_eq!(restored_refresh_delay(30 * MIN, HOUR, MIN), None);
    assert_eq!(
        restored_refresh_delay(31 * MIN, HOUR, Duration::ZERO),
        Some(Duration::ZERO)
    );
    assert_eq!(
        restored_refresh_delay(50 * MIN, HOUR, 5 * MIN),
        Some(5 * MIN)
    );
    assert_eq!(
        restored_refresh_delay(50 * MIN, HOUR, 2 * HOUR),
        Some(20 * MIN)
    );
}

#[test]
fn the_next_refresh_counts_the_elapsed_life_and_is_never_at_once() {
    assert_eq!(
        next_refresh_delay(HOUR, Duration::ZERO, false, 0.9, 0.0),
        30 * MIN
    );
    assert_eq!(
        next_refresh_delay(HOUR, 10 * MIN, false, 0.9, 0.0),
        20 * MIN
    );
    assert_eq!(
        next_refresh_delay(12 * HOUR, Duration::ZERO, true, 0.5, 0.0),
        first_refresh_delay(12 * HOUR, 0.5, 0.0)
    );
    let one_second = Duration::from_secs(1);
    assert_eq!(
        next_refresh_delay(one_second, one_second, false, 0.0, 0.0),
        MIN_REFRESH_INTERVAL
    );
}

#[test]
fn a_machine_id_gives_a_stable_place_and_ids_spread_evenly() {
    let a = fleet_draw("4f1a0c2b9d8e4e6f8a7b6c5d4e3f2a1b\n");
    assert_eq!(a, fleet_draw("4f1a0c2b9d8e4e6f8a7b6c5d4e3f2a1b"));
    assert!((0.0..1.0).contains(&a));
    // 1,000 ids fill each tenth of [0, 1) with 100 ± 40.
    let mut tenths = [0u32; 10];
    for i in 0..1000 {
        tenths[(fleet_draw(&format!("{i:032x}")) * 10.0) as usize] += 1;
    }
    assert!(tenths.iter().all(|n| (60..=140).contains(n)), "{tenths:?}");
}

#[test]
fn the_budget_allows_a_burst_then_one_call_per_interval() {
    let s = Duration::from_secs;
    let mut b = CallBudget::new(3, s(12));
    let t0 = s(1000);
    for _ in 0..3 {
        assert_eq!(b.take(t0), Ok(()));
    }
    assert_eq!(b.take(t0), Err(s(12)));
    assert_eq!(b.take(t0 + s(5)), Err(s(7)));
    assert_eq!(b.take(t0 + s(12)), Ok(()));
    assert_eq!(b.take(t0 + s(12)), Err(s(12)));
    // A long quiet spell refills the burst, and no more than it.
    let later = t0 + s(3600);
    for _ in 0..3 {
        assert_eq!(b.take(later), Ok(()));
    }
    assert!(b.take(later).is_err());
    // Whatever the caller does, at most burst + elapsed / interval calls.
    let mut b = CallBudget::default();
    let mut calls = 0;
    for ms in (0..600_000u64).step_by(100) {
        if b.take(t0 + Duration::from_millis(ms)).is_ok() {
            calls += 1;
        }
    }
    assert_eq!(calls, BUDGET_BURST + 600 / 12 - 1);
}
