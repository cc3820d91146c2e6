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
use rearguard_shared::heartbeat::Role;
use rearguard_shared::listener::{ListenerState, ReleaseReason};
use rearguard_shared::reject::Reject;
use rearguard_shared::Duration;

/// What every release line starts with; the boot gate is open once it is printed.
pub const RELEASED: &str = "BOOT RELEASED: ";

/// A duration printed as whole milliseconds through 32-bit formatting: `Duration`'s own
/// `Display` pulls 64-bit division and formatting into the image (about 1 KiB of a 32 KiB
/// budget). Durations past 49 days print as the 32-bit maximum.
pub struct Ms(pub Duration);

impl Display for Ms {
    fn fmt(&self, f: &mut Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ms", u32::try_from(self.0.as_millis()).unwrap_or(u32::MAX))
    }
}

/// Why the boot was released, its durations through [`Ms`].
pub struct Reason(pub ReleaseReason);

impl Display for Reason {
    fn fmt(&self, f: &mut Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            ReleaseReason::HeartbeatTimeout { silent_for } => {
                write!(f, "primary silent for {} on every medium", Ms(silent_for))
            }
            ReleaseReason::NeverSeen { waited } => {
                write!(f, "primary never seen alive in {} since power-on", Ms(waited))
            }
            ReleaseReason::Manual => f.write_str("released by operator"),
        }
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
pub fn started(
    out: &mut impl Write,
    cfg: &ListenerConfig,
    timeout: Duration,
    media: impl Display,
) -> core::fmt::Result {
    writeln!(
        out,
        "listening: role {}, cluster {:#x}, watching node {}, timeout {}, poll {}, media: {media}; state: holding",
        role_name(cfg.role),
        cfg.cluster_id,
        cfg.primary_node,
        Ms(timeout),
        Ms(cfg.poll_period),
    )
}

/// The line for one event of the application. `primary_node` is the watched node (its
/// mailbox takes the claim); `read_failures` counts failed slot reads so far, this one
/// included (a board that shows only some of them counts them all).
///
/// `state: released` prints nothing: the `BOOT RELEASED` line that comes with it says more.
pub fn event<DE: Display, GE: Display>(
    out: &mut impl Write,
    ev: &Event<DE, GE>,
    primary_node: u8,
    read_failures: u32,
) -> core::fmt::Result {
    match ev {
        Event::State(ListenerState::Holding) => writeln!(out, "state: holding (primary not seen alive yet)"),
        Event::State(ListenerState::Watching) => writeln!(out, "state: watching (primary is alive)"),
        Event::State(ListenerState::Released { .. }) => Ok(()),
        Event::TimeoutRaised { configured, disk } => writeln!(
            out,
            "warning: timeout raised from {} to the disk's {} to keep the primary's fencing bound",
            Ms(*configured),
            Ms(*disk)
        ),
        Event::ClaimWritten { primary_epoch } => {
            write!(out, "takeover claim written to node {primary_node}'s mailbox (primary epoch ")?;
            match primary_epoch {
                Some(e) => writeln!(out, "{e})"),
                None => writeln!(out, "never seen)"),
            }
        }
        Event::ClaimFailed(e) => {
            writeln!(out, "warning: takeover claim NOT written: {e}; boot held, retrying")
        }
        Event::ReleaseCancelled => {
            writeln!(out, "release cancelled: primary back before the claim was written")
        }
        Event::Released(reason) => writeln!(out, "{RELEASED}{}", Reason(*reason)),
        Event::PassThrough => writeln!(out, "{RELEASED}role is primary (pass-through, nothing watched)"),
        Event::GateFailed(e) => writeln!(out, "error: boot gate failed: {e}"),
        Event::DiskReadFailed(e) => {
            writeln!(out, "warning: slot read failed ({read_failures} so far; not liveness, the timeout decides): {e}")
        }
    }
}

/// After failed slot reads, the first one that works again.
pub fn reads_recovered(out: &mut impl Write, failures: u32) -> core::fmt::Result {
    writeln!(out, "slot reads work again after {failures} failures")
}

/// A slot that changed and was refused; `total` counts every refusal on that medium so far.
pub fn slot_rejected(out: &mut impl Write, why: Reject, total: u32) -> core::fmt::Result {
    writeln!(out, "slot rejected: {} ({why}); {total} rejected so far", why.name())
}

/// The operator released the boot while no listener ran (its config was refused).
pub fn released_without_listener(out: &mut impl Write) -> core::fmt::Result {
    writeln!(out, "{RELEASED}{} (the listener was not running)", Reason(ReleaseReason::Manual))
}

/// Settings were saved after the boot was released: nothing restarts.
pub fn saved_after_release(out: &mut impl Write) -> core::fmt::Result {
    writeln!(out, "the boot is already released; the saved settings apply at the next start")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rearguard_shared::Instant;
    use std::string::String;

    type Ev = Event<&'static str, &'static str>;

    fn line(ev: Ev) -> String {
        let mut s = String::new();
        event(&mut s, &ev, 0, 3).unwrap();
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
                "warning: timeout raised from 1000 ms to the disk's 3000 ms to keep the primary's fencing bound\n",
            ),
            (
                Ev::ClaimWritten { primary_epoch: Some(7) },
                "takeover claim written to node 0's mailbox (primary epoch 7)\n",
            ),
            (
                Ev::ClaimWritten { primary_epoch: None },
                "takeover claim written to node 0's mailbox (primary epoch never seen)\n",
            ),
            (Ev::ClaimFailed("io"), "warning: takeover claim NOT written: io; boot held, retrying\n"),
            (
                Ev::Released(ReleaseReason::HeartbeatTimeout { silent_for: ms(1040) }),
                "BOOT RELEASED: primary silent for 1040 ms on every medium\n",
            ),
            (
                Ev::Released(ReleaseReason::NeverSeen { waited: ms(30_000) }),
                "BOOT RELEASED: primary never seen alive in 30000 ms since power-on\n",
            ),
            (Ev::Released(ReleaseReason::Manual), "BOOT RELEASED: released by operator\n"),
            (Ev::PassThrough, "BOOT RELEASED: role is primary (pass-through, nothing watched)\n"),
            (Ev::GateFailed("exit status 1"), "error: boot gate failed: exit status 1\n"),
            (Ev::DiskReadFailed("io"), "warning: slot read failed (3 so far; not liveness, the timeout decides): io\n"),
        ] {
            assert_eq!(line(ev), expect);
        }
    }

    #[test]
    fn the_released_state_adds_no_line_to_the_release_line() {
        let released = ListenerState::Released { at: Instant::ZERO, reason: ReleaseReason::Manual };
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
