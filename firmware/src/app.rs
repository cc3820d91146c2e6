//! The listener application: polls the heartbeat media, runs the shared state machine, and
//! carries out its actions (takeover claim, then boot gate — exactly once).

use crate::board::{BootGate, FrameLink, SharedDisk};
use rearguard_shared::config::{ConfigError, ListenerConfig};
use rearguard_shared::detector::MediumKind;
use rearguard_shared::disk::{DiskHeader, HeaderError, MailboxMessage, RECORD_SECTOR};
use rearguard_shared::heartbeat::{self, Role, MAX_FRAME};
use rearguard_shared::listener::{Action, ListenerState, MediumId, ReleaseReason, StandbyListener};
use rearguard_shared::{Duration, Instant};

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
}

impl<E: core::fmt::Debug> core::fmt::Display for StartError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "config: {e}"),
            StartError::NoMedium => f.write_str("no heartbeat medium configured: set a disk, a serial link, or both"),
            StartError::DiskRead(e) => write!(f, "cannot read the shared disk header: {e:?}"),
            StartError::Header(e) => write!(f, "shared disk: {e}"),
            StartError::ClusterMismatch { disk, config } => write!(
                f,
                "the shared disk belongs to cluster {disk:#x} but this listener is configured for cluster {config:#x}: \
                 fix cluster_id, or check that this is the right disk"
            ),
            StartError::NoSlot { node, slots } => write!(
                f,
                "primary node {node} has no slot on the shared disk (it has {slots}): fix primary_node or re-run `rearguard disk init --slots`"
            ),
        }
    }
}

/// Something the board should log, show, or act upon.
#[derive(Debug)]
pub enum Event<DE, GE> {
    State(ListenerState),
    /// The disk asks for a longer timeout than configured; the longer one is used so the
    /// primary's fencing bound (checked against the disk's number) holds.
    TimeoutRaised {
        configured: Duration,
        disk: Duration,
    },
    ClaimWritten {
        primary_epoch: Option<u32>,
    },
    ClaimFailed(DE),
    /// A release held for its claim was dropped: the primary showed progress meanwhile. The
    /// listener watches it again from scratch.
    ReleaseCancelled,
    Released(ReleaseReason),
    /// Role is primary: the gate was opened at start without watching anything.
    PassThrough,
    GateFailed(GE),
    DiskReadFailed(DE),
}

pub type Events<DE, GE> = heapless::Vec<Event<DE, GE>, 8>;

struct DiskMedium<D> {
    dev: D,
    header: DiskHeader,
    id: MediumId,
    slot: u64,
    mailbox: u64,
}

/// A release waiting for its takeover claim to be written.
#[derive(Clone, Copy, Debug)]
struct HeldRelease {
    reason: ReleaseReason,
    primary_epoch: Option<u32>,
    since: Instant,
}

pub struct App<D: SharedDisk, L: FrameLink, G: BootGate> {
    cfg: ListenerConfig,
    listener: StandbyListener,
    disk: Option<DiskMedium<D>>,
    link: Option<(L, MediumId)>,
    gate: G,
    gate_opened: bool,
    /// A release whose takeover claim could not be written yet: the gate stays shut and the
    /// claim is retried every poll (see [`App::claim_then_release`]).
    held_release: Option<HeldRelease>,
    pending_start: Option<Event<D::Error, G::Error>>,
    block: [u8; RECORD_SECTOR],
}

impl<D: SharedDisk, L: FrameLink, G: BootGate> App<D, L, G> {
    pub fn new(
        cfg: ListenerConfig,
        disk: Option<D>,
        link: Option<L>,
        gate: G,
        now: Instant,
    ) -> Result<Self, StartError<D::Error>> {
        let mut place = None;
        Self::new_in(&mut place, cfg, disk, link, gate, now)?;
        Ok(place.expect("new_in fills the place on success"))
    }

    /// [`App::new`], built in `place` rather than returned: the application holds a 4 KiB
    /// block buffer, and a controller with 8 KiB of RAM cannot afford a second copy of it on
    /// the stack while the value is moved. On error `place` is left `None`.
    pub fn new_in(
        place: &mut Option<Self>,
        cfg: ListenerConfig,
        disk: Option<D>,
        link: Option<L>,
        gate: G,
        now: Instant,
    ) -> Result<(), StartError<D::Error>> {
        *place = None;
        cfg.validate().map_err(StartError::Config)?;
        if disk.is_none() && link.is_none() {
            return Err(StartError::NoMedium);
        }
        let mut params = cfg.params();
        *place = Some(App {
            listener: StandbyListener::new(params, now),
            cfg,
            disk: None,
            link: None,
            gate,
            gate_opened: false,
            held_release: None,
            pending_start: None,
            block: [0u8; RECORD_SECTOR],
        });
        let Some(app) = place.as_mut() else { unreachable!() };
        if let Some(mut dev) = disk {
            let header = match Self::check_disk(&mut dev, &app.cfg, &mut app.block) {
                Ok(h) => h,
                Err(e) => {
                    *place = None;
                    return Err(e);
                }
            };
            let node = app.cfg.primary_node;
            // check_disk made sure the primary has a slot and a mailbox.
            let (slot, mailbox) = (header.slot_offset(node).unwrap_or(0), header.mailbox_offset(node).unwrap_or(0));
            if header.timeout > params.timeout {
                app.pending_start = Some(Event::TimeoutRaised { configured: params.timeout, disk: header.timeout });
                params.timeout = header.timeout;
                app.listener = StandbyListener::new(params, now);
            }
            let id = app.listener.add_medium(MediumKind::Polled).expect("first medium");
            app.disk = Some(DiskMedium { dev, header, id, slot, mailbox });
        }
        if let Some(l) = link {
            app.link = Some((l, app.listener.add_medium(MediumKind::Stream).expect("second medium")));
        }
        Ok(())
    }

    fn check_disk(
        dev: &mut D,
        cfg: &ListenerConfig,
        block: &mut [u8; RECORD_SECTOR],
    ) -> Result<DiskHeader, StartError<D::Error>> {
        dev.read_record(0, block).map_err(StartError::DiskRead)?;
        let header = DiskHeader::decode(block).map_err(StartError::Header)?;
        cfg.verifier()
            .check_cluster(header.cluster_id)
            .map_err(|_| StartError::ClusterMismatch { disk: header.cluster_id, config: cfg.cluster_id })?;
        if header.slot_offset(cfg.primary_node).is_none() || header.mailbox_offset(cfg.primary_node).is_none() {
            return Err(StartError::NoSlot { node: cfg.primary_node, slots: header.slot_count });
        }
        Ok(header)
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.cfg
    }
    pub fn listener(&self) -> &StandbyListener {
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

    /// One poll period's work: read every medium, judge the time, act.
    pub fn poll(&mut self, now: Instant) -> Events<D::Error, G::Error> {
        let mut ev = Events::new();
        if let Some(e) = self.pending_start.take() {
            let _ = ev.push(e);
        }
        if self.cfg.role == Role::Primary {
            if !self.gate_opened {
                self.open_gate(&mut ev);
                let _ = ev.push(Event::PassThrough);
            }
            return ev;
        }
        if let Some(d) = self.disk.as_mut() {
            let id = d.id;
            match d.dev.read_record(d.slot, &mut self.block) {
                Ok(()) => {
                    let frame = heartbeat::decode(&self.block, &self.cfg.verifier());
                    let acts = self.listener.on_frame(id, frame, now);
                    self.run(acts, now, &mut ev);
                }
                // An unreadable slot is simply not liveness; the timeout decides.
                Err(e) => {
                    let _ = ev.push(Event::DiskReadFailed(e));
                }
            }
        }
        let mut buf = [0u8; MAX_FRAME];
        for _ in 0..MAX_FRAMES_PER_POLL {
            let Some((link, id)) = self.link.as_mut() else { break };
            let id = *id;
            let Some(n) = link.next_frame(&mut buf) else { break };
            let frame = heartbeat::decode(&buf[..n.min(MAX_FRAME)], &self.cfg.verifier());
            let acts = self.listener.on_frame(id, frame, now);
            self.run(acts, now, &mut ev);
        }
        if let Some(h) = self.held_release {
            if self.listener.last_progress().is_some_and(|t| t > h.since) {
                // The primary came back before the claim could be written: releasing now
                // would boot the secondary beside it. Watch it again instead.
                self.held_release = None;
                self.listener = self.fresh_listener(now);
                let _ = ev.push(Event::ReleaseCancelled);
            } else {
                self.claim_then_release(h.reason, h.primary_epoch, now, &mut ev);
            }
        }
        let acts = self.listener.on_tick(now);
        self.run(acts, now, &mut ev);
        ev
    }

    /// A listener as at start, with the same parameters and media (same ids).
    fn fresh_listener(&self, now: Instant) -> StandbyListener {
        let mut l = StandbyListener::new(*self.listener.params(), now);
        for m in self.listener.media() {
            let _ = l.add_medium(m.detector.kind());
        }
        l
    }

    /// Operator's "release now" (console or CLI). Idempotent. Also opens a gate held because
    /// the takeover claim cannot be written: the operator has decided.
    pub fn release_now(&mut self, now: Instant) -> Events<D::Error, G::Error> {
        let mut ev = Events::new();
        if self.held_release.take().is_some() {
            self.open_gate(&mut ev);
            let _ = ev.push(Event::Released(ReleaseReason::Manual));
            return ev;
        }
        let acts = self.listener.release_now(now);
        self.run(acts, now, &mut ev);
        ev
    }

    /// Whether a release waits for its takeover claim to be written.
    pub fn release_held(&self) -> bool {
        self.held_release.is_some()
    }

    fn run(&mut self, acts: rearguard_shared::listener::Actions, now: Instant, ev: &mut Events<D::Error, G::Error>) {
        let mut claim = None;
        for a in acts {
            match a {
                Action::Notify(s) => {
                    let _ = ev.push(Event::State(s));
                }
                Action::ClaimTakeover { primary_epoch } => claim = Some(primary_epoch),
                Action::Release(reason) => self.claim_then_release(reason, claim.unwrap_or(None), now, ev),
            }
        }
    }

    /// Writes the takeover claim, then opens the gate. A claim that cannot be written holds
    /// the gate (retried every poll, reported once; dropped if the primary shows progress
    /// meanwhile): released without it, a primary that was only down and comes back would
    /// find no claim and serve beside the secondary (found by the model check,
    /// shared/tests/model_standby.rs). A serial-only listener has no mailbox to write.
    fn claim_then_release(
        &mut self,
        reason: ReleaseReason,
        primary_epoch: Option<u32>,
        now: Instant,
        ev: &mut Events<D::Error, G::Error>,
    ) {
        if let Some(d) = self.disk.as_mut() {
            let msg = MailboxMessage::TakeoverClaim { by: self.cfg.node_id, primary_epoch: primary_epoch.unwrap_or(0) };
            msg.encode(&mut self.block);
            if let Err(e) = d.dev.write_record(d.mailbox, &self.block) {
                let since = self.held_release.map_or(now, |h| h.since);
                if self.held_release.replace(HeldRelease { reason, primary_epoch, since }).is_none() {
                    let _ = ev.push(Event::ClaimFailed(e));
                }
                return;
            }
            self.held_release = None;
            let _ = ev.push(Event::ClaimWritten { primary_epoch });
        }
        self.open_gate(ev);
        let _ = ev.push(Event::Released(reason));
    }

    fn open_gate(&mut self, ev: &mut Events<D::Error, G::Error>) {
        if self.gate_opened {
            return;
        }
        self.gate_opened = true;
        if let Err(e) = self.gate.release() {
            let _ = ev.push(Event::GateFailed(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rearguard_shared::disk::area_len;
    use rearguard_shared::disk::BLOCK;
    use rearguard_shared::heartbeat::{encode, HealthFlags, Heartbeat, NodeState, MAX_FRAME};
    use std::vec;
    use std::vec::Vec;

    /// A disk held in RAM: the whole heartbeat area, block-addressed like the real ones.
    /// Writes fail while the flag is set.
    struct RamDisk(Vec<u8>, bool);
    impl SharedDisk for RamDisk {
        type Error = ();
        fn read_record(&mut self, off: u64, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), ()> {
            let o = off as usize;
            buf.copy_from_slice(self.0.get(o..o + RECORD_SECTOR).ok_or(())?);
            Ok(())
        }
        fn write_record(&mut self, off: u64, buf: &[u8; RECORD_SECTOR]) -> Result<(), ()> {
            if self.1 {
                return Err(());
            }
            let o = off as usize;
            self.0.get_mut(o..o + RECORD_SECTOR).ok_or(())?.copy_from_slice(buf);
            Ok(())
        }
    }

    struct CountingGate(u32);
    impl BootGate for CountingGate {
        type Error = ();
        fn release(&mut self) -> Result<(), ()> {
            self.0 += 1;
            Ok(())
        }
    }

    fn cfg() -> ListenerConfig {
        ListenerConfig {
            cluster_id: 5,
            timeout: Duration::from_millis(1000),
            poll_period: Duration::from_millis(10),
            ..ListenerConfig::factory()
        }
    }

    fn disk() -> RamDisk {
        let h = DiskHeader {
            sector_size: 512,
            slot_count: 2,
            cluster_id: 5,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            uuid: [0; 16],
        };
        let mut d = RamDisk(vec![0u8; area_len(2) as usize], false);
        let mut b = [0u8; RECORD_SECTOR];
        h.encode(&mut b);
        d.write_record(0, &b).unwrap();
        d
    }

    fn beat(app: &mut App<RamDisk, crate::board::NoLink, CountingGate>, seq: u64) {
        let hb = Heartbeat {
            cluster_id: 5,
            node_id: 0,
            role: Role::Primary,
            boot_epoch: 1,
            sequence: seq,
            uptime: Duration::from_millis(seq),
            state: NodeState::Active,
            health: HealthFlags::OK,
            config_digest: 0,
            build_stamp: 0,
        };
        let mut f = [0u8; MAX_FRAME];
        let n = encode(&hb, None, &mut f);
        let mut b = [0u8; RECORD_SECTOR];
        b[..n].copy_from_slice(&f[..n]);
        app.disk.as_mut().unwrap().dev.write_record(BLOCK as u64, &b).unwrap();
    }

    /// An app that has watched the primary beat for a second (ticks 0..10, 100 ms apart).
    fn watching() -> App<RamDisk, crate::board::NoLink, CountingGate> {
        let mut app =
            App::new(cfg(), Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::from_millis(0))
                .unwrap();
        for t in 0..10u64 {
            beat(&mut app, t + 1);
            app.poll(Instant::from_millis(t * 100));
        }
        app
    }

    #[test]
    fn claims_the_disk_then_opens_the_gate_exactly_once() {
        let mut app = watching();
        assert_eq!(app.listener().state(), ListenerState::Watching);
        let mut released_at = None;
        for t in 10..100u64 {
            let ev = app.poll(Instant::from_millis(t * 100));
            if ev.iter().any(|e| matches!(e, Event::Released(_))) {
                assert!(released_at.is_none(), "released twice");
                // The claim event comes before the release event.
                let claim = ev.iter().position(|e| matches!(e, Event::ClaimWritten { .. })).unwrap();
                let rel = ev.iter().position(|e| matches!(e, Event::Released(_))).unwrap();
                assert!(claim < rel);
                released_at = Some(t * 100);
            }
        }
        assert_eq!(released_at, Some(1900));
        assert_eq!(app.gate.0, 1);
        assert!(app.release_now(Instant::from_millis(20_000)).is_empty());
        assert_eq!(app.gate.0, 1);
        let mut b = [0u8; RECORD_SECTOR];
        app.disk.as_mut().unwrap().dev.read_record(3 * BLOCK as u64, &mut b).unwrap();
        assert_eq!(MailboxMessage::decode(&b), Ok(MailboxMessage::TakeoverClaim { by: 1, primary_epoch: 1 }));
    }

    #[test]
    fn a_claim_that_cannot_be_written_holds_the_gate_until_it_is() {
        let mut app = watching();
        app.disk.as_mut().unwrap().dev.1 = true;
        let mut failures = 0;
        for t in 10..40u64 {
            let ev = app.poll(Instant::from_millis(t * 100));
            failures += ev.iter().filter(|e| matches!(e, Event::ClaimFailed(_))).count();
            assert!(!ev.iter().any(|e| matches!(e, Event::Released(_))), "released without a claim");
        }
        assert_eq!((failures, app.gate.0, app.release_held()), (1, 0, true), "reported once, gate held");
        app.disk.as_mut().unwrap().dev.1 = false;
        let ev = app.poll(Instant::from_millis(4000));
        let claim = ev.iter().position(|e| matches!(e, Event::ClaimWritten { .. })).expect("claim retried");
        let rel = ev.iter().position(|e| matches!(e, Event::Released(_))).expect("then released");
        assert!(claim < rel);
        assert_eq!((app.gate.0, app.release_held()), (1, false));
        assert!(app.poll(Instant::from_millis(4100)).is_empty());
        assert_eq!(app.gate.0, 1);
    }

    #[test]
    fn a_held_release_is_dropped_when_the_primary_comes_back() {
        let mut app = watching();
        app.disk.as_mut().unwrap().dev.1 = true;
        for t in 10..25u64 {
            app.poll(Instant::from_millis(t * 100));
        }
        assert!(app.release_held());
        // The primary restarts (its write lands: the fault was on the listener's path).
        app.disk.as_mut().unwrap().dev.1 = false;
        beat(&mut app, 100);
        let ev = app.poll(Instant::from_millis(2500));
        assert!(ev.iter().any(|e| matches!(e, Event::ReleaseCancelled)), "{ev:?}");
        assert!(!ev.iter().any(|e| matches!(e, Event::Released(_))));
        assert_eq!((app.gate.0, app.release_held()), (0, false));
        // Watched again from scratch: alive, then dead again, then released once.
        for t in 26..30u64 {
            beat(&mut app, 100 + t);
            app.poll(Instant::from_millis(t * 100));
        }
        assert_eq!(app.listener().state(), ListenerState::Watching);
        for t in 30..60u64 {
            app.poll(Instant::from_millis(t * 100));
        }
        assert_eq!(app.gate.0, 1);
    }

    #[test]
    fn an_operator_opens_a_gate_held_for_its_claim() {
        let mut app =
            App::new(cfg(), Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::from_millis(0))
                .unwrap();
        app.disk.as_mut().unwrap().dev.1 = true;
        app.release_now(Instant::from_millis(10));
        assert_eq!((app.gate.0, app.release_held()), (0, true));
        let ev = app.release_now(Instant::from_millis(20));
        assert!(ev.iter().any(|e| matches!(e, Event::Released(ReleaseReason::Manual))));
        assert_eq!((app.gate.0, app.release_held()), (1, false));
    }

    #[test]
    fn refuses_a_disk_of_another_cluster_and_uses_the_disks_longer_timeout() {
        let mut c = cfg();
        c.cluster_id = 6;
        assert!(matches!(
            App::new(c, Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO),
            Err(StartError::ClusterMismatch { disk: 5, config: 6 })
        ));
        let mut c = cfg();
        c.timeout = Duration::from_millis(500);
        let mut app = App::new(c, Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO).unwrap();
        assert_eq!(app.listener().params().timeout, Duration::from_millis(1000));
        assert!(matches!(app.poll(Instant::ZERO)[0], Event::TimeoutRaised { .. }));
    }

    #[test]
    fn a_primary_role_passes_the_boot_through_at_once() {
        let mut c = cfg();
        c.role = Role::Primary;
        let mut app = App::new(c, Some(disk()), None::<crate::board::NoLink>, CountingGate(0), Instant::ZERO).unwrap();
        let ev = app.poll(Instant::ZERO);
        assert!(ev.iter().any(|e| matches!(e, Event::PassThrough)));
        app.poll(Instant::from_millis(10));
        assert_eq!(app.gate.0, 1);
    }
}
