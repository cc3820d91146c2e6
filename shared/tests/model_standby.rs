//! Model check of cold standby: one primary's agent and one standby listener on a shared
//! disk (the primary's heartbeat slot and its mailbox), time in ticks of one poll period.
//!
//! The listener is the real [`StandbyListener`] fed through the real heartbeat and mailbox
//! codecs, carried out the way `firmware/src/app.rs` does it (read the slot, decode, feed,
//! tick; write the claim and tell the listener, which then releases). The primary is a model of `host-agent/src/agent.rs`'s loop,
//! which is I/O and has no state machine to call: at start it refuses to serve on a claim;
//! each cycle it writes its heartbeat and reads its mailbox (a claim fences it); its fence
//! monitor fences it when no cycle completed for the fencing bound.
//!
//! Faults, within a budget: the primary crashes, restarts, or its writes start or stop
//! failing (a hung or failing disk path); the listener restarts; the listener's claim write
//! fails. Within a tick the primary and the listener run in either order.
//!
//! Today's listener watches one primary. The model keeps the listener side in one struct
//! ([`Spare`]) and the primary side in another, so the N+S spare machine can be modelled by
//! making both arrays once it lands.

#[macro_use]
mod model;

use rearguard_shared::detector::MediumKind;
use rearguard_shared::disk::{MailboxMessage, RECORD_SECTOR};
use rearguard_shared::heartbeat::{self, Verifier};
use rearguard_shared::listener::{Action, ListenerParams, ListenerState, MediumId, NeverSeenPolicy, StandbyListener};
use rearguard_shared::{Duration, Instant};
use stateright::{Model, Property};

const TICK_MS: u64 = 100;
const CLUSTER: u32 = 0xC0FFEE;
const SPARE_ID: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Real,
    /// The listener's timeout is zero ("settle time 0").
    ZeroTimeout,
    /// The primary's fencing bound is longer than the listener's timeout (the agent's start
    /// check `timeout ≥ 2 × (interval + write_deadline + fence time)` skipped).
    FenceSlowerThanTimeout,
    /// The listener releases without writing the claim first.
    NoClaim,
    /// A claim write that fails does not hold the release (`App` before the model check).
    BestEffortClaim,
    /// The listener gives up on a never-seen primary after the timeout
    /// (`never_seen = "release-after"`); a restarted listener finds its own claim on the
    /// disk and stays consumed (`App::resume_earlier_takeover`).
    ReleaseAfter,
    /// `ReleaseAfter` with a restart that does not look for its own claim (the listener
    /// before the model check): it releases again.
    ReleaseAfterNoResume,
    /// The driver only runs the listener when the slot changed (no timer).
    OnlyOnChange,
}

#[derive(Clone, Debug)]
struct StandbyModel {
    variant: Variant,
    faults: u8,
    ticks: u64,
    /// Listener timeout, in ticks.
    timeout: u64,
    /// The primary fences when no cycle completed for this many ticks.
    fence_after: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Primary {
    /// `landed`: a heartbeat of this incarnation reached the disk. One that never did is
    /// invisible to the listener; its fence monitor fences it within the bound of its start.
    Serving { epoch: u32, seq: u64, last_cycle: u64, landed: bool },
    /// Crashed (off until restarted).
    Down,
    /// Fenced itself (no cycle in time, or a claim read while running).
    Fenced,
    /// Found a claim at start and refused to serve (exit 3).
    Refused,
}

/// The listener side: one spare watching one primary.
#[derive(Clone, Debug)]
struct Spare {
    /// `None` while the listener process is down (restarting).
    l: Option<(StandbyListener, MediumId)>,
    /// The boot gate; stays open across listener restarts (a power cycle closes it).
    gate_open: bool,
    /// Times the gate was driven (ghost).
    releases: u8,
    /// The next mailbox write fails (a disk fault on the listener's path).
    claim_write_fails: bool,
    /// The last claim write failed: the release is held (`App::release_held`).
    held: bool,
    /// The slot as last read (for the `OnlyOnChange` driver).
    last_read: Vec<u8>,
}

#[derive(Clone, Debug)]
struct State {
    tick: u64,
    primary: Primary,
    /// The primary's writes fail (a hung or failing path).
    stalled: bool,
    epochs: u32,
    slot: Vec<u8>,
    mailbox: Vec<u8>,
    spare: Spare,
    faults_used: u8,
    // Ghosts.
    /// Tick of the last heartbeat that reached the disk.
    last_write: Option<u64>,
    released_while_alive: bool,
    /// Released while the primary had run a cycle and had not fenced.
    released_while_unfenced: bool,
    served_after_release: bool,
}
identity_by_debug!(State);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    PrimaryCrash,
    PrimaryRestart,
    /// The primary's writes start (or stop) failing.
    Stall,
    ListenerRestart,
    ClaimWriteFails,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    fault: Fault,
    listener_first: bool,
}

impl StandbyModel {
    fn real() -> Self {
        StandbyModel { variant: Variant::Real, faults: 4, ticks: 20, timeout: 4, fence_after: 2 }
    }

    fn listener(&self, now: Instant) -> (StandbyListener, MediumId) {
        let timeout = if self.variant == Variant::ZeroTimeout { 0 } else { self.timeout };
        let params = ListenerParams {
            watched: rearguard_shared::listener::NodeSet::one(0),
            arbitration: None,
            timeout: Duration::from_millis(timeout * TICK_MS),
            never_seen: if matches!(self.variant, Variant::ReleaseAfter | Variant::ReleaseAfterNoResume) {
                NeverSeenPolicy::ReleaseAfter(Duration::from_millis(self.timeout * TICK_MS))
            } else {
                NeverSeenPolicy::WaitForever
            },
        };
        let mut l = StandbyListener::new(params, now);
        let id = l.add_medium(MediumKind::Polled).unwrap();
        (l, id)
    }

    fn fence_after(&self) -> u64 {
        if self.variant == Variant::FenceSlowerThanTimeout {
            self.timeout + 2
        } else {
            self.fence_after
        }
    }

    /// One cycle of the agent's loop.
    fn primary_step(&self, s: &mut State) {
        let Primary::Serving { epoch, seq, last_cycle, landed } = s.primary else { return };
        if s.tick.saturating_sub(last_cycle) > self.fence_after() {
            s.primary = Primary::Fenced;
            return;
        }
        let seq = seq + 1;
        s.primary = Primary::Serving { epoch, seq, last_cycle, landed };
        if s.stalled {
            return;
        }
        s.slot = model::heartbeat_frame(CLUSTER, 0, epoch, seq);
        s.last_write = Some(s.tick);
        if claimed(&s.mailbox) {
            s.primary = Primary::Fenced;
        } else {
            s.primary = Primary::Serving { epoch, seq, last_cycle: s.tick, landed: true };
            if s.spare.gate_open {
                s.served_after_release = true;
            }
        }
    }

    /// One poll of the listener, carried out as `App::poll` does: read the slot, decode,
    /// feed, tick; each claim written and its outcome told to the listener, which releases
    /// only once it is written (a failed write holds the release; see the listener's docs).
    fn listener_step(&self, s: &mut State) {
        let now = at(s.tick);
        if s.spare.l.is_none() {
            return;
        }
        if self.variant == Variant::OnlyOnChange && s.spare.last_read == s.slot {
            return;
        }
        s.spare.last_read = s.slot.clone();
        let (l, id) = s.spare.l.as_mut().unwrap();
        let mut block = [0u8; RECORD_SECTOR];
        block[..s.slot.len()].copy_from_slice(&s.slot);
        let frame = heartbeat::decode(&block, &Verifier { cluster_id: CLUSTER, key: None });
        let mut acts: std::collections::VecDeque<Action> = l.on_frame(*id, 0, frame, now).into_iter().collect();
        acts.extend(l.on_tick(now));
        while let Some(a) = acts.pop_front() {
            match a {
                Action::ClaimTakeover { node, primary_epoch, .. } => {
                    let written = self.write_claim(s, primary_epoch);
                    s.spare.held = !written;
                    let (l, _) = s.spare.l.as_mut().unwrap();
                    acts.extend(l.on_claim_written(node, written, now));
                }
                Action::Release(_) => self.release(s),
                _ => {}
            }
        }
    }

    /// The claim write, as the listener is told of it.
    fn write_claim(&self, s: &mut State, primary_epoch: Option<u32>) -> bool {
        if self.variant == Variant::NoClaim {
            return true;
        }
        if std::mem::take(&mut s.spare.claim_write_fails) {
            return self.variant == Variant::BestEffortClaim;
        }
        let mut b = [0u8; RECORD_SECTOR];
        MailboxMessage::TakeoverClaim { by: SPARE_ID, primary_epoch: primary_epoch.unwrap_or(0) }.encode(&mut b);
        s.mailbox = b[..32].to_vec();
        true
    }

    fn release(&self, s: &mut State) {
        if s.last_write.is_some_and(|w| s.tick - w < self.timeout) {
            s.released_while_alive = true;
        }
        if matches!(s.primary, Primary::Serving { landed: true, .. }) {
            s.released_while_unfenced = true;
        }
        s.spare.releases += 1;
        s.spare.gate_open = true;
    }

    /// Watching, and not holding a release for a claim it cannot write (a disk fault on the
    /// listener's path postpones the takeover; it does not void it).
    fn watching(s: &State) -> bool {
        !s.spare.held && s.spare.l.as_ref().is_some_and(|(l, _)| l.state() == ListenerState::Watching)
    }
}

/// What the agent reads in its mailbox: a claim, or something it cannot read as empty (a
/// torn claim) — both forbid serving.
fn claimed(mailbox: &[u8]) -> bool {
    let mut b = [0u8; RECORD_SECTOR];
    b[..mailbox.len()].copy_from_slice(mailbox);
    !matches!(MailboxMessage::decode(&b), Ok(MailboxMessage::Empty))
}

/// This spare's own claim stands in the mailbox.
fn own_claim(mailbox: &[u8]) -> bool {
    let mut b = [0u8; RECORD_SECTOR];
    b[..mailbox.len()].copy_from_slice(mailbox);
    matches!(MailboxMessage::decode(&b), Ok(MailboxMessage::TakeoverClaim { by: SPARE_ID, .. }))
}

fn at(tick: u64) -> Instant {
    Instant::from_millis(tick * TICK_MS)
}

impl Model for StandbyModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            tick: 0,
            primary: Primary::Serving { epoch: 1, seq: 0, last_cycle: 0, landed: false },
            stalled: false,
            epochs: 1,
            slot: Vec::new(),
            mailbox: Vec::new(),
            spare: Spare {
                l: Some(self.listener(at(0))),
                gate_open: false,
                releases: 0,
                claim_write_fails: false,
                held: false,
                last_read: Vec::new(),
            },
            faults_used: 0,
            last_write: None,
            released_while_alive: false,
            released_while_unfenced: false,
            served_after_release: false,
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<Step>) {
        let mut faults = vec![Fault::None];
        if s.faults_used < self.faults {
            faults.push(Fault::Stall);
            faults.push(Fault::ListenerRestart);
            if !s.spare.claim_write_fails && !s.spare.gate_open {
                faults.push(Fault::ClaimWriteFails);
            }
            faults.push(match s.primary {
                Primary::Serving { .. } => Fault::PrimaryCrash,
                _ => Fault::PrimaryRestart,
            });
        }
        for fault in faults {
            for listener_first in [false, true] {
                out.push(Step { fault, listener_first });
            }
        }
    }

    fn next_state(&self, prev: &State, step: Step) -> Option<State> {
        let mut s = prev.clone();
        if step.fault != Fault::None {
            s.faults_used += 1;
        }
        match step.fault {
            Fault::None => {}
            Fault::PrimaryCrash => s.primary = Primary::Down,
            Fault::PrimaryRestart => {
                // The agent's preflight: a claim (or an unreadable mailbox) forbids serving.
                s.epochs += 1;
                s.primary = if claimed(&s.mailbox) {
                    Primary::Refused
                } else {
                    Primary::Serving { epoch: s.epochs, seq: 0, last_cycle: s.tick, landed: false }
                };
            }
            Fault::Stall => s.stalled = !s.stalled,
            Fault::ListenerRestart => {
                // A new process: whatever the old one held in memory is gone.
                let (mut l, id) = self.listener(at(s.tick));
                if self.variant != Variant::ReleaseAfterNoResume && own_claim(&s.mailbox) {
                    l.resume_taken(0, at(s.tick));
                }
                s.spare.l = Some((l, id));
                s.spare.held = false;
                s.spare.last_read.clear();
            }
            Fault::ClaimWriteFails => s.spare.claim_write_fails = true,
        }
        s.tick += 1;
        if step.listener_first {
            self.listener_step(&mut s);
            self.primary_step(&mut s);
        } else {
            self.primary_step(&mut s);
            self.listener_step(&mut s);
        }
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.tick <= self.ticks
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("never released while the heartbeat progressed within the timeout", |_, s: &State| {
                !s.released_while_alive
            }),
            Property::always("never released while the primary is unfenced", |_, s: &State| !s.released_while_unfenced),
            Property::always("no primary cycle completes after the release", |_, s: &State| !s.served_after_release),
            Property::always("released at most once", |_, s: &State| s.spare.releases <= 1),
            Property::always("a dead primary is taken within the timeout", |m: &StandbyModel, s: &State| {
                let dead = !matches!(s.primary, Primary::Serving { .. });
                let silent = s.last_write.is_none_or(|w| s.tick - w > m.timeout + 1);
                !(dead && silent && StandbyModel::watching(s))
            }),
            Property::sometimes("a takeover", |_, s: &State| s.spare.gate_open),
            Property::sometimes("a restarted primary refuses to serve", |_, s: &State| s.primary == Primary::Refused),
        ]
    }
}

#[test]
fn cold_standby_keeps_its_promises() {
    use stateright::Checker;
    let (run, c) = model::explore("cold standby", StandbyModel::real(), None);
    c.assert_properties();
    assert!(run.unique > 10_000, "the model explored too little to mean anything: {}", run.unique);
}

fn broken(variant: Variant, property: &'static str) {
    let m = StandbyModel { variant, ..StandbyModel::real() };
    let (_, c) = model::explore(&format!("cold standby, {variant:?}"), m, Some(property));
    model::expect_counterexample(&c, property);
}

#[test]
fn a_zero_timeout_is_caught() {
    broken(Variant::ZeroTimeout, "never released while the heartbeat progressed within the timeout");
}

#[test]
fn a_fence_slower_than_the_timeout_is_caught() {
    broken(Variant::FenceSlowerThanTimeout, "never released while the primary is unfenced");
}

#[test]
fn a_release_without_a_claim_is_caught() {
    broken(Variant::NoClaim, "no primary cycle completes after the release");
}

#[test]
fn a_release_despite_a_failed_claim_is_caught() {
    broken(Variant::BestEffortClaim, "no primary cycle completes after the release");
}

#[test]
fn a_listener_restarted_with_release_after_stays_consumed() {
    use stateright::Checker;
    let m = StandbyModel { variant: Variant::ReleaseAfter, ..StandbyModel::real() };
    let (_, c) = model::explore("cold standby, release-after", m, None);
    c.assert_properties();
}

#[test]
fn a_listener_restarted_with_release_after_and_no_resume_is_caught() {
    broken(Variant::ReleaseAfterNoResume, "released at most once");
}

#[test]
fn a_listener_without_a_timer_is_caught() {
    broken(Variant::OnlyOnChange, "a dead primary is taken within the timeout");
}
