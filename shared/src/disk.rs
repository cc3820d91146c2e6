//! The shared-disk heartbeat area.
//!
//! ```text
//! block 0                      header (magic, layout, sector size, slots, cluster, timeouts, UUID,
//!                              [layout 2: the primaries' bit set], CRC)
//! block 1 ..= N                one heartbeat slot per node   (node i → block 1 + i)
//! block N+1 ..= 2N             one mailbox per node          (node i → block 1 + N + i)
//! ```
//!
//! Every structure is one 4096-byte block at a 4096-byte offset, so the area works on 512e
//! and 4Kn disks alike, and each update is a single aligned block write. The meaningful bytes
//! of a block sit in its first 512-byte sector, so even a disk that tears a 4 KiB write at
//! 512-byte boundaries cannot tear a record without the CRC seeing it.
//!
//! Every slot has a role: *primary* (runs the service, heartbeats) or *spare* (a listener
//! that takes over a dead primary's boot). Layout 1 — the only one before N+1 — has no
//! role field and means "slot 0 is the primary, every other slot a spare"; layout 2 adds the
//! primaries as a 32-bit set. An area whose roles are layout 1's is still written as
//! layout 1, so a two-node area made by this build is read by older builds (and by the
//! flashed firmware) unchanged; only an area with other roles needs a reader that knows 2.

use crate::integrity::crc32c;
use crate::packed;
use crate::text::Text;
use crate::time::Duration;

pub const BLOCK: usize = 4096;
/// The first sector of every block holds all of its meaningful bytes: a reader may read
/// just this much (an 8 KiB controller cannot spare 4 KiB for a block buffer), and a writer
/// may write just this much where the device allows it.
pub const RECORD_SECTOR: usize = 512;
pub const HEADER_MAGIC: [u8; 8] = *b"RGUARD\x00\x01";
/// The newest layout this build reads and writes (it also reads and writes layout 1).
pub const LAYOUT_VERSION: u16 = 2;
pub const MAX_SLOTS: u8 = 32;
const HEADER_LEN: usize = 8 + 2 + 2 + 1 + 4 + 4 + 4 + 16;
/// Layout 2 appends the primaries' set (u32) before the CRC.
const HEADER_V2_LEN: usize = HEADER_LEN + 4;
/// Layout 1's roles: slot 0 is the primary.
const V1_PRIMARIES: u32 = 1;

/// What a slot is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRole {
    Primary,
    Spare,
}

impl SlotRole {
    pub fn name(self) -> &'static str {
        match self {
            SlotRole::Primary => "primary",
            SlotRole::Spare => "spare",
        }
    }
}

/// The header block: what every reader checks before trusting a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskHeader {
    /// Logical sector size of the device the area was created on (512 or 4096); informative.
    pub sector_size: u16,
    pub slot_count: u8,
    pub cluster_id: u32,
    /// The primary's configured heartbeat interval, recorded for `disk dump` and sanity checks.
    pub interval: Duration,
    /// The secondary's release timeout, recorded so the agent can check its fencing bound
    /// against the number the listener will actually use.
    pub timeout: Duration,
    pub uuid: [u8; 16],
    /// The slots whose role is primary, as a bit set (bit i = slot i); every other slot
    /// below `slot_count` is a spare.
    pub primaries: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The block is all zeros: `rearguard disk init` was never run on this device.
    NotInitialised,
    /// Something else lives here (a filesystem, another tool's data).
    NotRearguard,
    UnsupportedLayout {
        found: u16,
    },
    BadCrc,
    /// The header makes no sense (zero or too many slots, zero timeouts).
    Invalid(&'static str),
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::text::Said(self).fmt(f)
    }
}

impl crate::text::Say for HeaderError {
    fn say(&self, t: &mut Text<'_>) {
        match self {
            HeaderError::NotInitialised => {
                t.s(packed!("no Rearguard header (all zeros): initialise it with `rearguard disk init`"))
            }
            HeaderError::NotRearguard => t.s(packed!(
                "not a Rearguard heartbeat area (unknown magic): check the device; `disk init` overwrites it"
            )),
            HeaderError::UnsupportedLayout { found } => t
                .s(packed!("layout version "))
                .n(*found)
                .s(packed!(", this build reads 1 to "))
                .n(LAYOUT_VERSION)
                .s(packed!(": upgrade rearguard")),
            HeaderError::BadCrc => t.s(packed!("header CRC mismatch (corrupt): re-run `rearguard disk init`")),
            HeaderError::Invalid(why) => t.s(packed!("invalid header: ")).s(why),
        };
    }
}

impl DiskHeader {
    /// Bytes the whole area occupies.
    pub fn area_len(&self) -> u64 {
        area_len(self.slot_count)
    }

    /// The role of slot `node` (`None` past the last slot).
    pub fn role(&self, node: u8) -> Option<SlotRole> {
        (node < self.slot_count).then(|| {
            if self.primaries & (1 << node) != 0 {
                SlotRole::Primary
            } else {
                SlotRole::Spare
            }
        })
    }

    /// How many spare slots there are.
    pub fn spare_count(&self) -> u8 {
        self.slot_count - self.primaries.count_ones() as u8
    }

    /// How many spare slots have a lower id than `node`: a spare's place in the tie order.
    pub fn spare_rank(&self, node: u8) -> u8 {
        (0..node.min(self.slot_count)).filter(|&n| self.role(n) == Some(SlotRole::Spare)).count() as u8
    }

    /// Encodes into `block` (a whole block, or at least its [`RECORD_SECTOR`]): as layout 1
    /// when the roles are layout 1's, so older readers keep reading a two-node area.
    pub fn encode(&self, block: &mut [u8]) {
        block.fill(0);
        let v1 = self.primaries == V1_PRIMARIES;
        let mut w = Writer { buf: &mut block[..], at: 0 };
        w.put(&HEADER_MAGIC);
        w.put(&(if v1 { 1u16 } else { 2 }).to_le_bytes());
        w.put(&self.sector_size.to_le_bytes());
        w.put(&[self.slot_count]);
        w.put(&self.cluster_id.to_le_bytes());
        w.put(&(self.interval.as_millis() as u32).to_le_bytes());
        w.put(&(self.timeout.as_millis() as u32).to_le_bytes());
        w.put(&self.uuid);
        let len = if v1 {
            HEADER_LEN
        } else {
            w.put(&self.primaries.to_le_bytes());
            HEADER_V2_LEN
        };
        let crc = crc32c(&block[..len]);
        block[len..len + 4].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(block: &[u8]) -> Result<DiskHeader, HeaderError> {
        if block.len() < HEADER_LEN + 4 {
            return Err(HeaderError::Invalid("shorter than one header"));
        }
        if block[..HEADER_LEN + 4].iter().all(|&b| b == 0) {
            return Err(HeaderError::NotInitialised);
        }
        if block[..8] != HEADER_MAGIC[..] {
            return Err(HeaderError::NotRearguard);
        }
        let layout = u16::from_le_bytes([block[8], block[9]]);
        let len = match layout {
            1 => HEADER_LEN,
            2 if block.len() >= HEADER_V2_LEN + 4 => HEADER_V2_LEN,
            2 => return Err(HeaderError::Invalid("shorter than one header")),
            found => return Err(HeaderError::UnsupportedLayout { found }),
        };
        if le32(&block[len..]) != crc32c(&block[..len]) {
            return Err(HeaderError::BadCrc);
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&block[25..41]);
        let h = DiskHeader {
            sector_size: u16::from_le_bytes([block[10], block[11]]),
            slot_count: block[12],
            cluster_id: le32(&block[13..]),
            interval: Duration::from_millis(le32(&block[17..]) as u64),
            timeout: Duration::from_millis(le32(&block[21..]) as u64),
            uuid,
            primaries: if len == HEADER_LEN { V1_PRIMARIES } else { le32(&block[HEADER_LEN..]) },
        };
        if h.slot_count == 0 || h.slot_count > MAX_SLOTS {
            return Err(HeaderError::Invalid("slot count must be 1..=32"));
        }
        if h.primaries == 0 || h.primaries.checked_shr(h.slot_count as u32).unwrap_or(0) != 0 {
            return Err(HeaderError::Invalid("the primaries must be 1 or more of the slots"));
        }
        if h.timeout == Duration::ZERO || h.interval == Duration::ZERO {
            return Err(HeaderError::Invalid("zero interval or timeout"));
        }
        Ok(h)
    }

    /// Byte offset of node `node`'s heartbeat slot.
    pub fn slot_offset(&self, node: u8) -> Option<u64> {
        (node < self.slot_count).then(|| (1 + node as u64) * BLOCK as u64)
    }

    /// Byte offset of node `node`'s mailbox.
    pub fn mailbox_offset(&self, node: u8) -> Option<u64> {
        (node < self.slot_count).then(|| (1 + self.slot_count as u64 + node as u64) * BLOCK as u64)
    }
}

/// Bytes an area with `slots` slots occupies.
pub const fn area_len(slots: u8) -> u64 {
    (1 + 2 * slots as u64) * BLOCK as u64
}

/// A message left in a node's mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxMessage {
    Empty,
    /// Node `by` took over the service. The mailbox owner must stop, fence, and never
    /// resume until an operator clears the claim.
    TakeoverClaim {
        by: u8,
        primary_epoch: u32,
    },
    /// Spare `by` claims the service and is arbitrating with other spares (see
    /// `rearguard_shared::listener`): to the primary exactly a [`MailboxMessage::TakeoverClaim`]
    /// (stop, fence, never resume); the spare rewrites it as one once it won, just before it
    /// releases. A spare that restarts and finds its own pending claim knows it did not
    /// release, and does not take that primary either (it cannot tell whether its write was
    /// timely); the claim holds the primary for an operator.
    PendingClaim {
        by: u8,
        primary_epoch: u32,
    },
    /// Fence yourself now (an operator or a peer's decision).
    Poison {
        by: u8,
    },
    /// Log this and acknowledge it in your heartbeat (`last_test = seq`); not a claim. A
    /// drill or `rearguard disk message NODE test` proves the mailbox path with it.
    Test {
        by: u8,
        seq: u32,
    },
}

pub const MAILBOX_MAGIC: [u8; 4] = *b"RGMB";
const MAILBOX_LEN: usize = 4 + 1 + 1 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxError {
    BadMagic,
    BadCrc,
    UnknownKind(u8),
}

impl core::fmt::Display for MailboxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MailboxError::BadMagic => f.write_str("mailbox holds something that is not a Rearguard message"),
            MailboxError::BadCrc => f.write_str("mailbox CRC mismatch (torn or corrupt)"),
            MailboxError::UnknownKind(k) => Text::new(f).s(packed!("unknown mailbox message kind ")).n(*k).end(),
        }
    }
}

impl MailboxMessage {
    /// The claim a spare writes for [`crate::listener::Action::ClaimTakeover`] (an epoch never
    /// seen is written as 0).
    pub fn claim(by: u8, primary_epoch: Option<u32>, pending: bool) -> MailboxMessage {
        let primary_epoch = primary_epoch.unwrap_or(0);
        if pending {
            MailboxMessage::PendingClaim { by, primary_epoch }
        } else {
            MailboxMessage::TakeoverClaim { by, primary_epoch }
        }
    }

    /// The spare a takeover claim (settled or pending) names: the primary must not serve.
    pub fn claimant(&self) -> Option<u8> {
        match *self {
            MailboxMessage::TakeoverClaim { by, .. } | MailboxMessage::PendingClaim { by, .. } => Some(by),
            _ => None,
        }
    }

    /// Encodes into `block` (a whole block, or at least its [`RECORD_SECTOR`]).
    pub fn encode(&self, block: &mut [u8]) {
        block.fill(0);
        if *self == MailboxMessage::Empty {
            return; // an empty mailbox is a zeroed block
        }
        let (kind, by, epoch) = match *self {
            MailboxMessage::Empty => unreachable!(),
            MailboxMessage::TakeoverClaim { by, primary_epoch } => (1u8, by, primary_epoch),
            MailboxMessage::Poison { by } => (2u8, by, 0),
            MailboxMessage::Test { by, seq } => (3u8, by, seq),
            MailboxMessage::PendingClaim { by, primary_epoch } => (4u8, by, primary_epoch),
        };
        let mut w = Writer { buf: &mut block[..], at: 0 };
        w.put(&MAILBOX_MAGIC);
        w.put(&[kind, by]);
        w.put(&epoch.to_le_bytes());
        let crc = crc32c(&block[..MAILBOX_LEN]);
        block[MAILBOX_LEN..MAILBOX_LEN + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a mailbox block. A corrupt mailbox is an error, which callers treat as
    /// "assume a claim" on the primary side: failing safe means not serving.
    pub fn decode(block: &[u8]) -> Result<MailboxMessage, MailboxError> {
        let len = MAILBOX_LEN + 4;
        if block.len() < len || block[..len].iter().all(|&b| b == 0) {
            return Ok(MailboxMessage::Empty);
        }
        if block[..4] != MAILBOX_MAGIC {
            return Err(MailboxError::BadMagic);
        }
        if le32(&block[MAILBOX_LEN..]) != crc32c(&block[..MAILBOX_LEN]) {
            return Err(MailboxError::BadCrc);
        }
        let (by, epoch) = (block[5], le32(&block[6..]));
        match block[4] {
            1 => Ok(MailboxMessage::TakeoverClaim { by, primary_epoch: epoch }),
            2 => Ok(MailboxMessage::Poison { by }),
            3 => Ok(MailboxMessage::Test { by, seq: epoch }),
            4 => Ok(MailboxMessage::PendingClaim { by, primary_epoch: epoch }),
            k => Err(MailboxError::UnknownKind(k)),
        }
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// A little-endian u32 at the start of `b` (callers check the length first; a short `b`
/// reads as 0 rather than panicking: one length check, not four bounds checks).
fn le32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

impl core::error::Error for HeaderError {}
impl core::error::Error for MailboxError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> DiskHeader {
        DiskHeader {
            sector_size: 512,
            slot_count: 2,
            cluster_id: 0xC0FFEE,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            uuid: [9; 16],
            primaries: 1,
        }
    }

    #[test]
    fn the_two_node_layout_is_written_as_layout_1_and_other_roles_as_layout_2() {
        let mut b = [0u8; BLOCK];
        header().encode(&mut b);
        assert_eq!(&b[8..10], &1u16.to_le_bytes());
        assert_eq!(
            (header().role(0), header().role(1), header().role(2)),
            (Some(SlotRole::Primary), Some(SlotRole::Spare), None)
        );
        let n_plus_2 = DiskHeader { slot_count: 5, primaries: 0b111, ..header() };
        n_plus_2.encode(&mut b);
        assert_eq!(&b[8..10], &2u16.to_le_bytes());
        assert_eq!(DiskHeader::decode(&b), Ok(n_plus_2));
        assert_eq!((n_plus_2.spare_count(), n_plus_2.spare_rank(3), n_plus_2.spare_rank(4)), (2, 0, 1));
        let mut no_primary = [0u8; BLOCK];
        DiskHeader { primaries: 0, ..n_plus_2 }.encode(&mut no_primary);
        assert!(matches!(DiskHeader::decode(&no_primary), Err(HeaderError::Invalid(_))));
        DiskHeader { primaries: 1 << 5, ..n_plus_2 }.encode(&mut no_primary);
        assert!(matches!(DiskHeader::decode(&no_primary), Err(HeaderError::Invalid(_))));
    }

    /// A header written by the build before roles existed (layout 1, byte for byte).
    #[test]
    fn a_layout_1_header_of_the_previous_build_reads_as_one_primary_and_spares() {
        let mut b = [0u8; BLOCK];
        b[..8].copy_from_slice(&HEADER_MAGIC);
        b[8..10].copy_from_slice(&1u16.to_le_bytes());
        b[10..12].copy_from_slice(&512u16.to_le_bytes());
        b[12] = 3;
        b[13..17].copy_from_slice(&0xC0FFEEu32.to_le_bytes());
        b[17..21].copy_from_slice(&100u32.to_le_bytes());
        b[21..25].copy_from_slice(&1000u32.to_le_bytes());
        b[25..41].copy_from_slice(&[9; 16]);
        let crc = crc32c(&b[..41]);
        b[41..45].copy_from_slice(&crc.to_le_bytes());
        let h = DiskHeader::decode(&b).unwrap();
        assert_eq!(h, DiskHeader { slot_count: 3, ..header() });
        assert_eq!(h.spare_count(), 2);
    }

    #[test]
    fn header_round_trips_and_lays_out_4k_aligned_blocks() {
        let mut b = [0u8; BLOCK];
        header().encode(&mut b);
        assert_eq!(DiskHeader::decode(&b), Ok(header()));
        let h = header();
        assert_eq!(h.slot_offset(0), Some(4096));
        assert_eq!(h.slot_offset(1), Some(8192));
        assert_eq!(h.mailbox_offset(0), Some(12288));
        assert_eq!(h.mailbox_offset(2), None);
        assert_eq!(h.area_len(), 5 * 4096);
    }

    #[test]
    fn header_errors_say_what_is_wrong() {
        let b = [0u8; BLOCK];
        assert_eq!(DiskHeader::decode(&b), Err(HeaderError::NotInitialised));
        let mut b = [0u8; BLOCK];
        b[..4].copy_from_slice(b"\x7fELF");
        assert_eq!(DiskHeader::decode(&b), Err(HeaderError::NotRearguard));
        let mut b = [0u8; BLOCK];
        header().encode(&mut b);
        b[14] ^= 1;
        assert_eq!(DiskHeader::decode(&b), Err(HeaderError::BadCrc));
    }

    #[test]
    fn mailbox_round_trips() {
        let mut b = [0u8; BLOCK];
        for m in [
            MailboxMessage::Empty,
            MailboxMessage::TakeoverClaim { by: 1, primary_epoch: 77 },
            MailboxMessage::PendingClaim { by: 2, primary_epoch: 78 },
            MailboxMessage::Poison { by: 1 },
            MailboxMessage::Test { by: 1, seq: 0xDEAD_BEEF },
        ] {
            m.encode(&mut b);
            assert_eq!(MailboxMessage::decode(&b), Ok(m));
        }
        b[5] ^= 1;
        assert_eq!(MailboxMessage::decode(&b), Err(MailboxError::BadCrc));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = DiskHeader::decode(&bytes);
            let _ = MailboxMessage::decode(&bytes);
        }
    }
}
