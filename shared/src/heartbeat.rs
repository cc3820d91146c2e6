//! The heartbeat record. It travels in the common envelope of [`crate::frame`] (magic `RG`):
//! version, optional truncated HMAC-SHA256 tag, CRC-32C.

use crate::fencing::FencingBudget;
use crate::frame;
use crate::integrity::Key;
use crate::reject::Reject;
use crate::time::Duration;
use crate::wire::Wire;
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 2] = *b"RG";
/// Largest body (the record's varints at their widest fit in 100 bytes).
pub const MAX_BODY: usize = 104;
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

crate::wire::wire_enum!(Role { Primary, Secondary });
crate::wire::wire_enum!(NodeState { Starting, Active, Standby, Leaving, Fenced });

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
    /// The sender's fencing budget, so a listener can check its timeout against it at every
    /// start and save ([`FencingBudget::check`]); [`FencingBudget::NONE`] from a node that
    /// does not fence itself (a pair node).
    pub budget: FencingBudget,
    /// Test messages (`rearguard disk message NODE test`) acknowledged since the sender started.
    pub test_acks: u32,
    /// Sequence of the last test message acknowledged (0: none yet).
    pub last_test: u32,
}

crate::wire::wire_struct!(HealthFlags { 0 });
crate::wire::wire_struct!(Heartbeat {
    cluster_id,
    node_id,
    role,
    boot_epoch,
    sequence,
    uptime,
    state,
    health,
    config_digest,
    build_stamp,
    budget,
    test_acks,
    last_test,
});

/// What a receiver checks a frame against.
#[derive(Clone, Copy, Debug)]
pub struct Verifier<'a> {
    pub cluster_id: u32,
    /// When set, frames without a valid MAC are rejected.
    pub key: Option<&'a Key>,
}

impl Verifier<'_> {
    /// Opens a frame of any record kind (see [`crate::frame`] for the checks and their
    /// order), then refuses a record from another cluster. `heartbeat` finds the record's
    /// heartbeat, which every record carries and which names its cluster.
    pub fn open<T: Wire>(
        &self,
        magic: [u8; 2],
        max_body: usize,
        bytes: &[u8],
        heartbeat: fn(&T) -> &Heartbeat,
    ) -> Result<T, Reject> {
        let record: T = frame::open(magic, max_body, bytes, self.key)?;
        self.check_cluster(heartbeat(&record).cluster_id)?;
        Ok(record)
    }

    /// The one cluster-id check: records on every medium, and the shared disk's header.
    pub fn check_cluster(&self, found: u32) -> Result<(), Reject> {
        if found == self.cluster_id {
            Ok(())
        } else {
            Err(Reject::WrongCluster { found })
        }
    }
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
    v.open(MAGIC, MAX_BODY, bytes, |hb| hb)
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
            budget: FencingBudget::NONE,
            test_acks: 0,
            last_test: 0,
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
