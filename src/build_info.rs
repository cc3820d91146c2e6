//! What this build is, as shown by `--version` and carried in heartbeats.

use rearguard_shared::integrity::crc32c;
use rearguard_shared::PROTOCOL_VERSION;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("REARGUARD_COMMIT");

pub fn long_version() -> String {
    format!("{VERSION} (protocol {PROTOCOL_VERSION}, commit {COMMIT})")
}

/// 32-bit stamp of (version, protocol, commit), carried in every heartbeat.
pub fn stamp() -> u32 {
    crc32c(long_version().as_bytes())
}
