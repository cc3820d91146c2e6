//! The heartbeat record. It travels in the common envelope of [`crate::frame`] (magic `RG`):
//! version, optional truncated HMAC-SHA256 tag, CRC-32C.

use crate::frame;
use crate::integrity::Key;
use crate::time::Duration;
use crate::PROTOCOL_VERSION;
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 2] = *b"RG";
/// Largest postcard body (the record's varints at their widest fit in 60 bytes).
pub const MAX_BODY: usize = 64;
/// Largest frame on any medium.
pub const MAX_FRAME: usize = frame::max_frame(MAX_BODY);

/// What a node is configured to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Runs the service and writes heartbeats.
    Primary,
    /// Watches the primary and takes over when it dies.
    Secondary,
}

/// What a node is doing right now, as it reports itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    Starting,
    /// Serving (primary) or holding the VIP (pair).
    Active,
    Standby,
    /// Shutting down cleanly: the peer may take over at once.
    Leaving,
    /// Fenced itself and will not serve again without an operator.
    Fenced,
}

/// Health flags a node reports about itself; bit set = problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthFlags(pub u16);

impl HealthFlags {
    pub const OK: HealthFlags = HealthFlags(0);
    pub const LINK_DOWN: u16 = 1 << 0;
    pub const TARGET_UNREACHABLE: u16 = 1 << 1;
    pub const PROCESS_DOWN: u16 = 1 << 2;
    pub const SENSOR_WARNING: u16 = 1 << 3;
    pub const DISK_SLOW: u16 = 1 << 4;
    pub fn is_healthy(self) -> bool {
        self.0 == 0
    }
}

/// One heartbeat. The sequence strictly increases within a boot epoch; the epoch increases
/// every time the sender starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub cluster_id: u32,
    pub node_id: u8,
    pub role: Role,
    pub boot_epoch: u32,
    pub sequence: u64,
    pub uptime: Duration,
    pub state: NodeState,
    pub health: HealthFlags,
    /// Digest of the sender's effective config, so peers can refuse a mismatched policy.
    pub config_digest: u32,
    /// Digest of the sender's build (version + protocol + commit).
    pub build_stamp: u32,
}

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
                write!(f, "protocol version {found}, this build speaks {PROTOCOL_VERSION}")
            }
            Reject::MissingMac => f.write_str("no MAC but a key is configured"),
            Reject::BadMac => f.write_str("MAC does not verify (wrong key or forged)"),
            Reject::Malformed => f.write_str("body does not decode"),
            Reject::WrongCluster { found } => write!(f, "cluster id {found:#010x} is not ours"),
            Reject::WrongNode { found } => write!(f, "from node {found}, not the watched node"),
            Reject::Replay => f.write_str("sequence not increasing (replay or stuck writer)"),
            Reject::StaleEpoch => f.write_str("boot epoch older than one already seen"),
        }
    }
}

/// What a receiver checks a frame against.
#[derive(Clone, Copy, Debug)]
pub struct Verifier<'a> {
    pub cluster_id: u32,
    /// When set, frames without a valid MAC are rejected.
    pub key: Option<&'a Key>,
}

/// Encodes `hb` into `buf`, returning the frame length.
///
/// # Panics
/// If `buf` is shorter than [`MAX_FRAME`]; callers size buffers with that constant.
pub fn encode(hb: &Heartbeat, key: Option<&Key>, buf: &mut [u8]) -> usize {
    frame::seal(MAGIC, MAX_BODY, hb, key, buf)
}

/// Decodes and verifies one heartbeat frame (see [`crate::frame`] for the checks and order).
pub fn decode(bytes: &[u8], v: &Verifier<'_>) -> Result<Heartbeat, Reject> {
    let hb: Heartbeat = frame::open(MAGIC, MAX_BODY, bytes, v.key)?;
    if hb.cluster_id != v.cluster_id {
        return Err(Reject::WrongCluster { found: hb.cluster_id });
    }
    Ok(hb)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn sample(seq: u64) -> Heartbeat {
        Heartbeat {
            cluster_id: 0xC0FFEE,
            node_id: 0,
            role: Role::Primary,
            boot_epoch: 3,
            sequence: seq,
            uptime: Duration::from_millis(seq.wrapping_mul(100)),
            state: NodeState::Active,
            health: HealthFlags::OK,
            config_digest: 0x1234_5678,
            build_stamp: 0xABCD_EF01,
        }
    }

    fn v(key: Option<&Key>) -> Verifier<'_> {
        Verifier { cluster_id: 0xC0FFEE, key }
    }

    #[test]
    fn round_trip_with_and_without_mac() {
        let key = Key::new(&[7u8; 32]).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(&sample(9), None, &mut buf);
        assert_eq!(decode(&buf[..n], &v(None)), Ok(sample(9)));
        let n = encode(&sample(9), Some(&key), &mut buf);
        assert_eq!(decode(&buf[..n], &v(Some(&key))), Ok(sample(9)));
    }

    #[test]
    fn widest_record_fits() {
        let mut hb = sample(u64::MAX);
        hb.cluster_id = u32::MAX;
        hb.boot_epoch = u32::MAX;
        hb.uptime = Duration::from_millis(u64::MAX);
        hb.health = HealthFlags(u16::MAX);
        hb.config_digest = u32::MAX;
        hb.build_stamp = u32::MAX;
        let key = Key::new(&[7u8; 32]).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(&hb, Some(&key), &mut buf);
        assert!(n <= MAX_FRAME);
        let wide = Verifier { cluster_id: u32::MAX, key: Some(&key) };
        assert_eq!(decode(&buf[..n], &wide), Ok(hb));
    }

    #[test]
    fn each_kind_of_bad_frame_is_named() {
        let key = Key::new(&[7u8; 32]).unwrap();
        let other = Key::new(&[8u8; 32]).unwrap();
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(decode(&buf, &v(None)), Err(Reject::NeverWritten));
        let n = encode(&sample(1), None, &mut buf);
        assert_eq!(decode(&buf[..n], &v(Some(&key))), Err(Reject::MissingMac));
        assert_eq!(decode(&buf[..3], &v(None)), Err(Reject::Truncated));
        let mut bad = buf;
        bad[n - 6] ^= 0x40;
        assert_eq!(decode(&bad[..n], &v(None)), Err(Reject::BadCrc));
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(decode(&bad[..n], &v(None)), Err(Reject::BadMagic));
        let n = encode(&sample(1), Some(&other), &mut buf);
        assert_eq!(decode(&buf[..n], &v(Some(&key))), Err(Reject::BadMac));
        let mut hb = sample(1);
        hb.cluster_id = 42;
        let n = encode(&hb, None, &mut buf);
        assert_eq!(decode(&buf[..n], &v(None)), Err(Reject::WrongCluster { found: 42 }));
    }

    #[test]
    fn a_torn_frame_is_caught_by_the_crc() {
        // Half of the new frame over half of the old one, as a torn sector write leaves it.
        let mut old = [0u8; MAX_FRAME];
        let mut new = [0u8; MAX_FRAME];
        let n = encode(&sample(1000), None, &mut old);
        encode(&sample(1001), None, &mut new);
        let mut torn = old;
        torn[..n / 2].copy_from_slice(&new[..n / 2]);
        assert_eq!(decode(&torn[..n], &v(None)), Err(Reject::BadCrc));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let key = Key::new(&[7u8; 32]).unwrap();
            let _ = decode(&bytes, &v(None));
            let _ = decode(&bytes, &v(Some(&key)));
        }

        #[test]
        fn any_single_bit_flip_is_rejected(seq in any::<u64>(), bit in 0usize..(8 * 60)) {
            let mut buf = [0u8; MAX_FRAME];
            let n = encode(&sample(seq), None, &mut buf);
            let bit = bit % (8 * n);
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&buf[..n], &v(None)).is_err());
        }
    }
}

impl core::error::Error for Reject {}
