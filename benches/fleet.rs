//! Fleet model: how many AssumeRole calls per second a fleet makes when
//! every host uses hostrole's real refresh schedule (`refresh_delay`).
//!
//! Assumptions, printed with the figures: N hosts started uniformly within
//! one minute, one-hour sessions, STS always answers, simulated for 24 h.
//! Compared against STS's default quota of 600 requests per second per
//! account and region.
//!
//! `cargo bench --bench fleet` runs 10,000 hosts; run without `--bench` (as
//! `cargo test --all-targets` does) it is a quick check on 1,000 hosts.

use std::time::Duration;

use hostrole::credentials::refresh::refresh_delay;
use rand::{Rng, SeedableRng};

const SESSION: Duration = Duration::from_secs(3600);
const SIMULATED_S: u64 = 24 * 3600;
const STS_QUOTA_PER_S: u64 = 600;

struct Outcome {
    start_peak: u64,
    steady_peak: u64,
    total: u64,
}

fn simulate(hosts: usize, start_window_s: f64, jitter: bool, seed: u64) -> Outcome {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut per_second = vec![0u64; SIMULATED_S as usize + 1];
    for _ in 0..hosts {
        let mut t = rng.gen_range(0.0..start_window_s);
        while (t as u64) < SIMULATED_S {
            per_second[t as usize] += 1;
            let draw = if jitter { rng.gen::<f64>() } else { 0.0 };
            t += refresh_delay(SESSION, draw).as_secs_f64();
        }
    }
    let start_peak = *per_second[..3600].iter().max().unwrap();
    let steady_peak = *per_second[6 * 3600..].iter().max().unwrap();
    Outcome {
        start_peak,
        steady_peak,
        total: per_second.iter().sum(),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let hosts = if full { 10_000 } else { 1_000 };
    println!("fleet model: {hosts} hosts started within 60 s, 1 h sessions, 24 h simulated");
    println!(
        "assumption: STS default quota {STS_QUOTA_PER_S} AssumeRole calls/s per account and region"
    );
    let with = simulate(hosts, 60.0, true, 7);
    let without = simulate(hosts, 60.0, false, 7);
    println!("| schedule | peak calls/s, first hour | peak calls/s, after 6 h | calls per host per day |");
    println!("|---|---|---|---|");
    for (name, o) in [("hostrole (jitter)", &with), ("no jitter", &without)] {
        println!(
            "| {name} | {} | {} | {:.1} |",
            o.start_peak,
            o.steady_peak,
            o.total as f64 / hosts as f64
        );
    }
    println!(
        "steady-state peak is {:.1}% of the quota with jitter, {:.1}% without",
        with.steady_peak as f64 * 100.0 / STS_QUOTA_PER_S as f64,
        without.steady_peak as f64 * 100.0 / STS_QUOTA_PER_S as f64
    );
    // Sanity: jitter never makes the steady state burstier, and each host
    // refreshes 48 to 58 times a day (every 25 to 30 minutes).
    assert!(with.steady_peak <= without.steady_peak);
    let per_host = with.total as f64 / hosts as f64;
    assert!((48.0..=58.0).contains(&per_host), "{per_host}");
}
