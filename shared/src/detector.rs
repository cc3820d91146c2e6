//! The failure detector: decides whether a verified heartbeat is *liveness*.
//!
//! Only progress counts. A sequence above the last one in the same epoch is progress; a
//! higher epoch means the sender restarted (also progress: somebody wrote it after we last
//! looked). The very first record seen is only a baseline — a slot left behind by a primary
//! that died before we powered on looks exactly like a fresh one.
//!
//! A detector can start from a *mark* ([`FailureDetector::seed`]): the highest record a
//! listener accepted before it restarted, kept in its non-volatile store. A record at or below
//! the mark is then refused (a replay, or a stale epoch) — the same record, read again, is
//! refused too, since it was already read in the previous run — and the first record above
//! it is only a baseline, as without a mark: it proves the sender wrote after the mark was
//! stored, not that it is alive now (see `rearguard_firmware::app::marks`).

use crate::heartbeat::Heartbeat;
use crate::reject::Reject;
use crate::time::Instant;

/// Most heartbeat media one node watches at once (LAN, side link, serial, disk); sizes the
/// per-medium statistics of the standby listener and of the pair election.
pub const MAX_MEDIA: usize = 4;

/// How a medium delivers records, which decides what a repeated record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediumKind {
    /// Read by polling a slot (shared disk): reading the same record twice between writes is
    /// normal and merely not liveness.
    Polled,
    /// Delivered as a stream of frames (serial, network): every frame must be new, so a
    /// repeat is a replay.
    Stream,
}

/// What one accepted record meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// First record seen: sets the baseline, proves nothing yet.
    Baseline,
    Progress,
    /// A higher boot epoch: the sender restarted.
    Restarted,
    /// Same epoch and sequence as last time (polled media only).
    Repeat,
}

impl Observation {
    pub fn is_liveness(self) -> bool {
        matches!(self, Observation::Progress | Observation::Restarted)
    }
}

/// The last record accepted from one sender on one medium, in 16 bytes: a spare of 31
/// primaries keeps one per primary and medium in a controller's 8 KiB of RAM.
#[derive(Clone, Copy, Debug)]
pub struct FailureDetector {
    sequence: u64,
    epoch: u32,
    kind: MediumKind,
    seen: bool,
    /// The last record is a mark from before a restart ([`Self::seed`]), not one read since.
    marked: bool,
}

impl FailureDetector {
    pub const fn new(kind: MediumKind) -> Self {
        FailureDetector { sequence: 0, epoch: 0, kind, seen: false, marked: false }
    }

    /// Starts from `mark`, the highest (epoch, sequence) accepted before a restart: records
    /// at or below it are refused, the first above it is a baseline (see the module docs).
    pub fn seed(&mut self, mark: (u32, u64)) {
        (self.epoch, self.sequence, self.seen, self.marked) = (mark.0, mark.1, true, true);
    }

    pub fn kind(&self) -> MediumKind {
        self.kind
    }

    /// Last (epoch, sequence) accepted.
    pub fn last(&self) -> Option<(u32, u64)> {
        self.seen.then_some((self.epoch, self.sequence))
    }

    /// What `hb` means after what was accepted before; an accepted record becomes the last.
    /// When liveness was seen is the caller's to keep (once per sender, not per medium).
    pub fn observe(&mut self, hb: &Heartbeat) -> Result<Observation, Reject> {
        let obs = match self.last() {
            None => Observation::Baseline,
            Some((epoch, _)) if hb.boot_epoch > epoch => Observation::Restarted,
            Some((epoch, _)) if hb.boot_epoch < epoch => return Err(Reject::StaleEpoch),
            Some((_, seq)) if hb.sequence > seq => Observation::Progress,
            Some((_, seq)) if hb.sequence == seq && self.kind == MediumKind::Polled => Observation::Repeat,
            Some(_) => return Err(Reject::Replay),
        };
        // Past a mark from before a restart, a newer record is only a baseline, and the mark's
        // own record (read before the restart) a replay.
        let obs = match (self.marked, obs) {
            (false, obs) => obs,
            (true, Observation::Repeat) => return Err(Reject::Replay),
            (true, _) => Observation::Baseline,
        };
        (self.epoch, self.sequence, self.seen, self.marked) = (hb.boot_epoch, hb.sequence, true, false);
        Ok(obs)
    }
}

/// What one medium received, by outcome: counted once per medium (a spare sums every
/// primary's records on it).
#[derive(Clone, Copy, Debug)]
pub struct RxCounts {
    /// When the last frame that passed every check arrived (liveness or not).
    pub last_valid: Option<Instant>,
    pub accepted: u32,
    pub rejected: [u32; Reject::COUNT],
    pub last_reject: Option<Reject>,
}

impl RxCounts {
    pub const fn new() -> Self {
        RxCounts { last_valid: None, accepted: 0, rejected: [0; Reject::COUNT], last_reject: None }
    }

    pub fn rejected_total(&self) -> u32 {
        self.rejected.iter().sum()
    }

    /// Counts one frame's outcome, and passes it on.
    pub fn count(&mut self, outcome: Result<Observation, Reject>, now: Instant) -> Result<Observation, Reject> {
        match outcome {
            Ok(_) => {
                self.accepted = self.accepted.saturating_add(1);
                self.last_valid = Some(now);
            }
            Err(r) => {
                let c = &mut self.rejected[r.index()];
                *c = c.saturating_add(1);
                self.last_reject = Some(r);
            }
        }
        outcome
    }
}

impl Default for RxCounts {
    fn default() -> Self {
        Self::new()
    }
}

/// One medium's receive side from one sender: its failure detector and what it has accepted
/// and rejected, by reason (the pair election keeps one per medium).
#[derive(Clone, Copy, Debug)]
pub struct MediumStats {
    pub detector: FailureDetector,
    pub rx: RxCounts,
}

impl MediumStats {
    pub const fn new(kind: MediumKind) -> Self {
        MediumStats { detector: FailureDetector::new(kind), rx: RxCounts::new() }
    }

    /// Runs a frame that already passed decoding and the caller's checks through the
    /// detector, and counts the outcome.
    pub fn observe(&mut self, checked: Result<&Heartbeat, Reject>, now: Instant) -> Result<Observation, Reject> {
        self.rx.count(checked.and_then(|hb| self.detector.observe(hb)), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::tests::sample;
    use proptest::prelude::*;

    #[test]
    fn first_record_is_only_a_baseline() {
        let mut d = FailureDetector::new(MediumKind::Polled);
        assert_eq!(d.observe(&sample(5)), Ok(Observation::Baseline));
        assert_eq!(d.observe(&sample(6)), Ok(Observation::Progress));
        assert_eq!(d.last(), Some((sample(6).boot_epoch, 6)));
    }

    #[test]
    fn a_stuck_record_is_not_liveness() {
        let mut d = FailureDetector::new(MediumKind::Polled);
        d.observe(&sample(5)).unwrap();
        d.observe(&sample(6)).unwrap();
        for _ in 2..100 {
            assert_eq!(d.observe(&sample(6)), Ok(Observation::Repeat));
        }
    }

    #[test]
    fn on_a_stream_a_repeat_is_a_replay() {
        let mut d = FailureDetector::new(MediumKind::Stream);
        d.observe(&sample(5)).unwrap();
        assert_eq!(d.observe(&sample(5)), Err(Reject::Replay));
        assert_eq!(d.observe(&sample(4)), Err(Reject::Replay));
    }

    #[test]
    fn epochs_order_restarts_and_reject_stale_senders() {
        let mut d = FailureDetector::new(MediumKind::Polled);
        d.observe(&sample(500)).unwrap();
        let mut restarted = sample(1);
        restarted.boot_epoch = 4;
        assert_eq!(d.observe(&restarted), Ok(Observation::Restarted));
        // The old incarnation's record (epoch 3) is now stale whatever its sequence.
        assert_eq!(d.observe(&sample(10_000)), Err(Reject::StaleEpoch));
    }

    #[test]
    fn a_mark_refuses_what_it_covers_and_the_first_record_above_it_is_a_baseline() {
        for kind in [MediumKind::Polled, MediumKind::Stream] {
            let mut d = FailureDetector::new(kind);
            d.seed((sample(0).boot_epoch, 50));
            assert_eq!(d.last(), Some((sample(0).boot_epoch, 50)));
            for seq in [1, 49, 50, 50] {
                assert_eq!(d.observe(&sample(seq)), Err(Reject::Replay), "{kind:?} seq {seq}");
            }
            let older = Heartbeat { boot_epoch: sample(0).boot_epoch - 1, ..sample(999) };
            assert_eq!(d.observe(&older), Err(Reject::StaleEpoch));
            assert_eq!(d.observe(&sample(51)), Ok(Observation::Baseline), "not liveness: maybe stale too");
            assert_eq!(d.observe(&sample(52)), Ok(Observation::Progress));
            // Read in this run now: a polled slot read twice is a repeat again, not a replay.
            let again = if kind == MediumKind::Polled { Ok(Observation::Repeat) } else { Err(Reject::Replay) };
            assert_eq!(d.observe(&sample(52)), again);
        }
        let mut d = FailureDetector::new(MediumKind::Polled);
        d.seed((sample(0).boot_epoch, 50));
        let restarted = Heartbeat { boot_epoch: sample(0).boot_epoch + 1, ..sample(1) };
        assert_eq!(d.observe(&restarted), Ok(Observation::Baseline), "a new epoch above the mark: a baseline");
    }

    proptest! {
        /// Whatever order records arrive in, liveness is only ever reported for a record
        /// strictly newer (epoch, sequence) than every record accepted before it.
        #[test]
        fn liveness_only_for_strictly_newer_records(
            recs in proptest::collection::vec((0u32..4, 0u64..20), 1..60),
            stream in any::<bool>(),
        ) {
            let kind = if stream { MediumKind::Stream } else { MediumKind::Polled };
            let mut d = FailureDetector::new(kind);
            let mut best: Option<(u32, u64)> = None;
            for (e, s) in recs {
                let mut hb = sample(s);
                hb.boot_epoch = e;
                let r = d.observe(&hb);
                if let Ok(o) = r {
                    if o.is_liveness() {
                        prop_assert!(best.is_none_or(|b| (e, s) > b));
                    }
                    best = Some((e, s));
                } else {
                    prop_assert!(best.is_some_and(|b| (e, s) <= b));
                }
            }
        }

        /// From a mark, nothing at or below it is ever accepted, and the first record
        /// accepted is a baseline, never liveness.
        #[test]
        fn after_a_seed_nothing_at_or_below_the_mark_is_accepted(
            mark in (0u32..4, 0u64..20),
            recs in proptest::collection::vec((0u32..4, 0u64..20), 1..60),
            stream in any::<bool>(),
        ) {
            let kind = if stream { MediumKind::Stream } else { MediumKind::Polled };
            let mut d = FailureDetector::new(kind);
            d.seed(mark);
            let mut first = true;
            for (e, s) in recs {
                let hb = Heartbeat { boot_epoch: e, ..sample(s) };
                if let Ok(o) = d.observe(&hb) {
                    prop_assert!((e, s) > mark);
                    prop_assert!(!first || o == Observation::Baseline);
                    first = false;
                }
            }
        }
    }
}
