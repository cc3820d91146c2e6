//! The words a listener uses on its console: one line per [`Event`], the start line, release
//! reasons and durations. Every board prints through here, so an operator, a script or a test
//! waits for the same text on a controller and on Linux (`state: watching`, `BOOT RELEASED: …`).
//!
//! Each function writes whole lines (ending in `\n`) or nothing, straight into the board's
//! `core::fmt::Write`: no buffer, no allocation. A board that stamps its lines (the Linux
//! board prefixes the time) does so in its writer.

use crate::app::Event;
use core::fmt::{Display, Formatter, Write};
use rearguard_shared::config::ListenerConfig;
use rearguard_shared::fencing::{FencingBudget, FencingViolation};
use rearguard_shared::heartbeat::Role;
use rearguard_shared::listener::{Arbitration, ListenerState, NodeSet, PrimaryState, ReleaseReason, WatchedPrimary};
use rearguard_shared::packed;
use rearguard_shared::reject::Reject;
use rearguard_shared::text::{Say, Text};
use rearguard_shared::{Duration, Instant};

/// A spare's watched slot that the disk gives another role (start and `save` say it alike).
pub const NOT_PRIMARY: &str = packed!(" is not a primary's slot on the shared disk");

/// A listener whose settings were refused (status and drill say it alike).
pub const NOT_RUNNING: &str = packed!("not running (see boot messages; fix and save)");

/// What every release line starts with; the boot gate is open once it is printed.
pub const RELEASED: &str = "BOOT RELEASED: ";

/// A duration printed as whole milliseconds through [`Text::ms`]: `Duration`'s own `Display`
/// pulls 64-bit division and `core::fmt`'s integer formatting into the image. Durations past
/// 49 days print as the 32-bit maximum.
pub struct Ms(pub Duration);

impl Display for Ms {
    fn fmt(&self, f: &mut Formatter<'_>) -> core::fmt::Result {
        Text::new(f).ms(self.0).end()
    }
}

/// Why the boot was released, its durations through [`Ms`].
pub struct Reason(pub ReleaseReason);

impl Display for Reason {
    fn fmt(&self, f: &mut Formatter<'_>) -> core::fmt::Result {
        reason(&mut Text::new(f), self.0).end()
    }
}

/// Why the boot was released, as [`Reason`] says it, onto a line being written.
pub fn reason<'t, 'o>(t: &'t mut Text<'o>, r: ReleaseReason) -> &'t mut Text<'o> {
    match r {
        ReleaseReason::HeartbeatTimeout { silent_for } => {
            t.s(packed!("primary silent for ")).ms(silent_for).s(packed!(" on every medium"))
        }
        ReleaseReason::NeverSeen { waited } => {
            t.s(packed!("primary never seen alive in ")).ms(waited).s(packed!(" since power-on"))
        }
        ReleaseReason::Manual => t.s(packed!("released by operator")),
        ReleaseReason::EarlierLife => t.s(packed!("taken before a restart")),
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Secondary => "secondary",
    }
}

/// The line a (re)started listener prints. `timeout` is the one in force (the disk's, when
/// longer than the configured one); `media` names what is watched (`disk+serial`, a device…).
/// It ends in `state: holding`: a listener starts holding, and no event says so.
pub fn started(out: &mut impl Write, cfg: &ListenerConfig, timeout: Duration, media: &str) -> core::fmt::Result {
    let t = &mut Text::new(out);
    t.s(packed!("listening: role "))
        .s(if cfg.is_spare() { "spare" } else { role_name(cfg.role) })
        .s(packed!(", cluster "))
        .hex(cfg.cluster_id);
    cfg.watched()
        .text(t.s(if cfg.is_spare() { ", watching nodes " } else { ", watching node " }))
        .s(packed!(", timeout "))
        .ms(timeout)
        .s(packed!(", poll "))
        .ms(cfg.poll_period)
        .s(packed!(", media: "))
        .s(media)
        .s(packed!("; state: holding"))
        .nl()
}

/// The line for one event of the application. `read_failures` counts failed slot reads so
/// far, this one included (a board that shows only some of them counts them all).
///
/// `state: released` prints nothing: the `BOOT RELEASED` line that comes with it says more.
pub fn event<DE: Say, GE: Say>(out: &mut impl Write, ev: &Event<DE, GE>, read_failures: u32) -> core::fmt::Result {
    let t = &mut Text::new(out);
    match ev {
        Event::State(ListenerState::Holding) => t.s(packed!("state: holding (primary not seen alive yet)")),
        Event::State(ListenerState::Watching) => t.s(packed!("state: watching (primary is alive)")),
        Event::State(ListenerState::Released { .. }) => return Ok(()),
        Event::TimeoutRaised { configured, disk } => t
            .s(packed!("warning: timeout raised from "))
            .ms(*configured)
            .s(packed!(" to the disk's "))
            .ms(*disk)
            .s(packed!(" for the primary's fencing bound")),
        Event::Primary { node, state } => primary(t, *node, *state),
        Event::ClaimWritten { node, primary_epoch } => {
            let t = t.s(packed!("takeover claim written to node ")).n(*node).s(packed!("'s mailbox (primary epoch "));
            match primary_epoch {
                Some(e) => t.n(*e).s(")"),
                None => t.s(packed!("never seen)")),
            }
        }
        Event::ClaimFailed(e) => t.s(packed!("warning: claim NOT written, release held: ")).say(e),
        Event::AlreadyTaken { node } => {
            t.s(packed!("released as node ")).n(*node).s(packed!(" before a restart (own claim on disk)"))
        }
        Event::Released { takeover: r, of_several: false } => reason(t.s(RELEASED), r.reason),
        Event::Released { takeover: r, of_several: true } => {
            reason(t.s(packed!("BOOT RELEASED as node ")).n(r.node).s(": "), r.reason)
        }
        Event::PassThrough => t.s(RELEASED).s(packed!("role is primary (pass-through)")),
        Event::Budget { node, budget: b, timeout } => {
            if b.check(*timeout).is_err() {
                t.s(packed!("WARNING: "));
            }
            budget(t.s(packed!("node ")).n(*node).s(packed!("'s fencing budget")), b, *timeout)
        }
        Event::GateFailed(e) => t.s(packed!("error: boot gate failed: ")).say(e),
        Event::DiskReadFailed(e) => t
            .s(packed!("warning: slot read failed ("))
            .n(read_failures)
            .s(packed!(" so far; release held until it reads): "))
            .say(e),
    }
    .nl()
}

/// A primary's fencing budget against the timeout in force: `: <numbers>: bound B, margin M`,
/// or with `BOUND BROKEN` the numbers and what to change.
pub fn budget<'t, 'o>(t: &'t mut Text<'o>, b: &FencingBudget, timeout: Duration) -> &'t mut Text<'o> {
    if b.is_none() {
        return t.s(packed!(": no fencing budget seen yet"));
    }
    b.numbers(t.s(": ")).s(packed!(": bound ")).ms(b.min_timeout());
    match b.check(timeout) {
        Ok(margin) => t.s(packed!(", margin ")).ms(margin),
        Err(v) => bound_broken(t.s(packed!("; BOUND BROKEN: ")), &v),
    }
}

/// A timeout that breaks a primary's fencing bound: the numbers, and which to change.
pub fn bound_broken<'t, 'o>(t: &'t mut Text<'o>, v: &FencingViolation) -> &'t mut Text<'o> {
    v.numbers(t)
        .s(packed!("; set timeout "))
        .n(v.min_timeout.as_millis())
        .s(packed!(" or more, or lower the primary's interval, write_deadline or fence time"))
}

/// A watched primary's new state, on a spare of several primaries or several spares.
pub fn primary<'t, 'o>(t: &'t mut Text<'o>, node: u8, state: PrimaryState) -> &'t mut Text<'o> {
    t.s(packed!("primary ")).n(node).s(": ");
    match state {
        PrimaryState::Holding => t.s(packed!("holding (not seen alive yet)")),
        PrimaryState::Watching => t.s(packed!("watching (alive)")),
        #[cfg(feature = "arbitration")]
        PrimaryState::Claiming => t.s(packed!("silent past the timeout; claiming its mailbox")),
        #[cfg(feature = "arbitration")]
        PrimaryState::ClaimedBy(Some(by)) => {
            t.s(packed!("claimed by node ")).n(by).s(packed!("; not taking it, watching the others"))
        }
        #[cfg(feature = "arbitration")]
        PrimaryState::ClaimedBy(None) => {
            t.s(packed!("claim not confirmed (mailbox unreadable or changed); not taking it, watching the others"))
        }
        // Only spares that arbitrate claim and back off; the text is compiled out with them.
        #[cfg(not(feature = "arbitration"))]
        PrimaryState::Claiming | PrimaryState::ClaimedBy(_) => t.s(state.name()),
        PrimaryState::Taken => t.s(packed!("taken over by this spare")),
        PrimaryState::NoSpareLeft => t.s(packed!("silent past the timeout: no spare left, NOT taken")),
    }
}

/// A spare's start line, after [`started`]: what it watches and how it arbitrates.
pub fn spare_started(out: &mut impl Write, watch: NodeSet, arbitration: Option<Arbitration>) -> core::fmt::Result {
    let t = &mut Text::new(out);
    watch.text(t.s(packed!("spare: watching primaries "))).s("; ");
    match arbitration {
        Some(a) => t
            .s(packed!("other spares share the disk: claims settle "))
            .ms(a.settle)
            .s(packed!(", this spare waits "))
            .ms(a.stagger)
            .s(packed!(" first (lowest id wins a tie)")),
        None => t.s(packed!("the only spare on the disk: a dead primary is claimed and taken at once")),
    }
    .nl()
}

/// A watched primary on a spare's status screen: state, age of its last progress, and who
/// claimed it.
pub fn watched_primary<'t, 'o>(t: &'t mut Text<'o>, p: &WatchedPrimary, now: Instant) -> &'t mut Text<'o> {
    t.s(packed!("primary ")).n(p.node).s(": ").s(p.state.name());
    match p.last_progress() {
        Some(at) => t.s(packed!(", last progressed ")).ms(now.saturating_since(at)).s(" ago"),
        None => t.s(packed!(", never seen alive")),
    };
    match p.state {
        #[cfg(feature = "arbitration")]
        PrimaryState::ClaimedBy(Some(by)) => t.s(packed!(", claimed by node ")).n(by),
        #[cfg(feature = "arbitration")]
        PrimaryState::ClaimedBy(None) => t.s(packed!(", claim unconfirmed (not taken)")),
        PrimaryState::Taken => t.s(packed!(", claimed by this spare (booted as it)")),
        PrimaryState::NoSpareLeft => t.s(packed!(", dead: no spare left")),
        _ => t,
    }
}

/// After failed slot reads, the first one that works again.
pub fn reads_recovered(out: &mut impl Write, failures: u32) -> core::fmt::Result {
    Text::new(out).s(packed!("slot reads work again after ")).n(failures).s(packed!(" failures")).nl()
}

/// A slot that changed and was refused; `total` counts every refusal on that medium so far.
pub fn slot_rejected(out: &mut impl Write, why: Reject, total: u32) -> core::fmt::Result {
    Text::new(out)
        .s(packed!("slot rejected: "))
        .s(why.name())
        .s(" (")
        .d(&why)
        .s("); ")
        .n(total)
        .s(packed!(" rejected so far"))
        .nl()
}

/// The operator released the boot while no listener ran (its config was refused).
pub fn released_without_listener(out: &mut impl Write) -> core::fmt::Result {
    reason(Text::new(out).s(RELEASED), ReleaseReason::Manual).s(packed!(" (the listener was not running)")).nl()
}

/// Settings were saved after the boot was released: nothing restarts.
pub fn saved_after_release(out: &mut impl Write) -> core::fmt::Result {
    Text::new(out).s(packed!("already released; saved settings apply at the next start\n")).end()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rearguard_shared::listener::Takeover;
    use std::string::String;

    type Ev = Event<&'static str, &'static str>;

    fn released(reason: ReleaseReason) -> Ev {
        Ev::Released { takeover: Takeover { node: 0, reason, primary_epoch: None }, of_several: false }
    }

    pub(crate) fn budget() -> FencingBudget {
        let ms = Duration::from_millis;
        FencingBudget { interval: ms(100), write_deadline: ms(300), fence_time: ms(100) }
    }

    fn line(ev: Ev) -> String {
        let mut s = String::new();
        event(&mut s, &ev, 3).unwrap();
        s
    }

    #[test]
    fn every_event_has_its_one_line() {
        let ms = Duration::from_millis;
        for (ev, expect) in [
            (Ev::State(ListenerState::Holding), "state: holding (primary not seen alive yet)\n"),
            (Ev::State(ListenerState::Watching), "state: watching (primary is alive)\n"),
            (
                Ev::TimeoutRaised { configured: ms(1000), disk: ms(3000) },
                "warning: timeout raised from 1000 ms to the disk's 3000 ms for the primary's fencing bound\n",
            ),
            (
                Ev::ClaimWritten { node: 0, primary_epoch: Some(7) },
                "takeover claim written to node 0's mailbox (primary epoch 7)\n",
            ),
            (
                Ev::ClaimWritten { node: 0, primary_epoch: None },
                "takeover claim written to node 0's mailbox (primary epoch never seen)\n",
            ),
            (Ev::ClaimFailed("io"), "warning: claim NOT written, release held: io\n"),
            (
                released(ReleaseReason::HeartbeatTimeout { silent_for: ms(1040) }),
                "BOOT RELEASED: primary silent for 1040 ms on every medium\n",
            ),
            (
                released(ReleaseReason::NeverSeen { waited: ms(30_000) }),
                "BOOT RELEASED: primary never seen alive in 30000 ms since power-on\n",
            ),
            (released(ReleaseReason::Manual), "BOOT RELEASED: released by operator\n"),
            (Ev::PassThrough, "BOOT RELEASED: role is primary (pass-through)\n"),
            (Ev::GateFailed("exit status 1"), "error: boot gate failed: exit status 1\n"),
            (Ev::DiskReadFailed("io"), "warning: slot read failed (3 so far; release held until it reads): io\n"),
            (
                Ev::Budget { node: 0, budget: budget(), timeout: ms(10_000) },
                "node 0's fencing budget: interval 100 ms + write_deadline 300 ms + fence time 100 ms: bound 1000 ms, \
                 margin 9000 ms\n",
            ),
            (
                Ev::Budget { node: 0, budget: budget(), timeout: ms(600) },
                "WARNING: node 0's fencing budget: interval 100 ms + write_deadline 300 ms + fence time 100 ms: \
                 bound 1000 ms; BOUND BROKEN: the secondary's timeout (600 ms) must be at least \
                 2 × (interval 100 ms + write_deadline 300 ms + fence time 100 ms) = 1000 ms; set timeout 1000 or more, \
                 or lower the primary's interval, write_deadline or fence time\n",
            ),
        ] {
            assert_eq!(line(ev), expect);
        }
    }

    #[test]
    fn a_spare_of_several_says_which_node_it_became_and_what_befell_each_primary() {
        let t = Takeover { node: 2, reason: ReleaseReason::Manual, primary_epoch: Some(4) };
        assert_eq!(
            line(Ev::Released { takeover: t, of_several: true }),
            "BOOT RELEASED as node 2: released by operator\n"
        );
        #[cfg(feature = "arbitration")]
        assert_eq!(
            line(Ev::Primary { node: 3, state: PrimaryState::ClaimedBy(Some(5)) }),
            "primary 3: claimed by node 5; not taking it, watching the others\n"
        );
        assert_eq!(
            line(Ev::Primary { node: 0, state: PrimaryState::NoSpareLeft }),
            "primary 0: silent past the timeout: no spare left, NOT taken\n"
        );
    }

    #[test]
    fn the_released_state_adds_no_line_to_the_release_line() {
        let released = ListenerState::Released { at: Instant::ZERO, reason: ReleaseReason::Manual, node: 0 };
        assert_eq!(line(Ev::State(released)), "");
    }

    #[test]
    fn the_start_line_names_the_timeout_in_force_and_the_state() {
        let cfg = ListenerConfig { cluster_id: 0x5, ..ListenerConfig::factory() };
        let mut s = String::new();
        started(&mut s, &cfg, Duration::from_millis(2500), "disk+serial").unwrap();
        assert!(
            s.starts_with("listening: role secondary, cluster 0x5, watching node 0, timeout 2500 ms, poll "),
            "{s}"
        );
        assert!(s.ends_with(", media: disk+serial; state: holding\n"), "{s}");
    }

    #[test]
    fn durations_past_32_bits_of_milliseconds_print_the_maximum() {
        let mut s = String::new();
        write!(s, "{}", Ms(Duration::from_millis(u64::MAX))).unwrap();
        assert_eq!(s, "4294967295 ms");
    }
}
