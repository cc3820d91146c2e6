use super::advert::*;
use super::reasons::*;
use super::*;
use crate::heartbeat::Verifier;
use crate::integrity::Key;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::vec::Vec;

const CLUSTER: u32 = 0xC0FFEE;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn params(node_id: u8, priority: u8) -> PairParams {
    PairParams {
        cluster_id: CLUSTER,
        node_id,
        priority,
        interval: Duration::from_millis(100),
        dead_count: 3,
        preempt: false,
        preempt_delay: Duration::from_millis(500),
        boot_epoch: 1,
        config_digest: 0x1111,
        build_stamp: 0x2222,
    }
}

fn acquires(a: &[Action]) -> usize {
    a.iter().filter(|x| matches!(x, Action::Acquire { .. })).count()
}
fn releases(a: &[Action]) -> usize {
    a.iter().filter(|x| matches!(x, Action::Release { .. })).count()
}
fn sent_advert(a: &[Action]) -> Option<Advert> {
    a.iter().find_map(|x| match x {
        Action::SendAdvert(adv) => Some(*adv),
        _ => None,
    })
}
fn notices(a: &[Action]) -> Vec<Transition> {
    a.iter()
        .filter_map(|x| match x {
            Action::Notify(t) => Some(*t),
            _ => None,
        })
        .collect()
}

/// Two nodes wired back to back through an in-memory network with per-message delay and
/// loss, driven on a fake clock.
struct Sim {
    nodes: [Election; 2],
    /// (deliver_at, to, medium, advert)
    wire: VecDeque<(Instant, usize, usize, Advert)>,
    now: Instant,
    /// Every action each node emitted, with the time.
    log: [Vec<(Instant, Action)>; 2],
    /// Whether messages from node i currently get through (per direction).
    link_up: [bool; 2],
    delay: Duration,
}

impl Sim {
    fn new(a: PairParams, b: PairParams) -> Sim {
        Sim {
            nodes: [Election::new(a, at(0)), Election::new(b, at(0))],
            wire: VecDeque::new(),
            now: at(0),
            log: [Vec::new(), Vec::new()],
            link_up: [true, true],
            delay: Duration::from_millis(1),
        }
    }

    fn apply(&mut self, i: usize, actions: Actions) {
        for a in actions {
            self.log[i].push((self.now, a));
            if let Action::SendAdvert(adv) = a {
                if self.link_up[i] {
                    self.wire.push_back((self.now + self.delay, 1 - i, 0, adv));
                }
            }
        }
    }

    fn step_to(&mut self, until: Instant) {
        while self.now < until {
            self.now = self.now + Duration::from_millis(1);
            let now = self.now;
            while let Some(pos) = self.wire.iter().position(|m| m.0 <= now) {
                let (_, to, medium, adv) = self.wire.remove(pos).unwrap();
                let acts = self.nodes[to].on_frame(medium, Ok(adv), now);
                self.apply(to, acts);
            }
            for i in 0..2 {
                if self.nodes[i].poll_at() <= now {
                    let acts = self.nodes[i].poll(now);
                    self.apply(i, acts);
                }
            }
        }
    }

    fn run(&mut self, ms: u64) {
        let until = self.now + Duration::from_millis(ms);
        self.step_to(until);
    }

    fn states(&self) -> [PairState; 2] {
        [self.nodes[0].state(), self.nodes[1].state()]
    }

    fn actives(&self) -> usize {
        self.nodes.iter().filter(|n| n.state() == PairState::Active).count()
    }

    fn acquires_since(&self, i: usize, t: Instant) -> usize {
        self.log[i].iter().filter(|(w, a)| *w >= t && matches!(a, Action::Acquire { .. })).count()
    }
}

fn started_pair(a: PairParams, b: PairParams) -> Sim {
    let mut s = Sim::new(a, b);
    s.run(1000);
    s
}

// ----- wire format -----

#[test]
fn adverts_round_trip_and_bad_ones_are_named() {
    let key = Key::new(&[7u8; 32]).unwrap();
    let other = Key::new(&[9u8; 32]).unwrap();
    let mut e = Election::new(params(1, 100), at(0));
    let adv = e.advert(at(5));
    let mut buf = [0u8; MAX_ADVERT_FRAME];
    let v = Verifier { cluster_id: CLUSTER, key: Some(&key) };
    let n = encode_advert(&adv, Some(&key), &mut buf);
    assert_eq!(decode_advert(&buf[..n], &v), Ok(adv));
    let n2 = encode_advert(&adv, Some(&other), &mut buf);
    assert_eq!(decode_advert(&buf[..n2], &v), Err(Reject::BadMac));
    let n3 = encode_advert(&adv, None, &mut buf);
    assert_eq!(decode_advert(&buf[..n3], &v), Err(Reject::MissingMac));
    let wrong = Verifier { cluster_id: 5, key: None };
    assert_eq!(decode_advert(&buf[..n3], &wrong), Err(Reject::WrongCluster { found: CLUSTER }));
    // A heartbeat frame is not an advert.
    assert_eq!(decode_advert(b"RG\x01\x00\x05abcde0000", &v), Err(Reject::BadMagic));
}

#[test]
fn the_widest_advert_fits() {
    let mut e = Election::new(
        PairParams {
            cluster_id: u32::MAX,
            boot_epoch: u32::MAX,
            config_digest: u32::MAX,
            build_stamp: u32::MAX,
            ..params(255, 255)
        },
        at(0),
    );
    e.seq = u64::MAX - 1;
    e.term = u32::MAX;
    let mut adv = e.advert(at(u64::MAX));
    adv.hb.health = HealthFlags(u16::MAX);
    adv.flags = u8::MAX;
    adv.ack_epoch = u32::MAX;
    adv.ack_seq = u64::MAX;
    let key = Key::new(&[7u8; 32]).unwrap();
    let mut buf = [0u8; MAX_ADVERT_FRAME];
    let n = encode_advert(&adv, Some(&key), &mut buf);
    let v = Verifier { cluster_id: u32::MAX, key: Some(&key) };
    assert_eq!(decode_advert(&buf[..n], &v), Ok(adv));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let key = Key::new(&[7u8; 32]).unwrap();
        let _ = decode_advert(&bytes, &Verifier { cluster_id: CLUSTER, key: Some(&key) });
        let _ = decode_advert(&bytes, &Verifier { cluster_id: CLUSTER, key: None });
    }
}

// ----- start-up -----

#[test]
fn a_node_alone_takes_over_after_the_dead_interval() {
    let mut e = Election::new(params(1, 100), at(0));
    assert_eq!(acquires(&e.poll(at(100))), 0);
    assert!(matches!(e.blocker(at(100)), Some(Blocker::Starting { .. })));
    let acts = e.poll(at(300));
    assert!(acts.contains(&Action::Acquire { term: 1, reason: TakeoverReason::AloneAtStart }));
    assert_eq!(e.state(), PairState::Active);
}

#[test]
fn a_restarted_node_takes_over_above_the_term_it_knew() {
    // Found by the model check (shared/tests/model_pair.rs): without the restored term, a
    // node restarted alone took over with term 1 again.
    let mut e = Election::new(params(1, 100), at(0)).with_term(7);
    let acts = e.poll(at(300));
    assert!(acts.contains(&Action::Acquire { term: 8, reason: TakeoverReason::AloneAtStart }), "{acts:?}");
}

#[test]
fn two_nodes_starting_together_elect_the_higher_priority() {
    let s = started_pair(params(1, 50), params(2, 200));
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
    assert_eq!(s.nodes[0].blocker(s.now), Some(Blocker::PeerActive));
    assert_eq!(s.acquires_since(1, at(0)), 1);
    assert_eq!(s.acquires_since(0, at(0)), 0);
}

#[test]
fn equal_priorities_elect_the_lower_node_id() {
    let s = started_pair(params(7, 100), params(3, 100));
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
}

// ----- failure -----

#[test]
fn the_standby_takes_over_when_the_active_falls_silent() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    assert_eq!(s.states(), [PairState::Active, PairState::Standby]);
    s.link_up[0] = false;
    let cut = s.now;
    s.run(190);
    assert_eq!(s.nodes[1].state(), PairState::Standby, "not before the dead interval");
    s.run(210);
    assert_eq!(s.nodes[1].state(), PairState::Active);
    let (_, first) = s.log[1].iter().find(|(w, a)| *w >= cut && matches!(a, Action::Acquire { .. })).unwrap();
    assert!(matches!(first, Action::Acquire { term: 2, reason: TakeoverReason::PeerDead { .. } }));
}

#[test]
fn two_triggers_at_once_make_one_failover() {
    // The active resigns (switchover); its resign advert arrives on two media, the operator
    // also issues a switchover on the standby, and the dead timer fires at the same instant.
    let mut s = started_pair(params(1, 200), params(2, 100));
    let (_, acts) = s.nodes[0].switchover(s.now).unwrap();
    assert_eq!(releases(&acts), 1);
    let adv = sent_advert(&acts).unwrap();
    let t = s.nodes[1].peer().unwrap().last_heard + s.nodes[1].params().dead_after();
    let mut all = Vec::new();
    all.extend(s.nodes[1].on_frame(0, Ok(adv), t));
    all.extend(s.nodes[1].on_frame(1, Ok(adv), t));
    if let Ok((_, a)) = s.nodes[1].switchover(t) {
        all.extend(a);
    }
    all.extend(s.nodes[1].poll(t));
    assert_eq!(acquires(&all), 1, "{all:?}");
    assert_eq!(s.nodes[1].term(), 2);
    assert_eq!(s.nodes[1].takeovers(), 1);
}

#[test]
fn a_standby_with_failing_checks_does_not_take_over_and_says_why() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let acts = s.nodes[1].set_health(HealthFlags(HealthFlags::TARGET_UNREACHABLE), s.now);
    s.apply(1, acts);
    s.link_up[0] = false;
    s.run(2000);
    assert_eq!(s.nodes[1].state(), PairState::Standby);
    assert_eq!(s.nodes[1].blocker(s.now), Some(Blocker::Unhealthy(HealthFlags(HealthFlags::TARGET_UNREACHABLE))));
    // Health back: it listens for a dead interval (its view of the peer is stale), then
    // takes over, the peer still being silent.
    let acts = s.nodes[1].set_health(HealthFlags::OK, s.now);
    assert_eq!(acquires(&acts), 0);
    assert_eq!(s.nodes[1].state(), PairState::Starting);
    let t = s.now;
    s.run(350);
    assert_eq!(s.nodes[1].state(), PairState::Active);
    assert_eq!(s.acquires_since(1, t), 1);
}

#[test]
fn an_active_that_loses_its_uplink_resigns_at_once_to_a_healthy_peer() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let t0 = s.now;
    let acts = s.nodes[0].set_health(HealthFlags(HealthFlags::LINK_DOWN), t0);
    assert!(matches!(acts[0], Action::Release { reason: ResignReason::Unhealthy(_), .. }), "{acts:?}");
    s.apply(0, acts);
    s.run(5);
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
    let took = s.log[1].iter().find(|(w, a)| *w >= t0 && matches!(a, Action::Acquire { .. })).unwrap();
    assert!(took.0.saturating_since(t0) <= Duration::from_millis(2), "takeover within one message delay");
}

#[test]
fn an_unhealthy_active_keeps_the_vips_when_the_peer_cannot_take_them() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let acts = s.nodes[1].set_maintenance(true, s.now);
    s.apply(1, acts);
    s.run(10);
    let acts = s.nodes[0].set_health(HealthFlags(HealthFlags::LINK_DOWN), s.now);
    assert_eq!(releases(&acts), 0);
    assert_eq!(s.nodes[0].state(), PairState::Active);
}

#[test]
fn poll_at_never_stays_in_the_past() {
    // A dead peer, a preempt already asked for: the next deadline is still ahead, so a
    // driver sleeping until poll_at() never spins.
    let mut s = started_pair(PairParams { preempt: true, ..params(1, 200) }, params(2, 100));
    s.link_up[0] = false;
    s.run(2000);
    let n = &mut s.nodes[1];
    assert_eq!(n.state(), PairState::Active);
    let now = s.now;
    n.poll(now);
    assert!(n.poll_at() > now, "poll_at {:?} not after {:?}", n.poll_at(), now);
}

// ----- operator -----

#[test]
fn switchover_from_the_active_hands_over_and_does_not_preempt_back() {
    let mut s = started_pair(PairParams { preempt: true, ..params(1, 200) }, params(2, 100));
    let (o, acts) = s.nodes[0].switchover(s.now).unwrap();
    assert_eq!(o, SwitchoverOutcome::Resigned);
    s.apply(0, acts);
    s.run(5);
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
    s.run(3000);
    assert_eq!(s.states(), [PairState::Standby, PairState::Active], "no preempt after a manual switchover");
}

#[test]
fn switchover_issued_on_the_standby_asks_the_active() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let (o, acts) = s.nodes[1].switchover(s.now).unwrap();
    assert_eq!(o, SwitchoverOutcome::Requested);
    s.apply(1, acts);
    s.run(10);
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
    assert_eq!(s.actives(), 1);
}

#[test]
fn switchover_without_a_live_peer_is_refused() {
    let mut e = Election::new(params(1, 100), at(0));
    e.poll(at(300));
    assert_eq!(e.switchover(at(400)).unwrap_err(), SwitchoverError::PeerNotAlive);
}

#[test]
fn maintenance_resigns_and_never_takes_over() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let acts = s.nodes[0].set_maintenance(true, s.now);
    assert!(acts.iter().any(|a| matches!(a, Action::Release { reason: ResignReason::Maintenance, .. })));
    s.apply(0, acts);
    s.run(10);
    assert_eq!(s.states(), [PairState::Maintenance, PairState::Active]);
    s.link_up[1] = false;
    s.run(2000);
    assert_eq!(s.nodes[0].state(), PairState::Maintenance);
    assert_eq!(s.nodes[0].blocker(s.now), Some(Blocker::Maintenance));
    let acts = s.nodes[0].set_maintenance(false, s.now);
    assert_eq!(acquires(&acts), 0, "listens first");
    let t = s.now;
    s.run(350);
    assert_eq!(s.acquires_since(0, t), 1, "peer is dead: leaving maintenance takes over after listening");
}

// ----- preempt -----

#[test]
fn failback_with_preempt_on_after_the_delay() {
    let mut s =
        started_pair(PairParams { preempt: true, ..params(1, 200) }, PairParams { preempt: true, ..params(2, 100) });
    s.link_up[0] = false;
    s.run(1000);
    assert_eq!(s.nodes[1].state(), PairState::Active);
    s.link_up[0] = true;
    // Node 0 still heard node 1 take over with a higher term, so it resigned (and has been
    // asking for the VIPs back since its preempt delay passed).
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
    let healed = s.now;
    s.link_up[0] = true;
    for _ in 0..1000 {
        s.run(1);
        assert!(s.actives() <= 1);
    }
    assert_eq!(s.states(), [PairState::Active, PairState::Standby]);
    assert_eq!(s.acquires_since(0, healed), 1);
}

#[test]
fn no_failback_with_preempt_off() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    s.link_up[0] = false;
    s.run(1000);
    s.link_up[0] = true;
    s.run(3000);
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
}

// ----- partitions -----

#[test]
fn partition_heal_leaves_the_later_takeover_and_the_loser_announces_nothing() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    s.link_up = [false, false];
    s.run(1000);
    assert_eq!(s.actives(), 2, "a silent partition makes two actives");
    let heal = s.now;
    s.link_up = [true, true];
    s.run(101);
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
    let since: Vec<_> = s.log[0].iter().filter(|(w, _)| *w >= heal).map(|(_, a)| *a).collect();
    assert_eq!(releases(&since), 1);
    assert!(!since.iter().any(|a| matches!(a, Action::Announce { .. } | Action::Acquire { .. })));
    assert!(!s.log[1].iter().any(|(w, a)| *w >= heal && matches!(a, Action::Announce { .. })));
}

#[test]
fn a_term_tie_is_broken_by_priority_and_the_winner_reannounces() {
    let mut s = Sim::new(params(1, 100), params(2, 200));
    s.link_up = [false, false];
    s.run(1000);
    assert_eq!(s.actives(), 2);
    assert_eq!((s.nodes[0].term(), s.nodes[1].term()), (1, 1));
    let heal = s.now;
    s.link_up = [true, true];
    s.run(101);
    assert_eq!(s.states(), [PairState::Standby, PairState::Active]);
    assert!(s.log[1].iter().any(|(w, a)| *w >= heal && matches!(a, Action::Announce { .. })));
}

// ----- refusing a mismatched peer -----

#[test]
fn a_peer_with_another_config_is_refused_but_still_heard() {
    let mut s = started_pair(
        params(1, 200),
        PairParams { config_digest: 0x9999, preempt: true, priority: 250, ..params(2, 100) },
    );
    assert!(matches!(s.nodes[0].peer().unwrap().mismatch, Some(Mismatch::Config { .. })));
    assert!(matches!(s.nodes[0].switchover(s.now), Err(SwitchoverError::PeerRefused(_))));
    s.run(3000);
    assert_eq!(s.actives(), 1, "heard, so no second active; refused, so no preempt or switchover");
    let active = s.states().iter().position(|x| *x == PairState::Active).unwrap();
    assert!(matches!(s.nodes[1 - active].switchover(s.now), Err(SwitchoverError::PeerRefused(_))));
}

// ----- what the actions carry -----

#[test]
fn a_notify_carries_the_change_and_everything_hooks_report() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let (_, acts) = s.nodes[0].switchover(s.now).unwrap();
    assert_eq!(
        notices(&acts),
        [Transition {
            from: PairState::Active,
            to: PairState::Standby,
            reason: ChangeReason::Resigned(ResignReason::Switchover),
            term: 1,
            priority: 200,
            health: HealthFlags::OK,
            peer: Some(2),
        }]
    );
}

#[test]
fn one_advert_per_input_goes_last_with_the_position_after_it() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let acts = s.nodes[0].set_maintenance(true, s.now);
    let kinds: Vec<_> = notices(&acts).iter().map(|t| (t.from, t.to, t.reason)).collect();
    assert_eq!(
        kinds,
        [
            (PairState::Active, PairState::Standby, ChangeReason::Resigned(ResignReason::Maintenance)),
            (PairState::Standby, PairState::Maintenance, ChangeReason::MaintenanceOn),
        ]
    );
    assert_eq!(acts.iter().filter(|a| matches!(a, Action::SendAdvert(_))).count(), 1, "{acts:?}");
    let Some(Action::SendAdvert(adv)) = acts.last() else { panic!("the advert is not last: {acts:?}") };
    assert!(adv.has(Advert::MAINTENANCE));
    assert_eq!((adv.priority, adv.hb.state), (0, NodeState::Standby));
}

#[test]
fn the_advert_reports_uptime_since_the_election_started() {
    let mut e = Election::new(params(1, 100), at(1000));
    let adv = sent_advert(&e.poll(at(1250))).expect("the first poll sends an advert");
    assert_eq!(adv.hb.uptime, Duration::from_millis(250));
}

#[test]
fn a_shutdown_notify_reports_the_node_no_longer_eligible() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let acts = s.nodes[0].shutdown(s.now);
    let n = notices(&acts);
    assert_eq!(
        (n[0].to, n[0].reason, n[0].priority),
        (PairState::Standby, ChangeReason::Resigned(ResignReason::Shutdown), 0)
    );
    assert_eq!(sent_advert(&acts).map(|a| a.hb.state), Some(NodeState::Leaving));
}

#[test]
fn a_lost_conflict_notify_reports_the_winning_term() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    s.link_up = [false, false];
    s.run(1000);
    assert_eq!((s.nodes[0].term(), s.nodes[1].term()), (1, 2));
    let heal = s.now;
    s.link_up = [true, true];
    s.run(101);
    let lost: Vec<Transition> = s.log[0]
        .iter()
        .filter(|(w, _)| *w >= heal)
        .filter_map(|(_, a)| match a {
            Action::Notify(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        (lost[0].reason, lost[0].term),
        (ChangeReason::Resigned(ResignReason::LostConflict { peer_term: 2 }), 2)
    );
}

// ----- bad input -----

#[test]
fn forged_and_replayed_adverts_are_counted_and_change_nothing() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let before = (s.states(), s.nodes[1].term());
    let adv = s.nodes[0].advert(s.now);
    let acts = s.nodes[1].on_frame(0, Ok(adv), s.now);
    assert_eq!(acquires(&acts), 0);
    for _ in 0..5 {
        assert!(s.nodes[1].on_frame(0, Ok(adv), s.now).is_empty());
        assert!(s.nodes[1].on_frame(0, Err(Reject::BadMac), s.now).is_empty());
    }
    let mut stranger = adv;
    stranger.hb.node_id = 9;
    assert!(s.nodes[1].on_frame(0, Ok(stranger), s.now).is_empty());
    let m = &s.nodes[1].media()[0];
    assert_eq!(m.rx.rejected[Reject::Replay.index()], 5);
    assert_eq!(m.rx.rejected[Reject::BadMac.index()], 5);
    assert_eq!(m.rx.rejected[Reject::WrongNode { found: 9 }.index()], 1);
    assert_eq!((s.states(), s.nodes[1].term()), before);
}

#[test]
fn a_replayed_stream_after_the_peer_died_is_not_liveness() {
    let mut s = started_pair(params(1, 200), params(2, 100));
    let now = s.now;
    let old: Vec<Advert> = (0..3).map(|_| s.nodes[0].advert(now)).collect();
    // Deliver the newest first; then the peer dies and the older captures are replayed.
    s.nodes[1].on_frame(0, Ok(old[2]), s.now);
    s.link_up[0] = false;
    let mut t = s.now;
    for a in &old[..2] {
        t = t + Duration::from_millis(100);
        s.nodes[1].on_frame(0, Ok(*a), t);
    }
    s.run(400);
    assert_eq!(s.nodes[1].state(), PairState::Active);
}

// ----- properties -----

#[derive(Clone, Debug)]
enum Ev {
    Health(usize, bool),
    Maint(usize, bool),
    Switch(usize),
    Cut(usize, bool),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0usize..2, any::<bool>()).prop_map(|(i, b)| Ev::Health(i, b)),
        (0usize..2, any::<bool>()).prop_map(|(i, b)| Ev::Maint(i, b)),
        (0usize..2).prop_map(Ev::Switch),
        (0usize..2, any::<bool>()).prop_map(|(i, b)| Ev::Cut(i, b)),
    ]
}

/// A network with arbitrary loss and delay, driven by a seeded generator.
struct Chaos {
    s: Sim,
    rng: u64,
    loss_pct: u64,
    max_delay: u64,
}

impl Chaos {
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn step(&mut self) {
        self.s.now = self.s.now + Duration::from_millis(1);
        let now = self.s.now;
        while let Some(pos) = self.s.wire.iter().position(|m| m.0 <= now) {
            let (_, to, medium, adv) = self.s.wire.remove(pos).unwrap();
            let acts = self.s.nodes[to].on_frame(medium, Ok(adv), now);
            self.send(to, acts);
        }
        for i in 0..2 {
            if self.s.nodes[i].poll_at() <= now {
                let acts = self.s.nodes[i].poll(now);
                self.send(i, acts);
            }
        }
    }

    fn send(&mut self, i: usize, acts: Actions) {
        for a in acts {
            self.s.log[i].push((self.s.now, a));
            if let Action::SendAdvert(adv) = a {
                let lost = !self.s.link_up[i] || self.rand() % 100 < self.loss_pct;
                let delay = if self.max_delay == 0 { 0 } else { self.rand() % (self.max_delay + 1) };
                // Two media, like a LAN plus a side link; each loses on its own.
                if !lost {
                    self.s.wire.push_back((self.s.now + Duration::from_millis(delay), 1 - i, 0, adv));
                }
                if self.s.link_up[i] && self.rand() % 100 >= self.loss_pct {
                    self.s.wire.push_back((self.s.now + Duration::from_millis(delay / 2), 1 - i, 1, adv));
                }
            }
        }
    }

    fn apply(&mut self, e: &Ev) {
        let now = self.s.now;
        match *e {
            Ev::Health(i, ok) => {
                let h = if ok { HealthFlags::OK } else { HealthFlags(HealthFlags::LINK_DOWN) };
                let a = self.s.nodes[i].set_health(h, now);
                self.send(i, a);
            }
            Ev::Maint(i, on) => {
                let a = self.s.nodes[i].set_maintenance(on, now);
                self.send(i, a);
            }
            Ev::Switch(i) => {
                if let Ok((_, a)) = self.s.nodes[i].switchover(now) {
                    self.send(i, a);
                }
            }
            Ev::Cut(i, up) => self.s.link_up[i] = up,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

    /// Whatever happened before (loss, delay, cuts, health flaps, maintenance, switchovers),
    /// once heartbeats flow again both ways, the pair settles on exactly one active within a
    /// bounded time and never has two actives after that.
    #[test]
    fn never_two_actives_once_heartbeats_flow(
        seed in 1u64..u64::MAX,
        prio in (1u8..=255, 1u8..=255),
        preempt in (any::<bool>(), any::<bool>()),
        loss_pct in 0u64..90,
        max_delay in 0u64..1000,
        events in proptest::collection::vec((0u64..5000, ev()), 0..20),
    ) {
        let a = PairParams { preempt: preempt.0, ..params(1, prio.0) };
        let b = PairParams { preempt: preempt.1, ..params(2, prio.1) };
        let mut c = Chaos { s: Sim::new(a, b), rng: seed, loss_pct, max_delay };
        let mut events = events;
        events.sort_by_key(|e| e.0);
        let mut next = 0;
        // Chaos phase.
        for t in 1..=5000u64 {
            while next < events.len() && events[next].0 <= t {
                let e = events[next].1.clone();
                c.apply(&e);
                next += 1;
            }
            c.step();
        }
        // Heartbeats flow: links up, no loss, delay below the interval; both healthy.
        c.s.link_up = [true, true];
        c.loss_pct = 0;
        c.max_delay = 20;
        for i in 0..2 {
            c.apply(&Ev::Health(i, true));
            c.apply(&Ev::Maint(i, false));
        }
        // Settle: stale frames (≤ 1 s old) drain, a dead interval, a preempt delay.
        let settle = 1000 + 300 + 500 + 500;
        for _ in 0..settle {
            c.step();
        }
        for _ in 0..3000 {
            c.step();
            prop_assert!(c.s.actives() <= 1, "two actives at {:?}: {:?}", c.s.now, c.s.states());
        }
        prop_assert_eq!(c.s.actives(), 1, "{:?}", c.s.states());
    }

    /// Takeover is once per epoch: every node's takeover terms strictly increase, and with a
    /// lossless network no two takeovers anywhere share a term.
    #[test]
    fn takeover_terms_strictly_increase(
        seed in 1u64..u64::MAX,
        loss_pct in 0u64..60,
        max_delay in 0u64..400,
        events in proptest::collection::vec((0u64..4000, ev()), 0..25),
    ) {
        let mut c = Chaos { s: Sim::new(params(1, 150), PairParams { preempt: true, ..params(2, 200) }), rng: seed, loss_pct, max_delay };
        let mut events = events;
        events.sort_by_key(|e| e.0);
        let mut next = 0;
        for t in 1..=4000u64 {
            while next < events.len() && events[next].0 <= t {
                let e = events[next].1.clone();
                c.apply(&e);
                next += 1;
            }
            c.step();
        }
        for i in 0..2 {
            let terms: Vec<u32> = c.s.log[i].iter().filter_map(|(_, a)| match a { Action::Acquire { term, .. } => Some(*term), _ => None }).collect();
            prop_assert!(terms.windows(2).all(|w| w[0] < w[1]), "node {} terms {:?}", i, terms);
        }
    }

    /// With a lossless network, bounded delay and only operator switchovers and maintenance
    /// (no silence), there are never two actives at any instant.
    #[test]
    fn planned_handovers_never_overlap(
        seed in 1u64..u64::MAX,
        prio in (1u8..=255, 1u8..=255),
        preempt in (any::<bool>(), any::<bool>()),
        events in proptest::collection::vec((1000u64..6000, (0usize..2, 0u8..3)), 0..20),
    ) {
        let a = PairParams { preempt: preempt.0, ..params(1, prio.0) };
        let b = PairParams { preempt: preempt.1, ..params(2, prio.1) };
        let mut c = Chaos { s: Sim::new(a, b), rng: seed, loss_pct: 0, max_delay: 20 };
        let mut events = events;
        events.sort_by_key(|e| e.0);
        let mut next = 0;
        for t in 1..=7000u64 {
            while next < events.len() && events[next].0 <= t {
                let (i, k) = events[next].1;
                let e = match k { 0 => Ev::Switch(i), 1 => Ev::Maint(i, true), _ => Ev::Maint(i, false) };
                c.apply(&e);
                next += 1;
            }
            c.step();
            prop_assert!(c.s.actives() <= 1, "two actives at {:?}: {:?}", c.s.now, c.s.states());
        }
    }
}
