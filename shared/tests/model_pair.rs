//! Model check of the pair election (shared/src/election.rs): two nodes, two media, time in
//! ticks, with message loss, duplication, delay (bounded reordering: a frame overtaken by
//! the next tick's), crash and restart, partition (one medium or both) and heal, and health
//! flaps. Every transition drives the real [`Election`] and the real advert codec; nothing
//! of the election's logic is copied here.
//!
//! The state space is bounded by the number of faults (`faults`) and the length of the
//! chaotic phase (`chaos_ticks`); after it comes a `Heal`, then `calm_ticks` of a lossless,
//! prompt network, in which the bounded-time properties are judged.

#[macro_use]
mod model;

use rearguard_shared::election::advert::{decode_advert, encode_advert, MAX_ADVERT_FRAME};
use rearguard_shared::election::{Action, Election, PairParams, PairState};
use rearguard_shared::heartbeat::{HealthFlags, Verifier};
use rearguard_shared::{Duration, Instant};
use stateright::{Model, Property};

const TICK_MS: u64 = 100;
const CLUSTER: u32 = 0xC0FFEE;
const MEDIA: usize = 2;
/// The peer is dead after this many ticks of silence.
const DEAD_COUNT: u32 = 3;

/// Deliberately broken drivers or configurations: each must make one property fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// The product: terms are persisted across restarts (the pair agent's state file).
    Real,
    /// A restarted node forgets its term: its next takeover may reuse an old term.
    TermNotPersisted,
    /// The driver does not pass failing checks to the election.
    HealthNotReported,
    /// Both nodes configured with the same node id: each refuses the other's adverts.
    SameNodeId,
    /// The driver never runs the election's timers.
    NoTimers,
}

#[derive(Clone, Debug)]
struct PairModel {
    variant: Variant,
    faults: u8,
    chaos_ticks: u64,
    calm_ticks: u64,
    /// Ticks after the heal within which there must be exactly one holder.
    settle_ticks: u64,
}

#[derive(Clone, Debug)]
struct Node {
    /// `None` while crashed.
    e: Option<Election>,
    epoch: u32,
    healthy: bool,
    /// The highest term this node knew, as the agent persists it (survives a crash).
    persisted_term: u32,
    /// The term of this node's last takeover, in any incarnation (ghost).
    last_acquire: u32,
}

#[derive(Clone, Debug)]
struct Frame {
    to: usize,
    medium: usize,
    bytes: heapless::Vec<u8, MAX_ADVERT_FRAME>,
}

#[derive(Clone, Debug)]
struct State {
    tick: u64,
    nodes: [Node; 2],
    cut: [bool; MEDIA],
    /// Frames held back to the next tick (delayed or duplicated).
    late: Vec<Frame>,
    faults_used: u8,
    /// Tick of the heal; `None` during the chaotic phase.
    healed_at: Option<u64>,
    // Ghost flags, set by the transition that broke the rule.
    term_reused: bool,
    unhealthy_took_over: bool,
}
identity_by_debug!(State);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// The first advert `from` sends on `medium` this tick is lost / duplicated (the copy
    /// arrives a tick later) / delayed a tick (overtaken by later frames).
    Drop {
        from: usize,
        medium: usize,
    },
    Dup {
        from: usize,
        medium: usize,
    },
    Delay {
        from: usize,
        medium: usize,
    },
    Crash(usize),
    Restart(usize),
    Cut(usize),
    Partition,
    Health(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Tick(Fault),
    Heal,
}

impl PairModel {
    fn real() -> Self {
        PairModel {
            variant: Variant::Real,
            faults: 3,
            chaos_ticks: 9,
            calm_ticks: 12,
            settle_ticks: 3 * DEAD_COUNT as u64,
        }
    }

    fn params(&self, i: usize, epoch: u32) -> PairParams {
        PairParams {
            cluster_id: CLUSTER,
            node_id: if self.variant == Variant::SameNodeId { 1 } else { 1 + i as u8 },
            priority: [200, 100][i],
            interval: Duration::from_millis(TICK_MS),
            dead_count: DEAD_COUNT,
            preempt: false,
            preempt_delay: Duration::from_millis(3 * TICK_MS),
            boot_epoch: epoch,
            config_digest: 7,
            build_stamp: 9,
        }
    }

    fn start(&self, s: &mut State, i: usize) {
        let now = at(s.tick);
        let n = &mut s.nodes[i];
        let mut e = Election::new(self.params(i, n.epoch), now);
        if self.variant != Variant::TermNotPersisted {
            e = e.with_term(n.persisted_term);
        }
        n.e = Some(e);
        if !n.healthy && self.variant != Variant::HealthNotReported {
            let acts = s.nodes[i].e.as_mut().unwrap().set_health(unhealthy(), now);
            self.carry_out(s, i, acts, &mut Fault::None, &mut Vec::new());
        }
    }

    /// Carries out one node's actions; frames go to `queue` (this tick) or `s.late`.
    fn carry_out(
        &self,
        s: &mut State,
        i: usize,
        acts: impl IntoIterator<Item = Action>,
        f: &mut Fault,
        queue: &mut Vec<Frame>,
    ) {
        for a in acts {
            match a {
                Action::Acquire { term, .. } => {
                    let n = &mut s.nodes[i];
                    if !n.healthy {
                        s.unhealthy_took_over = true;
                    }
                    if term <= n.last_acquire {
                        s.term_reused = true;
                    }
                    n.last_acquire = term;
                }
                Action::SendAdvert(adv) => {
                    let mut buf = [0u8; MAX_ADVERT_FRAME];
                    let len = encode_advert(&adv, None, &mut buf);
                    for medium in 0..MEDIA {
                        if s.cut[medium] {
                            continue;
                        }
                        let frame = Frame { to: 1 - i, medium, bytes: heapless::Vec::from_slice(&buf[..len]).unwrap() };
                        // A frame fault hits the first matching frame of its tick only.
                        let hit = match *f {
                            Fault::Drop { from, medium: m }
                            | Fault::Dup { from, medium: m }
                            | Fault::Delay { from, medium: m } => from == i && m == medium,
                            _ => false,
                        };
                        let fault = if hit { std::mem::replace(f, Fault::None) } else { Fault::None };
                        match fault {
                            Fault::Drop { .. } => {}
                            Fault::Dup { .. } => {
                                queue.push(frame.clone());
                                s.late.push(frame);
                            }
                            Fault::Delay { .. } => s.late.push(frame),
                            _ => queue.push(frame),
                        }
                    }
                }
                _ => {}
            }
        }
        let n = &mut s.nodes[i];
        if let Some(term) = n.e.as_ref().map(Election::term) {
            n.persisted_term = n.persisted_term.max(term);
        }
    }

    fn holders(s: &State) -> usize {
        s.nodes.iter().filter(|n| n.e.as_ref().is_some_and(|e| e.state() == PairState::Active)).count()
    }

    fn settled(&self, s: &State) -> bool {
        s.healed_at.is_some_and(|h| s.tick >= h + self.settle_ticks)
    }
}

fn at(tick: u64) -> Instant {
    Instant::from_millis(tick * TICK_MS)
}

fn unhealthy() -> HealthFlags {
    HealthFlags(HealthFlags::LINK_DOWN)
}

impl Model for PairModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let node = Node { e: None, epoch: 1, healthy: true, persisted_term: 0, last_acquire: 0 };
        let mut s = State {
            tick: 0,
            nodes: [node.clone(), node],
            cut: [false; MEDIA],
            late: Vec::new(),
            faults_used: 0,
            healed_at: None,
            term_reused: false,
            unhealthy_took_over: false,
        };
        self.start(&mut s, 0);
        self.start(&mut s, 1);
        vec![s]
    }

    fn actions(&self, s: &State, out: &mut Vec<Step>) {
        if s.healed_at.is_some() {
            out.push(Step::Tick(Fault::None));
            return;
        }
        if s.tick >= self.chaos_ticks {
            out.push(Step::Heal);
            return;
        }
        out.push(Step::Tick(Fault::None));
        out.push(Step::Heal);
        if s.faults_used >= self.faults {
            return;
        }
        for i in 0..2 {
            if s.nodes[i].e.is_some() {
                out.push(Step::Tick(Fault::Crash(i)));
                for medium in 0..MEDIA {
                    out.push(Step::Tick(Fault::Drop { from: i, medium }));
                    out.push(Step::Tick(Fault::Dup { from: i, medium }));
                    out.push(Step::Tick(Fault::Delay { from: i, medium }));
                }
            } else {
                out.push(Step::Tick(Fault::Restart(i)));
            }
            out.push(Step::Tick(Fault::Health(i)));
        }
        for m in 0..MEDIA {
            if !s.cut[m] {
                out.push(Step::Tick(Fault::Cut(m)));
            }
        }
        if !s.cut.iter().all(|c| *c) {
            out.push(Step::Tick(Fault::Partition));
        }
    }

    fn next_state(&self, prev: &State, step: Step) -> Option<State> {
        let mut s = prev.clone();
        let f = match step {
            Step::Heal => {
                s.healed_at = Some(s.tick);
                s.cut = [false; MEDIA];
                return Some(s);
            }
            Step::Tick(f) => f,
        };
        let mut pending = f;
        if f != Fault::None {
            s.faults_used += 1;
        }
        // Faults that happen between ticks.
        match f {
            Fault::Crash(i) => s.nodes[i].e = None,
            Fault::Restart(i) => {
                s.nodes[i].epoch += 1;
                self.start(&mut s, i);
            }
            Fault::Cut(m) => s.cut[m] = true,
            Fault::Partition => s.cut = [true; MEDIA],
            Fault::Health(i) => {
                s.nodes[i].healthy = !s.nodes[i].healthy;
                let h = if s.nodes[i].healthy { HealthFlags::OK } else { unhealthy() };
                if self.variant != Variant::HealthNotReported {
                    if let Some(e) = s.nodes[i].e.as_mut() {
                        let acts = e.set_health(h, at(s.tick));
                        let mut q = Vec::new();
                        self.carry_out(&mut s, i, acts, &mut Fault::None, &mut q);
                        s.late.extend(q);
                    }
                }
            }
            _ => {}
        }
        s.tick += 1;
        let now = at(s.tick);
        // Frames held back arrive first, then timers fire, then this tick's frames.
        let mut queue: Vec<Frame> = std::mem::take(&mut s.late);
        for i in 0..2 {
            if self.variant == Variant::NoTimers {
                break;
            }
            let Some(e) = s.nodes[i].e.as_mut() else { continue };
            if e.poll_at() <= now {
                let acts = e.poll(now);
                self.carry_out(&mut s, i, acts, &mut pending, &mut queue);
            }
        }
        let verifier = Verifier { cluster_id: CLUSTER, key: None };
        let mut delivered = 0;
        while !queue.is_empty() {
            let frame = queue.remove(0);
            delivered += 1;
            assert!(delivered < 64, "adverts ping-pong without end at tick {}", s.tick);
            let i = frame.to;
            let Some(e) = s.nodes[i].e.as_mut() else { continue };
            let acts = e.on_frame(frame.medium, decode_advert(&frame.bytes, &verifier), now);
            self.carry_out(&mut s, i, acts, &mut pending, &mut queue);
        }
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.healed_at.is_none_or(|h| s.tick <= h + self.calm_ticks)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("terms strictly increase", |_, s: &State| !s.term_reused),
            Property::always("an unhealthy node never takes over", |_, s: &State| !s.unhealthy_took_over),
            Property::always("after a heal, at most one holder within the bound", |m: &PairModel, s: &State| {
                !m.settled(s) || PairModel::holders(s) <= 1
            }),
            Property::always(
                "after a heal, a holder within the bound while a healthy node lives",
                |m: &PairModel, s: &State| {
                    let candidate = s.nodes.iter().any(|n| n.e.is_some() && n.healthy);
                    !m.settled(s) || !candidate || PairModel::holders(s) >= 1
                },
            ),
            // The model reaches what it is meant to exercise.
            Property::sometimes("two holders during a partition", |_, s: &State| PairModel::holders(s) == 2),
            Property::sometimes("a takeover after a crash", |_, s: &State| {
                s.nodes.iter().any(|n| n.e.is_none() && n.last_acquire > 0)
                    && s.nodes.iter().any(|n| n.e.as_ref().is_some_and(|e| e.state() == PairState::Active))
            }),
        ]
    }
}

#[test]
fn the_election_keeps_its_promises() {
    use stateright::Checker;
    let (run, c) = model::explore("pair election", PairModel::real(), None);
    c.assert_properties();
    assert!(run.unique > 10_000, "the model explored too little to mean anything: {}", run.unique);
}

fn broken(variant: Variant, property: &'static str) {
    let m = PairModel { variant, ..PairModel::real() };
    let (_, c) = model::explore(&format!("pair election, {variant:?}"), m, Some(property));
    model::expect_counterexample(&c, property);
}

#[test]
fn a_term_forgotten_at_restart_is_caught() {
    broken(Variant::TermNotPersisted, "terms strictly increase");
}

#[test]
fn an_unreported_health_failure_is_caught() {
    broken(Variant::HealthNotReported, "an unhealthy node never takes over");
}

#[test]
fn two_holders_after_a_heal_are_caught() {
    broken(Variant::SameNodeId, "after a heal, at most one holder within the bound");
}

#[test]
fn no_holder_after_a_heal_is_caught() {
    broken(Variant::NoTimers, "after a heal, a holder within the bound while a healthy node lives");
}
