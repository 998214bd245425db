//! Fleet model: how many credential calls per second a fleet makes when
//! every host uses hostrole's real refresh schedule (`refresh_delay`), set
//! against the two quotas a fleet meets: STS AssumeRole (600 calls/s per
//! account and region by default) and IAM Roles Anywhere CreateSession
//! (10 calls/s per account and region by default).
//!
//! Assumptions, printed with the figures: N hosts cold-booted uniformly
//! within one minute, the endpoint always answers, sessions of 1 h and
//! 12 h, simulated for four sessions (at least 24 h); the steady state is
//! read after two sessions (at least 6 h), once the boot wave has spread.
//!
//! `cargo bench --bench fleet` runs 10,000 hosts; run without `--bench` (as
//! `cargo test --all-targets` does) it is a quick check on 1,000 hosts.

use std::time::Duration;

use hostrole::credentials::refresh::refresh_delay;
use rand::{Rng, SeedableRng};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const BOOT_WINDOW_S: f64 = 60.0;
const STS_QUOTA_PER_S: u64 = 600;
const ROLES_ANYWHERE_QUOTA_PER_S: u64 = 10;

struct Outcome {
    boot_peak: u64,
    steady_peak: u64,
    calls_per_host_per_day: f64,
}

fn simulate(hosts: usize, session: Duration, jitter: bool, seed: u64) -> Outcome {
    let span = DAY.max(4 * session.as_secs());
    let steady_from = (6 * HOUR).max(2 * session.as_secs());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut per_second = vec![0u64; span as usize + 1];
    for _ in 0..hosts {
        let mut t = rng.gen_range(0.0..BOOT_WINDOW_S);
        while (t as u64) < span {
            per_second[t as usize] += 1;
            let draw = if jitter { rng.gen::<f64>() } else { 0.0 };
            t += refresh_delay(session, draw).as_secs_f64();
        }
    }
    let total: u64 = per_second.iter().sum();
    Outcome {
        boot_peak: *per_second[..BOOT_WINDOW_S as usize].iter().max().unwrap(),
        steady_peak: *per_second[steady_from as usize..].iter().max().unwrap(),
        calls_per_host_per_day: total as f64 / hosts as f64 / (span as f64 / DAY as f64),
    }
}

fn percent(calls: u64, quota: u64) -> String {
    format!("{:.0}%", calls as f64 * 100.0 / quota as f64)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let hosts = if full { 10_000 } else { 1_000 };
    println!(
        "fleet model: {hosts} hosts cold-booted within 60 s; simulated for 4 sessions (at least 24 h), \
         steady state read after 2 sessions (at least 6 h)"
    );
    println!();
    println!(
        "quotas (defaults, per account and region): STS AssumeRole {STS_QUOTA_PER_S}/s, \
         Roles Anywhere CreateSession {ROLES_ANYWHERE_QUOTA_PER_S}/s"
    );
    println!();
    println!(
        "| session | schedule | peak calls/s, cold boot | peak calls/s, steady | calls per host per day \
         | steady peak, % of STS quota | steady peak, % of Roles Anywhere quota |"
    );
    println!("|---|---|---|---|---|---|---|");
    let hour = Duration::from_secs(HOUR);
    let mut rows = Vec::new();
    for (session, label) in [(hour, "1 h"), (12 * hour, "12 h")] {
        for (jitter, name) in [(true, "hostrole (jitter)"), (false, "no jitter")] {
            let o = simulate(hosts, session, jitter, 7);
            println!(
                "| {label} | {name} | {} | {} | {:.1} | {} | {} |",
                o.boot_peak,
                o.steady_peak,
                o.calls_per_host_per_day,
                percent(o.steady_peak, STS_QUOTA_PER_S),
                percent(o.steady_peak, ROLES_ANYWHERE_QUOTA_PER_S),
            );
            rows.push((session, jitter, o));
        }
    }
    // Sanity: jitter never makes the steady state burstier; a host refreshes
    // every 25 to 30 minutes with 1 h sessions (48 to 58 a day) and every
    // 5 h 55 min to 6 h with 12 h sessions (4 a day, plus the boot's call
    // spread over the 2 days simulated: at most 4.6).
    for pair in rows.chunks(2) {
        assert!(pair[0].2.steady_peak <= pair[1].2.steady_peak);
    }
    let per_day = |s: Duration| {
        rows.iter()
            .find(|r| r.0 == s && r.1)
            .unwrap()
            .2
            .calls_per_host_per_day
    };
    assert!((48.0..=58.0).contains(&per_day(hour)), "{}", per_day(hour));
    assert!(
        (4.0..=4.6).contains(&per_day(12 * hour)),
        "{}",
        per_day(12 * hour)
    );
}
