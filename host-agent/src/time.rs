//! The one place the Linux side reads a clock: CLOCK_MONOTONIC in milliseconds, as the
//! shared core's `Instant`.

use rearguard_shared::Instant;

pub fn now() -> Instant {
    let ts =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    Instant::from_millis(ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000)
}

/// Seconds since the Unix epoch; used to seed boot epochs so they grow across restarts even
/// when the previous epoch cannot be read back.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
