//! Millisecond time newtypes. The core never reads a clock: callers pass `now` in.

use core::ops::{Add, Sub};
use serde::{Deserialize, Serialize};

/// A point on a monotonic clock, in milliseconds since an arbitrary origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

/// A span of time in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Duration(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    /// Time elapsed since `earlier`; zero if `earlier` is in the future (clocks never run back
    /// in the core's view, so a caller bug cannot turn into a huge age).
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

/// An `Option<Instant>` in 8 bytes instead of 16: a spare of 31 primaries keeps two per
/// primary in a controller's 8 KiB of RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stamp(u64);

impl Stamp {
    pub const NEVER: Stamp = Stamp(0);
    pub const fn at(t: Instant) -> Stamp {
        // 0 means never: every instant is stored one up (u64::MAX ms is never reached).
        Stamp(t.0.saturating_add(1))
    }
    pub const fn get(self) -> Option<Instant> {
        match self.0 {
            0 => None,
            n => Some(Instant(n - 1)),
        }
    }
}

impl From<Option<Instant>> for Stamp {
    fn from(t: Option<Instant>) -> Stamp {
        t.map_or(Stamp::NEVER, Stamp::at)
    }
}

impl Duration {
    pub const ZERO: Duration = Duration(0);
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }
    pub const fn from_secs(s: u64) -> Self {
        Duration(s * 1000)
    }
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    pub const fn saturating_mul(self, k: u64) -> Self {
        Duration(self.0.saturating_mul(k))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
}

impl Add for Duration {
    type Output = Duration;
    // Not inlined: a saturating 64-bit add at every budget sum costs a controller more flash
    // than the call.
    #[inline(never)]
    fn add(self, d: Duration) -> Duration {
        Duration(self.0.saturating_add(d.0))
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, d: Duration) -> Duration {
        Duration(self.0.saturating_sub(d.0))
    }
}

impl core::fmt::Display for Duration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ms", self.0)
    }
}
