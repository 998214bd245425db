//! A budget for log lines that a caller can cause.
//!
//! A refused request is logged, but a hostile local user can send refused
//! requests in a loop; one line each would flood the journal, which then
//! drops lines, the audit lines among them. Each kind of refusal gets a
//! budget of lines per second; what is over it is counted and the count
//! is reported with the next line that is written.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lines per second each kind of refusal may write.
pub const LINES_PER_SECOND: u32 = 10;

/// The budget of one kind of log line.
#[derive(Debug)]
pub struct LogBudget {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                window: None,
                written: 0,
                suppressed: 0,
            }),
        }
    }
}

impl LogBudget {
    /// `Some(n)`: write the line, and say that `n` like it were left out
    /// since the last one written; `None`: leave it out.
    pub fn take(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if s.window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1))
        {
            s.window = Some(now);
            s.written = 0;
        }
        if s.written >= LINES_PER_SECOND {
            s.suppressed += 1;
            return None;
        }
        s.written += 1;
        Some(std::mem::take(&mut s.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn past_the_budget_lines_are_counted_and_the_count_reported_next_second() {
        let budget = LogBudget::default();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(budget.take(), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(budget.take(), None);
        }
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(budget.take(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(budget.take(), Some(6));
        assert_eq!(budget.take(), Some(0));
    }
}
