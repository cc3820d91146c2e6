//! The pair election: which node of a firewall pair holds the virtual IPs.
//!
//! Sans-I/O like every state machine here: the caller feeds verified adverts, health
//! changes and operator requests together with `now`, polls it at [`Election::poll_at`], and
//! carries out the returned [`Action`]s (send an advert, add/remove the VIPs, announce, run
//! hooks). Nothing here reads a clock or touches a socket.
//!
//! ```text
//!            peer heard                  peer dead / peer yields / we are preferred
//!  Starting ───────────▶ Standby ───────────────────────────────────────────▶ Active
//!     │  alone for dead_after  ▲   ◀─── resign: switchover, peer's request (preempt),   │
//!     └────────────────────────┼──────  unhealthy with a healthy peer, lost conflict ───┘
//!                              │
//!              Maintenance ◀───┴── operator (from any state; an active node resigns first)
//! ```
//!
//! ## Rules
//!
//! * Only *progressing* adverts are liveness (per-medium [`crate::detector::FailureDetector`], stream kind:
//!   a repeat is a replay). The peer is dead when no medium showed progress for
//!   `interval × dead_count`.
//! * **Takeover carries a term** (an epoch): `term = highest term known + 1`. Takeover is
//!   only ever evaluated from `Standby`, so a second trigger for the same failure (manual +
//!   automatic, the resign advert arriving on two media, a timeout at the same instant)
//!   finds the node already active and does nothing: one failover per epoch.
//! * **Standby takes over** when it is eligible (healthy, not in maintenance) and the peer
//!   is dead, or alive but not active and not preferred. Preference between two
//!   non-active nodes: an ineligible peer always loses; otherwise compare
//!   `(not yielding, effective priority, lower node id)`.
//! * **Active resigns** (removes its VIPs first, then tells the peer at once) when: an
//!   operator asks for a switchover; the peer asks (preempt after its delay, or a switchover
//!   issued on the standby) and the peer is eligible; its own tracked checks fail while the
//!   peer is alive and eligible (this is the "uplink lost, resign over the side link" path:
//!   adverts go out on every medium); maintenance is switched on.
//! * **Two actives** (partition healed, or a simultaneous start): the one with the higher
//!   `(term, effective priority, lower node id)` keeps the VIPs. The loser removes its VIPs
//!   and announces nothing. The winner re-announces only on an exact term tie (then clients
//!   may have learnt either MAC); otherwise the winner's takeover was the last announcement.
//! * **Mismatched peer** (different build stamp or pair-config digest): reported and
//!   refused — no switchover, preempt or resign *to* it, and its requests are ignored. It is
//!   still heard (it is alive: treating it as dead would make two actives).
//! * A standby that cannot take over reports why ([`Blocker`]).

pub mod advert;
pub mod reasons;

use crate::detector::{MediumKind, MediumStats, MAX_MEDIA};
use crate::fencing::FencingBudget;
use crate::heartbeat::{HealthFlags, Heartbeat, NodeState, Role};
use crate::reject::Reject;
use crate::time::{Duration, Instant};
use advert::Advert;
use reasons::{Blocker, ChangeReason, Mismatch, ResignReason, SwitchoverError, TakeoverReason};
use serde::{Deserialize, Serialize};

/// Static parameters of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairParams {
    pub cluster_id: u32,
    pub node_id: u8,
    /// 1..=255; higher is preferred. 0 is treated as 1 (0 on the wire means "ineligible").
    pub priority: u8,
    /// Advert interval.
    pub interval: Duration,
    /// The peer is dead after `interval × dead_count` without progress on every medium.
    pub dead_count: u32,
    /// Take the VIPs back from a lower-priority active peer (automatic failback).
    pub preempt: bool,
    /// How long the preempt condition must hold before asking.
    pub preempt_delay: Duration,
    /// This process's incarnation; must grow across restarts.
    pub boot_epoch: u32,
    pub config_digest: u32,
    pub build_stamp: u32,
}

impl PairParams {
    pub fn dead_after(&self) -> Duration {
        self.interval.saturating_mul(self.dead_count.max(1) as u64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairState {
    /// Listening for the peer before deciding.
    Starting,
    Standby,
    /// Holds the VIPs.
    Active,
    /// Operator took the node out: holds nothing, takes nothing.
    Maintenance,
}

impl PairState {
    pub fn name(self) -> &'static str {
        match self {
            PairState::Starting => "starting",
            PairState::Standby => "standby",
            PairState::Active => "active",
            PairState::Maintenance => "maintenance",
        }
    }
}

/// What the caller must do, in order. Each action carries all the caller needs: the driver
/// never asks the state machine back while carrying them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this advert on every medium now. At most one per input and always the last
    /// action, so it tells the peer the node's position after everything else was done.
    SendAdvert(Advert),
    /// Add the VIPs and announce them (GARP / unsolicited NA burst).
    Acquire { term: u32, reason: TakeoverReason },
    /// Remove the VIPs. Comes *before* the `SendAdvert` that tells the peer.
    Release { term: u32, reason: ResignReason },
    /// Re-announce VIPs already held (conflict won on a term tie).
    Announce { term: u32 },
    /// State changed (hooks, logs).
    Notify(Transition),
}

/// A state change and the node's position right after it: what hooks and logs report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: PairState,
    pub to: PairState,
    pub reason: ChangeReason,
    /// Highest term known (after a takeover, the new tenure's).
    pub term: u32,
    /// Effective priority: 0 when the node will not hold the VIPs.
    pub priority: u8,
    /// Own tracked checks (bit set = problem).
    pub health: HealthFlags,
    /// The peer's node id, once one was heard.
    pub peer: Option<u8>,
}

/// One input's actions. The longest sequence any input produces is four (release, notify,
/// notify, advert: maintenance switched on while active); eight leave room.
pub type Actions = heapless::Vec<Action, 8>;

/// What was asked and what happened, for the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchoverOutcome {
    /// We were active and resigned; the peer takes over on our next advert.
    Resigned,
    /// We are standby and asked the active peer to resign.
    Requested,
}

/// The last advert accepted from the peer, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub advert: Advert,
    pub last_heard: Instant,
    pub mismatch: Option<Mismatch>,
}

impl PeerView {
    pub fn node_id(&self) -> u8 {
        self.advert.hb.node_id
    }
    pub fn is_active(&self) -> bool {
        self.advert.hb.state == NodeState::Active
    }
    /// Willing and able to hold the VIPs.
    pub fn is_eligible(&self) -> bool {
        self.advert.priority > 0
            && matches!(self.advert.hb.state, NodeState::Active | NodeState::Standby | NodeState::Starting)
    }
}

#[derive(Clone, Debug)]
pub struct Election {
    p: PairParams,
    state: PairState,
    /// When this incarnation started: adverts report their uptime from it.
    born: Instant,
    /// When the current listening for the peer began (start, or a relisten).
    started: Instant,
    /// Highest term known (ours or the peer's).
    term: u32,
    health: HealthFlags,
    maintenance: bool,
    /// We resigned for the peer and wait for it to become active.
    yielding: bool,
    /// After an operator switchover away from us: do not preempt back.
    preempt_suppressed: bool,
    /// A switchover issued on this (standby) node is pending until this instant.
    manual_request_until: Option<Instant>,
    preempt_since: Option<Instant>,
    /// The preempt delay has passed: our adverts carry `REQUEST`.
    preempt_ready: bool,
    /// Term of our current (or last) tenure.
    held_term: u32,
    /// `now` of the latest input.
    last_now: Instant,
    /// Sequence of our first advert since our position (state, yield, priority) last
    /// changed. The peer's adverts that ack at least this were written knowing it.
    changed_seq: u64,
    peer: Option<PeerView>,
    media: [MediumStats; MAX_MEDIA],
    seq: u64,
    next_advert: Instant,
    /// The current input owes the peer an advert (sent last, see [`Self::finish`]).
    advert_due: bool,
    leaving: bool,
    takeovers: u32,
    resigns: u32,
    last_takeover: Option<TakeoverReason>,
    last_resign: Option<ResignReason>,
}

impl Election {
    pub fn new(p: PairParams, now: Instant) -> Self {
        Election {
            p,
            state: PairState::Starting,
            born: now,
            started: now,
            term: 0,
            health: HealthFlags::OK,
            maintenance: false,
            yielding: false,
            preempt_suppressed: false,
            manual_request_until: None,
            preempt_since: None,
            preempt_ready: false,
            held_term: 0,
            changed_seq: 1,
            last_now: now,
            peer: None,
            media: [MediumStats::new(MediumKind::Stream); MAX_MEDIA],
            seq: 0,
            next_advert: now,
            advert_due: false,
            leaving: false,
            takeovers: 0,
            resigns: 0,
            last_takeover: None,
            last_resign: None,
        }
    }

    /// Restores the highest term this node knew before it restarted (the pair agent keeps it
    /// in its state file), so that its next takeover carries a term above every tenure it
    /// held before: terms order takeovers, and a term reused after a restart would let an
    /// older tenure win a conflict against a newer one.
    pub fn with_term(mut self, term: u32) -> Self {
        self.term = term;
        self
    }

    // ----- accessors -----

    pub fn params(&self) -> &PairParams {
        &self.p
    }
    pub fn state(&self) -> PairState {
        self.state
    }
    pub fn term(&self) -> u32 {
        self.term
    }
    pub fn health(&self) -> HealthFlags {
        self.health
    }
    pub fn maintenance(&self) -> bool {
        self.maintenance
    }
    pub fn peer(&self) -> Option<&PeerView> {
        self.peer.as_ref()
    }
    pub fn media(&self) -> &[MediumStats; MAX_MEDIA] {
        &self.media
    }
    pub fn takeovers(&self) -> u32 {
        self.takeovers
    }
    pub fn resigns(&self) -> u32 {
        self.resigns
    }
    pub fn last_takeover(&self) -> Option<TakeoverReason> {
        self.last_takeover
    }
    pub fn last_resign(&self) -> Option<ResignReason> {
        self.last_resign
    }
    pub fn is_eligible(&self) -> bool {
        !self.maintenance && !self.leaving && self.health.is_healthy()
    }
    /// The priority this node advertises: 0 when it will not hold the VIPs.
    pub fn effective_priority(&self) -> u8 {
        if self.is_eligible() {
            self.p.priority.max(1)
        } else {
            0
        }
    }
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.peer.is_some_and(|pv| now.saturating_since(pv.last_heard) < self.p.dead_after())
    }
    /// Whether `medium` showed the peer alive within the dead interval (tells "peer dead"
    /// from "one network partitioned").
    pub fn medium_alive(&self, medium: usize, now: Instant) -> bool {
        self.media
            .get(medium)
            .and_then(|m| m.rx.last_valid)
            .is_some_and(|t| now.saturating_since(t) < self.p.dead_after())
    }

    /// Why a non-active node is not active (None when active).
    pub fn blocker(&self, now: Instant) -> Option<Blocker> {
        if self.state == PairState::Active {
            return None;
        }
        if self.maintenance {
            return Some(Blocker::Maintenance);
        }
        if !self.health.is_healthy() {
            return Some(Blocker::Unhealthy(self.health));
        }
        if self.state == PairState::Starting {
            let waited = now.saturating_since(self.started);
            return Some(Blocker::Starting { remaining: self.p.dead_after() - waited });
        }
        if self.yielding {
            return Some(Blocker::Yielding);
        }
        match self.peer {
            Some(pv) if self.peer_alive(now) && pv.is_active() => Some(Blocker::PeerActive),
            Some(_) if self.peer_alive(now) => Some(Blocker::PeerPreferred),
            _ => None,
        }
    }

    /// The advert to send now. Each call consumes a sequence number.
    fn advert(&mut self, now: Instant) -> Advert {
        self.seq += 1;
        let state = if self.leaving {
            NodeState::Leaving
        } else {
            match self.state {
                PairState::Starting => NodeState::Starting,
                PairState::Standby | PairState::Maintenance => NodeState::Standby,
                PairState::Active => NodeState::Active,
            }
        };
        let mut flags = 0;
        if self.request_flag() {
            flags |= Advert::REQUEST;
        }
        if self.yielding {
            flags |= Advert::YIELD;
        }
        if self.maintenance {
            flags |= Advert::MAINTENANCE;
        }
        if self.peer.is_some_and(|pv| pv.mismatch.is_some()) {
            flags |= Advert::REFUSES_PEER;
        }
        Advert {
            hb: Heartbeat {
                cluster_id: self.p.cluster_id,
                node_id: self.p.node_id,
                role: if self.state == PairState::Active { Role::Primary } else { Role::Secondary },
                boot_epoch: self.p.boot_epoch,
                sequence: self.seq,
                uptime: now.saturating_since(self.born),
                state,
                health: self.health,
                config_digest: self.p.config_digest,
                build_stamp: self.p.build_stamp,
                budget: FencingBudget::NONE,
                test_acks: 0,
                last_test: 0,
            },
            priority: self.effective_priority(),
            term: if self.state == PairState::Active { self.held_term } else { self.term },
            flags,
            ack_epoch: self.peer.map_or(0, |pv| pv.advert.hb.boot_epoch),
            ack_seq: self.peer.map_or(0, |pv| pv.advert.hb.sequence),
        }
    }

    /// When [`poll`](Self::poll) must next be called at the latest.
    ///
    /// Only deadlines still ahead of the last input count: one that has passed was acted on
    /// then (a dead peer stays dead), and returning it again would make the caller spin.
    pub fn poll_at(&self) -> Instant {
        let dead = self.p.dead_after();
        let mut at = self.next_advert;
        let mut consider = |t: Instant| {
            if t > self.last_now {
                at = at.min(t);
            }
        };
        if self.state == PairState::Starting {
            consider(self.started + dead);
        }
        if let Some(pv) = &self.peer {
            consider(pv.last_heard + dead);
        }
        if let Some(since) = self.preempt_since {
            if !self.preempt_ready {
                consider(since + self.p.preempt_delay);
            }
        }
        if let Some(until) = self.manual_request_until {
            consider(until);
        }
        at
    }

    // ----- inputs -----

    /// Timers: periodic advert, peer death, end of the start-up wait, preempt delay.
    pub fn poll(&mut self, now: Instant) -> Actions {
        self.last_now = self.last_now.max(now);
        let mut out = Actions::new();
        self.evaluate(now, &mut out);
        if now >= self.next_advert {
            self.advert_due = true;
        }
        self.finish(now, &mut out);
        out
    }

    /// A frame from `medium` (0..MAX_MEDIA), decoded by [`advert::decode_advert`] or rejected there.
    /// Rejections are counted per medium and change nothing else.
    pub fn on_frame(&mut self, medium: usize, frame: Result<Advert, Reject>, now: Instant) -> Actions {
        self.last_now = self.last_now.max(now);
        let mut out = Actions::new();
        let medium = medium.min(MAX_MEDIA - 1);
        let locked_peer = self.peer.map(|pv| pv.node_id());
        let me = self.p.node_id;
        let m = &mut self.media[medium];
        let accepted = frame.and_then(|a| {
            if a.hb.node_id == me || locked_peer.is_some_and(|id| id != a.hb.node_id) {
                Err(Reject::WrongNode { found: a.hb.node_id })
            } else {
                Ok(a)
            }
        });
        // On a stream every accepted frame is new (the detector refuses repeats), so even
        // the first one is proof of life.
        let (Ok(_), Ok(a)) = (m.observe(accepted.as_ref().map(|a| &a.hb).map_err(|r| *r), now), accepted) else {
            return out;
        };
        let mismatch = if a.hb.build_stamp != self.p.build_stamp {
            Some(Mismatch::Build { ours: self.p.build_stamp, theirs: a.hb.build_stamp })
        } else if a.hb.config_digest != self.p.config_digest {
            Some(Mismatch::Config { ours: self.p.config_digest, theirs: a.hb.config_digest })
        } else {
            None
        };
        // The same advert goes out on every medium and media reorder: an advert older than
        // one already taken from another medium proves liveness but must not roll the
        // peer's view back.
        if self
            .peer
            .is_some_and(|pv| (pv.advert.hb.boot_epoch, pv.advert.hb.sequence) >= (a.hb.boot_epoch, a.hb.sequence))
        {
            if let Some(pv) = self.peer.as_mut() {
                pv.last_heard = now;
            }
            self.evaluate(now, &mut out);
            self.finish(now, &mut out);
            return out;
        }
        let restarted = self.peer.is_some_and(|pv| pv.advert.hb.boot_epoch != a.hb.boot_epoch);
        if restarted {
            // A new incarnation knows nothing of what we agreed with the old one.
            self.preempt_suppressed = false;
        }
        let was_active = self.peer.is_some_and(|pv| pv.is_active());
        self.peer = Some(PeerView { advert: a, last_heard: now, mismatch });
        if a.hb.state == NodeState::Active {
            // The peer took over: our resignation is complete.
            self.yielding = false;
            if !was_active && self.state != PairState::Active {
                self.manual_request_until = None;
            }
        }
        // Before settling two actives: a resign's notify reports the peer's term.
        self.term = self.term.max(a.term);
        // Two actives: settle it on this very advert.
        if self.state == PairState::Active && a.hb.state == NodeState::Active {
            let mine = (self.held_term(), self.effective_priority(), core::cmp::Reverse(self.p.node_id));
            let theirs = (a.term, a.priority, core::cmp::Reverse(a.hb.node_id));
            if theirs > mine {
                self.resign(ResignReason::LostConflict { peer_term: a.term }, now, &mut out);
                self.yielding = false;
            } else if a.term == self.held_term() {
                push(&mut out, Action::Announce { term: self.held_term() });
            }
        }
        self.evaluate(now, &mut out);
        self.finish(now, &mut out);
        out
    }

    /// Counts a frame that did not even decode (the caller's `decode_advert` error) —
    /// same as `on_frame(medium, Err(r), now)`.
    pub fn on_reject(&mut self, medium: usize, r: Reject, now: Instant) -> Actions {
        self.on_frame(medium, Err(r), now)
    }

    /// The tracked checks' combined result (bit set = problem).
    pub fn set_health(&mut self, health: HealthFlags, now: Instant) -> Actions {
        self.last_now = self.last_now.max(now);
        let mut out = Actions::new();
        if health == self.health {
            return out;
        }
        let recovered = !self.health.is_healthy() && health.is_healthy();
        self.health = health;
        self.changed();
        if recovered && self.state == PairState::Standby && !self.peer_alive(now) {
            // What we know of the peer dates from while our own checks failed (often: our
            // link was down, so we heard nothing). Listen for a dead interval before
            // claiming, or a node whose cable comes back would grab the VIPs from a peer
            // that took them meanwhile.
            self.relisten(now, &mut out);
        }
        self.evaluate(now, &mut out);
        // The peer must learn our new effective priority at once (it may be waiting to
        // take over from us, or to stop preferring us).
        self.advert_due = true;
        self.finish(now, &mut out);
        out
    }

    pub fn set_maintenance(&mut self, on: bool, now: Instant) -> Actions {
        self.last_now = self.last_now.max(now);
        let mut out = Actions::new();
        if on == self.maintenance {
            return out;
        }
        self.maintenance = on;
        self.changed();
        self.preempt_suppressed = false;
        self.manual_request_until = None;
        if on {
            if self.state == PairState::Active {
                self.resign(ResignReason::Maintenance, now, &mut out);
            }
            self.yielding = false;
            self.set_state(PairState::Maintenance, ChangeReason::MaintenanceOn, &mut out);
        } else {
            // Back as a standby that lets the peer keep (or take) the VIPs: our view of the
            // peer predates our maintenance, and taking over on it could make two actives.
            // If the peer is dead or ineligible, the rules below take over at once anyway.
            self.yielding = true;
            self.set_state(PairState::Standby, ChangeReason::MaintenanceOff, &mut out);
            if !self.peer_alive(now) {
                self.relisten(now, &mut out);
            }
        }
        self.evaluate(now, &mut out);
        self.advert_due = true;
        self.finish(now, &mut out);
        out
    }

    /// Operator switchover, issued on either node.
    pub fn switchover(&mut self, now: Instant) -> Result<(SwitchoverOutcome, Actions), SwitchoverError> {
        if self.maintenance {
            return Err(SwitchoverError::InMaintenance);
        }
        if self.state == PairState::Starting {
            return Err(SwitchoverError::Starting);
        }
        let pv = match self.peer {
            Some(pv) if self.peer_alive(now) => pv,
            _ => return Err(SwitchoverError::PeerNotAlive),
        };
        if let Some(m) = pv.mismatch {
            return Err(SwitchoverError::PeerRefused(m));
        }
        let mut out = Actions::new();
        if self.state == PairState::Active {
            if !pv.is_eligible() {
                return Err(SwitchoverError::PeerIneligible);
            }
            self.resign(ResignReason::Switchover, now, &mut out);
            self.preempt_suppressed = true;
            self.finish(now, &mut out);
            Ok((SwitchoverOutcome::Resigned, out))
        } else {
            if !self.health.is_healthy() {
                return Err(SwitchoverError::Unhealthy(self.health));
            }
            // Only ask. Taking the VIPs here on a possibly stale view of the peer could
            // make two actives; the peer resigns and says so, and we take over on that.
            self.preempt_suppressed = false;
            self.manual_request_until = Some(now + self.p.dead_after().saturating_mul(2));
            self.advert_due = true;
            self.finish(now, &mut out);
            Ok((SwitchoverOutcome::Requested, out))
        }
    }

    /// Clean stop: release the VIPs and tell the peer it may take over at once.
    pub fn shutdown(&mut self, now: Instant) -> Actions {
        let mut out = Actions::new();
        // Leaving first, so the resign's notify already reports priority 0.
        self.leaving = true;
        if self.state == PairState::Active {
            self.resign(ResignReason::Shutdown, now, &mut out);
        }
        self.advert_due = true;
        self.finish(now, &mut out);
        out
    }

    // ----- the rules -----

    fn held_term(&self) -> u32 {
        self.held_term
    }

    fn request_flag(&self) -> bool {
        if self.state == PairState::Active || !self.is_eligible() {
            return false;
        }
        self.manual_request_until.is_some() || self.preempt_ready
    }

    /// Back to `Starting`: listen for the peer for a dead interval before deciding.
    fn relisten(&mut self, now: Instant, out: &mut Actions) {
        self.started = now;
        self.set_state(PairState::Starting, ChangeReason::Relisten, out);
    }

    /// Our advertised position changes with the next advert.
    fn changed(&mut self) {
        self.changed_seq = self.seq + 1;
    }

    /// The peer's latest advert was written after it saw our latest position.
    fn peer_current(&self) -> bool {
        self.peer.is_some_and(|pv| pv.advert.ack_epoch == self.p.boot_epoch && pv.advert.ack_seq >= self.changed_seq)
    }

    fn set_state(&mut self, to: PairState, reason: ChangeReason, out: &mut Actions) {
        self.changed();
        if to != self.state {
            let from = self.state;
            self.state = to;
            push(
                out,
                Action::Notify(Transition {
                    from,
                    to,
                    reason,
                    term: self.term,
                    priority: self.effective_priority(),
                    health: self.health,
                    peer: self.peer.map(|pv| pv.node_id()),
                }),
            );
        }
    }

    /// Ends an input: the advert it owes the peer goes out last, built from the node's
    /// position after everything the input changed.
    fn finish(&mut self, now: Instant, out: &mut Actions) {
        if core::mem::take(&mut self.advert_due) {
            let advert = self.advert(now);
            push(out, Action::SendAdvert(advert));
            self.next_advert = now + self.p.interval;
        }
    }

    fn take_over(&mut self, reason: TakeoverReason, out: &mut Actions) {
        self.term = self.term.saturating_add(1);
        self.held_term = self.term;
        self.yielding = false;
        self.preempt_suppressed = false;
        self.manual_request_until = None;
        self.preempt_since = None;
        self.preempt_ready = false;
        self.takeovers = self.takeovers.saturating_add(1);
        self.last_takeover = Some(reason);
        push(out, Action::Acquire { term: self.term, reason });
        self.set_state(PairState::Active, ChangeReason::TookOver(reason), out);
        self.advert_due = true;
    }

    fn resign(&mut self, reason: ResignReason, _now: Instant, out: &mut Actions) {
        debug_assert_eq!(self.state, PairState::Active);
        self.resigns = self.resigns.saturating_add(1);
        self.last_resign = Some(reason);
        self.yielding = true;
        push(out, Action::Release { term: self.held_term, reason });
        self.set_state(PairState::Standby, ChangeReason::Resigned(reason), out);
        self.advert_due = true;
    }

    fn evaluate(&mut self, now: Instant, out: &mut Actions) {
        let dead = self.p.dead_after();
        let alive = self.peer_alive(now);
        if !alive {
            // Nobody to yield to or to ask.
            self.yielding = false;
            self.manual_request_until = None;
            self.preempt_since = None;
            self.preempt_ready = false;
        }
        if self.manual_request_until.is_some_and(|t| now >= t) {
            self.manual_request_until = None;
        }
        if self.leaving {
            return;
        }
        match self.state {
            PairState::Maintenance => {}
            PairState::Starting => {
                if alive {
                    self.set_state(PairState::Standby, ChangeReason::PeerHeard, out);
                    self.evaluate_standby(now, out);
                } else if now.saturating_since(self.started) >= dead {
                    if self.is_eligible() {
                        self.take_over(TakeoverReason::AloneAtStart, out);
                    } else {
                        self.set_state(PairState::Standby, ChangeReason::AloneIneligible, out);
                    }
                }
            }
            PairState::Standby => self.evaluate_standby(now, out),
            PairState::Active => {
                let Some(pv) = self.peer.filter(|_| alive) else { return };
                let cooperative = pv.mismatch.is_none() && pv.is_eligible() && !pv.is_active();
                if !cooperative {
                    return;
                }
                if !self.health.is_healthy() {
                    self.resign(ResignReason::Unhealthy(self.health), now, out);
                } else if pv.advert.has(Advert::REQUEST) {
                    self.resign(ResignReason::PeerRequested, now, out);
                }
            }
        }
    }

    fn evaluate_standby(&mut self, now: Instant, out: &mut Actions) {
        let alive = self.peer_alive(now);
        if !self.is_eligible() {
            self.preempt_since = None;
            self.preempt_ready = false;
            return;
        }
        let Some(pv) = self.peer else {
            // Standby without ever hearing a peer only happens after an ineligible start.
            self.take_over(TakeoverReason::AloneAtStart, out);
            return;
        };
        if !alive {
            let silent_for = now.saturating_since(pv.last_heard);
            self.take_over(TakeoverReason::PeerDead { silent_for }, out);
            return;
        }
        if pv.is_active() {
            // Preempt: a strictly better node asks for the VIPs once the delay has passed.
            let want = self.p.preempt
                && !self.preempt_suppressed
                && !self.yielding
                && pv.mismatch.is_none()
                && self.effective_priority() > pv.advert.priority;
            if want {
                let since = *self.preempt_since.get_or_insert(now);
                if now.saturating_since(since) >= self.p.preempt_delay && !self.preempt_ready {
                    self.preempt_ready = true;
                    self.advert_due = true;
                }
            } else {
                self.preempt_since = None;
                self.preempt_ready = false;
            }
            return;
        }
        self.preempt_since = None;
        self.preempt_ready = false;
        // Neither of us holds the VIPs.
        let reason = if !self.peer_current() {
            // Its advert may predate our last change (a resign, a yield, leaving
            // maintenance): wait for one written with our current position in view, or both
            // nodes could decide at once on each other's stale state.
            None
        } else if !pv.is_eligible() {
            Some(TakeoverReason::PeerIneligible)
        } else {
            let mine = (!self.yielding, self.effective_priority(), core::cmp::Reverse(self.p.node_id));
            let theirs = (!pv.advert.has(Advert::YIELD), pv.advert.priority, core::cmp::Reverse(pv.node_id()));
            if mine > theirs {
                Some(if pv.advert.has(Advert::YIELD) { TakeoverReason::PeerYielded } else { TakeoverReason::Preferred })
            } else {
                None
            }
        };
        if let Some(reason) = reason {
            self.take_over(reason, out);
        }
    }
}

fn push(out: &mut Actions, a: Action) {
    // [`Actions`] holds the longest sequence any single input produces; never silently
    // drop one.
    out.push(a).expect("election action list overflow");
}

#[cfg(test)]
mod tests;
