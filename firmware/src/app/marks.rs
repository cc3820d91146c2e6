//! Anti-replay across restarts (issue 12): each watched primary's highest accepted
//! (epoch, sequence) — its *mark* — is kept in the board's non-volatile store ([`MarkStore`]),
//! and a restarted listener refuses records at or below it.
//!
//! Without marks, heartbeat records captured from a live primary's slot (or frames from its
//! serial link) and written back after the controller restarts are a fresh baseline, then
//! progress: a dead primary looks alive and the spare is held back. With them, the listener's
//! detectors start from the marks ([`StandbyListener::seed`]): such a record is refused as a
//! replay (or a stale epoch) on the disk and on the link alike — the agent sends the same
//! (epoch, sequence) on both — and counted in the status's `rejected`, never accepted, as
//! within a run. The record equal to the mark is refused too (it was read before the
//! restart): a dead primary's last record, still in its slot, counts as a `replay` at each
//! read. These are the Linux listener's semantics (`boards/linux/src/replay.rs`); that board
//! keeps its marks in `[listener] state_dir` and does not implement [`MarkStore`], so each
//! board has one guard.
//!
//! **The first record above a mark is a baseline, not liveness.** It proves the primary wrote
//! after the mark was stored, not that it is alive now: after a rack power cycle the slot
//! holds what the primary wrote in its last second, above the mark, while its OS is still
//! booting. Taken as progress, it would start the timeout, and the spare would take a primary
//! that is only slow to boot; as a baseline, the never-seen policy decides, as on a first
//! start. A baseline never releases earlier than progress would (a release needs progress and
//! then silence, or the never-seen policy), so safety is unchanged; the cost is one interval:
//! the live primary's next record is progress.
//!
//! **When they are written.** About once a second ([`STORE_EVERY`]) while a mark moved, and
//! not at all while none did — not at every poll, for the wear of an SD card or a flash page.
//! A mark is exact (the newest record accepted, never leased ahead, which would refuse a live
//! primary's genuine records after a restart), so it lags by up to a second: the records of
//! that last second before a crash, a power cut or a restart in place (a saved config) are
//! not covered. Replayed after it, each is accepted once — a baseline, then progress — and
//! spaced a timeout apart, the ten or so of them can hold a release back by as many timeouts;
//! the Linux listener has the same limit. At one write a second a card with wear levelling
//! lasts; a board whose store is the controller's own flash needs a longer period.
//!
//! **The record** is one 512-byte sector, rewritten in place: the cluster id, the watch set
//! and the first bytes of the disk's uuid (marks of another cluster, watch list or disk do not
//! apply: another disk's primaries count their own epochs), the CRC-32C of the sector, then
//! 16 bytes per watched primary, lowest id first. A blank or torn sector, one of another
//! cluster, watch list or disk (all fail the CRC sealed with this run's key), or a read error:
//! one console line, and the listener starts without marks — never a refusal to start. The
//! marks live in the detectors the listener keeps anyway; the application adds 16 bytes (the
//! CRC last written, the time of the next look). On the QEMU board the store is the same SD
//! card as the shared disk, so whoever can write the slots can erase the marks too; a real
//! controller keeps them in its own flash.

use super::App;
use crate::board::{BootGate, FrameLink, MarkStore, SharedDisk};
use core::fmt::Write;
use rearguard_shared::integrity::crc32c;
use rearguard_shared::packed;
use rearguard_shared::text::Text;
use rearguard_shared::{Duration, Instant};

/// How every line about the marks starts.
const SAYS: &str = packed!("replay marks: ");

/// How often moved marks are written.
pub const STORE_EVERY: Duration = Duration::from_secs(1);

/// The sector's words: cluster id, watch set, the disk uuid's first bytes, and the CRC-32C of
/// the sector (this word zero); then 16 bytes per watched primary, lowest id first:
/// `epoch << 64 | sequence`, little-endian, zero for none.
const HEAD: usize = 16;
const ENTRY: usize = 16;

/// What was last written, and when the marks are next looked at.
#[derive(Clone, Copy)]
pub(super) struct Marks {
    crc: u32,
    failing: bool,
    due: Instant,
}

impl Marks {
    pub(super) const NONE: Marks = Marks { crc: 0, failing: false, due: Instant::ZERO };
}

impl<D: SharedDisk, L: FrameLink, G: BootGate, const P: usize> App<D, L, G, P> {
    /// Reads the marks from `store` and starts each watched primary from its own; says on
    /// `out` what it found. Call after every successful [`App::start`], before the first poll.
    pub fn load_marks<S: MarkStore>(&mut self, store: &mut S, now: Instant, out: &mut impl Write) {
        let t = &mut Text::new(out);
        t.s(SAYS);
        match store.read_marks(&mut self.block) {
            Err(e) => t.s(packed!("unreadable (")).say(&e).s(packed!("), not used")),
            // Sealed again with this run's key: a sector of another cluster, watch list or
            // disk fails the CRC as a torn or blank one does.
            Ok(()) if word(&self.block, 12) != self.seal() => t.s(packed!("none for this cluster, watch and disk")),
            Ok(()) => {
                let mut entries = self.block[HEAD..].chunks_exact(ENTRY);
                self.listener.seed(|_| {
                    let k = entries.next().map_or(0, |e| u128::from_le_bytes(e.try_into().unwrap_or([0; ENTRY])));
                    (k != 0).then_some(((k >> 64) as u32, k as u64))
                });
                t.s(packed!("loaded; older records refused"))
            }
        };
        let _ = t.nl();
        // What the store would hold now: nothing is written until a mark moves.
        self.marks = Marks { crc: self.encode_marks(), failing: false, due: now + STORE_EVERY };
    }

    /// Writes what the marks belong to (the cluster, the watch set, the disk: its uuid's first
    /// bytes) and the CRC of the whole sector into the scratch block's head; returns the CRC.
    fn seal(&mut self) -> u32 {
        let uuid = self.disk.as_ref().map_or([0; 16], |d| d.header.uuid);
        let key = self.cfg.cluster_id as u128
            | (self.listener.params().watched.0 as u128) << 32
            | (u32::from_le_bytes([uuid[0], uuid[1], uuid[2], uuid[3]]) as u128) << 64;
        let b = &mut self.block;
        b[..HEAD].copy_from_slice(&key.to_le_bytes());
        let crc = crc32c(b);
        b[12..HEAD].copy_from_slice(&crc.to_le_bytes());
        crc
    }

    /// The marks' sector, into the scratch block; returns its CRC.
    fn encode_marks(&mut self) -> u32 {
        self.block.fill(0);
        for (p, e) in self.listener.primaries().iter().zip(self.block[HEAD..].chunks_exact_mut(ENTRY)) {
            e.copy_from_slice(&p.mark().to_le_bytes());
        }
        self.seal()
    }

    /// Writes the marks if one moved since they were last written, at most once every
    /// [`STORE_EVERY`]; call after every poll. The first write of a failing streak is said on
    /// `out`; they are retried.
    pub fn store_marks<S: MarkStore>(&mut self, store: &mut S, now: Instant, out: &mut impl Write) {
        if !self.running || now < self.marks.due {
            return;
        }
        self.marks.due = now + STORE_EVERY;
        let crc = self.encode_marks();
        if crc == self.marks.crc {
            return;
        }
        match store.write_marks(&self.block) {
            Ok(()) => (self.marks.crc, self.marks.failing) = (crc, false),
            Err(e) if !core::mem::replace(&mut self.marks.failing, true) => {
                let _ = Text::new(out).s(SAYS).s(packed!("not written (")).say(&e).s(packed!(")")).nl();
            }
            Err(_) => {}
        }
    }
}

/// The little-endian word at `o`.
fn word(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::{cfg, disk, released, write_beat, CountingGate, RamDisk, TestApp};
    use crate::app::Event;
    use crate::board::NoLink;
    use rearguard_shared::config::ListenerConfig;
    use rearguard_shared::disk::RECORD_SECTOR;
    use rearguard_shared::listener::{ListenerState, NeverSeenPolicy, NodeSet, ReleaseReason, Takeover};
    use rearguard_shared::reject::Reject;
    use std::string::{String, ToString};

    /// The marks' sector in RAM, counting writes; with `fail` set, reads and writes fail.
    #[derive(Default)]
    struct RamMarks {
        sector: Option<[u8; RECORD_SECTOR]>,
        writes: u32,
        fail: bool,
    }

    impl MarkStore for RamMarks {
        type Error = &'static str;
        fn read_marks(&mut self, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), &'static str> {
            if self.fail {
                return Err("no card");
            }
            *buf = self.sector.unwrap_or([0; RECORD_SECTOR]);
            Ok(())
        }
        fn write_marks(&mut self, buf: &[u8; RECORD_SECTOR]) -> Result<(), &'static str> {
            if self.fail {
                return Err("no card");
            }
            (self.sector, self.writes) = (Some(*buf), self.writes + 1);
            Ok(())
        }
    }

    fn ms(t: u64) -> Instant {
        Instant::from_millis(t)
    }

    /// A listener (primary 0) that releases a primary never seen alive after 2 s, started on
    /// `d` with the marks in `store`; and what it said of them.
    fn start(d: RamDisk, store: &mut RamMarks) -> (TestApp, String) {
        let c = ListenerConfig { never_seen: NeverSeenPolicy::ReleaseAfter(Duration::from_millis(2000)), ..cfg() };
        let mut app = TestApp::new(c, Some(d), None::<NoLink>, CountingGate(0), ms(0)).unwrap();
        let mut said = String::new();
        app.load_marks(store, ms(0), &mut said);
        (app, said)
    }

    /// Writes primary 0's record into its slot and polls, then stores the marks.
    fn beat(app: &mut TestApp, store: &mut RamMarks, epoch: u32, seq: u64, t: u64) -> bool {
        write_beat(&mut app.disk.as_mut().unwrap().dev, 0, epoch, seq);
        let ev = app.poll(ms(t));
        let mut said = String::new();
        app.store_marks(store, ms(t), &mut said);
        assert_eq!(said, "");
        ev.iter().any(|e| matches!(e, Event::State(ListenerState::Watching)))
    }

    /// A primary beating for 3 s: its mark written once a second, exact, and not again while
    /// it is silent.
    fn three_seconds_of_beats(store: &mut RamMarks) -> TestApp {
        let (mut app, said) = start(disk(), store);
        assert_eq!(said, "replay marks: none for this cluster, watch and disk\n");
        for seq in 1..=30u64 {
            beat(&mut app, store, 7, seq, seq * 100);
        }
        assert_eq!(store.writes, 3, "at 1, 2 and 3 s");
        for t in 31..39u64 {
            app.poll(ms(t * 100));
            app.store_marks(store, ms(t * 100), &mut String::new());
        }
        assert_eq!(store.writes, 3, "nothing moved, nothing written");
        let entry = &store.sector.unwrap()[HEAD..HEAD + ENTRY];
        assert_eq!(u128::from_le_bytes(entry.try_into().unwrap()), 7 << 64 | 30);
        app
    }

    #[test]
    fn records_read_before_a_restart_are_refused_after_it_and_the_next_is_a_baseline() {
        let mut store = RamMarks::default();
        let app = three_seconds_of_beats(&mut store);
        let (mut app, said) = start(app.disk.unwrap().dev, &mut store);
        assert_eq!(said, "replay marks: loaded; older records refused\n");
        for seq in 1..=30u64 {
            assert!(!beat(&mut app, &mut store, 7, seq, seq * 50), "replayed seq {seq} taken as liveness");
        }
        assert!(!beat(&mut app, &mut store, 6, 999, 1600), "an older boot's record");
        let media = app.listener().media()[0];
        assert_eq!(media.accepted, 0);
        assert_eq!(media.rejected[Reject::Replay.index()], 30);
        assert_eq!(media.rejected[Reject::StaleEpoch.index()], 1);
        assert_eq!(store.writes, 3, "refused records move no mark");
        // Released as if nothing came: the primary was never seen alive.
        let ev = app.poll(ms(2000));
        assert!(released(&ev), "{ev:?}");
        let Some(Event::Released { takeover: Takeover { reason, .. }, .. }) = ev.last() else { panic!("{ev:?}") };
        assert!(matches!(reason, ReleaseReason::NeverSeen { .. }));

        // The live primary's next records: a baseline (it might be stale too), then progress.
        let (mut app, _) = start(disk(), &mut store);
        assert!(!beat(&mut app, &mut store, 7, 31, 100));
        assert!(beat(&mut app, &mut store, 7, 32, 200));
        let (mut app, _) = start(disk(), &mut store);
        assert!(!beat(&mut app, &mut store, 8, 1, 100), "a restarted primary: a baseline as well");
        assert!(beat(&mut app, &mut store, 8, 2, 200));
    }

    #[test]
    fn marks_torn_unreadable_or_of_another_watch_are_not_used_and_do_not_stop_the_start() {
        let mut store = RamMarks::default();
        three_seconds_of_beats(&mut store);
        let good = store.sector.unwrap();
        let mut torn = good;
        torn[HEAD + 3] ^= 1;
        store.sector = Some(torn);
        let (mut app, said) = start(disk(), &mut store);
        assert_eq!(said, "replay marks: none for this cluster, watch and disk\n");
        assert!(!beat(&mut app, &mut store, 7, 1, 100));
        assert!(beat(&mut app, &mut store, 7, 2, 200), "without marks, a replay is progress");

        store.fail = true;
        let (_, said) = start(disk(), &mut store);
        assert_eq!(said, "replay marks: unreadable (no card), not used\n");

        store = RamMarks { sector: Some(good), ..RamMarks::default() };
        let c = ListenerConfig { node_id: 2, primary_node: 0, watch: NodeSet(0b11), ..cfg() };
        let spare = crate::app::tests::area(3, 0b11);
        let mut app = App::<_, NoLink, _, 2>::new(c, Some(spare), None, CountingGate(0), ms(0)).unwrap();
        let mut said = String::new();
        app.load_marks(&mut store, ms(0), &mut said);
        assert_eq!(said, "replay marks: none for this cluster, watch and disk\n");
    }

    /// A spare keeps one mark per watched primary, each restored to its own primary.
    #[test]
    fn a_spare_keeps_each_primarys_own_mark() {
        let spare = || {
            let c = ListenerConfig { node_id: 2, primary_node: 0, watch: NodeSet(0b11), ..cfg() };
            App::<_, NoLink, _, 2>::new(c, Some(crate::app::tests::area(3, 0b11)), None, CountingGate(0), ms(0))
                .unwrap()
        };
        let mut store = RamMarks::default();
        let mut app = spare();
        app.load_marks(&mut store, ms(0), &mut String::new());
        for seq in 1..=12u64 {
            let d = &mut app.disk.as_mut().unwrap().dev;
            write_beat(d, 0, 7, seq);
            write_beat(d, 1, 9, seq + 100);
            app.poll(ms(seq * 100));
            app.store_marks(&mut store, ms(seq * 100), &mut String::new());
        }
        let mut app = spare();
        let mut said = String::new();
        app.load_marks(&mut store, ms(0), &mut said);
        assert_eq!(said, "replay marks: loaded; older records refused\n");
        let marks: std::vec::Vec<u128> = app.listener().primaries().iter().map(|p| p.mark()).collect();
        assert_eq!(marks, [7 << 64 | 10, 9 << 64 | 110], "as stored at 1 s");
        let d = &mut app.disk.as_mut().unwrap().dev;
        write_beat(d, 0, 7, 10);
        write_beat(d, 1, 9, 111);
        app.poll(ms(100));
        let media = app.listener().media()[0];
        assert_eq!((media.accepted, media.rejected[Reject::Replay.index()]), (1, 1), "node 1's newer record only");
    }

    #[test]
    fn a_failing_store_is_said_once_and_retried() {
        let mut store = RamMarks::default();
        let (mut app, _) = start(disk(), &mut store);
        store.fail = true;
        let mut said = std::vec::Vec::new();
        for seq in 1..=50u64 {
            if seq == 30 {
                store.fail = false;
            }
            if seq == 40 {
                store.fail = true;
            }
            write_beat(&mut app.disk.as_mut().unwrap().dev, 0, 7, seq);
            app.poll(ms(seq * 100));
            let mut s = String::new();
            app.store_marks(&mut store, ms(seq * 100), &mut s);
            if !s.is_empty() {
                said.push((seq, s));
            }
        }
        let line = "replay marks: not written (no card)\n".to_string();
        assert_eq!(said, [(10, line.clone()), (40, line)]);
        assert_eq!(store.writes, 1, "at 3 s, while the store worked");
    }
}
