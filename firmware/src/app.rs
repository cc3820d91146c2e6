//! The listener application: polls the heartbeat media, runs the shared state machine, and
//! carries out its actions (takeover claim, then boot gate — exactly once).

use crate::board::{BootGate, FrameLink, SharedDisk};
use rearguard_shared::config::{ConfigError, ListenerConfig, SlotMisfit};
use rearguard_shared::detector::MediumKind;
use rearguard_shared::disk::{DiskHeader, HeaderError, MailboxError, MailboxMessage, RECORD_SECTOR};
use rearguard_shared::fencing::FencingBudget;
use rearguard_shared::heartbeat::{self, Role, MAX_FRAME};
use rearguard_shared::listener::{
    Action, Arbitration, ListenerState, MediumId, NodeSet, PrimaryState, StandbyListener, Takeover, ARBITRATES,
};
use rearguard_shared::packed;
use rearguard_shared::text::{Said, Say, Text};
use rearguard_shared::{Duration, Instant};

mod drill;
pub mod marks;

/// Where a refused spare's slots are explained.
const ROLES: &str = packed!(" (`rearguard disk dump` lists the slots' roles)");

/// Most frames taken from the link in one poll, so a flooded link cannot starve the disk.
const MAX_FRAMES_PER_POLL: usize = 16;

/// Why the application refused to start.
#[derive(Debug)]
pub enum StartError<E> {
    Config(ConfigError),
    /// Neither a disk nor a link was given.
    NoMedium,
    DiskRead(E),
    Header(HeaderError),
    ClusterMismatch {
        disk: u32,
        config: u32,
    },
    NoSlot {
        node: u8,
        slots: u8,
    },
    /// A spare watches its primaries on the shared disk, and none was given.
    SpareWithoutDisk,
    /// The watch set names a slot the disk gives another role.
    NotPrimary {
        node: u8,
    },
    /// This spare's own slot is a primary's on the disk.
    NotSpare {
        node: u8,
    },
    /// More primaries watched than this board can hold.
    TooManyWatched {
        max: usize,
    },
}

impl<E: Say> core::fmt::Display for StartError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        Said(self).fmt(f)
    }
}

impl<E: Say> Say for StartError<E> {
    fn say(&self, t: &mut Text<'_>) {
        match self {
            StartError::Config(e) => t.s(packed!("config: ")).say(e),
            StartError::NoMedium => t.s(packed!("no heartbeat medium configured: set a disk, a serial link, or both")),
            StartError::DiskRead(e) => t.s(packed!("cannot read the shared disk header: ")).say(e),
            StartError::Header(e) => t.s(packed!("shared disk: ")).say(e),
            StartError::ClusterMismatch { disk, config } => t
                .s(packed!("the shared disk belongs to cluster "))
                .hex(*disk)
                .s(packed!(" but this listener is configured for cluster "))
                .hex(*config)
                .s(packed!(": fix cluster_id, or check that this is the right disk")),
            StartError::NoSlot { node, slots } => t
                .s(packed!("primary node "))
                .n(*node)
                .s(packed!(" has no slot on the shared disk (it has "))
                .n(*slots)
                .s(packed!("): fix the watched node, or re-run `rearguard disk init`")),
            StartError::SpareWithoutDisk => {
                t.s(packed!("a spare needs the shared disk: attach it, or watch one primary"))
            }
            StartError::NotPrimary { node } => {
                t.s("node ").n(*node).s(crate::report::NOT_PRIMARY).s(packed!(": watch only primaries")).s(ROLES)
            }
            StartError::NotSpare { node } => t
                .s(packed!("node_id "))
                .n(*node)
                .s(packed!(" is a primary's slot on the shared disk: give this spare its own"))
                .s(ROLES),
            StartError::TooManyWatched { max } => t
                .s(packed!("this board watches at most "))
                .n(*max as u32)
                .s(packed!(" primaries: shorten the watch list")),
        };
    }
}

/// Something the board should log, show, or act upon.
#[derive(Debug)]
pub enum Event<DE, GE> {
    State(ListenerState),
    /// A watched primary's new state (a spare of several primaries, or of a disk with
    /// several spares).
    Primary {
        node: u8,
        state: PrimaryState,
    },
    /// The disk asks for a longer timeout than configured; the longer one is used so the
    /// primary's fencing bound (checked against the disk's number) holds.
    TimeoutRaised {
        configured: Duration,
        disk: Duration,
    },
    ClaimWritten {
        node: u8,
        primary_epoch: Option<u32>,
    },
    /// The claim could not be written: the release is held, the write retried every poll
    /// while the primary stays dead (said once until a write succeeds).
    ClaimFailed(DE),
    /// This spare took `node` before it restarted (its own claim is in `node`'s mailbox): it
    /// stays consumed, and the gate is not driven again.
    AlreadyTaken {
        node: u8,
    },
    /// The boot was released to become `takeover.node`; `of_several`: this listener
    /// watched more than one primary (the line names the node).
    Released {
        takeover: Takeover,
        of_several: bool,
    },
    /// Role is primary: the gate was opened at start without watching anything.
    PassThrough,
    /// The primary's first heartbeat (or one with a new budget) said how long it needs to be
    /// fenced; `timeout` is the one in force. Its line gives the bound and the margin, or, when
    /// the timeout breaks the bound (a release could boot the secondary while the primary still
    /// runs), a warning with the numbers to change. Said once per budget seen.
    Budget {
        node: u8,
        budget: FencingBudget,
        timeout: Duration,
    },
    GateFailed(GE),
    DiskReadFailed(DE),
}

pub type Events<DE, GE> = heapless::Vec<Event<DE, GE>, 8>;

struct DiskMedium<D> {
    dev: D,
    header: DiskHeader,
    id: MediumId,
}

/// The application, watching up to `P` primaries (a controller with one primary: `P = 1`).
pub struct App<D: SharedDisk, L: FrameLink, G: BootGate, const P: usize = 1> {
    cfg: ListenerConfig,
    listener: StandbyListener<P>,
    disk: Option<DiskMedium<D>>,
    link: Option<(L, MediumId)>,
    gate: G,
    running: bool,
    gate_opened: bool,
    /// The last takeover claim write failed: the release is held (see the listener's docs).
    claim_failing: bool,
    /// Said at the first poll: what the start found (a raised timeout; an earlier takeover,
    /// which makes the timeout moot).
    pending_start: Option<Event<D::Error, G::Error>>,
    /// Each watched primary's fencing budget (in the order of `listener.primaries()`), from
    /// its latest heartbeat that carried one; [`FencingBudget::NONE`] until then (no
    /// `Option`: 8 bytes less per primary).
    budgets: [FencingBudget; P],
    /// The operator's readiness drill, while one runs ([`App::drill_start`]).
    drill: drill::Drill<P>,
    /// The replay marks last written ([`App::store_marks`]).
    marks: marks::Marks,
    block: [u8; RECORD_SECTOR],
}

impl<D: SharedDisk, L: FrameLink, G: BootGate, const P: usize> App<D, L, G, P> {
    pub fn new(
        cfg: ListenerConfig,
        disk: Option<D>,
        link: Option<L>,
        gate: G,
        now: Instant,
    ) -> Result<Self, StartError<D::Error>> {
        let mut app = Self::blank(gate);
        app.start(cfg, disk, link, now)?;
        Ok(app)
    }

    /// An application that is not running, as a constant: a controller keeps one in a static
    /// and [`App::start`]s it in place. A spare of 31 primaries is 3.5 KiB, and a controller
    /// with 8 KiB of RAM has no room for a second copy on its stack while a value is moved.
    pub const fn blank(gate: G) -> Self {
        App {
            cfg: ListenerConfig::factory(),
            listener: StandbyListener::blank(),
            disk: None,
            link: None,
            gate,
            running: false,
            gate_opened: false,
            claim_failing: false,
            pending_start: None,
            budgets: [FencingBudget::NONE; P],
            drill: drill::Drill::blank(),
            marks: marks::Marks::NONE,
            block: [0u8; RECORD_SECTOR],
        }
    }

    /// (Re)starts the listener with `cfg`, in place: everything it saw is forgotten. On error
    /// it is left not running (the gate keeps its state: a released boot stays released).
    ///
    /// A config with a `watch` set makes a spare of those primaries: it reads them on the
    /// disk (which must give them the primary role, and this listener's `node_id` a spare's)
    /// and not on the link, which speaks for one primary.
    pub fn start(
        &mut self,
        cfg: ListenerConfig,
        disk: Option<D>,
        link: Option<L>,
        now: Instant,
    ) -> Result<(), StartError<D::Error>> {
        self.drill_cancel();
        (self.running, self.disk, self.link, self.pending_start, self.claim_failing) = (false, None, None, None, false);
        cfg.validate().map_err(StartError::Config)?;
        let watch = cfg.watched();
        if watch.len() > P {
            return Err(StartError::TooManyWatched { max: P });
        }
        let link = if cfg.is_spare() { None } else { link };
        if cfg.is_spare() && disk.is_none() {
            return Err(StartError::SpareWithoutDisk);
        }
        if disk.is_none() && link.is_none() {
            return Err(StartError::NoMedium);
        }
        let mut params = cfg.params();
        self.cfg = cfg;
        self.budgets = [FencingBudget::NONE; P];
        let mut disk = disk;
        let header = match disk.as_mut() {
            Some(dev) => Some(Self::check_disk(dev, &self.cfg, watch, &mut self.block)?),
            None => None,
        };
        if let Some(header) = &header {
            if header.timeout > params.timeout {
                self.pending_start = Some(Event::TimeoutRaised { configured: params.timeout, disk: header.timeout });
                params.timeout = header.timeout;
            }
            // Several spares share the disk: they arbitrate, all with the same settle time
            // (the disk's), which the no-double-release argument needs. A build without
            // arbitration (the 32 KiB controller) must not share the disk with other spares:
            // it would take a primary another spare may be taking too.
            if !ARBITRATES && header.spare_count() > 1 {
                return Err(StartError::Header(HeaderError::Invalid(
                    "other spares share this disk: this build cannot arbitrate",
                )));
            }
            if ARBITRATES && header.spare_count() > 1 {
                let settle = header.interval.saturating_mul(2);
                let rank = header.spare_rank(self.cfg.node_id) as u64;
                params.arbitration =
                    Some(Arbitration { spare_id: self.cfg.node_id, settle, stagger: settle.saturating_mul(rank) });
            }
        }
        self.listener.reset(params, now);
        if let (Some(dev), Some(header)) = (disk, header) {
            // The reset above cleared the media: both adds succeed (no expect and its message).
            let id = self.listener.add_medium(MediumKind::Polled).unwrap_or(MediumId(0));
            self.disk = Some(DiskMedium { dev, header, id });
            if self.cfg.role != Role::Primary {
                self.resume_earlier_takeover(now);
            }
        }
        if let Some(l) = link {
            self.link = Some((l, self.listener.add_medium(MediumKind::Stream).unwrap_or(MediumId(1))));
        }
        self.running = true;
        Ok(())
    }

    /// Whether the last [`App::start`] succeeded: only a running application polls.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// A spare that took a primary before it restarted finds its own settled claim in that
    /// primary's mailbox and stays consumed (an unreadable mailbox is skipped: a spare that
    /// cannot read the disk holds its release anyway, see [`App::poll`]). Its own *pending*
    /// claim means it crashed while arbitrating, before it released: it is not consumed,
    /// and backs off from that primary at its pre-read (see the listener's module docs). A
    /// crash between the settled claim's write and the gate leaves it consumed without
    /// having driven the gate: the one window left, as narrow as one gate call.
    fn resume_earlier_takeover(&mut self, now: Instant) {
        let watched = self.listener.params().watched;
        for node in watched.iter() {
            if let Some(Ok(MailboxMessage::TakeoverClaim { by, .. })) = self.read_mailbox(node) {
                if by == self.cfg.node_id {
                    self.listener.resume_taken(node, now);
                    self.gate_opened = true;
                    self.pending_start = Some(Event::AlreadyTaken { node });
                    return;
                }
            }
        }
    }

    /// Reads `node`'s mailbox into the scratch block: what it holds, or `None` without a disk
    /// or when it does not read. Not inlined: one copy serves the restart check and the drill.
    #[inline(never)]
    fn read_mailbox(&mut self, node: u8) -> Option<Result<MailboxMessage, MailboxError>> {
        let d = self.disk.as_mut()?;
        d.dev.read_record(d.header.mailbox_offset(node).unwrap_or(0), &mut self.block).ok()?;
        Some(MailboxMessage::decode(&self.block))
    }

    /// Writes the scratch block into `node`'s mailbox (`None`: there is no disk).
    #[inline(never)]
    fn write_mailbox(&mut self, node: u8) -> Option<Result<(), D::Error>> {
        let d = self.disk.as_mut()?;
        Some(d.dev.write_record(d.header.mailbox_offset(node).unwrap_or(0), &self.block))
    }

    fn check_disk(
        dev: &mut D,
        cfg: &ListenerConfig,
        watch: NodeSet,
        block: &mut [u8; RECORD_SECTOR],
    ) -> Result<DiskHeader, StartError<D::Error>> {
        dev.read_record(0, block).map_err(StartError::DiskRead)?;
        let header = DiskHeader::decode(block).map_err(StartError::Header)?;
        cfg.verifier()
            .check_cluster(header.cluster_id)
            .map_err(|_| StartError::ClusterMismatch { disk: header.cluster_id, config: cfg.cluster_id })?;
        if let Some(node) = watch.iter().find(|&n| n >= header.slot_count) {
            return Err(StartError::NoSlot { node, slots: header.slot_count });
        }
        cfg.check_slots(NodeSet(header.primaries)).map_err(|m| match m {
            SlotMisfit::NotPrimary(node) => StartError::NotPrimary { node },
            SlotMisfit::NotSpare(node) => StartError::NotSpare { node },
        })?;
        Ok(header)
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.cfg
    }
    pub fn listener(&self) -> &StandbyListener<P> {
        &self.listener
    }
    pub fn disk_header(&self) -> Option<&DiskHeader> {
        self.disk.as_ref().map(|d| &d.header)
    }
    pub fn disk_medium(&self) -> Option<MediumId> {
        self.disk.as_ref().map(|d| d.id)
    }
    pub fn link_medium(&self) -> Option<MediumId> {
        self.link.as_ref().map(|l| l.1)
    }
    pub fn gate_opened(&self) -> bool {
        self.gate_opened
    }
    /// Whether a release waits for its takeover claim to be written.
    pub fn release_held(&self) -> bool {
        self.claim_failing && !self.gate_opened
    }
    /// Each watched primary's fencing budget, in the order of the listener's primaries
    /// ([`FencingBudget::NONE`] until a heartbeat carried one).
    pub fn budgets(&self) -> &[FencingBudget] {
        &self.budgets[..self.listener.primaries().len()]
    }

    /// One poll period's work: read every medium, judge the time, act.
    pub fn poll(&mut self, now: Instant) -> Events<D::Error, G::Error> {
        let mut out = Events::new();
        self.poll_with(now, &mut |e| {
            let _ = out.push(e);
        });
        out
    }

    /// [`App::poll`], each event handed to `ev` as it happens: nothing is dropped, however
    /// many primaries report in one poll (`poll`'s list holds 8), and no list sits on the
    /// stack.
    pub fn poll_with(&mut self, now: Instant, ev: &mut dyn FnMut(Event<D::Error, G::Error>)) {
        if !self.running {
            return;
        }
        if let Some(e) = self.pending_start.take() {
            ev(e);
        }
        if self.cfg.role == Role::Primary {
            if !self.gate_opened {
                self.open_gate(None, ev);
                ev(Event::PassThrough);
            }
            return;
        }
        let mut disk_unreadable = false;
        for i in 0..self.listener.primaries().len() {
            let node = self.listener.primaries()[i].node;
            let Some(d) = self.disk.as_mut() else { break };
            let (id, slot) = (d.id, d.header.slot_offset(node).unwrap_or(0));
            match d.dev.read_record(slot, &mut self.block) {
                Ok(()) => self.judge(i, id, RECORD_SECTOR, now, ev),
                Err(e) => {
                    disk_unreadable = true;
                    ev(Event::DiskReadFailed(e));
                }
            }
        }
        for _ in 0..MAX_FRAMES_PER_POLL {
            let Some((link, id)) = self.link.as_mut() else { break };
            let id = *id;
            let Some(n) = link.next_frame(&mut self.block[..MAX_FRAME]) else { break };
            // A listener with a link watches one primary.
            self.judge(0, id, n.min(MAX_FRAME), now, ev);
        }
        // The secondary boots from the shared disk: while it cannot read it, it cannot judge
        // the primary's slot nor boot from the disk, so the timeout is not judged (no release);
        // the first good read resumes it. Frames on other media are still taken as liveness.
        if !disk_unreadable {
            let acts = self.listener.on_tick(now);
            self.run(&acts, now, ev);
        }
    }

    /// Judges the first `len` bytes of the scratch block, read from medium `id` for the `i`-th
    /// watched primary (a slot's record, or a frame from the link). Not inlined: one copy
    /// serves both. A heartbeat that decodes hands a drill the test it acknowledged, and its
    /// budget, if it is new (the first heartbeat, or a restarted agent with new numbers), is
    /// checked against the timeout in force.
    #[inline(never)]
    fn judge(
        &mut self,
        i: usize,
        id: MediumId,
        len: usize,
        now: Instant,
        ev: &mut dyn FnMut(Event<D::Error, G::Error>),
    ) {
        let node = self.listener.primaries()[i].node;
        let frame = heartbeat::decode(&self.block[..len], &self.cfg.verifier());
        if let Some(hb) = frame.as_ref().ok().filter(|hb| hb.node_id == node) {
            self.drill.see(i, hb.last_test, now);
            if !hb.budget.is_none() && self.budgets[i] != hb.budget {
                self.budgets[i] = hb.budget;
                ev(Event::Budget { node, budget: hb.budget, timeout: self.listener.params().timeout });
            }
        }
        let acts = self.listener.on_frame(id, node, frame, now);
        self.run(&acts, now, ev);
    }

    /// Operator's "release now" (console or CLI), its events handed to `ev` as in
    /// [`App::poll_with`]. Idempotent.
    pub fn release_now(&mut self, now: Instant, ev: &mut dyn FnMut(Event<D::Error, G::Error>)) {
        let acts = self.listener.release_now(now);
        self.run(&acts, now, ev);
    }

    fn run(
        &mut self,
        acts: &rearguard_shared::listener::Actions,
        now: Instant,
        ev: &mut dyn FnMut(Event<D::Error, G::Error>),
    ) {
        for &a in acts {
            match a {
                Action::Notify(s) => {
                    ev(Event::State(s));
                }
                Action::Primary { node, state } => {
                    ev(Event::Primary { node, state });
                }
                // Only a spare that arbitrates asks (see `start_in`); a build without
                // arbitration drops the code.
                Action::ReadMailbox { node } if ARBITRATES => {
                    let Some(d) = self.disk.as_mut() else { continue };
                    let off = d.header.mailbox_offset(node).unwrap_or(0);
                    let read = d.dev.read_record(off, &mut self.block);
                    // An unreadable mailbox reads as a corrupt one: the spare backs off.
                    let msg = match read {
                        Ok(()) => MailboxMessage::decode(&self.block),
                        Err(_) => Err(rearguard_shared::disk::MailboxError::BadMagic),
                    };
                    let acts = self.listener.on_mailbox(node, msg, now);
                    self.run(&acts, now, ev);
                }
                Action::ClaimTakeover { node, primary_epoch, pending } => {
                    // The listener releases only once the claim is written (a serial-only
                    // listener has no mailbox: nothing to write, nothing to wait for).
                    // Only arbitration writes pending claims (the build without it drops
                    // the branch).
                    let pending = ARBITRATES && pending;
                    MailboxMessage::claim(self.cfg.node_id, primary_epoch, pending).encode(&mut self.block);
                    let written = match self.write_mailbox(node) {
                        None => true,
                        Some(Ok(())) => {
                            self.claim_failing = false;
                            ev(Event::ClaimWritten { node, primary_epoch });
                            true
                        }
                        Some(Err(e)) => {
                            // Retried every poll while held: said once.
                            if !core::mem::replace(&mut self.claim_failing, true) {
                                ev(Event::ClaimFailed(e));
                            }
                            false
                        }
                    };
                    let acts = self.listener.on_claim_written(node, written, now);
                    self.run(&acts, now, ev);
                }
                Action::ReadMailbox { .. } => {}
                Action::Release(t) => {
                    self.open_gate(Some(&t), ev);
                    let of_several = self.listener.primaries().len() > 1;
                    ev(Event::Released { takeover: t, of_several });
                }
            }
        }
    }

    fn open_gate(&mut self, takeover: Option<&Takeover>, ev: &mut dyn FnMut(Event<D::Error, G::Error>)) {
        if self.gate_opened {
            return;
        }
        self.gate_opened = true;
        if let Err(e) = self.gate.release(takeover) {
            ev(Event::GateFailed(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rearguard_shared::disk::area_len;
    use rearguard_shared::disk::BLOCK;
    use rearguard_shared::heartbeat::{encode, HealthFlags, Heartbeat, NodeState, MAX_FRAME};
    use std::format;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// A disk held in RAM: the whole heartbeat area, block-addressed like the real ones; with
    /// the flag set, reads of node 0's slot fail.
    /// (With the third flag set, every write fails.)
    pub(super) struct RamDisk(Vec<u8>, bool, bool);
    impl SharedDisk for RamDisk {
        type Error = ();
        fn read_record(&mut self, off: u64, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), ()> {
            if self.1 && off == BLOCK as u64 {
                return Err(());
            }
            let o = off as usize;
            buf.copy_from_slice(self.0.get(o..o + RECORD_SECTOR).ok_or(())?);
            Ok(())
        }
        fn write_record(&mut self, off: u64, buf: &[u8; RECORD_SECTOR]) -> Result<(), ()> {
            if self.2 {
                return Err(());
            }
            let o = off as usize;
            self.0.get_mut(o..o + RECORD_SECTOR).ok_or(())?.copy_from_slice(buf);
            Ok(())
        }
    }

    pub(super) struct CountingGate(pub(super) u32);
    impl BootGate for CountingGate {
        type Error = ();
        fn check(&mut self) -> Result<&'static str, &'static str> {
            Ok("counted")
        }
        fn release(&mut self, _: Option<&Takeover>) -> Result<(), ()> {
            self.0 += 1;
            Ok(())
        }
    }

    pub(super) type TestApp = App<RamDisk, crate::board::NoLink, CountingGate>;

    /// Remembers which node each release asked for.
    struct NodeGate(Vec<u8>);
    impl BootGate for NodeGate {
        type Error = ();
        fn check(&mut self) -> Result<&'static str, &'static str> {
            Ok("recorded")
        }
        fn release(&mut self, t: Option<&Takeover>) -> Result<(), ()> {
            self.0.push(t.map_or(u8::MAX, |t| t.node));
            Ok(())
        }
    }

    pub(super) fn cfg() -> ListenerConfig {
        ListenerConfig {
            cluster_id: 5,
            timeout: Duration::from_millis(1000),
            poll_period: Duration::from_millis(10),
            ..ListenerConfig::factory()
        }
    }

    /// An area of `slots` slots whose primaries are the set `primaries`.
    pub(super) fn area(slots: u8, primaries: u32) -> RamDisk {
        let h = DiskHeader {
            sector_size: 512,
            slot_count: slots,
            cluster_id: 5,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            uuid: [0; 16],
            primaries,
        };
        let mut d = RamDisk(vec![0u8; area_len(slots) as usize], false, false);
        let mut b = [0u8; RECORD_SECTOR];
        h.encode(&mut b);
        d.write_record(0, &b).unwrap();
        d
    }

    pub(super) fn disk() -> RamDisk {
        area(2, 1)
    }

    fn beat(app: &mut App<RamDisk, crate::board::NoLink, CountingGate>, seq: u64) {
        write_beat(&mut app.disk.as_mut().unwrap().dev, 0, 1, seq);
    }

    #[test]
    fn claims_the_disk_then_opens_the_gate_exactly_once() {
        let mut app = watching_then_silent();
        assert_eq!(app.listener().state(), ListenerState::Watching);
        let mut released_at = None;
        for t in 10..100u64 {
            let ev = app.poll(Instant::from_millis(t * 100));
            if ev.iter().any(|e| matches!(e, Event::Released { .. })) {
                assert!(released_at.is_none(), "released twice");
                // The claim event comes before the release event.
                let claim = ev.iter().position(|e| matches!(e, Event::ClaimWritten { .. })).unwrap();
                let rel = ev.iter().position(|e| matches!(e, Event::Released { .. })).unwrap();
                assert!(claim < rel);
                released_at = Some(t * 100);
            }
        }
        assert_eq!(released_at, Some(1900));
        assert_eq!(app.gate.0, 1);
        let mut events = vec![];
        app.release_now(Instant::from_millis(20_000), &mut |e| events.push(e));
        assert!(events.is_empty());
        assert_eq!(app.gate.0, 1);
        let mut b = [0u8; RECORD_SECTOR];
        app.disk.as_mut().unwrap().dev.read_record(3 * BLOCK as u64, &mut b).unwrap();
        assert_eq!(MailboxMessage::decode(&b), Ok(MailboxMessage::TakeoverClaim { by: 1, primary_epoch: 1 }));
    }

    #[test]
    fn an_unreadable_slot_holds_the_release_until_it_reads_again() {
        let mut app = watching_then_silent();
        app.disk.as_mut().unwrap().dev.1 = true;
        for t in 10..60u64 {
            let ev = app.poll(Instant::from_millis(t * 100));
            assert!(ev.iter().any(|e| matches!(e, Event::DiskReadFailed(()))));
            assert!(!ev.iter().any(|e| matches!(e, Event::Released { .. })), "released while blind at {t}");
        }
        // Readable again, still at sequence 10: no progress for far longer than the timeout.
        app.disk.as_mut().unwrap().dev.1 = false;
        let ev = app.poll(Instant::from_millis(6000));
        assert!(ev.iter().any(|e| matches!(e, Event::Released { .. })));
        assert_eq!(app.gate.0, 1);
    }

    /// An app whose primary beat for a second and then died.
    fn watching_then_silent() -> TestApp {
        let mut app =
            App::new(cfg(), Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::from_millis(0))
                .unwrap();
        for t in 0..10u64 {
            beat(&mut app, t + 1);
            app.poll(Instant::from_millis(t * 100));
        }
        app
    }

    pub(super) fn released(ev: &Events<(), ()>) -> bool {
        ev.iter().any(|e| matches!(e, Event::Released { .. }))
    }

    #[test]
    fn a_claim_that_cannot_be_written_holds_the_gate_until_it_is() {
        let mut app = watching_then_silent();
        app.disk.as_mut().unwrap().dev.2 = true;
        let mut failures = 0;
        for t in 10..40u64 {
            let ev = app.poll(Instant::from_millis(t * 100));
            failures += ev.iter().filter(|e| matches!(e, Event::ClaimFailed(_))).count();
            assert!(!released(&ev), "released without a claim at {t}");
        }
        assert_eq!((failures, app.gate.0, app.release_held()), (1, 0, true), "said once, gate shut");
        app.disk.as_mut().unwrap().dev.2 = false;
        let ev = app.poll(Instant::from_millis(4000));
        let claim = ev.iter().position(|e| matches!(e, Event::ClaimWritten { .. })).expect("claim retried");
        let rel = ev.iter().position(|e| matches!(e, Event::Released { .. })).expect("then released");
        assert!(claim < rel);
        assert_eq!(app.gate.0, 1);
        assert!(app.poll(Instant::from_millis(4100)).is_empty());
    }

    #[test]
    fn a_held_release_is_dropped_when_the_primary_comes_back() {
        let mut app = watching_then_silent();
        app.disk.as_mut().unwrap().dev.2 = true;
        for t in 10..30u64 {
            app.poll(Instant::from_millis(t * 100));
        }
        app.disk.as_mut().unwrap().dev.2 = false;
        beat(&mut app, 11);
        app.disk.as_mut().unwrap().dev.2 = true;
        app.poll(Instant::from_millis(3000));
        assert_eq!(app.listener().primaries()[0].state, PrimaryState::Watching);
        // Alive again, then silent: the whole timeout runs again; the operator can still
        // release a held gate.
        for t in 31..39u64 {
            assert!(!released(&app.poll(Instant::from_millis(t * 100))));
        }
        let mut events = Events::new();
        app.release_now(Instant::from_millis(3900), &mut |e| events.push(e).unwrap());
        assert!(released(&events));
        assert_eq!(app.gate.0, 1);
    }

    #[test]
    fn a_spare_restarted_after_its_takeover_does_not_release_again() {
        let mut app = watching_then_silent();
        for t in 10..30u64 {
            app.poll(Instant::from_millis(t * 100));
        }
        assert_eq!(app.gate.0, 1);
        let d = app.disk.take().unwrap().dev;
        // Restarted with the policy that releases a primary never seen alive.
        let mut c = cfg();
        c.never_seen = rearguard_shared::listener::NeverSeenPolicy::ReleaseAfter(Duration::from_millis(1500));
        let mut app = TestApp::new(c, Some(d), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO).unwrap();
        let ev = app.poll(Instant::ZERO);
        assert!(ev.iter().any(|e| matches!(e, Event::AlreadyTaken { node: 0 })), "{ev:?}");
        for t in 1..100u64 {
            assert!(!released(&app.poll(Instant::from_millis(t * 100))));
        }
        assert_eq!(app.gate.0, 0, "the gate is not driven again");
        assert!(matches!(app.listener().state(), ListenerState::Released { node: 0, .. }));
    }

    #[test]
    fn refuses_a_disk_of_another_cluster_and_uses_the_disks_longer_timeout() {
        let mut c = cfg();
        c.cluster_id = 6;
        assert!(matches!(
            TestApp::new(c, Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO),
            Err(StartError::ClusterMismatch { disk: 5, config: 6 })
        ));
        let mut c = cfg();
        c.timeout = Duration::from_millis(500);
        let mut app =
            TestApp::new(c, Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO).unwrap();
        assert_eq!(app.listener().params().timeout, Duration::from_millis(1000));
        assert!(matches!(app.poll(Instant::ZERO)[0], Event::TimeoutRaised { .. }));
    }

    #[test]
    fn a_primary_role_passes_the_boot_through_at_once() {
        let mut c = cfg();
        c.role = Role::Primary;
        let mut app =
            TestApp::new(c, Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO).unwrap();
        let ev = app.poll(Instant::ZERO);
        assert!(ev.iter().any(|e| matches!(e, Event::PassThrough)));
        app.poll(Instant::from_millis(10));
        assert_eq!(app.gate.0, 1);
    }

    /// An area of 3 primaries (0..=2) and 2 spares (3, 4).
    fn n_plus_2() -> RamDisk {
        area(5, 0b111)
    }

    /// An area of 3 primaries (0..=2) and 1 spare (3).
    fn n_plus_1() -> RamDisk {
        area(4, 0b111)
    }

    pub(super) fn write_beat(d: &mut RamDisk, node: u8, boot_epoch: u32, seq: u64) {
        write_heartbeat(d, node, boot_epoch, seq, FencingBudget::NONE, 0);
    }

    fn write_heartbeat(d: &mut RamDisk, node: u8, boot_epoch: u32, seq: u64, budget: FencingBudget, last_test: u32) {
        let hb = Heartbeat {
            cluster_id: 5,
            node_id: node,
            role: Role::Primary,
            boot_epoch,
            sequence: seq,
            uptime: Duration::from_millis(seq),
            state: NodeState::Active,
            health: HealthFlags::OK,
            config_digest: 0,
            build_stamp: 0,
            budget,
            test_acks: 0,
            last_test,
        };
        let mut f = [0u8; MAX_FRAME];
        let n = encode(&hb, None, &mut f);
        let mut b = [0u8; RECORD_SECTOR];
        b[..n].copy_from_slice(&f[..n]);
        d.write_record((1 + node as u64) * BLOCK as u64, &b).unwrap();
    }

    type Spare = App<RamDisk, crate::board::NoLink, NodeGate, 4>;

    /// A spare with node id `node_id` watching `watch` on `disk` (its lowest watched
    /// primary is its `primary_node`, as the menu and the Linux board set it).
    fn spare<const P: usize>(
        node_id: u8,
        watch: &str,
        disk: RamDisk,
    ) -> Result<App<RamDisk, crate::board::NoLink, NodeGate, P>, StartError<()>> {
        let watch = NodeSet::parse(watch).unwrap();
        let cfg = ListenerConfig { node_id, watch, primary_node: watch.iter().next().unwrap(), ..cfg() };
        App::new(cfg, Some(disk), None, NodeGate(vec![]), Instant::ZERO)
    }

    #[test]
    fn a_spare_checks_the_roles_on_the_disk() {
        let err = |node_id, watch, disk| spare::<4>(node_id, watch, disk).err();
        assert!(err(3, "0-2", n_plus_1()).is_none());
        assert!(matches!(err(3, "0-2,4", n_plus_2()), Some(StartError::NotPrimary { node: 4 })));
        assert!(matches!(err(3, "0,7", n_plus_1()), Some(StartError::NoSlot { node: 7, slots: 4 })));
        assert!(matches!(err(1, "0", n_plus_1()), Some(StartError::NotSpare { node: 1 })));
        assert!(matches!(err(3, "0-3", n_plus_1()), Some(StartError::Config(e)) if e.field == "watch"));
        assert!(matches!(spare::<2>(3, "0-2", n_plus_1()).err(), Some(StartError::TooManyWatched { max: 2 })));
        let mut no_disk = ListenerConfig { node_id: 3, watch: NodeSet(0b111), ..cfg() };
        let r = Spare::new(no_disk.clone(), None, None, NodeGate(vec![]), Instant::ZERO);
        assert!(matches!(r.err(), Some(StartError::SpareWithoutDisk)));
        no_disk.primary_node = 5;
        assert!(matches!(no_disk.validate(), Err(e) if e.field == "primary_node"));
    }

    /// The only spare of three primaries takes the first that dies, as that node, once its
    /// claim is written; one that dies afterwards is reported and not taken.
    #[test]
    fn the_only_spare_takes_the_first_dead_primary_and_reports_the_next() {
        let mut app = spare::<4>(3, "0-2", n_plus_1()).unwrap();
        let mut lines = vec![];
        for t in 0..60u64 {
            let d = &mut app.disk.as_mut().unwrap().dev;
            for node in 0..3 {
                // Node 2 stops at 1 s, node 0 at 3 s.
                if (node != 2 || t < 10) && (node != 0 || t < 30) {
                    write_beat(d, node, 9, t + 1);
                }
            }
            for e in app.poll(Instant::from_millis(t * 100)) {
                match e {
                    Event::Released { takeover, of_several: true } => lines.push((t, "released", takeover.node)),
                    Event::Primary { node, state: PrimaryState::NoSpareLeft } => lines.push((t, "no-spare", node)),
                    _ => {}
                }
            }
        }
        assert_eq!(app.gate.0, vec![2]);
        // Last progress read at 900 ms: dead at 1900, claimed and released in that poll.
        assert_eq!(lines, vec![(19, "released", 2), (39, "no-spare", 0)]);
        let mut b = [0u8; RECORD_SECTOR];
        let off = app.disk_header().unwrap().mailbox_offset(2).unwrap();
        app.disk.as_mut().unwrap().dev.read_record(off, &mut b).unwrap();
        assert_eq!(MailboxMessage::decode(&b), Ok(MailboxMessage::TakeoverClaim { by: 3, primary_epoch: 9 }));
    }

    /// The controller's build (`--no-default-features`, as `scripts/test.sh` also runs it).
    #[test]
    #[cfg(not(feature = "arbitration"))]
    fn a_build_without_arbitration_refuses_a_disk_that_other_spares_share() {
        let c = ListenerConfig { node_id: 3, ..cfg() };
        let r = TestApp::new(c, Some(n_plus_2()), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO);
        assert!(
            matches!(r.err(), Some(StartError::Header(HeaderError::Invalid(why))) if why.contains("cannot arbitrate"))
        );
    }

    #[test]
    #[cfg(feature = "arbitration")]
    fn a_spare_becomes_the_dead_primary_after_its_claim_settles() {
        let cfg = ListenerConfig { node_id: 3, ..cfg() };
        let mut app = spare::<4>(cfg.node_id, "0-2", n_plus_2()).unwrap();
        let mut released_at = None;
        for t in 0..60u64 {
            let d = &mut app.disk.as_mut().unwrap().dev;
            for node in 0..3 {
                // Node 1 stops at 1 s.
                if node != 1 || t < 10 {
                    write_beat(d, node, 9, t + 1);
                }
            }
            let ev = app.poll(Instant::from_millis(t * 100));
            if ev.iter().any(|e| matches!(e, Event::Released { takeover: Takeover { node: 1, .. }, of_several: true }))
            {
                released_at = Some(t * 100);
            }
        }
        assert_eq!(app.gate.0, vec![1]);
        // Dead after the poll at 900 ms; silent 1 s at 1900; read, write, a tick later the
        // settle (2 × 100 ms) starts at 2000 and the re-read at 2200 confirms.
        assert_eq!(released_at, Some(2200));
        let mut b = [0u8; RECORD_SECTOR];
        app.disk.as_mut().unwrap().dev.read_record(7 * BLOCK as u64, &mut b).unwrap();
        assert_eq!(MailboxMessage::decode(&b), Ok(MailboxMessage::TakeoverClaim { by: 3, primary_epoch: 9 }));
    }

    /// Primaries on a [`RamDisk`] as their agents behave: each writes a new heartbeat every
    /// call and acknowledges a test message found in its mailbox, unless it is `silent`.
    fn beat_and_answer(d: &mut RamDisk, seq: u64, silent: &[u8], budgets: &[FencingBudget; 3]) {
        for node in (0..3u8).filter(|n| !silent.contains(n)) {
            let mut b = [0u8; RECORD_SECTOR];
            d.read_record((5 + node as u64) * BLOCK as u64, &mut b).unwrap();
            let last_test = match MailboxMessage::decode(&b) {
                Ok(MailboxMessage::Test { seq, .. }) => seq,
                _ => 0,
            };
            write_heartbeat(d, node, 1, seq, budgets[node as usize], last_test);
        }
    }

    /// The header and the mailboxes of a 4-slot area: what a drill must leave as it was.
    fn header_and_mailboxes(d: &RamDisk) -> Vec<u8> {
        let b = BLOCK;
        [&d.0[..b], &d.0[5 * b..]].concat()
    }

    /// Runs a drill on a spare of 0..=2 whose primaries behave as `silent` and `budgets`
    /// say, from a watching start to its verdicts; returns the printed lines.
    fn drill(silent: &[u8], budgets: [FencingBudget; 3], mailbox_1: MailboxMessage) -> (String, Spare) {
        let mut app = spare::<4>(3, "0-2", n_plus_1()).unwrap();
        let mut b = [0u8; RECORD_SECTOR];
        mailbox_1.encode(&mut b);
        app.disk.as_mut().unwrap().dev.write_record(6 * BLOCK as u64, &b).unwrap();
        let mut t = 0;
        for seq in 1..=5 {
            beat_and_answer(&mut app.disk.as_mut().unwrap().dev, seq, &[], &budgets);
            app.poll(Instant::from_millis(t));
            t += 10;
        }
        let before = header_and_mailboxes(&app.disk.as_ref().unwrap().dev);
        let mut out = String::new();
        app.drill_start(Instant::from_millis(t), &mut out);
        assert!(app.drilling());
        for seq in 6..40 {
            t += 10;
            beat_and_answer(&mut app.disk.as_mut().unwrap().dev, seq, silent, &budgets);
            app.poll(Instant::from_millis(t));
            app.drill_poll(Instant::from_millis(t), &mut out);
        }
        assert!(!app.drilling(), "{out}");
        assert_eq!(header_and_mailboxes(&app.disk.as_ref().unwrap().dev), before, "the drill changed the disk: {out}");
        assert!(app.gate.0.is_empty(), "the drill opened the gate");
        (out, app)
    }

    fn budget(fence_ms: u64) -> FencingBudget {
        let ms = Duration::from_millis;
        FencingBudget { interval: ms(100), write_deadline: ms(100), fence_time: ms(fence_ms) }
    }

    #[test]
    fn a_drill_is_ready_when_every_primary_answers_and_changes_nothing() {
        let (out, _) = drill(&[], [budget(100); 3], MailboxMessage::Empty);
        assert!(out.starts_with("ready     disk reads: cluster 0x5, 4 slots\n"), "{out}");
        for node in 0..3 {
            assert!(
                out.contains(&format!("ready     heartbeat progressing: primary {node}: watching, last progressed ")),
                "{out}"
            );
            assert!(out.contains(&format!("ready     timing bound: node {node}: interval 100 ms + write_deadline 100 ms + fence time 100 ms: bound 600 ms, margin 400 ms\n")), "{out}");
            assert!(
                out.contains(&format!("ready     mailbox write path: node {node}: test #1 acknowledged in ")),
                "{out}"
            );
        }
        assert!(out.contains("; mailbox restored\n"), "{out}");
        assert!(out.contains("ready     gate path: recorded\n"), "{out}");
        assert!(out.ends_with("drill: READY (11 checks passed; nothing was changed)\n"), "{out}");
    }

    /// A silent primary fails its progress and mailbox checks, a budget the timeout breaks
    /// fails the bound, a mailbox holding a claim is not touched; the rest stay ready.
    #[test]
    fn a_drill_names_each_check_that_fails_and_still_changes_nothing() {
        let claim = MailboxMessage::TakeoverClaim { by: 7, primary_epoch: 2 };
        let (out, _) = drill(&[0], [budget(100), budget(100), budget(400)], claim);
        assert!(out.contains("NOT READY heartbeat progressing: primary 0: watching, last progressed "), "{out}");
        assert!(out.contains("NOT READY mailbox write path: node 0: test #1 not acknowledged in 210 ms: is its agent running?; mailbox restored\n"), "{out}");
        assert!(out.contains("NOT READY mailbox write path: node 1: mailbox unreadable, unwritable or holding more than a test message"), "{out}");
        assert!(out.contains("NOT READY timing bound: node 2: interval 100 ms + write_deadline 100 ms + fence time 400 ms: bound 1200 ms; BOUND BROKEN: "), "{out}");
        assert!(out.contains("ready     mailbox write path: node 2: test #1 acknowledged in "), "{out}");
        assert!(out.ends_with("drill: NOT READY (4 of 11 checks failed; nothing was changed)\n"), "{out}");
    }

    /// A test message already in a mailbox is put back after the drill's own (numbered after
    /// it); a drill cancelled (or a listener restarted) mid-way puts the mailboxes back too.
    #[test]
    fn a_drill_puts_back_a_test_message_and_a_restart_ends_it() {
        let found = MailboxMessage::Test { by: 9, seq: 41 };
        let (out, mut app) = drill(&[], [budget(100); 3], found);
        assert!(out.contains("ready     mailbox write path: node 1: test #42 acknowledged in "), "{out}");
        let before = header_and_mailboxes(&app.disk.as_ref().unwrap().dev);
        let mut out = String::new();
        app.drill_start(Instant::from_millis(10_000), &mut out);
        assert_ne!(header_and_mailboxes(&app.disk.as_ref().unwrap().dev), before, "no test message was written");
        app.drill_cancel();
        assert_eq!(header_and_mailboxes(&app.disk.as_ref().unwrap().dev), before, "cancelled, not put back");
        // A restart (settings saved mid-drill) ends the drill the same way.
        app.drill_start(Instant::from_millis(10_100), &mut out);
        let d = &app.disk.as_ref().unwrap().dev;
        let copy = RamDisk(d.0.clone(), false, false);
        app.start(app.cfg.clone(), Some(copy), None, Instant::from_millis(10_110)).unwrap();
        assert!(!app.drilling());
    }

    #[test]
    fn a_drill_without_a_running_listener_says_so() {
        let mut app = watching_then_silent();
        app.running = false;
        let mut out = String::new();
        app.drill_start(Instant::from_millis(5000), &mut out);
        assert_eq!(
            out,
            "NOT READY listener: not running (see boot messages; fix and save)\n\
             drill: NOT READY (1 of 1 checks failed; nothing was changed)\n"
        );
        assert!(!app.drilling());
    }
}
