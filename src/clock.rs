//! Time sources, injected so that tests can move them.
//!
//! Two clocks matter to an IMDS endpoint:
//! - the wall clock, against which STS expiry times are measured, and which
//!   jumps when a laptop resumes from suspend or NTP steps the clock;
//! - the boot clock (`CLOCK_BOOTTIME`), which keeps counting through suspend
//!   and never goes backwards, against which session tokens expire.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The wall clock.
    fn now(&self) -> SystemTime;
    /// Time since boot, counting suspend (`CLOCK_BOOTTIME`).
    fn boot_time(&self) -> Duration;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real clocks of the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn boot_time(&self) -> Duration {
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
            Ok(ts) => Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
            // CLOCK_BOOTTIME exists on every Linux since 2.6.39; fall back to
            // the monotonic clock rather than panic.
            Err(_) => {
                let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                    .expect("CLOCK_MONOTONIC is always available");
                Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32)
            }
        }
    }
}

/// A clock for tests: it follows tokio's (possibly paused) time from a fixed
/// start, and its wall clock can additionally be jumped forwards or back.
#[derive(Debug)]
pub struct ManualClock {
    wall_start: SystemTime,
    started: tokio::time::Instant,
    wall_offset_ms: AtomicI64,
    boot_offset_ms: AtomicI64,
}

impl ManualClock {
    /// A clock whose wall time starts at `wall_start` now.
    pub fn new(wall_start: SystemTime) -> Arc<Self> {
        Arc::new(ManualClock {
            wall_start,
            started: tokio::time::Instant::now(),
            wall_offset_ms: AtomicI64::new(0),
            boot_offset_ms: AtomicI64::new(0),
        })
    }

    /// Moves the wall clock by `ms` milliseconds (negative: backwards), as an
    /// NTP step would. The boot clock is not affected.
    pub fn jump_wall_ms(&self, ms: i64) {
        self.wall_offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Simulates a suspend of `d`: both the wall and the boot clock move,
    /// but tokio's monotonic time (which stops during suspend) does not.
    pub fn suspend_for(&self, d: Duration) {
        let ms = d.as_millis() as i64;
        self.wall_offset_ms.fetch_add(ms, Ordering::SeqCst);
        self.boot_offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        let ms =
            self.started.elapsed().as_millis() as i64 + self.wall_offset_ms.load(Ordering::SeqCst);
        if ms >= 0 {
            self.wall_start + Duration::from_millis(ms as u64)
        } else {
            self.wall_start - Duration::from_millis(ms.unsigned_abs())
        }
    }

    fn boot_time(&self) -> Duration {
        // Start well after boot so that subtraction in tests never underflows.
        let ms = 1_000_000
            + self.started.elapsed().as_millis() as i64
            + self.boot_offset_ms.load(Ordering::SeqCst);
        Duration::from_millis(ms.max(0) as u64)
    }
}

/// Whole seconds since the Unix epoch, saturating at 0 for earlier times.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The time `s` whole seconds after the Unix epoch.
pub fn from_unix_seconds(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// `2026-11-23T00:00:00Z`: whole seconds, UTC, `Z` suffix, the shape every
/// SDK's IMDS credentials parser accepts.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_whole_seconds_with_z() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_392_000_750);
        assert_eq!(rfc3339_seconds(t), "2026-11-23T00:00:00Z");
    }

    #[tokio::test(start_paused = true)]
    async fn manual_clock_follows_tokio_time_and_jumps() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = ManualClock::new(start);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(10));
        clock.jump_wall_ms(-3_600_000);
        assert_eq!(clock.now(), start - Duration::from_secs(3590));
        let boot = clock.boot_time();
        clock.suspend_for(Duration::from_secs(60));
        assert_eq!(clock.boot_time(), boot + Duration::from_secs(60));
        assert_eq!(clock.now(), start - Duration::from_secs(3530));
    }

    #[test]
    fn system_boot_clock_is_monotonic() {
        let a = SystemClock.boot_time();
        let b = SystemClock.boot_time();
        assert!(b >= a);
    }
}
