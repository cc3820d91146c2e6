//! The fencing bound: the primary must be fenced before the secondary can release.
//!
//! Worst case, the secondary saw the primary's last heartbeat the instant it landed (at
//! `t0`). The primary's next write starts at `t0 + interval`; if it hangs, the primary
//! notices at `t0 + interval + write_deadline` and is fenced `fence_time` later. The
//! secondary releases no earlier than `t0 + timeout`. Like SBD's `msgwait ≥ 2 × watchdog
//! timeout`, we demand a factor of two over that worst case, for scheduling and clock slack:
//!
//! ```text
//! timeout ≥ 2 × (interval + write_deadline + fence_time)
//! ```

use crate::packed;
use crate::text::Text;
use crate::time::Duration;
use serde::{Deserialize, Serialize};

/// What a primary needs between its last heartbeat and being fenced. Every heartbeat carries
/// it, so a listener checks its own timeout against the number the agent really runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencingBudget {
    /// How often the primary writes its heartbeat.
    pub interval: Duration,
    /// How long one heartbeat write may take before the primary fences itself.
    pub write_deadline: Duration,
    /// How long fencing takes once triggered (watchdog timeout, or a stand-in's bound).
    pub fence_time: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FencingViolation {
    pub budget: FencingBudget,
    pub timeout: Duration,
    pub min_timeout: Duration,
}

impl core::fmt::Display for FencingViolation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.numbers(&mut Text::new(f))
            .s(packed!(", or the secondary could boot while this primary is still running; raise the timeout to "))
            .n(self.min_timeout.as_millis())
            .s(packed!(" or more (`rearguard disk init --timeout-ms`), or lower interval, write_deadline or the watchdog timeout"))
            .end()
    }
}

impl FencingViolation {
    /// `the secondary's timeout (…) must be at least 2 × (interval … + write_deadline … +
    /// fence time …) = …`: the numbers, which every place that refuses a timeout prints.
    pub fn numbers<'t, 'o>(&self, t: &'t mut Text<'o>) -> &'t mut Text<'o> {
        let t = t.s(packed!("the secondary's timeout (")).ms(self.timeout).s(packed!(") must be at least 2 × ("));
        self.budget.numbers(t).s(") = ").ms(self.min_timeout)
    }
}

impl FencingBudget {
    /// `interval A + write_deadline B + fence time C`: how every place prints a budget.
    pub fn numbers<'t, 'o>(&self, t: &'t mut Text<'o>) -> &'t mut Text<'o> {
        t.s(packed!("interval "))
            .ms(self.interval)
            .s(packed!(" + write_deadline "))
            .ms(self.write_deadline)
            .s(packed!(" + fence time "))
            .ms(self.fence_time)
    }

    /// No budget: the sender does not fence itself (pair nodes), or is too old to say.
    pub const NONE: FencingBudget =
        FencingBudget { interval: Duration::ZERO, write_deadline: Duration::ZERO, fence_time: Duration::ZERO };

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Latest moment, after the last heartbeat the secondary saw, at which the primary is fenced.
    pub fn worst_case_fenced_after(&self) -> Duration {
        self.interval + self.write_deadline + self.fence_time
    }

    pub fn min_timeout(&self) -> Duration {
        self.worst_case_fenced_after().saturating_mul(2)
    }

    /// `Ok(margin)`: how much longer than the bound `timeout` is.
    pub fn check(&self, timeout: Duration) -> Result<Duration, FencingViolation> {
        let min_timeout = self.min_timeout();
        if timeout >= min_timeout {
            Ok(timeout - min_timeout)
        } else {
            Err(FencingViolation { budget: *self, timeout, min_timeout })
        }
    }
}

impl core::error::Error for FencingViolation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_twice_the_worst_case() {
        let b = FencingBudget {
            interval: Duration::from_millis(100),
            write_deadline: Duration::from_millis(300),
            fence_time: Duration::from_millis(100),
        };
        assert_eq!(b.min_timeout(), Duration::from_millis(1000));
        assert_eq!(b.check(Duration::from_millis(1000)), Ok(Duration::ZERO));
        assert_eq!(b.check(Duration::from_millis(1250)), Ok(Duration::from_millis(250)));
        let e = b.check(Duration::from_millis(999)).unwrap_err();
        assert_eq!(e.min_timeout, Duration::from_millis(1000));
        let s = std::format!("{e}");
        assert!(
            s.starts_with("the secondary's timeout (999 ms) must be at least 2 × (interval 100 ms + write_deadline 300 ms + fence time 100 ms) = 1000 ms, "),
            "{s}"
        );
        assert!(s.contains("raise the timeout to 1000 or more"), "{s}");
        assert_eq!(FencingBudget::NONE.check(Duration::ZERO), Ok(Duration::ZERO));
    }
}
