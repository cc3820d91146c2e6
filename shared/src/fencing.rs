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

use crate::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
        let b = &self.budget;
        write!(
            f,
            "the secondary's timeout ({}) must be at least 2 × (interval {} + write_deadline {} + fence time {}) = {}, \
             or the secondary could boot while this primary is still running; \
             raise the timeout to {} or more (`rearguard disk init --timeout-ms`), or lower interval, write_deadline or the watchdog timeout",
            self.timeout, b.interval, b.write_deadline, b.fence_time, self.min_timeout, self.min_timeout.as_millis()
        )
    }
}

impl FencingBudget {
    /// Latest moment, after the last heartbeat the secondary saw, at which the primary is fenced.
    pub fn worst_case_fenced_after(&self) -> Duration {
        self.interval + self.write_deadline + self.fence_time
    }

    pub fn min_timeout(&self) -> Duration {
        self.worst_case_fenced_after().saturating_mul(2)
    }

    pub fn check(&self, timeout: Duration) -> Result<(), FencingViolation> {
        let min_timeout = self.min_timeout();
        if timeout >= min_timeout {
            Ok(())
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
        assert!(b.check(Duration::from_millis(1000)).is_ok());
        let e = b.check(Duration::from_millis(999)).unwrap_err();
        assert_eq!(e.min_timeout, Duration::from_millis(1000));
    }
}
