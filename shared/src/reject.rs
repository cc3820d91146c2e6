//! Why a frame was not accepted: one reason per check of the envelope ([`crate::frame`]),
//! of the record (cluster, node) and of liveness (replay, stale epoch). Listeners and the
//! pair election count each reason separately.

use crate::text::Text;
use crate::PROTOCOL_VERSION;

/// Why a frame was not accepted. Every variant is counted separately by listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// All zeros: the slot or buffer was never written.
    NeverWritten,
    /// Shorter than its own header says, or longer than any frame can be.
    Truncated,
    BadMagic,
    BadCrc,
    UnsupportedVersion {
        found: u8,
    },
    /// A key is configured but the frame carries no MAC.
    MissingMac,
    BadMac,
    /// CRC and MAC were fine but the body does not decode (a sender bug, not noise).
    Malformed,
    WrongCluster {
        found: u32,
    },
    /// From a node other than the one this medium is watching.
    WrongNode {
        found: u8,
    },
    /// Sequence not above the last one seen in this epoch.
    Replay,
    /// Epoch older than the last one seen.
    StaleEpoch,
}

impl Reject {
    /// Number of distinct reasons, for counter arrays.
    pub const COUNT: usize = 12;
    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        match self {
            Reject::NeverWritten => 0,
            Reject::Truncated => 1,
            Reject::BadMagic => 2,
            Reject::BadCrc => 3,
            Reject::UnsupportedVersion { .. } => 4,
            Reject::MissingMac => 5,
            Reject::BadMac => 6,
            Reject::Malformed => 7,
            Reject::WrongCluster { .. } => 8,
            Reject::WrongNode { .. } => 9,
            Reject::Replay => 10,
            Reject::StaleEpoch => 11,
        }
    }
    /// Short name for status screens and JSON.
    pub fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }
    pub const NAMES: [&'static str; Self::COUNT] = [
        "never-written",
        "truncated",
        "bad-magic",
        "bad-crc",
        "unsupported-version",
        "missing-mac",
        "bad-mac",
        "malformed",
        "wrong-cluster",
        "wrong-node",
        "replay",
        "stale-epoch",
    ];
}

impl core::fmt::Display for Reject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reject::NeverWritten => f.write_str("never written (all zeros)"),
            Reject::Truncated => f.write_str("truncated frame"),
            Reject::BadMagic => f.write_str("not a Rearguard heartbeat (bad magic)"),
            Reject::BadCrc => f.write_str("CRC mismatch (torn or corrupt)"),
            Reject::UnsupportedVersion { found } => {
                Text::new(f).s("protocol version ").n(*found).s(", this build speaks ").n(PROTOCOL_VERSION).end()
            }
            Reject::MissingMac => f.write_str("no MAC but a key is configured"),
            Reject::BadMac => f.write_str("MAC does not verify (wrong key or forged)"),
            Reject::Malformed => f.write_str("body does not decode"),
            Reject::WrongCluster { found } => Text::new(f).s("cluster id ").hex8(*found).s(" is not ours").end(),
            Reject::WrongNode { found } => Text::new(f).s("from node ").n(*found).s(", not the watched node").end(),
            Reject::Replay => f.write_str("sequence not increasing (replay or stuck writer)"),
            Reject::StaleEpoch => f.write_str("boot epoch older than one already seen"),
        }
    }
}

impl core::error::Error for Reject {}
