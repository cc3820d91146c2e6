//! The status screen: a snapshot of the running listener, taken by the board when the
//! operator asks, and printed with the listener's own words ([`crate::report`]).

use crate::app::App;
use crate::board::{BootGate, FrameLink, SharedDisk};
use crate::report;
use core::fmt::Write;
use rearguard_shared::fencing::FencingBudget;
use rearguard_shared::listener::{ListenerState, NodeSet, WatchedPrimary};
use rearguard_shared::packed;
use rearguard_shared::reject::Reject;
use rearguard_shared::text::Text;
use rearguard_shared::{Duration, Instant};

/// One medium's line on the status screen.
#[derive(Clone, Copy, Debug)]
pub struct MediumView {
    pub name: &'static str,
    /// Age of the last frame that passed every check.
    pub last_valid_age: Option<Duration>,
    pub accepted: u32,
    pub rejected: [u32; Reject::COUNT],
}

/// A snapshot of the running listener for the status screen. A spare's primaries are
/// borrowed, not copied: 31 of them would not fit a controller's stack twice.
#[derive(Clone, Debug)]
pub struct Status<'a> {
    /// `None` when the listener could not start (the reason was printed at boot).
    pub state: Option<ListenerState>,
    pub timeout: Duration,
    pub media: heapless::Vec<MediumView, 2>,
    /// Link chunks that were not frames: (name, count).
    pub framing: [(&'static str, u32); 2],
    pub gate_open: bool,
    /// Deepest stack use so far and the RAM left for the stack, in bytes, where the board
    /// measures them.
    pub stack_peak: Option<(u32, u32)>,
    /// The last and the longest poll of every medium, in microseconds, where the board
    /// measures them.
    pub poll_us: Option<(u32, u32)>,
    /// The watched primaries and their budgets ([`FencingBudget::NONE`] until one is
    /// seen), in the same order (none when the listener is not running).
    pub primaries: &'a [WatchedPrimary],
    pub budgets: &'a [FencingBudget],
    /// When the snapshot was taken (the primaries' ages are counted to it).
    pub now: Instant,
    /// The slots the shared disk gives the primary role (`None` without a disk): `save`
    /// refuses a spare watching anything else.
    pub disk_primaries: Option<NodeSet>,
    /// The shared disk's timeout (zero without a disk): a saved timeout below it is raised
    /// to it, so it counts in the check.
    pub disk_timeout: Duration,
}

impl<'a> Status<'a> {
    pub fn of<D: SharedDisk, L: FrameLink, G: BootGate, const P: usize>(
        app: Option<&'a App<D, L, G, P>>,
        framing: [(&'static str, u32); 2],
        now: Instant,
    ) -> Status<'a> {
        let mut s = Status {
            state: None,
            timeout: Duration::ZERO,
            media: heapless::Vec::new(),
            framing,
            gate_open: false,
            stack_peak: None,
            poll_us: None,
            primaries: &[],
            budgets: &[],
            now,
            disk_primaries: None,
            disk_timeout: Duration::ZERO,
        };
        let Some(app) = app else { return s };
        (s.primaries, s.budgets) = (app.listener().primaries(), app.budgets());
        s.disk_timeout = app.disk_header().map_or(Duration::ZERO, |h| h.timeout);
        s.disk_primaries = app.disk_header().map(|h| NodeSet(h.primaries));
        let l = app.listener();
        s.state = Some(l.state());
        s.timeout = l.params().timeout;
        s.gate_open = app.gate_opened();
        for (name, id) in [("disk", app.disk_medium()), ("serial", app.link_medium())] {
            if let Some(m) = id.and_then(|id| l.media().get(id.0 as usize)) {
                let _ = s.media.push(MediumView {
                    name,
                    last_valid_age: m.last_valid.map(|t| now.saturating_since(t)),
                    accepted: m.accepted,
                    rejected: m.rejected,
                });
            }
        }
        s
    }

    /// The most demanding fencing budget of the watched primaries (the node and its budget),
    /// once a heartbeat carried one: `save` refuses a timeout that breaks it.
    pub fn budget(&self) -> Option<(u8, FencingBudget)> {
        self.primaries
            .iter()
            .zip(self.budgets)
            .filter(|(_, b)| !b.is_none())
            .max_by_key(|(_, b)| b.min_timeout())
            .map(|(p, b)| (p.node, *b))
    }

    pub fn print(&self, out: &mut impl Write) -> core::fmt::Result {
        self.print_to(&mut Text::new(out))
    }

    /// [`Status::print`] onto a line being written.
    pub fn print_to(&self, t: &mut Text) -> core::fmt::Result {
        match self.state {
            None => t.s(packed!("state: ")).s(report::NOT_RUNNING),
            Some(st) => t
                .s(packed!("state: "))
                .s(st.name())
                .s(packed!(" | timeout "))
                .ms(self.timeout)
                .s(packed!(" | gate "))
                .s(if self.gate_open { "RELEASED" } else { "held" }),
        };
        if let Some(ListenerState::Released { reason, .. }) = self.state {
            report::reason(t.s(packed!("\n  released: ")), reason);
        }
        for (p, b) in self.primaries.iter().zip(self.budgets) {
            report::watched_primary(t.s("\n  "), p, self.now);
            if !b.is_none() {
                report::budget(t.s(packed!("\n    fencing budget")), b, self.timeout);
            }
        }
        for m in &self.media {
            // Names padded to the longest ("serial") so the columns line up.
            t.s("\n  ").s(m.name).s(&"      "[m.name.len().min(6)..]).s(packed!(" last valid heartbeat "));
            match m.last_valid_age {
                Some(a) => t.ms(a).s(" ago"),
                None => t.s("never"),
            };
            let total: u32 = m.rejected.iter().sum();
            t.s(packed!(", accepted ")).n(m.accepted).s(packed!(", rejected ")).n(total);
            for (name, &n) in Reject::NAMES.iter().zip(&m.rejected) {
                if n > 0 {
                    t.s(" ").s(name).s("=").n(n);
                }
            }
        }
        t.s(packed!("\n  link framing errors:"));
        for (name, n) in self.framing {
            t.s(" ").s(name).s("=").n(n);
        }
        if let Some((last, max)) = self.poll_us {
            t.s(packed!("\n  poll took ")).n(last).s(packed!(" us, longest ")).n(max).s(" us");
        }
        if let Some((n, room)) = self.stack_peak {
            t.s(packed!("\n  stack peak ")).n(n).s(" of ").n(room).s(packed!(" bytes"));
        }
        t.nl()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::string::String;

    /// A listener holding, nothing seen: the status the menu's tests run against.
    pub(crate) fn status() -> Status<'static> {
        Status {
            state: Some(ListenerState::Holding),
            timeout: Duration::from_secs(10),
            media: heapless::Vec::new(),
            framing: [("bad-cobs", 0), ("overlong", 0)],
            gate_open: false,
            stack_peak: None,
            poll_us: None,
            primaries: &[],
            budgets: &[],
            now: Instant::ZERO,
            disk_primaries: None,
            disk_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn status_shows_rejections_by_reason() {
        let mut s = status();
        let mut rejected = [0; Reject::COUNT];
        rejected[Reject::BadCrc.index()] = 3;
        rejected[Reject::Replay.index()] = 2;
        let _ = s.media.push(MediumView {
            name: "serial",
            last_valid_age: Some(Duration::from_millis(40)),
            accepted: 9,
            rejected,
        });
        let mut out = String::new();
        s.print(&mut out).unwrap();
        assert!(
            out.contains("serial last valid heartbeat 40 ms ago, accepted 9, rejected 5 bad-crc=3 replay=2"),
            "{out}"
        );
    }
}
