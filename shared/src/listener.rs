//! The standby listener: holds a spare's boot until a watched primary is dead, then takes
//! over *that* primary's boot.
//!
//! ```text
//!  per primary:  progress seen               no progress for `timeout`
//!   Holding ───────────────▶ Watching ───────────────────────────▶ Claiming ──▶ Taken
//!      │                        ▲    (or never-seen policy elapsed)     │
//!      │                        └── progress again ── ClaimedBy(s) ◀────┘ another spare's
//!      │                                                                  claim stands
//!      └── after this spare is consumed, a dead primary is NoSpareLeft (reported, never taken)
//! ```
//!
//! One machine for every case: the two-node pair is a spare watching one primary. The
//! listener watches a set of primaries; the first one silent past the timeout is claimed;
//! once the boot is released for node K the spare is *consumed* (`Released` is terminal and
//! the gate is driven exactly once), and a primary dying afterwards is reported, never taken.
//! An operator's "release now" takes the primary being claimed, or the lowest watched one.
//!
//! # Several spares: the disk arbitrates
//!
//! Without [`Arbitration`] (the only spare, or no shared disk) the claim is written and the
//! boot released as soon as the write succeeds. A claim that cannot be written *holds* the
//! release: the primary is judged again at the next tick, so the claim is retried while it
//! stays dead and dropped once it shows progress. Released without its claim, a primary that
//! was only down would come back, find no claim and serve beside the spare (found by the
//! model check, `shared/tests/model_standby.rs`). An operator's release goes ahead
//! regardless: the operator has decided. With arbitration, a spare claiming the
//! dead primary K runs four steps against K's mailbox:
//!
//! 1. **stagger**: wait `rank × settle` (rank = how many spare slots have a lower id), so
//!    that when several spares see K die in the same poll the lowest id writes first and the
//!    others find its claim in step 2 — lowest spare id wins a tie;
//! 2. **pre-read** K's mailbox (at time `r`): any takeover claim — another spare's, or this
//!    spare's own from an earlier life — or a corrupt mailbox (perhaps a torn claim) means
//!    *back off*;
//! 3. **write** a *pending* claim (spare id, K's last epoch); the first tick after the write's
//!    poll bounds its completion (`c`); if `c − r ≥ settle` the step took too long to reason
//!    about: back off;
//! 4. **settle** then **re-read** (at `≥ c + settle`): proceed only if the mailbox holds
//!    exactly this spare's claim; anything else means back off. A spare that backs off goes
//!    on watching the other primaries;
//! 5. **seal**: rewrite the claim as settled ([`MailboxMessage::TakeoverClaim`]), then
//!    release. A failed seal write is retried from step 4.
//!
//! To a primary a pending claim is a claim like any other (it fences). The seal is what a
//! *restarted* spare goes by: its own settled claim in K's mailbox means it released as K
//! in an earlier life, and it stays consumed; its own pending claim means it did not release
//! — it crashed during steps 3–5 — and it must not release on it now either: it cannot know
//! whether its write in step 3 was timely, and a late one may have erased a winner's seal
//! (see below: the check in step 3 is what excludes that). It finds the claim at its next
//! pre-read and backs off like any spare, free for the other primaries; K's claim holds K
//! for an operator (safe, not live — the model check's liveness property excuses it).
//!
//! **Why two spares cannot both release for K.** Single-sector writes are atomic (a torn one
//! fails its CRC and reads as corrupt), writes to one sector are totally ordered, spare ids
//! are distinct, no spare writes a pending claim for K twice in one life, and a seal follows
//! its writer's successful re-read. Suppose spares X and Y both released,
//! and X's claim landed first: `w_X < w_Y`. X's re-read at `t_X ≥ c_X + settle ≥ w_X + settle`
//! found X's claim, so no claim had landed since `w_X`: `w_Y > t_X ≥ w_X + settle`. Y's
//! pre-read came at most `settle` before its write completed, and the write lands before it
//! completes: `r_Y > c_Y − settle ≥ w_Y − settle > w_X`. So Y's pre-read came after X's
//! claim landed; every write since then is a claim (only spares write during a takeover),
//! so Y read a claim (pending or sealed) and backed off — a contradiction. The argument uses only each spare's
//! own monotonic clock for its own intervals (`settle`, `c − r`), never a comparison of two
//! clocks. It assumes nobody else writes K's mailbox during the takeover: an operator's
//! `disk clear` (or a test message) there can erase a claim and void it.
//!
//! Every spare must use the same `settle` (the boards derive it from the disk header), and
//! it must exceed one spare's poll period plus a disk read and write, or step 3 backs off
//! every time (safe, but nobody takes over); the boards refuse to start otherwise. A
//! listener built without the `arbitration` feature (the 32 KiB controller, see
//! [`ARBITRATES`]) never arbitrates — the code is compiled out — so it must be the only spare
//! of the primaries it watches.
//!
//! Every input is `(…, now)`; the listener never reads a clock or a disk.

use crate::detector::{FailureDetector, MediumKind, RxCounts};
use crate::disk::{MailboxError, MailboxMessage};
use crate::heartbeat::Heartbeat;
use crate::reject::Reject;
use crate::text::Text;
use crate::time::{Duration, Instant, Stamp};
use serde::{Deserialize, Serialize};

/// A set of node ids (bit i = node i), such as the primaries a spare watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeSet(pub u32);

impl NodeSet {
    pub const fn one(node: u8) -> NodeSet {
        NodeSet(1u32.wrapping_shl(node as u32))
    }
    pub fn contains(self, node: u8) -> bool {
        node < 32 && self.0 & (1 << node) != 0
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The members, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            let n = bits.trailing_zeros();
            bits &= bits.wrapping_sub(1);
            (n < 32).then_some(n as u8)
        })
    }

    /// Parses `"0-3"`, `"0,2,5"` or a mix (`"0-2,7"`); ids are 0..=31, ASCII spaces allowed
    /// around them. Byte by byte: `str`'s Unicode trimming and pattern search cost a 32 KiB
    /// controller 0.8 KiB of flash.
    pub fn parse(text: &str) -> Result<NodeSet, &'static str> {
        const FORM: &str = "expected node ids 0..=31 as a range (\"0-3\") or a list (\"0,2,3\")";
        let mut set = 0u32;
        for part in text.as_bytes().split(|&b| b == b',') {
            let mut ends = part.split(|&b| b == b'-');
            let a = ends.next().and_then(node_id).ok_or(FORM)?;
            let b = match ends.next() {
                None => a,
                Some(b) => node_id(b).ok_or(FORM)?,
            };
            if ends.next().is_some() {
                return Err(FORM);
            }
            if a > b || b >= 32 {
                return Err("a range must run from a lower to a higher id, both 0..=31");
            }
            for n in a..=b {
                set |= 1 << n;
            }
        }
        Ok(NodeSet(set))
    }
}

/// One decimal node id (at most two digits, so that overflow cannot happen) between
/// optional ASCII spaces.
fn node_id(text: &[u8]) -> Option<u8> {
    let digits = text.trim_ascii();
    if digits.is_empty() || digits.len() > 2 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + (d - b'0')))
}

impl NodeSet {
    /// The members as `0,2,5`, onto a line being written.
    pub fn text<'t, 'o>(self, t: &'t mut Text<'o>) -> &'t mut Text<'o> {
        for (i, n) in self.iter().enumerate() {
            if i > 0 {
                t.s(",");
            }
            t.n(n);
        }
        t
    }
}

impl core::fmt::Display for NodeSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.text(&mut Text::new(f)).end()
    }
}

/// What to do about a primary that has not been seen alive since power-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NeverSeenPolicy {
    /// Keep holding until the primary shows progress (safe default: an operator may be
    /// powering the pair on in any order).
    WaitForever,
    /// Release if no progress has been seen this long after power-on (unattended sites).
    ReleaseAfter(Duration),
}

/// How a spare that shares the disk with other spares settles who takes a dead primary
/// (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arbitration {
    /// This spare's node id: the `by` of its claims.
    pub spare_id: u8,
    /// Wait between writing a claim and re-reading it; longer than any spare's read-then-write.
    pub settle: Duration,
    /// Wait before the pre-read: `rank × settle`, so the lowest spare id wins a tie.
    pub stagger: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerParams {
    /// The primaries whose heartbeats this listener watches.
    pub watched: NodeSet,
    /// Silence after the last progress that means "the primary is dead".
    pub timeout: Duration,
    pub never_seen: NeverSeenPolicy,
    /// `None`: the only spare (or no disk) — claim and release at once.
    pub arbitration: Option<Arbitration>,
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
    /// Before this listener restarted: its own takeover claim was found on the disk.
    EarlierLife,
}

/// Which node the released boot becomes, and why: what the boot gate is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Takeover {
    pub node: u8,
    pub reason: ReleaseReason,
    /// The dead primary's last boot epoch, if it was ever seen.
    pub primary_epoch: Option<u32>,
}

/// The listener as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerState {
    /// No watched primary seen alive yet.
    Holding,
    /// A primary alive; watching for silence.
    Watching,
    /// The spare is consumed: it became `node`.
    Released { at: Instant, reason: ReleaseReason, node: u8 },
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

/// One watched primary, as this spare sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryState {
    /// Not seen alive yet.
    Holding,
    Watching,
    /// Silent past the timeout; this spare is arbitrating for it.
    Claiming,
    /// Another spare's claim stands in its mailbox (`None`: the mailbox was unreadable or
    /// the claim could not be confirmed); this spare does not take it.
    ClaimedBy(Option<u8>),
    /// This spare took it over.
    Taken,
    /// Died after this spare was consumed: reported, never taken.
    NoSpareLeft,
}

impl PrimaryState {
    pub fn name(&self) -> &'static str {
        match self {
            PrimaryState::Holding => "holding",
            PrimaryState::Watching => "watching",
            PrimaryState::Claiming => "claiming",
            PrimaryState::ClaimedBy(_) => "claimed",
            PrimaryState::Taken => "taken",
            PrimaryState::NoSpareLeft => "no-spare-left",
        }
    }
}

/// What the caller must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Report the listener's new state (log, console, status).
    Notify(ListenerState),
    /// Report a watched primary's new state (emitted when more than one is watched, or
    /// when arbitrating).
    Primary { node: u8, state: PrimaryState },
    /// Read `node`'s mailbox and hand it to [`StandbyListener::on_mailbox`].
    ReadMailbox { node: u8 },
    /// Write a takeover claim into `node`'s mailbox *before* releasing, so a primary that
    /// comes back reads it and refuses to serve; then call
    /// [`StandbyListener::on_claim_written`] with the outcome and the time it completed.
    ///
    /// `pending`: a [`MailboxMessage::PendingClaim`], written while spares arbitrate; else a
    /// [`MailboxMessage::TakeoverClaim`], written by the only spare, or by an arbitrating
    /// one that won, just before it releases (see the module docs).
    ClaimTakeover { node: u8, primary_epoch: Option<u32>, pending: bool },
    /// Open the boot gate as `node`. Emitted at most once per listener lifetime.
    Release(Takeover),
}

pub type Actions = heapless::Vec<Action, 4>;

/// Whether this build can arbitrate with other spares (cargo feature `arbitration`, on by
/// default). The 32 KiB controller builds without it, to have room for 31 primaries: it must
/// be the only spare on its disk, and its boards refuse to start otherwise.
pub const ARBITRATES: bool = cfg!(feature = "arbitration");

/// Most media a listener reads (the shared disk and a serial link).
pub const LISTENER_MEDIA: usize = 2;

/// A watched primary: its state and, per medium, the last record accepted from it. Kept
/// small (56 bytes): a controller spare of 31 primaries holds 31 of them in 8 KiB of RAM;
/// what each medium received is counted once per medium ([`StandbyListener::media`]).
#[derive(Clone, Copy, Debug)]
pub struct WatchedPrimary {
    pub node: u8,
    pub state: PrimaryState,
    last_progress: Stamp,
    first_seen: Stamp,
    detectors: [FailureDetector; LISTENER_MEDIA],
}

impl WatchedPrimary {
    /// When it was last seen making progress (on any medium).
    pub fn last_progress(&self) -> Option<Instant> {
        self.last_progress.get()
    }
    /// When a valid heartbeat from it was first read (perhaps a stale slot: no proof of life).
    pub fn first_seen(&self) -> Option<Instant> {
        self.first_seen.get()
    }
    /// Its latest boot epoch seen on any medium.
    pub fn last_epoch(&self) -> Option<u32> {
        self.detectors.iter().filter_map(|d| d.last()).map(|(e, _)| e).max()
    }
    /// The highest (epoch, sequence) accepted from it on any medium, or seeded
    /// ([`StandbyListener::seed`]) and not passed since — what a restarted listener must
    /// refuse (the firmware keeps it, `rearguard_firmware::app::marks`) — as one number,
    /// `epoch << 64 | sequence`; 0 for none.
    pub fn mark(&self) -> u128 {
        self.detectors.iter().map(|d| d.last().map_or(0, |(e, s)| (e as u128) << 64 | s as u128)).max().unwrap_or(0)
    }
    /// The last (epoch, sequence) accepted from it on `medium`.
    pub fn last_record(&self, medium: MediumId) -> Option<(u32, u64)> {
        self.detectors.get(medium.0 as usize).and_then(|d| d.last())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Stagger {
        until: Instant,
    },
    PreRead,
    Writing {
        read_at: Instant,
    },
    /// Written in the poll that began at `at`; the first later tick bounds its completion.
    Written {
        read_at: Instant,
        at: Instant,
    },
    Settle {
        until: Instant,
    },
    ReRead,
    /// The re-read found this spare's claim: it is rewritten as settled, then released.
    Sealing,
}

#[derive(Clone, Copy, Debug)]
struct Claim {
    node: u8,
    reason: ReleaseReason,
    epoch: Option<u32>,
    phase: Phase,
}

/// The listener, watching up to `P` primaries (a controller with one primary uses `P = 1`).
#[derive(Clone, Debug)]
pub struct StandbyListener<const P: usize = 1> {
    params: ListenerParams,
    state: ListenerState,
    powered_on: Instant,
    primaries: heapless::Vec<WatchedPrimary, P>,
    claim: Option<Claim>,
    media: heapless::Vec<RxCounts, LISTENER_MEDIA>,
}

/// Handle for one medium, returned by [`StandbyListener::add_medium`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediumId(pub u8);

impl<const P: usize> StandbyListener<P> {
    /// Watches the first `P` nodes of `params.watched` (the caller checks the set's size).
    pub fn new(params: ListenerParams, now: Instant) -> Self {
        let mut l = Self::blank();
        l.reset(params, now);
        l
    }

    /// A listener watching nothing, as a constant: a board that cannot afford a second copy
    /// of a large listener on its stack keeps one in a static and [`Self::reset`]s it.
    pub const fn blank() -> Self {
        StandbyListener {
            params: ListenerParams {
                watched: NodeSet(0),
                timeout: Duration::ZERO,
                never_seen: NeverSeenPolicy::WaitForever,
                arbitration: None,
            },
            state: ListenerState::Holding,
            powered_on: Instant::ZERO,
            primaries: heapless::Vec::new(),
            claim: None,
            media: heapless::Vec::new(),
        }
    }

    /// [`Self::new`] in place: everything seen so far is forgotten.
    pub fn reset(&mut self, params: ListenerParams, now: Instant) {
        (self.params, self.state, self.powered_on, self.claim) = (params, ListenerState::Holding, now, None);
        self.media.clear();
        self.primaries.clear();
        for node in params.watched.iter() {
            let p = WatchedPrimary {
                node,
                state: PrimaryState::Holding,
                last_progress: Stamp::NEVER,
                first_seen: Stamp::NEVER,
                detectors: [FailureDetector::new(MediumKind::Polled); LISTENER_MEDIA],
            };
            if self.primaries.push(p).is_err() {
                break;
            }
        }
    }

    /// Registers a heartbeat medium (for every watched primary). `None` past [`LISTENER_MEDIA`].
    pub fn add_medium(&mut self, kind: MediumKind) -> Option<MediumId> {
        let id = self.media.len();
        self.media.push(RxCounts::new()).ok()?;
        for p in self.primaries.iter_mut() {
            p.detectors[id] = FailureDetector::new(kind);
        }
        Some(MediumId(id as u8))
    }

    /// Starts each watched primary that `mark_of` has a mark for on every medium from it: the
    /// highest record accepted from it before this listener restarted. Records at or below it
    /// are refused as replays (or stale epochs), the first above it is a baseline
    /// ([`FailureDetector::seed`]). Call after the media are added, before the first frame.
    pub fn seed(&mut self, mut mark_of: impl FnMut(u8) -> Option<(u32, u64)>) {
        for p in self.primaries.iter_mut() {
            if let Some(mark) = mark_of(p.node) {
                p.detectors.iter_mut().for_each(|d| d.seed(mark));
            }
        }
    }

    pub fn params(&self) -> &ListenerParams {
        &self.params
    }
    pub fn state(&self) -> ListenerState {
        self.state
    }
    /// Every watched primary, lowest id first.
    pub fn primaries(&self) -> &[WatchedPrimary] {
        &self.primaries
    }
    /// What each medium received, from every watched primary together.
    pub fn media(&self) -> &[RxCounts] {
        &self.media
    }
    /// The latest progress of any watched primary.
    pub fn last_progress(&self) -> Option<Instant> {
        self.primaries.iter().filter_map(|p| p.last_progress()).max()
    }

    fn tells_each_primary(&self) -> bool {
        self.primaries.len() > 1 || self.params.arbitration.is_some()
    }

    /// Feeds one decoded-or-rejected frame from `medium`, where `node`'s record was expected
    /// (the slot read, or the primary on the other end of a link). Says what the frame changed;
    /// the timeout is judged by [`Self::on_tick`].
    pub fn on_frame(&mut self, medium: MediumId, node: u8, frame: Result<Heartbeat, Reject>, now: Instant) -> Actions {
        let mut out = Actions::new();
        let tell = self.tells_each_primary();
        let Some(p) = self.primaries.iter_mut().find(|p| p.node == node) else { return out };
        let (Some(d), Some(rx)) = (p.detectors.get_mut(medium.0 as usize), self.media.get_mut(medium.0 as usize))
        else {
            return out;
        };
        let checked =
            frame.and_then(|hb| if hb.node_id == node { Ok(hb) } else { Err(Reject::WrongNode { found: hb.node_id }) });
        let obs = rx.count(checked.and_then(|hb| d.observe(&hb)), now);
        if obs.is_ok() && p.first_seen == Stamp::NEVER {
            p.first_seen = Stamp::at(now);
        }
        if matches!(obs, Ok(obs) if obs.is_liveness()) {
            p.last_progress = Stamp::at(now);
            // A claimed primary seen progressing again is a new incarnation (its mailbox was
            // cleared); one being claimed or taken stays so: the claim is what stops it.
            if matches!(p.state, PrimaryState::Holding | PrimaryState::ClaimedBy(_) | PrimaryState::NoSpareLeft) {
                p.state = PrimaryState::Watching;
                if tell {
                    let _ = out.push(Action::Primary { node, state: p.state });
                }
            }
            if self.state == ListenerState::Holding {
                self.state = ListenerState::Watching;
                let _ = out.push(Action::Notify(self.state));
            }
        }
        // Timeouts are judged only by [`Self::on_tick`], which the caller calls once every
        // watched primary's record of this poll has been fed: judged here, the primaries
        // not yet read this poll would look as old as the disk operations in between made
        // them (found by the N+S model: a slow claim step made a live primary look dead).
        out
    }

    /// Why `p` counts as dead at `now`: silent past the timeout since its last progress, or
    /// never seen alive and the policy says stop waiting.
    fn dead(&self, p: &WatchedPrimary, now: Instant) -> Option<ReleaseReason> {
        if let Some(t) = p.last_progress() {
            let silent_for = now.saturating_since(t);
            return (silent_for >= self.params.timeout).then_some(ReleaseReason::HeartbeatTimeout { silent_for });
        }
        let NeverSeenPolicy::ReleaseAfter(d) = self.params.never_seen else { return None };
        let waited = now.saturating_since(self.powered_on);
        // A heartbeat read for the first time is no proof of progress (the slot may be
        // stale), but it may be a primary that has just started: it gets a whole timeout to
        // show progress (found by the model check).
        let fresh = p.first_seen().is_some_and(|t| now.saturating_since(t) < self.params.timeout);
        (waited >= d && !fresh).then_some(ReleaseReason::NeverSeen { waited })
    }

    /// The first watched primary dead at `now` (and why), with its last epoch.
    fn first_dead(&self, now: Instant) -> Option<(u8, ReleaseReason, Option<u32>)> {
        self.primaries.iter().find_map(|p| {
            if !matches!(p.state, PrimaryState::Watching | PrimaryState::Holding) {
                return None;
            }
            let reason = self.dead(p, now)?;
            Some((p.node, reason, p.last_epoch()))
        })
    }

    fn primary_mut(&mut self, node: u8) -> Option<&mut WatchedPrimary> {
        self.primaries.iter_mut().find(|p| p.node == node)
    }

    /// Advances time: claims the first dead primary, moves a claim on, or — once consumed —
    /// reports primaries that die with no spare left.
    pub fn on_tick(&mut self, now: Instant) -> Actions {
        let mut out = Actions::new();
        // `P > 1` guards what only a spare of several primaries does (a one-primary build has
        // nothing left to report once its only primary is taken; the compiler drops the code).
        if let ListenerState::Released { .. } = self.state {
            if P > 1 {
                // One a tick: others are reported at the next.
                if let Some((node, ..)) = self.first_dead(now) {
                    if let Some(p) = self.primary_mut(node) {
                        p.state = PrimaryState::NoSpareLeft;
                    }
                    let _ = out.push(Action::Primary { node, state: PrimaryState::NoSpareLeft });
                }
            }
            return out;
        }
        if self.claim.is_some() {
            self.advance_claim(now, &mut out);
            return out;
        }
        let Some((node, reason, epoch)) = self.first_dead(now) else { return out };
        match self.params.arbitration.filter(|_| ARBITRATES) {
            None => {
                if let Some(p) = self.primary_mut(node) {
                    p.state = PrimaryState::Claiming;
                }
                let phase = Phase::Writing { read_at: now };
                self.claim = Some(Claim { node, reason, epoch, phase });
                let _ = out.push(Action::ClaimTakeover { node, primary_epoch: epoch, pending: false });
            }
            Some(a) => {
                if let Some(p) = self.primary_mut(node) {
                    p.state = PrimaryState::Claiming;
                }
                let _ = out.push(Action::Primary { node, state: PrimaryState::Claiming });
                let phase = Phase::Stagger { until: now + a.stagger };
                self.claim = Some(Claim { node, reason, epoch, phase });
                self.advance_claim(now, &mut out);
            }
        }
        out
    }

    fn advance_claim(&mut self, now: Instant, out: &mut Actions) {
        // Only arbitration's phases advance with time.
        if !ARBITRATES {
            return;
        }
        let settle = self.params.arbitration.map_or(Duration::ZERO, |a| a.settle);
        let Some(c) = self.claim.as_mut() else { return };
        match c.phase {
            Phase::Stagger { until } if now >= until => c.phase = Phase::PreRead,
            Phase::Written { read_at, at } if now > at => {
                if now.saturating_since(read_at) >= settle {
                    // Too slow to reason about (see the module docs): not this spare's.
                    out.extend(self.back_off(None));
                } else {
                    c.phase = Phase::Settle { until: now + settle };
                }
                return;
            }
            Phase::Settle { until } if now >= until => c.phase = Phase::ReRead,
            _ => return,
        }
        let _ = out.push(Action::ReadMailbox { node: c.node });
    }

    /// The mailbox read that a [`Action::ReadMailbox`] asked for.
    pub fn on_mailbox(&mut self, node: u8, mailbox: Result<MailboxMessage, MailboxError>, now: Instant) -> Actions {
        let (Some(c), Some(a)) = (self.claim, self.params.arbitration) else { return Actions::new() };
        if c.node != node {
            return Actions::new();
        }
        let claimant = mailbox.ok().and_then(|m| m.claimant());
        match c.phase {
            Phase::PreRead if claimant.is_none() && mailbox.is_ok() => {
                self.claim = Some(Claim { phase: Phase::Writing { read_at: now }, ..c });
                let mut out = Actions::new();
                let _ = out.push(Action::ClaimTakeover { node, primary_epoch: c.epoch, pending: true });
                out
            }
            // This spare's claim stands: settle it (a seal written before, whose write
            // reported a failure, is this spare's too).
            Phase::ReRead
                if mailbox.is_ok_and(|m| {
                    let (by, primary_epoch) = (a.spare_id, c.epoch.unwrap_or(0));
                    m == MailboxMessage::PendingClaim { by, primary_epoch }
                        || m == MailboxMessage::TakeoverClaim { by, primary_epoch }
                }) =>
            {
                self.claim = Some(Claim { phase: Phase::Sealing, ..c });
                let mut out = Actions::new();
                let _ = out.push(Action::ClaimTakeover { node, primary_epoch: c.epoch, pending: false });
                out
            }
            Phase::PreRead | Phase::ReRead => self.back_off(claimant),
            _ => Actions::new(),
        }
    }

    /// The outcome of a [`Action::ClaimTakeover`] write, `now` being the time the caller
    /// carried the action out with (read *before* the write). The write counts as completed
    /// by the first later tick (`now` strictly greater), so a caller whose every `now` is read
    /// after its previous disk operations finished needs no clock of its own here.
    ///
    /// The only spare (no arbitration) releases as soon as the claim is written. A failed
    /// write holds the release: the primary is judged again at the next tick, and claimed
    /// again if still dead (see the module docs). A listener with no disk to write to reports
    /// every claim written.
    pub fn on_claim_written(&mut self, node: u8, written: bool, now: Instant) -> Actions {
        let mut out = Actions::new();
        let Some(c) = self.claim else { return out };
        if c.node != node {
            return out;
        }
        if ARBITRATES && c.phase == Phase::Sealing {
            if written {
                self.take(node, c.reason, c.epoch, now, &mut out);
            } else {
                // Read the mailbox again at the next tick: still this spare's, sealed again.
                self.claim = Some(Claim { phase: Phase::Settle { until: now }, ..c });
            }
            return out;
        }
        let Phase::Writing { read_at } = c.phase else { return out };
        if !written {
            // With arbitration, a claim that landed after all is found by the next pre-read
            // and backed off from.
            self.claim = None;
            if let Some(p) = self.primary_mut(node) {
                p.state = if p.last_progress().is_some() { PrimaryState::Watching } else { PrimaryState::Holding };
            }
        } else if self.params.arbitration.filter(|_| ARBITRATES).is_none() {
            self.take(node, c.reason, c.epoch, now, &mut out);
        } else {
            self.claim = Some(Claim { phase: Phase::Written { read_at, at: now }, ..c });
        }
        out
    }

    fn back_off(&mut self, by: Option<u8>) -> Actions {
        let mut out = Actions::new();
        if let Some(c) = self.claim.take() {
            if let Some(p) = self.primary_mut(c.node) {
                p.state = PrimaryState::ClaimedBy(by);
                let _ = out.push(Action::Primary { node: c.node, state: p.state });
            }
        }
        out
    }

    /// Operator-requested release, as the primary being claimed or else the lowest watched
    /// one; no arbitration (the operator decides). Idempotent: a second request (or one
    /// racing the timeout) does nothing.
    pub fn release_now(&mut self, now: Instant) -> Actions {
        let mut out = Actions::new();
        if matches!(self.state, ListenerState::Released { .. }) {
            return out;
        }
        let claimed = self.claim.map(|c| c.node);
        let Some(p) = self.primaries.iter().find(|p| claimed.is_none_or(|n| n == p.node)) else { return out };
        let (node, epoch) = (p.node, p.last_epoch());
        let _ = out.push(Action::ClaimTakeover { node, primary_epoch: epoch, pending: false });
        self.take(node, ReleaseReason::Manual, epoch, now, &mut out);
        out
    }

    /// Restarted after this spare took `node` in an earlier life (its own claim stands in
    /// `node`'s mailbox): it stays consumed — `Released` is terminal across restarts too, or
    /// a `ReleaseAfter` policy would release again at every restart. Nothing to drive: the
    /// gate was opened in that earlier life.
    pub fn resume_taken(&mut self, node: u8, now: Instant) {
        self.claim = None;
        self.state = ListenerState::Released { at: now, reason: ReleaseReason::EarlierLife, node };
        if let Some(p) = self.primary_mut(node) {
            p.state = PrimaryState::Taken;
        }
    }

    fn take(&mut self, node: u8, reason: ReleaseReason, primary_epoch: Option<u32>, now: Instant, out: &mut Actions) {
        self.claim = None;
        self.state = ListenerState::Released { at: now, reason, node };
        if let Some(p) = self.primary_mut(node) {
            p.state = PrimaryState::Taken;
        }
        // No `Notify(Released)`: the release says it all, and keeps a frame's actions to four.
        let _ = out.push(Action::Release(Takeover { node, reason, primary_epoch }));
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
        let mut l = StandbyListener::new(
            ListenerParams { watched: NodeSet::one(0), timeout: T, never_seen, arbitration: None },
            at(0),
        );
        let disk = l.add_medium(MediumKind::Polled).unwrap();
        let serial = l.add_medium(MediumKind::Stream).unwrap();
        (l, disk, serial)
    }

    fn releases(a: &Actions) -> usize {
        a.iter().filter(|x| matches!(x, Action::Release(_))).count()
    }

    /// `acts` plus what carrying out their claim writes (succeeding if `ok`) brings.
    fn claimed<const P: usize>(l: &mut StandbyListener<P>, acts: Actions, ok: bool, now: Instant) -> Actions {
        let mut out = Actions::new();
        for a in acts {
            let _ = out.push(a);
            if let Action::ClaimTakeover { node, .. } = a {
                out.extend(l.on_claim_written(node, ok, now));
            }
        }
        out
    }

    #[test]
    fn holds_until_progress_then_releases_after_silence() {
        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, 0, Ok(sample(1)), at(0));
        assert_eq!(l.state(), ListenerState::Holding);
        let a = l.on_frame(disk, 0, Ok(sample(2)), at(100));
        assert_eq!(a.as_slice(), &[Action::Notify(ListenerState::Watching)]);
        assert!(l.on_tick(at(1099)).is_empty());
        let a = l.on_tick(at(1100));
        assert_eq!(releases(&a), 0, "not before the claim is written");
        let a = claimed(&mut l, a, true, at(1100));
        assert_eq!(releases(&a), 1);
        assert_eq!(a[0], Action::ClaimTakeover { node: 0, primary_epoch: Some(3), pending: false });
        assert!(l.on_tick(at(5000)).is_empty());
        assert!(l.release_now(at(5001)).is_empty());
    }

    #[test]
    fn waits_forever_for_a_primary_never_seen_by_default() {
        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, 0, Ok(sample(7)), at(0)); // a stale slot: baseline only
        for t in 1..1000 {
            assert!(l.on_frame(disk, 0, Ok(sample(7)), at(t * 100)).is_empty());
        }
        assert_eq!(l.state(), ListenerState::Holding);
    }

    #[test]
    fn release_after_policy_releases_a_never_seen_primary() {
        let (mut l, _, _) = listener(NeverSeenPolicy::ReleaseAfter(Duration::from_secs(30)));
        assert!(l.on_tick(at(29_999)).is_empty());
        let a = l.on_tick(at(30_000));
        let a = claimed(&mut l, a, true, at(30_000));
        assert!(a.contains(&Action::Release(Takeover {
            node: 0,
            reason: ReleaseReason::NeverSeen { waited: Duration::from_secs(30) },
            primary_epoch: None
        })));
    }

    /// Seeded with the mark of a previous run, the listener refuses records replayed on
    /// either medium as it would within a run: no liveness, no first sighting, the never-seen
    /// policy releases on time; the live primary's next records are a baseline, then progress.
    #[test]
    fn a_seeded_listener_refuses_replays_on_every_medium() {
        let (mut l, disk, serial) = listener(NeverSeenPolicy::ReleaseAfter(Duration::from_secs(2)));
        // Only the watched primaries are asked for their marks.
        l.seed(|n| {
            assert_eq!(n, 0);
            Some((3, 40))
        });
        assert_eq!(l.primaries()[0].mark(), 3 << 64 | 40);
        for seq in 1..=40u64 {
            assert!(l.on_frame(disk, 0, Ok(sample(seq)), at(seq * 10)).is_empty());
            assert!(l.on_frame(serial, 0, Ok(sample(seq)), at(seq * 10)).is_empty());
        }
        assert_eq!(l.primaries()[0].first_seen(), None);
        assert_eq!(l.media()[disk.0 as usize].rejected[Reject::Replay.index()], 40);
        assert_eq!(l.media()[serial.0 as usize].accepted, 0);
        let a = tick(&mut l, 2000, true);
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::Release(Takeover { reason: ReleaseReason::NeverSeen { .. }, .. }))));

        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.seed(|_| Some((3, 40)));
        assert!(l.on_frame(disk, 0, Ok(sample(41)), at(100)).is_empty(), "a baseline only");
        let a = l.on_frame(disk, 0, Ok(sample(42)), at(200));
        assert_eq!(a.as_slice(), &[Action::Notify(ListenerState::Watching)]);
        assert_eq!(l.primaries()[0].mark(), 3 << 64 | 42);
    }

    #[test]
    fn release_after_gives_a_primary_first_read_at_the_deadline_a_whole_timeout() {
        let (mut l, disk, _) = listener(NeverSeenPolicy::ReleaseAfter(Duration::from_secs(30)));
        // A primary that has just started: its first heartbeat is read just before the deadline.
        assert!(l.on_frame(disk, 0, Ok(sample(1)), at(29_900)).is_empty());
        assert!(l.on_tick(at(30_000)).is_empty());
        assert!(l.on_tick(at(30_899)).is_empty());
        // Silent since: the first read was a stale slot after all.
        let a = l.on_tick(at(30_900));
        assert!(matches!(a.as_slice(), [Action::ClaimTakeover { node: 0, .. }]), "{a:?}");
    }

    #[test]
    fn one_live_medium_is_enough() {
        let (mut l, disk, serial) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, 0, Ok(sample(1)), at(0));
        l.on_frame(disk, 0, Ok(sample(2)), at(100)); // disk dies after this
        for i in 3..100u64 {
            let a = l.on_frame(serial, 0, Ok(sample(i)), at(i * 100));
            assert_eq!(releases(&a), 0);
            let a = l.on_frame(disk, 0, Ok(sample(2)), at(i * 100 + 50));
            assert_eq!(releases(&a), 0);
        }
        assert_eq!(l.state(), ListenerState::Watching);
    }

    #[test]
    fn rejected_frames_are_counted_and_are_not_liveness() {
        let (mut l, disk, serial) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, 0, Ok(sample(1)), at(0));
        l.on_frame(disk, 0, Ok(sample(2)), at(10));
        let mut other = sample(50);
        other.node_id = 9;
        for t in 1..200 {
            for frame in [Err(Reject::BadCrc), Ok(other)] {
                l.on_frame(disk, 0, frame, at(10 + t * 10));
            }
            let a = l.on_tick(at(10 + t * 10));
            claimed(&mut l, a, true, at(10 + t * 10));
        }
        l.on_frame(serial, 0, Ok(sample(3)), at(2000));
        l.on_frame(serial, 0, Ok(sample(3)), at(2000));
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
                    0 => { seq += 1; l.on_frame(disk, 0, Ok(sample(seq)), at(now)) }
                    1 => { seq += 1; l.on_frame(serial, 0, Ok(sample(seq)), at(now)) }
                    2 => l.on_tick(at(now)),
                    _ => l.on_frame(disk, 0, Err(Reject::BadCrc), at(now)),
                };
                // Every third claim write fails (by the step's length): the release is held.
                let a = claimed(&mut l, a, dt % 3 != 0, at(now));
                for act in a.iter() {
                    if let Action::Release(Takeover { reason: r, .. }) = act {
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

    /// One tick, its claim writes carried out (succeeding if `ok`).
    fn tick(l: &mut StandbyListener, now: u64, ok: bool) -> Actions {
        let a = l.on_tick(at(now));
        claimed(l, a, ok, at(now))
    }

    #[test]
    fn a_claim_that_cannot_be_written_holds_the_release_until_it_is() {
        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, 0, Ok(sample(1)), at(0));
        l.on_frame(disk, 0, Ok(sample(2)), at(100));
        for t in 11..30u64 {
            let a = tick(&mut l, t * 100, false);
            let claim = Action::ClaimTakeover { node: 0, primary_epoch: Some(3), pending: false };
            assert_eq!(a.as_slice(), &[claim], "retried each tick, never released");
        }
        let a = tick(&mut l, 3000, true);
        assert_eq!(releases(&a), 1);
        assert!(tick(&mut l, 3100, true).is_empty());
    }

    #[test]
    fn a_held_release_is_dropped_when_the_primary_shows_progress() {
        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, 0, Ok(sample(1)), at(0));
        l.on_frame(disk, 0, Ok(sample(2)), at(100));
        tick(&mut l, 1100, false);
        tick(&mut l, 1200, false);
        l.on_frame(disk, 0, Ok(sample(3)), at(1300));
        assert_eq!(l.primaries()[0].state, PrimaryState::Watching);
        // Watched from scratch: silent again for the whole timeout before the next claim.
        assert!(tick(&mut l, 2299, true).is_empty());
        assert_eq!(releases(&tick(&mut l, 2300, true)), 1);
        // An operator's release goes ahead even when the claim cannot be written.
        let (mut l, disk, _) = listener(NeverSeenPolicy::WaitForever);
        l.on_frame(disk, 0, Ok(sample(1)), at(0));
        l.on_frame(disk, 0, Ok(sample(2)), at(100));
        tick(&mut l, 1100, false);
        let a = l.release_now(at(1150));
        assert_eq!(releases(&claimed(&mut l, a, false, at(1150))), 1);
    }

    fn beat(node: u8, epoch: u32, seq: u64) -> Heartbeat {
        Heartbeat { node_id: node, boot_epoch: epoch, ..sample(seq) }
    }

    fn spare(watched: &str, arbitration: Option<Arbitration>) -> (StandbyListener<4>, MediumId) {
        let params = ListenerParams {
            watched: NodeSet::parse(watched).unwrap(),
            timeout: T,
            never_seen: NeverSeenPolicy::WaitForever,
            arbitration,
        };
        let mut l = StandbyListener::<4>::new(params, at(0));
        let disk = l.add_medium(MediumKind::Polled).unwrap();
        (l, disk)
    }

    #[test]
    fn node_sets_parse_ranges_and_lists_and_refuse_the_rest() {
        assert_eq!(NodeSet::parse("0-3"), Ok(NodeSet(0b1111)));
        assert_eq!(NodeSet::parse("0, 2,5-6"), Ok(NodeSet(0b110_0101)));
        assert_eq!(NodeSet::parse("31"), Ok(NodeSet(1 << 31)));
        for bad in ["", "3-1", "0-32", "a", "1,,2", "-1"] {
            assert!(NodeSet::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(std::format!("{}", NodeSet(0b1011)), "0,1,3");
    }

    #[test]
    fn the_first_silent_primary_is_taken_and_a_later_death_finds_no_spare_left() {
        let (mut l, disk) = spare("0-2", None);
        for t in 0..5u64 {
            for n in 0..3 {
                l.on_frame(disk, n, Ok(beat(n, 7, t + 1)), at(t * 100));
            }
        }
        assert!(l.primaries().iter().all(|p| p.state == PrimaryState::Watching));
        // Node 1 dies at 400 ms; the others keep beating.
        let mut released = std::vec::Vec::new();
        for t in 5..40u64 {
            for n in [0, 2] {
                l.on_frame(disk, n, Ok(beat(n, 7, t + 1)), at(t * 100));
            }
            let a = l.on_tick(at(t * 100));
            {
                for a in claimed(&mut l, a, true, at(t * 100)) {
                    if let Action::Release(r) = a {
                        released.push(r);
                    }
                }
            }
        }
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].node, 1);
        assert_eq!(released[0].primary_epoch, Some(7));
        assert!(matches!(l.state(), ListenerState::Released { node: 1, .. }));
        // Node 0 dies too: reported once, never taken.
        let mut reports = 0;
        for t in 40..80u64 {
            let mut a = l.on_frame(disk, 2, Ok(beat(2, 7, t + 1)), at(t * 100));
            a.extend(l.on_tick(at(t * 100)));
            assert!(!a.iter().any(|x| matches!(x, Action::Release(_) | Action::ClaimTakeover { .. })));
            reports +=
                a.iter().filter(|x| **x == Action::Primary { node: 0, state: PrimaryState::NoSpareLeft }).count();
        }
        assert_eq!(reports, 1);
        assert_eq!(l.primaries()[0].state, PrimaryState::NoSpareLeft);
        assert_eq!(l.primaries()[2].state, PrimaryState::Watching);
    }

    /// One spare of a shared disk: the machine plus its pending disk operation.
    struct Sim {
        l: StandbyListener<4>,
        disk: MediumId,
        pending: std::collections::VecDeque<Action>,
        releases: std::vec::Vec<u8>,
    }

    impl Sim {
        fn new(id: u8, rank: u8, watched: &str, settle: Duration) -> Sim {
            let a = Arbitration { spare_id: id, settle, stagger: settle.saturating_mul(rank as u64) };
            let (l, disk) = spare(watched, Some(a));
            Sim { l, disk, pending: Default::default(), releases: std::vec::Vec::new() }
        }

        fn queue(&mut self, acts: Actions) {
            for a in acts {
                match a {
                    Action::Release(t) => self.releases.push(t.node),
                    Action::ReadMailbox { .. } | Action::ClaimTakeover { .. } => self.pending.push_back(a),
                    _ => {}
                }
            }
        }

        /// One step: carry out the oldest pending disk operation against `mailboxes`, or poll.
        fn step(&mut self, mailboxes: &mut [MailboxMessage; 4], alive: &[bool; 4], seq: u64, now: Instant) {
            let acts = match self.pending.pop_front() {
                Some(Action::ReadMailbox { node }) => self.l.on_mailbox(node, Ok(mailboxes[node as usize]), now),
                Some(Action::ClaimTakeover { node, primary_epoch, pending }) => {
                    let by = self.l.params().arbitration.unwrap().spare_id;
                    mailboxes[node as usize] = MailboxMessage::claim(by, primary_epoch, pending);
                    self.l.on_claim_written(node, true, now)
                }
                _ => {
                    for n in 0..4u8 {
                        if self.l.params().watched.contains(n) {
                            let hb = if alive[n as usize] { beat(n, 1, seq) } else { beat(n, 1, 1) };
                            let acts = self.l.on_frame(self.disk, n, Ok(hb), now);
                            self.queue(acts);
                        }
                    }
                    self.l.on_tick(now)
                }
            };
            self.queue(acts);
        }
    }

    /// Spares on one disk, primaries 0..=2 alive until their death times; `steps` picks which
    /// spare moves next and how far the clock advances. Returns every release by spare.
    fn race(spares: usize, deaths: [u64; 3], steps: &[(usize, u64)]) -> std::vec::Vec<std::vec::Vec<u8>> {
        let settle = Duration::from_millis(150);
        let mut sims: std::vec::Vec<Sim> = (0..spares).map(|i| Sim::new(3 + i as u8, i as u8, "0-2", settle)).collect();
        let mut mailboxes = [MailboxMessage::Empty; 4];
        let mut now = 0u64;
        for &(who, dt) in steps {
            now += dt;
            let alive = [now < deaths[0], now < deaths[1], now < deaths[2], false];
            sims[who % spares].step(&mut mailboxes, &alive, now / 10 + 2, at(now));
        }
        sims.into_iter().map(|s| s.releases).collect()
    }

    #[test]
    fn of_two_spares_exactly_one_takes_a_dead_primary_and_the_other_takes_the_next() {
        // Round-robin polls every 25 ms: node 1 dies at 2 s, node 0 at 6 s.
        let steps: std::vec::Vec<_> = (0..800).map(|i| (i % 2, 25)).collect();
        let r = race(2, [6000, 2000, u64::MAX], &steps);
        assert_eq!(r, [std::vec![1], std::vec![0]], "the lowest id takes the first; the other the second");
        // Three spares polling every 30 ms: each of the three dead primaries is taken once.
        let steps: std::vec::Vec<_> = (0..2000).map(|i| (i % 3, 10)).collect();
        let r = race(3, [6000, 2000, 9000], &steps);
        let mut taken: std::vec::Vec<u8> = r.iter().flatten().copied().collect();
        taken.sort();
        assert_eq!(taken, [0, 1, 2], "{r:?}");
    }

    /// An arbitrating spare's claim is pending until its re-read finds it standing, and
    /// sealed before the release; a spare restarted with its own pending claim in the
    /// mailbox backs off from it at its pre-read and is free for the next primary.
    #[test]
    fn a_claim_is_sealed_before_the_release_and_a_pending_one_is_not_taken_after_a_restart() {
        let settle = Duration::from_millis(150);
        let mut sim = Sim::new(3, 0, "0-2", settle);
        let mut mailboxes = [MailboxMessage::Empty; 4];
        let mut seen = std::vec::Vec::new();
        for i in 0..300u64 {
            let now = i * 10;
            let alive = [true, now < 1000, true, false];
            sim.step(&mut mailboxes, &alive, i + 2, at(now));
            if seen.last() != Some(&mailboxes[1]) {
                seen.push(mailboxes[1]);
            }
        }
        assert_eq!(sim.releases, [1]);
        let pending = MailboxMessage::PendingClaim { by: 3, primary_epoch: 1 };
        let sealed = MailboxMessage::TakeoverClaim { by: 3, primary_epoch: 1 };
        assert_eq!(seen, [MailboxMessage::Empty, pending, sealed]);

        // Restarted between its pending write and its seal: node 1 is not taken; node 2 is.
        let mut sim = Sim::new(3, 0, "0-2", settle);
        let mut mailboxes = [MailboxMessage::Empty, pending, MailboxMessage::Empty, MailboxMessage::Empty];
        for i in 0..600u64 {
            let now = i * 10;
            let alive = [true, now < 500, now < 3000, false];
            sim.step(&mut mailboxes, &alive, i + 2, at(now));
        }
        assert_eq!(sim.releases, [2]);
        assert_eq!(sim.l.primaries()[1].state, PrimaryState::ClaimedBy(Some(3)));
        assert_eq!(mailboxes[1], pending, "the pending claim holds node 1 for an operator");
    }

    proptest! {
        /// Whatever the interleaving of two or three spares' polls and disk operations, and
        /// however slow any of them is, no primary is taken twice and no spare takes two.
        #[test]
        fn no_primary_is_taken_twice(
            spares in 2usize..=3,
            deaths in proptest::array::uniform3(0u64..6000),
            steps in proptest::collection::vec((0usize..3, 0u64..400), 1..600),
        ) {
            let r = race(spares, deaths, &steps);
            let mut taken = [0; 4];
            for s in &r {
                prop_assert!(s.len() <= 1, "a spare released twice: {:?}", r);
                for &n in s {
                    taken[n as usize] += 1;
                }
            }
            prop_assert!(taken.iter().all(|&n| n <= 1), "a primary taken twice: {:?}", r);
        }
    }
}
