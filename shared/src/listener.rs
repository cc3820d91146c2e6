//! The standby listener: holds the secondary's boot until the primary is dead.
//!
//! ```text
//!            progress seen                 no progress for `timeout`
//!  Holding ───────────────▶ Watching ─────────────────────────────────▶ Released
//!     │                                                                    ▲
//!     └── never-seen policy `ReleaseAfter(d)` and `d` elapsed ─────────────┤
//!     └── operator "release now" (from any state) ─────────────────────────┘
//! ```
//!
//! `Released` is terminal: the boot gate is driven exactly once, whatever arrives later.
//! Every input is `(…, now)`; the listener never reads a clock.

use crate::detector::{MediumKind, MediumStats, MAX_MEDIA};
use crate::heartbeat::Heartbeat;
use crate::reject::Reject;
use crate::time::{Duration, Instant};
use serde::{Deserialize, Serialize};

/// What to do about a primary that has not been seen alive since power-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NeverSeenPolicy {
    /// Keep holding until the primary shows progress (safe default: an operator may be
    /// powering the pair on in any order).
    WaitForever,
    /// Release if no progress has been seen this long after power-on (unattended sites).
    ReleaseAfter(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerParams {
    /// The node whose heartbeats this listener watches.
    pub watched_node: u8,
    /// Silence after the last progress that means "the primary is dead".
    pub timeout: Duration,
    pub never_seen: NeverSeenPolicy,
}

/// Why the boot was released. Its words are the firmware's (`rearguard_firmware::report`),
/// so that every board prints the same line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The primary was alive and then fell silent on every medium.
    HeartbeatTimeout { silent_for: Duration },
    /// The primary was never seen alive, and the policy says stop waiting.
    NeverSeen { waited: Duration },
    /// An operator asked for it.
    Manual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerState {
    /// Primary not yet seen alive.
    Holding,
    /// Primary alive; watching for silence.
    Watching,
    Released {
        at: Instant,
        reason: ReleaseReason,
    },
}

impl ListenerState {
    pub fn name(&self) -> &'static str {
        match self {
            ListenerState::Holding => "holding",
            ListenerState::Watching => "watching",
            ListenerState::Released { .. } => "released",
        }
    }
}

/// What the caller must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Report the new state (log, console, status).
    Notify(ListenerState),
    /// Write a takeover claim into the primary's mailbox *before* releasing, so a primary
    /// that comes back reads it and refuses to serve.
    ClaimTakeover { primary_epoch: Option<u32> },
    /// Open the boot gate. Emitted at most once per listener lifetime.
    Release(ReleaseReason),
}

pub type Actions = heapless::Vec<Action, 4>;

#[derive(Clone, Debug)]
pub struct StandbyListener {
    params: ListenerParams,
    state: ListenerState,
    powered_on: Instant,
    last_progress: Option<Instant>,
    media: heapless::Vec<MediumStats, MAX_MEDIA>,
}

/// Handle for one medium, returned by [`StandbyListener::add_medium`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediumId(pub u8);

impl StandbyListener {
    pub fn new(params: ListenerParams, now: Instant) -> Self {
        StandbyListener {
            params,
            state: ListenerState::Holding,
            powered_on: now,
            last_progress: None,
            media: heapless::Vec::new(),
        }
    }

    /// Registers a heartbeat medium. Returns `None` past [`MAX_MEDIA`].
    pub fn add_medium(&mut self, kind: MediumKind) -> Option<MediumId> {
        let id = self.media.len() as u8;
        self.media.push(MediumStats::new(kind)).ok()?;
        Some(MediumId(id))
    }

    pub fn params(&self) -> &ListenerParams {
        &self.params
    }
    pub fn state(&self) -> ListenerState {
        self.state
    }
    pub fn media(&self) -> &[MediumStats] {
        &self.media
    }
    pub fn last_progress(&self) -> Option<Instant> {
        self.last_progress
    }

    /// Feeds one decoded-or-rejected frame from `medium`.
    pub fn on_frame(&mut self, medium: MediumId, frame: Result<Heartbeat, Reject>, now: Instant) -> Actions {
        let watched = self.params.watched_node;
        let Some(m) = self.media.get_mut(medium.0 as usize) else {
            return Actions::new();
        };
        let checked =
            frame.and_then(
                |hb| if hb.node_id == watched { Ok(hb) } else { Err(Reject::WrongNode { found: hb.node_id }) },
            );
        if let Ok(obs) = m.observe(checked.as_ref().map_err(|r| *r), now) {
            if obs.is_liveness() {
                self.last_progress = Some(now);
            }
        }
        let mut out = Actions::new();
        if self.state == ListenerState::Holding && self.last_progress.is_some() {
            self.state = ListenerState::Watching;
            let _ = out.push(Action::Notify(self.state));
        }
        // A frame can also be the first input after a long gap; timeouts are judged too.
        out.extend(self.on_tick(now));
        out
    }

    /// Advances time: releases when the primary has been silent too long.
    pub fn on_tick(&mut self, now: Instant) -> Actions {
        let reason = match self.state {
            ListenerState::Released { .. } => None,
            ListenerState::Watching => {
                let last = self.last_progress.unwrap_or(self.powered_on);
                let silent_for = now.saturating_since(last);
                (silent_for >= self.params.timeout).then_some(ReleaseReason::HeartbeatTimeout { silent_for })
            }
            ListenerState::Holding => match self.params.never_seen {
                NeverSeenPolicy::WaitForever => None,
                NeverSeenPolicy::ReleaseAfter(d) => {
                    let waited = now.saturating_since(self.powered_on);
                    (waited >= d).then_some(ReleaseReason::NeverSeen { waited })
                }
            },
        };
        match reason {
            Some(r) => self.release(r, now),
            None => Actions::new(),
        }
    }

    /// Operator-requested release. Idempotent: a second request (or one racing the timeout)
    /// does nothing.
    pub fn release_now(&mut self, now: Instant) -> Actions {
        self.release(ReleaseReason::Manual, now)
    }

    fn release(&mut self, reason: ReleaseReason, now: Instant) -> Actions {
        let mut out = Actions::new();
        if matches!(self.state, ListenerState::Released { .. }) {
            return out;
        }
        self.state = ListenerState::Released { at: now, reason };
        let primary_epoch = self.media.iter().filter_map(|m| m.detector.last()).map(|(e, _)| e).max();
        let _ = out.push(Action::ClaimTakeover { primary_epoch });
        let _ = out.push(Action::Release(reason));
        let _ = out.push(Action::Notify(self.state));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::tests::sample;
    use proptest::prelude::*;

    const T: Duration = Duration::from_millis(1000);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn listener(never_seen: NeverSeenPolicy) -> (StandbyListener, MediumId, MediumId) {
        let mut l = StandbyListener::new(ListenerParams { watched_node: 0, timeout: T, never_seen }, at(0));
        let disk = l.add_medium(MediumKind::Polled).unwrap();
        let serial = l.add_medium(MediumKind::Stream).unwrap();
        (l, disk, serial)
    }

    fn releases(a: &Actions) -> usize {
        a.iter().filter(|x| matches!(x, Action::Release(_))).count()
    }

    #[test]
    fn holds_until_progress_then_releases_after_silence() {
        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, Ok(sample(1)), at(0));
        assert_eq!(l.state(), ListenerState::Holding);
        let a = l.on_frame(disk, Ok(sample(2)), at(100));
        assert_eq!(a.as_slice(), &[Action::Notify(ListenerState::Watching)]);
        assert!(l.on_tick(at(1099)).is_empty());
        let a = l.on_tick(at(1100));
        assert_eq!(releases(&a), 1);
        assert_eq!(a[0], Action::ClaimTakeover { primary_epoch: Some(3) });
        assert!(l.on_tick(at(5000)).is_empty());
        assert!(l.release_now(at(5001)).is_empty());
    }

    #[test]
    fn waits_forever_for_a_primary_never_seen_by_default() {
        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, Ok(sample(7)), at(0)); // a stale slot: baseline only
        for t in 1..1000 {
            assert!(l.on_frame(disk, Ok(sample(7)), at(t * 100)).is_empty());
        }
        assert_eq!(l.state(), ListenerState::Holding);
    }

    #[test]
    fn release_after_policy_releases_a_never_seen_primary() {
        let (mut l, _, _) = listener(NeverSeenPolicy::ReleaseAfter(Duration::from_secs(30)));
        assert!(l.on_tick(at(29_999)).is_empty());
        let a = l.on_tick(at(30_000));
        assert!(a.contains(&Action::Release(ReleaseReason::NeverSeen { waited: Duration::from_secs(30) })));
    }

    #[test]
    fn one_live_medium_is_enough() {
        let (mut l, disk, serial) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, Ok(sample(1)), at(0));
        l.on_frame(disk, Ok(sample(2)), at(100)); // disk dies after this
        for i in 3..100u64 {
            let a = l.on_frame(serial, Ok(sample(i)), at(i * 100));
            assert_eq!(releases(&a), 0);
            let a = l.on_frame(disk, Ok(sample(2)), at(i * 100 + 50));
            assert_eq!(releases(&a), 0);
        }
        assert_eq!(l.state(), ListenerState::Watching);
    }

    #[test]
    fn rejected_frames_are_counted_and_are_not_liveness() {
        let (mut l, disk, serial) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, Ok(sample(1)), at(0));
        l.on_frame(disk, Ok(sample(2)), at(10));
        let mut other = sample(50);
        other.node_id = 9;
        for t in 1..200 {
            l.on_frame(disk, Err(Reject::BadCrc), at(10 + t * 10));
            l.on_frame(disk, Ok(other), at(10 + t * 10));
        }
        l.on_frame(serial, Ok(sample(3)), at(2000));
        l.on_frame(serial, Ok(sample(3)), at(2000));
        assert!(matches!(l.state(), ListenerState::Released { reason: ReleaseReason::HeartbeatTimeout { .. }, .. }));
        let m = &l.media()[disk.0 as usize];
        assert_eq!(m.rejected[Reject::BadCrc.index()], 199);
        assert_eq!(m.rejected[Reject::WrongNode { found: 9 }.index()], 199);
    }

    proptest! {
        /// Whatever the interleaving of frames, ticks and manual requests, the gate is
        /// released at most once, and never while progress was seen within the timeout.
        #[test]
        fn released_at_most_once_and_never_while_alive(
            steps in proptest::collection::vec((0u8..4, 1u64..400), 1..300),
        ) {
            let (mut l, disk, serial) = listener(NeverSeenPolicy::ReleaseAfter(Duration::from_secs(5)));
            let mut now = 0u64;
            let mut seq = 0u64;
            let mut total = 0;
            for (op, dt) in steps {
                now += dt;
                let a = match op {
                    0 => { seq += 1; l.on_frame(disk, Ok(sample(seq)), at(now)) }
                    1 => { seq += 1; l.on_frame(serial, Ok(sample(seq)), at(now)) }
                    2 => l.on_tick(at(now)),
                    _ => l.on_frame(disk, Err(Reject::BadCrc), at(now)),
                };
                for act in a.iter() {
                    if let Action::Release(r) = act {
                        total += 1;
                        if let ReleaseReason::HeartbeatTimeout { silent_for } = r {
                            prop_assert!(*silent_for >= T);
                        }
                        if let Some(p) = l.last_progress() {
                            prop_assert!(at(now).saturating_since(p) >= T);
                        }
                    }
                }
            }
            prop_assert!(total <= 1);
        }
    }
}
