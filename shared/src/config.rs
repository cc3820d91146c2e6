//! The listener's configuration record and its power-loss-safe A/B storage.
//!
//! The record is stored twice. Each copy is `magic | generation | length | postcard body |
//! CRC-32C`. Loading takes the valid copy with the higher generation; saving overwrites the
//! *other* copy with generation + 1. A power cut during a save can only damage the copy being
//! written, so the previous configuration always survives.

use crate::heartbeat::{Role, Verifier};
use crate::integrity::{crc32c, Key};
use crate::listener::{ListenerParams, NeverSeenPolicy, NodeSet};
use crate::packed;
use crate::text::Text;
use crate::time::Duration;
use crate::wire::{self, Full, Malformed, Reader, Wire, Writer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerConfig {
    /// `Secondary` holds the boot and watches; `Primary` lets the host boot at once.
    pub role: Role,
    pub cluster_id: u32,
    /// This (the secondary's) node id.
    pub node_id: u8,
    /// The node whose heartbeats are watched.
    pub primary_node: u8,
    pub timeout: Duration,
    pub poll_period: Duration,
    pub never_seen: NeverSeenPolicy,
    pub key: Option<Key>,
    /// The primaries a spare watches; empty means `primary_node` alone (the two-node case).
    /// Stored after every other field, and only when non-empty, so that records saved before
    /// it existed load unchanged and an empty set leaves the record and the digest as they
    /// were. serde skips it: serde's layout is the record as postcard wrote it before, the
    /// reference the codec tests compare against.
    #[serde(skip)]
    pub watch: NodeSet,
}

// postcard's layout of the fields before `watch` (serde's derive order), then `watch` only
// when it is non-empty; a body that ends before it (every record saved before it existed)
// has it empty.
impl Wire for ListenerConfig {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        self.role.put(w)?;
        self.cluster_id.put(w)?;
        self.node_id.put(w)?;
        self.primary_node.put(w)?;
        self.timeout.put(w)?;
        self.poll_period.put(w)?;
        self.never_seen.put(w)?;
        self.key.put(w)?;
        if self.watch != NodeSet(0) {
            self.watch.0.put(w)?;
        }
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        Ok(ListenerConfig {
            role: Wire::get(r)?,
            cluster_id: Wire::get(r)?,
            node_id: Wire::get(r)?,
            primary_node: Wire::get(r)?,
            timeout: Wire::get(r)?,
            poll_period: Wire::get(r)?,
            never_seen: Wire::get(r)?,
            key: Wire::get(r)?,
            watch: NodeSet(if r.is_empty() { 0 } else { Wire::get(r)? }),
        })
    }
}

impl Wire for NeverSeenPolicy {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        match self {
            NeverSeenPolicy::WaitForever => w.varint(0),
            NeverSeenPolicy::ReleaseAfter(d) => {
                w.varint(1)?;
                d.put(w)
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        match r.variant()? {
            0 => Ok(NeverSeenPolicy::WaitForever),
            1 => Ok(NeverSeenPolicy::ReleaseAfter(Wire::get(r)?)),
            _ => Err(Malformed),
        }
    }
}

/// A spare's slot that its disk gives another role ([`ListenerConfig::check_slots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotMisfit {
    /// A watched node is not a primary's slot.
    NotPrimary(u8),
    /// The spare's own node is a primary's slot.
    NotSpare(u8),
}

/// A refused configuration value: which field, what is wrong, how to fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl crate::text::Say for ConfigError {
    fn say(&self, t: &mut Text<'_>) {
        t.s(self.field).s(": ").s(self.problem);
    }
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::text::Said(self).fmt(f)
    }
}

/// Both ways of naming the listener's own node as watched are refused in the same words.
const SELF_WATCH: &str = "must not be node_id (a listener cannot watch its own slot)";

pub const MIN_POLL: Duration = Duration::from_millis(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

impl ListenerConfig {
    /// What a fresh (or factory-reset) controller runs with: a secondary that waits forever
    /// for a primary on cluster 0 and will not release until configured and seen.
    pub const fn factory() -> Self {
        ListenerConfig {
            role: Role::Secondary,
            cluster_id: 0,
            node_id: 1,
            primary_node: 0,
            timeout: Duration::from_secs(10),
            poll_period: Duration::from_millis(100),
            never_seen: NeverSeenPolicy::WaitForever,
            key: None,
            watch: NodeSet(0),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, problem| Err(ConfigError { field, problem });
        if self.poll_period < MIN_POLL {
            return err("poll_period", "must be at least 1 ms");
        }
        if self.timeout > MAX_TIMEOUT {
            return err("timeout", "must be at most 3600000 ms (one hour)");
        }
        if self.timeout < self.poll_period.saturating_mul(2) {
            return err("timeout", "must be at least twice poll_period, or one late poll would release the boot");
        }
        if self.node_id == self.primary_node {
            return err("primary_node", SELF_WATCH);
        }
        if self.node_id >= crate::disk::MAX_SLOTS || self.primary_node >= crate::disk::MAX_SLOTS {
            return err("node_id", "node ids must be 0..=31");
        }
        if self.watch.contains(self.node_id) {
            return err("watch", SELF_WATCH);
        }
        if !self.watch.is_empty() && !self.watch.contains(self.primary_node) {
            return err("primary_node", "must be one of the watched primaries");
        }
        if let NeverSeenPolicy::ReleaseAfter(d) = self.never_seen {
            if d < self.timeout {
                return err("never_seen", "the initial wait must be at least the timeout");
            }
        }
        Ok(())
    }

    /// The primaries watched: `watch`, or `primary_node` alone.
    pub fn watched(&self) -> NodeSet {
        if self.watch.is_empty() {
            NodeSet::one(self.primary_node)
        } else {
            self.watch
        }
    }

    /// A spare's slots against the roles on its disk (`primaries`: the slots the disk gives
    /// the primary role), at every start and at a console `save`. A listener of one primary
    /// is not checked: two-node areas predate roles.
    pub fn check_slots(&self, primaries: NodeSet) -> Result<(), SlotMisfit> {
        if !self.is_spare() {
            return Ok(());
        }
        if let Some(node) = self.watch.iter().find(|&n| !primaries.contains(n)) {
            return Err(SlotMisfit::NotPrimary(node));
        }
        if primaries.contains(self.node_id) {
            return Err(SlotMisfit::NotSpare(self.node_id));
        }
        Ok(())
    }

    /// Whether this is a spare of a set of primaries (`watch` set), not one primary's secondary.
    pub fn is_spare(&self) -> bool {
        !self.watch.is_empty()
    }

    pub fn params(&self) -> ListenerParams {
        ListenerParams {
            watched: self.watched(),
            timeout: self.timeout,
            never_seen: self.never_seen,
            arbitration: None,
        }
    }

    /// What frames and the shared disk's header are checked against.
    pub fn verifier(&self) -> Verifier<'_> {
        Verifier { cluster_id: self.cluster_id, key: self.key.as_ref() }
    }

    /// A digest of the whole config, carried in heartbeats and shown on status screens.
    pub fn digest(&self) -> u32 {
        let mut buf = [0u8; BODY_MAX];
        match wire::to_slice(self, &mut buf) {
            Ok(n) => crc32c(&buf[..n]),
            Err(_) => 0,
        }
    }
}

pub const RECORD_MAGIC: [u8; 4] = *b"RGCF";
/// Bytes one stored copy occupies (fixed, so copies never move).
pub const RECORD_LEN: usize = 128;
const BODY_MAX: usize = RECORD_LEN - 4 - 4 - 2 - 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    Blank,
    BadMagic,
    BadLength,
    BadCrc,
    Malformed,
    Invalid(ConfigError),
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::text::Said(self).fmt(f)
    }
}

impl crate::text::Say for RecordError {
    fn say(&self, t: &mut Text<'_>) {
        self.text(t);
    }
}

impl RecordError {
    /// What [`Display`](core::fmt::Display) says, onto a line being written (without a
    /// round trip through `core::fmt`).
    pub fn text<'t, 'o>(&self, t: &'t mut Text<'o>) -> &'t mut Text<'o> {
        match self {
            RecordError::Blank => t.s(packed!("blank (never saved)")),
            RecordError::BadMagic => t.s(packed!("not a config record")),
            RecordError::BadLength => t.s(packed!("length field out of range")),
            RecordError::BadCrc => t.s(packed!("CRC mismatch (interrupted save or corruption)")),
            RecordError::Malformed => t.s(packed!("body does not decode")),
            RecordError::Invalid(e) => t.s(packed!("stored value refused: ")).s(e.field).s(": ").s(e.problem),
        }
    }
}

pub fn encode_record(cfg: &ListenerConfig, generation: u32, out: &mut [u8; RECORD_LEN]) {
    out.fill(0xFF); // erased-flash pattern for the unused tail
    out[..4].copy_from_slice(&RECORD_MAGIC);
    out[4..8].copy_from_slice(&generation.to_le_bytes());
    let n = wire::to_slice(cfg, &mut out[10..10 + BODY_MAX]).expect("a listener config always fits in a record");
    out[8..10].copy_from_slice(&(n as u16).to_le_bytes());
    let crc = crc32c(&out[..10 + n]);
    out[10 + n..14 + n].copy_from_slice(&crc.to_le_bytes());
}

pub fn decode_record(bytes: &[u8]) -> Result<(u32, ListenerConfig), RecordError> {
    if bytes.len() < 14 || bytes.iter().all(|&b| b == 0 || b == 0xFF) {
        return Err(RecordError::Blank);
    }
    if bytes[..4] != RECORD_MAGIC {
        return Err(RecordError::BadMagic);
    }
    let generation = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let n = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    if n == 0 || n > BODY_MAX || bytes.len() < 14 + n {
        return Err(RecordError::BadLength);
    }
    let crc = u32::from_le_bytes([bytes[10 + n], bytes[11 + n], bytes[12 + n], bytes[13 + n]]);
    if crc != crc32c(&bytes[..10 + n]) {
        return Err(RecordError::BadCrc);
    }
    let cfg: ListenerConfig = wire::from_bytes(&bytes[10..10 + n]).map_err(|_| RecordError::Malformed)?;
    cfg.validate().map_err(RecordError::Invalid)?;
    Ok((generation, cfg))
}

/// One of the two stored copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    A,
    B,
}

impl Copy {
    pub fn other(self) -> Copy {
        match self {
            Copy::A => Copy::B,
            Copy::B => Copy::A,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Copy::A => "A",
            Copy::B => "B",
        }
    }
}

/// The outcome of reading both copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub config: ListenerConfig,
    pub generation: u32,
    pub from: Copy,
    /// Why the other copy was not used, if it was unusable (not merely older).
    pub other_problem: Option<RecordError>,
}

impl Loaded {
    /// Where the next save goes and with which generation: never over the copy in use.
    pub fn next_save(&self) -> (Copy, u32) {
        (self.from.other(), self.generation.wrapping_add(1))
    }
}

/// Picks the newest valid copy. `Err` carries both copies' problems (then the caller runs
/// with [`ListenerConfig::factory`] and says so).
pub fn load(a: &[u8], b: &[u8]) -> Result<Loaded, (RecordError, RecordError)> {
    match (decode_record(a), decode_record(b)) {
        (Ok((ga, ca)), Ok((gb, cb))) => Ok(if gb > ga {
            Loaded { config: cb, generation: gb, from: Copy::B, other_problem: None }
        } else {
            Loaded { config: ca, generation: ga, from: Copy::A, other_problem: None }
        }),
        (Ok((g, c)), Err(e)) => Ok(Loaded { config: c, generation: g, from: Copy::A, other_problem: Some(e) }),
        (Err(e), Ok((g, c))) => Ok(Loaded { config: c, generation: g, from: Copy::B, other_problem: Some(e) }),
        (Err(ea), Err(eb)) => Err((ea, eb)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(timeout_ms: u64) -> ListenerConfig {
        ListenerConfig {
            timeout: Duration::from_millis(timeout_ms),
            cluster_id: 7,
            key: Some(Key::new(&[3u8; 32]).unwrap()),
            never_seen: NeverSeenPolicy::ReleaseAfter(Duration::from_secs(60)),
            ..ListenerConfig::factory()
        }
    }

    #[test]
    fn newest_valid_copy_wins_and_a_torn_save_keeps_the_old_one() {
        let mut a = [0u8; RECORD_LEN];
        let mut b = [0u8; RECORD_LEN];
        encode_record(&cfg(1000), 1, &mut a);
        let l = load(&a, &b).unwrap();
        assert_eq!((l.from, l.generation), (Copy::A, 1));
        assert_eq!(l.other_problem, Some(RecordError::Blank));
        let (target, gen) = l.next_save();
        assert_eq!((target, gen), (Copy::B, 2));
        encode_record(&cfg(2000), gen, &mut b);
        assert_eq!(load(&a, &b).unwrap().config.timeout, Duration::from_millis(2000));
        // Every prefix of the next save (over A) leaves a loadable config.
        let mut new_a = [0u8; RECORD_LEN];
        encode_record(&cfg(3000), 3, &mut new_a);
        for cut in 0..=RECORD_LEN {
            let mut torn = a;
            torn[..cut].copy_from_slice(&new_a[..cut]);
            let l = load(&torn, &b).unwrap();
            assert!(l.config.timeout == Duration::from_millis(2000) || l.config.timeout == Duration::from_millis(3000));
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = ListenerConfig::factory();
        c.timeout = Duration::from_millis(150);
        assert_eq!(c.validate().unwrap_err().field, "timeout");
        c = ListenerConfig::factory();
        c.primary_node = c.node_id;
        assert_eq!(c.validate().unwrap_err().field, "primary_node");
        assert!(ListenerConfig::factory().validate().is_ok());
    }

    /// Copy A as `encode_record` wrote it before `watch` existed (generation 7; cluster
    /// 0xC0FFEE, node 2 watching 5, timeout 3 s, poll 100 ms, release after 600 s, a 20-byte key).
    const OLD_RECORD: &str =
        "5247434607000000240001eeff83060205b8176401c0cf2401145a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a452b7e6e";

    fn old_config() -> ListenerConfig {
        ListenerConfig {
            cluster_id: 0xC0FFEE,
            node_id: 2,
            primary_node: 5,
            timeout: Duration::from_millis(3000),
            poll_period: Duration::from_millis(100),
            key: Some(Key::new(&[0x5A; 20]).unwrap()),
            never_seen: NeverSeenPolicy::ReleaseAfter(Duration::from_secs(600)),
            ..ListenerConfig::factory()
        }
    }

    fn unhex(s: &str) -> std::vec::Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn a_record_saved_before_watch_existed_loads_with_watch_empty_and_re_encodes_identically() {
        let old = unhex(OLD_RECORD);
        let (generation, c) = decode_record(&old).unwrap();
        assert_eq!((generation, &c), (7, &old_config()));
        assert_eq!(c.watch, NodeSet(0));
        let mut again = [0u8; RECORD_LEN];
        encode_record(&c, 7, &mut again);
        assert_eq!(&again[..old.len()], &old[..], "an empty watch must leave the stored bytes as they were");
        // The digest in heartbeats, as the build before `watch` computed it.
        assert_eq!(c.digest(), 0xfdcd_778b);
    }

    #[test]
    fn a_config_with_a_watch_set_round_trips_and_changes_the_digest() {
        // Valid spares of old_config (node 2, primary 5): the list holds 5 and not 2.
        let all_but_node_2 = NodeSet(!(1 << 2));
        for watch in [NodeSet(0b10_0000), NodeSet(0b1010_0000), all_but_node_2] {
            let c = ListenerConfig { watch, ..old_config() };
            let mut rec = [0u8; RECORD_LEN];
            encode_record(&c, 9, &mut rec);
            assert_eq!(decode_record(&rec), Ok((9, c.clone())));
            assert_ne!(c.digest(), old_config().digest());
        }
        let wide = ListenerConfig { watch: all_but_node_2, ..old_config() };
        let mut rec = [0u8; RECORD_LEN];
        encode_record(&wide, 1, &mut rec);
        // The old record's body plus the 5-byte varint of a set that holds node 31.
        assert_eq!(u16::from_le_bytes([rec[8], rec[9]]), 0x24 + 5);
    }

    proptest! {
        #[test]
        fn decode_record_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..RECORD_LEN)) {
            let _ = decode_record(&bytes);
        }
    }
}
