//! The console configuration menu: the analogue of a RAID controller's boot-time option-ROM
//! menu, on a serial console (VT100 or anything that sends plain lines).
//!
//! Line-oriented on purpose: it works through `screen`, `picocom`, `socat` or a script alike.
//! [`line`] turns bytes into lines (echo and editing), [`commands`] runs them against a draft
//! config, [`status`] is the status screen. Every input is checked and answered with a message
//! naming the setting and what is allowed; overlong lines, non-ASCII bytes and control
//! characters are refused, never acted upon, and never panic.

pub mod commands;
pub mod line;
pub mod status;

pub use commands::Request;
pub use line::MAX_LINE;
pub use status::{MediumView, Status};

use crate::board::NvStore;
use crate::nv::Persist;
use commands::Commands;
use core::fmt::Write;
use line::{Complete, Edit, LineEditor};
use rearguard_shared::config::ListenerConfig;
use rearguard_shared::packed;
use rearguard_shared::text::Text;

pub const PROMPT: &str = "rearguard> ";

pub struct Menu {
    line: LineEditor,
    commands: Commands,
}

impl Menu {
    /// `running` is the config loaded at boot, `persist` where it came from.
    pub fn new(running: ListenerConfig, persist: Persist) -> Menu {
        Menu { line: LineEditor::new(), commands: Commands::new(running, persist) }
    }

    pub fn draft(&self) -> &ListenerConfig {
        self.commands.draft()
    }

    /// Feeds one console byte; echoes it. Returns `true` when a line is complete (then call
    /// [`Menu::run_line`]).
    pub fn feed(&mut self, b: u8, out: &mut impl Write) -> bool {
        match self.line.feed(b, out) {
            Edit::Pending => false,
            Edit::Line => true,
            Edit::Cancelled => {
                self.commands.cancel();
                let _ = out.write_str(PROMPT);
                false
            }
        }
    }

    /// Runs the completed line. The caller prints [`PROMPT`] once it has acted on the request.
    pub fn run_line<S: NvStore>(&mut self, status: &Status, nv: Option<&mut S>, out: &mut impl Write) -> Request {
        let req = match self.line.complete() {
            Complete::Overlong => {
                let _ = Text::new(out)
                    .s(packed!("error: line longer than "))
                    .n(MAX_LINE)
                    .s(packed!(" characters; ignored"))
                    .nl();
                self.commands.cancel();
                Request::None
            }
            Complete::BadByte => {
                let _ = Text::new(out).s(packed!("error: control or non-ASCII characters; line ignored\n")).end();
                self.commands.cancel();
                Request::None
            }
            Complete::Line(line) => self.commands.execute(line.trim_ascii(), status, nv, out),
        };
        self.line.clear();
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nv::tests::RamNv;
    use rearguard_shared::heartbeat::Role;
    use rearguard_shared::listener::NodeSet;
    use rearguard_shared::Duration;
    use status::tests::status;
    use std::string::String;

    /// Types `input` and returns what was printed and the last request.
    fn type_in(m: &mut Menu, nv: &mut RamNv, input: &[u8]) -> (String, Request) {
        let mut out = String::new();
        let mut req = Request::None;
        for &b in input {
            if m.feed(b, &mut out) {
                req = m.run_line(&status(), Some(&mut *nv), &mut out);
            }
        }
        (out, req)
    }

    fn menu() -> (Menu, RamNv) {
        (Menu::new(ListenerConfig::factory(), Persist::NONE), RamNv::default())
    }

    #[test]
    fn set_and_save_writes_a_copy_and_applies() {
        let (mut m, mut nv) = menu();
        let (out, _) = type_in(&mut m, &mut nv, b"set timeout 5000\r");
        assert!(out.contains("ok (draft"), "{out}");
        let (out, req) = type_in(&mut m, &mut nv, b"save\r\n");
        assert!(out.contains("saved to copy A (generation 1)"), "{out}");
        let Request::Apply(c) = req else { panic!("{req:?}") };
        assert_eq!(c.timeout, Duration::from_millis(5000));
        let (c, _, _) = crate::nv::load(&mut nv);
        assert_eq!(c.timeout, Duration::from_millis(5000));
    }

    /// `set watch` makes a spare of those primaries (its `primary` the lowest); a save that
    /// names a slot the disk does not give a primary, or the spare's own, is refused with
    /// the disk's primaries named, and nothing is written.
    #[test]
    fn a_spare_is_set_with_its_watch_list_and_saved_only_against_the_disks_roles() {
        let (mut m, mut nv) = menu();
        let (out, _) = type_in(
            &mut m,
            &mut nv,
            b"set node 3
set watch 0-2
show
",
        );
        assert!(out.contains("role       spare\nwatch      0,1,2\n"), "{out}");
        assert!(out.contains("primary    0\n"), "{out}");
        let (out, _) = type_in(
            &mut m,
            &mut nv,
            b"set watch 2-5
",
        );
        assert!(out.contains("error: watch: must not be node_id"), "{out}");
        let (out, _) = type_in(
            &mut m,
            &mut nv,
            b"set watch 5-2
",
        );
        assert!(out.contains("error: watch: node ids 0..=31"), "{out}");
        let mut st = status();
        st.disk_primaries = Some(NodeSet(0b11));
        let mut run = |m: &mut Menu, input: &[u8]| {
            let mut out = String::new();
            let mut req = Request::None;
            for &b in input {
                if m.feed(b, &mut out) {
                    req = m.run_line(&st, Some(&mut nv), &mut out);
                }
            }
            (out, req)
        };
        let (out, req) = run(
            &mut m, b"save
",
        );
        assert!(
            out.contains("error: watch: node 2 is not a primary's slot on the shared disk (primaries: 0,1); not saved"),
            "{out}"
        );
        assert!(matches!(req, Request::None));
        let (out, req) = run(
            &mut m,
            b"set watch 0,1
set node 1
set node 4
save
",
        );
        assert!(out.contains("error: watch: must not be node_id"), "{out}");
        assert!(out.contains("saved to copy A"), "{out}");
        let Request::Apply(c) = req else { panic!("{out}") };
        assert_eq!((c.watch, c.primary_node, c.node_id, c.role), (NodeSet(0b11), 0, 4, Role::Secondary));
        // One primary again: `set primary` (or `set role secondary`) clears the list.
        let (out, _) = run(
            &mut m,
            b"set primary 1
show
",
        );
        assert!(out.contains("role       secondary\ntimeout"), "{out}");
        assert!(crate::nv::load(&mut nv).0.is_spare());
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named_and_the_draft_unchanged() {
        let (mut m, mut nv) = menu();
        for (input, expect) in [
            (&b"set timeout ten\r"[..], "error: timeout: milliseconds"),
            (b"set timeout 50\r", "error: timeout: must be at least twice poll"),
            (b"set cluster 0x1FFFFFFFF\r", "error: cluster"),
            (b"set key 12zz\r", "error: key"),
            (b"set role boss\r", "error: role"),
            (b"set primary 1\r", "error: primary: must not be node_id"),
            (b"set never-seen 500\r", "error: never-seen: the initial wait must be at least the timeout"),
            (b"set colour blue\r", "unknown setting"),
            (b"set timeout\r", "usage: set"),
            (b"frobnicate\r", "unknown command"),
        ] {
            let (out, req) = type_in(&mut m, &mut nv, input);
            assert!(out.contains(expect), "{:?} → {out}", core::str::from_utf8(input));
            assert_eq!(req, Request::None);
        }
        assert_eq!(m.draft(), &ListenerConfig::factory());
    }

    #[test]
    fn garbage_overlong_lines_and_control_bytes_never_act() {
        let (mut m, mut nv) = menu();
        let mut long = std::vec![b'x'; 500];
        long.push(b'\r');
        let (out, _) = type_in(&mut m, &mut nv, &long);
        assert!(out.contains("longer than"), "{out}");
        let (out, _) = type_in(&mut m, &mut nv, b"save\x01\xff\r");
        assert!(out.contains("control or non-ASCII"), "{out}");
        assert!(nv.a.is_none(), "nothing saved");
        // Arrow keys and a backspace-corrected command.
        let (out, _) = type_in(&mut m, &mut nv, b"\x1b[A\x1b[Bshox\x7fw\r");
        assert!(out.contains("timeout    10000 ms"), "{out}");
        // Every byte value, many times, in any order: no panic.
        let mut x: u32 = 1;
        let mut bytes = std::vec::Vec::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bytes.push(x as u8);
        }
        let _ = type_in(&mut m, &mut nv, &bytes);
    }

    #[test]
    fn save_refuses_a_timeout_that_breaks_the_primarys_budget_and_names_the_numbers() {
        let (mut m, mut nv) = menu();
        let mut st = status();
        let listener = rearguard_shared::listener::StandbyListener::<1>::new(
            ListenerConfig::factory().params(),
            rearguard_shared::Instant::ZERO,
        );
        let budgets = [crate::report::tests::budget()];
        (st.primaries, st.budgets) = (listener.primaries(), &budgets);
        let mut run = |m: &mut Menu, st: &Status, input: &[u8]| {
            let (mut out, mut req) = (String::new(), Request::None);
            for &b in input {
                if m.feed(b, &mut out) {
                    req = m.run_line(st, Some(&mut nv), &mut out);
                }
            }
            (out, req)
        };
        let (out, req) = run(&mut m, &st, b"set timeout 800\rsave\r");
        assert!(
            out.contains(
                "error: timeout: node 0: the secondary's timeout (800 ms) must be at least 2 × (interval 100 ms + \
                 write_deadline 300 ms + fence time 100 ms) = 1000 ms; set timeout 1000 or more, or lower the \
                 primary's interval, write_deadline or fence time; not saved"
            ),
            "{out}"
        );
        assert_eq!(req, Request::None);
        // The disk's longer timeout is the one that would run: the bound holds.
        st.disk_timeout = Duration::from_millis(2000);
        let (out, req) = run(&mut m, &st, b"save\r");
        assert!(out.contains("saved to copy A"), "{out}");
        assert!(matches!(req, Request::Apply(_)));
        st.disk_timeout = Duration::ZERO;
        let (out, _) = run(&mut m, &st, b"set timeout 1000\rsave\rstatus\r");
        assert!(out.contains("saved to copy B"), "{out}");
        assert!(out.contains("  primary 0: holding, never seen alive\n    fencing budget: interval 100 ms + write_deadline 300 ms + fence time 100 ms: bound 1000 ms, margin 9000 ms"), "{out}");
        assert!(nv.a.is_some() && nv.b.is_some());
    }

    #[test]
    fn release_and_factory_ask_first() {
        let (mut m, mut nv) = menu();
        let (out, req) = type_in(&mut m, &mut nv, b"release\r");
        assert!(out.contains("type yes to confirm"), "{out}");
        assert_eq!(req, Request::None);
        let (out, req) = type_in(&mut m, &mut nv, b"y\r");
        assert!(out.contains("cancelled"), "{out}");
        assert_eq!(req, Request::None);
        let (_, req) = type_in(&mut m, &mut nv, b"release\ryes\r");
        assert_eq!(req, Request::ReleaseNow);
        type_in(&mut m, &mut nv, b"set timeout 20000\r");
        let (out, req) = type_in(&mut m, &mut nv, b"factory\rYES\r");
        assert!(out.contains("saved to copy A"), "{out}");
        assert_eq!(req, Request::Apply(ListenerConfig::factory()));
    }
}
