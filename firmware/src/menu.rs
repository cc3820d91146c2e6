//! The console configuration menu: the analogue of a RAID controller's boot-time option-ROM
//! menu, on a serial console (VT100 or anything that sends plain lines).
//!
//! Line-oriented on purpose: it works through `screen`, `picocom`, `socat` or a script alike.
//! Typed characters are echoed; backspace/DEL erase, Ctrl-U clears the line, Ctrl-C cancels,
//! VT100 escape sequences (arrow keys, function keys) are swallowed. Every input is checked
//! and answered with a message naming the setting and what is allowed; overlong lines,
//! non-ASCII bytes and control characters are refused, never acted upon, and never panic.
//!
//! The menu edits a *draft*. `save` validates it, writes it to the copy of the A/B store not
//! in use ([`crate::nv`]) and asks the board to apply it; `revert` drops the draft.
//! `release` and `factory` ask for confirmation first.

use crate::app::App;
use crate::board::{BootGate, FrameLink, NvStore, SharedDisk};
use crate::nv::Persist;
use core::fmt::Write;
use rearguard_shared::config::{ConfigError, ListenerConfig};
use rearguard_shared::heartbeat::Role;
use rearguard_shared::integrity::Key;
use rearguard_shared::listener::{ListenerState, NeverSeenPolicy, ReleaseReason};
use rearguard_shared::reject::Reject;
use rearguard_shared::{Duration, Instant};

/// Longest accepted input line.
pub const MAX_LINE: usize = 80;
pub const PROMPT: &str = "rearguard> ";

/// A duration printed as whole milliseconds through 32-bit formatting: `Duration`'s own
/// `Display` pulls 64-bit division and formatting into the image (about 1 KiB of a 32 KiB
/// budget). Durations past 49 days print as the 32-bit maximum.
pub struct Ms(pub Duration);

impl core::fmt::Display for Ms {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ms", u32::try_from(self.0.as_millis()).unwrap_or(u32::MAX))
    }
}

/// A release reason in the same words as `ReleaseReason`'s `Display`, printed through [`Ms`].
pub struct Reason(pub ReleaseReason);

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
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

/// One medium's line on the status screen.
#[derive(Clone, Copy, Debug)]
pub struct MediumView {
    pub name: &'static str,
    /// Age of the last frame that passed every check.
    pub last_valid_age: Option<Duration>,
    pub accepted: u32,
    pub rejected: [u32; Reject::COUNT],
}

/// A snapshot of the running listener for the status screen.
#[derive(Clone, Debug)]
pub struct Status {
    /// `None` when the listener could not start (the reason was printed at boot).
    pub state: Option<ListenerState>,
    pub timeout: Duration,
    pub last_progress_age: Option<Duration>,
    pub media: heapless::Vec<MediumView, 2>,
    /// Link chunks that were not frames: (name, count).
    pub framing: [(&'static str, u32); 2],
    pub gate_open: bool,
    /// Deepest stack use so far and the RAM left for the stack, in bytes, where the board
    /// measures them.
    pub stack_peak: Option<(u32, u32)>,
}

impl Status {
    pub fn of<D: SharedDisk, L: FrameLink, G: BootGate>(
        app: Option<&App<D, L, G>>,
        framing: [(&'static str, u32); 2],
        now: Instant,
    ) -> Status {
        let mut s = Status {
            state: None,
            timeout: Duration::ZERO,
            last_progress_age: None,
            media: heapless::Vec::new(),
            framing,
            gate_open: false,
            stack_peak: None,
        };
        let Some(app) = app else { return s };
        let l = app.listener();
        s.state = Some(l.state());
        s.timeout = l.params().timeout;
        s.last_progress_age = l.last_progress().map(|t| now.saturating_since(t));
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

    pub fn print(&self, out: &mut impl Write) -> core::fmt::Result {
        match self.state {
            None => writeln!(out, "state: not running (see boot messages; fix and save)")?,
            Some(st) => writeln!(
                out,
                "state: {} | timeout {} | gate {}",
                st.name(),
                Ms(self.timeout),
                if self.gate_open { "RELEASED" } else { "held" }
            )?,
        }
        if let Some(ListenerState::Released { reason, .. }) = self.state {
            writeln!(out, "  released: {}", Reason(reason))?;
        }
        match self.last_progress_age {
            Some(a) => writeln!(out, "  primary last progressed {} ago", Ms(a))?,
            None => writeln!(out, "  primary not seen alive yet")?,
        }
        for m in &self.media {
            write!(out, "  {:<6} last valid heartbeat ", m.name)?;
            match m.last_valid_age {
                Some(a) => write!(out, "{} ago", Ms(a))?,
                None => write!(out, "never")?,
            }
            let total: u32 = m.rejected.iter().sum();
            write!(out, ", accepted {}, rejected {total}", m.accepted)?;
            for (i, &n) in m.rejected.iter().enumerate() {
                if n > 0 {
                    write!(out, " {}={n}", Reject::NAMES[i])?;
                }
            }
            writeln!(out)?;
        }
        write!(out, "  link framing errors:")?;
        for (name, n) in self.framing {
            write!(out, " {name}={n}")?;
        }
        writeln!(out)?;
        match self.stack_peak {
            Some((n, room)) => writeln!(out, "  stack peak {n} of {room} bytes"),
            None => Ok(()),
        }
    }
}

/// What the board must do after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Nothing beyond what was printed.
    None,
    /// Operator confirmed "release now".
    ReleaseNow,
    /// A config was saved: restart the listener with it.
    Apply(ListenerConfig),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirm {
    Release,
    Factory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    None,
    /// Saw ESC.
    Start,
    /// Inside `ESC [` or `ESC O`: until a final byte.
    Csi,
}

pub struct Menu {
    line: heapless::Vec<u8, MAX_LINE>,
    /// The line went past [`MAX_LINE`] or carried a byte that is not printable ASCII.
    overlong: bool,
    bad_byte: bool,
    last_cr: bool,
    esc: Esc,
    confirm: Option<Confirm>,
    draft: ListenerConfig,
    saved: ListenerConfig,
    persist: Persist,
}

impl Menu {
    /// `running` is the config loaded at boot, `persist` where it came from.
    pub fn new(running: ListenerConfig, persist: Persist) -> Menu {
        Menu {
            line: heapless::Vec::new(),
            overlong: false,
            bad_byte: false,
            last_cr: false,
            esc: Esc::None,
            confirm: None,
            draft: running.clone(),
            saved: running,
            persist,
        }
    }

    pub fn draft(&self) -> &ListenerConfig {
        &self.draft
    }

    /// Feeds one console byte; echoes it. Returns `true` when a line is complete (then call
    /// [`Menu::run_line`]).
    pub fn feed(&mut self, b: u8, out: &mut impl Write) -> bool {
        match self.esc {
            Esc::Start => {
                self.esc = if b == b'[' || b == b'O' { Esc::Csi } else { Esc::None };
                return false;
            }
            Esc::Csi => {
                if (0x40..=0x7E).contains(&b) {
                    self.esc = Esc::None;
                }
                return false;
            }
            Esc::None => {}
        }
        let after_cr = core::mem::replace(&mut self.last_cr, b == b'\r');
        match b {
            b'\r' => {
                let _ = out.write_str("\r\n");
                true
            }
            b'\n' if after_cr => false, // the LF of a CRLF
            b'\n' => {
                let _ = out.write_str("\r\n");
                true
            }
            0x1B => {
                self.esc = Esc::Start;
                false
            }
            0x08 | 0x7F => {
                if self.line.pop().is_some() {
                    let _ = out.write_str("\x08 \x08");
                }
                false
            }
            0x03 => {
                // Ctrl-C: drop the line and any pending question.
                self.clear_line();
                self.confirm = None;
                let _ = write!(out, "^C\r\n{PROMPT}");
                false
            }
            0x15 => {
                for _ in 0..self.line.len() {
                    let _ = out.write_str("\x08 \x08");
                }
                self.line.clear();
                false
            }
            b'\t' => self.push(b' ', out),
            0x20..=0x7E => self.push(b, out),
            _ => {
                self.bad_byte = true;
                false
            }
        }
    }

    fn push(&mut self, b: u8, out: &mut impl Write) -> bool {
        if self.line.push(b).is_err() {
            if !self.overlong {
                let _ = out.write_char('\x07');
            }
            self.overlong = true;
        } else {
            let _ = out.write_char(b as char);
        }
        false
    }

    fn clear_line(&mut self) {
        self.line.clear();
        self.overlong = false;
        self.bad_byte = false;
    }

    /// Runs the completed line. The caller prints [`PROMPT`] once it has acted on the request.
    pub fn run_line<S: NvStore>(&mut self, status: &Status, nv: Option<&mut S>, out: &mut impl Write) -> Request {
        let mut buf = [0u8; MAX_LINE];
        let n = self.line.len();
        buf[..n].copy_from_slice(&self.line);
        let (overlong, bad) = (self.overlong, self.bad_byte);
        self.clear_line();
        let req = if overlong {
            let _ = writeln!(out, "error: line longer than {MAX_LINE} characters; ignored");
            self.confirm = None;
            Request::None
        } else if bad {
            let _ = writeln!(out, "error: the line held control or non-ASCII characters; ignored");
            self.confirm = None;
            Request::None
        } else {
            // Only printable ASCII was stored, so this cannot fail.
            let line = core::str::from_utf8(&buf[..n]).unwrap_or("");
            self.execute(line.trim_ascii(), status, nv, out)
        };
        req
    }

    fn execute<S: NvStore>(
        &mut self,
        line: &str,
        status: &Status,
        nv: Option<&mut S>,
        out: &mut impl Write,
    ) -> Request {
        if let Some(c) = self.confirm.take() {
            if !line.eq_ignore_ascii_case("yes") {
                let _ = writeln!(out, "cancelled (type yes in full to confirm)");
                return Request::None;
            }
            return match c {
                Confirm::Release => {
                    let _ = writeln!(out, "releasing the boot now");
                    Request::ReleaseNow
                }
                Confirm::Factory => {
                    self.draft = ListenerConfig::factory();
                    let _ = writeln!(out, "factory settings loaded");
                    self.save(nv, out)
                }
            };
        }
        let mut words = line.split_ascii_whitespace();
        let Some(cmd) = words.next() else { return Request::None };
        let arg1 = words.next();
        let arg2 = words.next();
        let extra = words.next().is_some();
        let is = |w: &str| cmd.eq_ignore_ascii_case(w);
        if is("help") || is("?") || is("menu") {
            let _ = out.write_str(HELP);
        } else if is("status") || is("s") {
            let _ = status.print(out);
        } else if is("show") {
            let _ = self.show(out);
        } else if is("set") {
            match (arg1, arg2, extra) {
                (Some(k), Some(v), false) => self.set(k, v, out),
                _ => {
                    let _ = writeln!(out, "usage: set <setting> <value>   (type help for the settings)");
                }
            }
        } else if is("save") {
            return self.save(nv, out);
        } else if is("revert") {
            self.draft = self.saved.clone();
            let _ = writeln!(out, "draft reverted to the saved settings");
        } else if is("factory") {
            self.confirm = Some(Confirm::Factory);
            let _ = writeln!(out, "reset every setting to factory values and save? type yes to confirm");
        } else if is("release") {
            if status.gate_open {
                let _ = writeln!(out, "the boot is already released");
            } else {
                self.confirm = Some(Confirm::Release);
                let _ = writeln!(out, "release the boot now? the secondary will boot the shared OS even if the primary is alive. type yes to confirm");
            }
        } else {
            let _ = writeln!(out, "unknown command; type help");
        }
        Request::None
    }

    fn show(&self, out: &mut impl Write) -> core::fmt::Result {
        let d = &self.draft;
        writeln!(out, "role       {}", role_name(d.role))?;
        writeln!(out, "timeout    {}", Ms(d.timeout))?;
        writeln!(out, "poll       {}", Ms(d.poll_period))?;
        writeln!(out, "cluster    {:#x}", d.cluster_id)?;
        writeln!(out, "node       {}", d.node_id)?;
        writeln!(out, "primary    {}", d.primary_node)?;
        writeln!(out, "key        {}", if d.key.is_some() { "set (hidden)" } else { "none" })?;
        match d.never_seen {
            NeverSeenPolicy::WaitForever => writeln!(out, "never-seen wait")?,
            NeverSeenPolicy::ReleaseAfter(t) => writeln!(out, "never-seen {}", Ms(t))?,
        }
        if *d != self.saved {
            writeln!(out, "(draft differs from the saved settings: save or revert)")?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, v: &str, out: &mut impl Write) {
        let mut next = self.draft.clone();
        let k = |w: &str| key.eq_ignore_ascii_case(w);
        let parsed: Result<(), &'static str> = if k("role") {
            if v.eq_ignore_ascii_case("secondary") {
                next.role = Role::Secondary;
                Ok(())
            } else if v.eq_ignore_ascii_case("primary") {
                next.role = Role::Primary;
                Ok(())
            } else {
                Err("role: use primary or secondary")
            }
        } else if k("timeout") {
            parse_num(v)
                .map(|n| next.timeout = Duration::from_millis(n))
                .ok_or("timeout: milliseconds, e.g. set timeout 10000")
        } else if k("poll") {
            parse_num(v)
                .map(|n| next.poll_period = Duration::from_millis(n))
                .ok_or("poll: milliseconds, e.g. set poll 100")
        } else if k("cluster") {
            parse_num(v)
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| next.cluster_id = n)
                .ok_or("cluster: a number 0..=4294967295, decimal or 0x-hex")
        } else if k("node") {
            parse_num(v)
                .and_then(|n| u8::try_from(n).ok())
                .map(|n| next.node_id = n)
                .ok_or("node: this node's id, 0..=31")
        } else if k("primary") {
            parse_num(v)
                .and_then(|n| u8::try_from(n).ok())
                .map(|n| next.primary_node = n)
                .ok_or("primary: the watched node's id, 0..=31")
        } else if k("key") {
            if v.eq_ignore_ascii_case("none") {
                next.key = None;
                Ok(())
            } else {
                match parse_key(v) {
                    Some(key) => {
                        next.key = Some(key);
                        Ok(())
                    }
                    None => Err("key: 32 to 64 hex digits (16-32 bytes), or none"),
                }
            }
        } else if k("never-seen") {
            if v.eq_ignore_ascii_case("wait") {
                next.never_seen = NeverSeenPolicy::WaitForever;
                Ok(())
            } else {
                parse_num(v)
                    .map(|n| next.never_seen = NeverSeenPolicy::ReleaseAfter(Duration::from_millis(n)))
                    .ok_or("never-seen: wait, or milliseconds to wait for a primary never seen alive")
            }
        } else {
            Err("unknown setting: role, timeout, poll, cluster, node, primary, key, never-seen")
        };
        if let Err(msg) = parsed {
            let _ = writeln!(out, "error: {msg}");
            return;
        }
        if let Err(e) = next.validate() {
            let _ = writeln!(out, "error: {}; unchanged", MenuConfigError(e));
            return;
        }
        if next.role == Role::Primary && self.draft.role == Role::Secondary {
            let _ = writeln!(out, "note: as primary, the boot is released at once when this is saved");
        }
        self.draft = next;
        let _ = writeln!(out, "ok (draft; save to keep)");
    }

    fn save<S: NvStore>(&mut self, nv: Option<&mut S>, out: &mut impl Write) -> Request {
        if let Err(e) = self.draft.validate() {
            let _ = writeln!(out, "error: {}; not saved", MenuConfigError(e));
            return Request::None;
        }
        let Some(nv) = nv else {
            let _ = writeln!(out, "error: no config store (no SD card); the settings apply until power-off");
            self.saved = self.draft.clone();
            return Request::Apply(self.draft.clone());
        };
        match self.persist.save(nv, &self.draft) {
            Ok((copy, generation)) => {
                let _ = writeln!(out, "saved to copy {} (generation {generation})", copy.name());
                self.saved = self.draft.clone();
                Request::Apply(self.draft.clone())
            }
            Err(e) => {
                let _ = writeln!(out, "error: save failed: {e}; the previous settings are intact");
                Request::None
            }
        }
    }
}

/// A validation error with the menu's names for the settings.
struct MenuConfigError(ConfigError);

impl core::fmt::Display for MenuConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self.0.field {
            "poll_period" => "poll",
            "primary_node" => "primary",
            "node_id" => "node",
            "never_seen" => "never-seen",
            other => other,
        };
        write!(f, "{name}: {}", self.0.problem)
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Secondary => "secondary",
    }
}

/// A MAC key from hex. Decoded here rather than with `Key::from_hex`, whose Unicode-aware
/// trimming costs half a KiB of flash; the line is already trimmed ASCII.
fn parse_key(hex: &str) -> Option<Key> {
    let h = hex.as_bytes();
    let mut bytes = [0u8; rearguard_shared::integrity::MAX_KEY_LEN];
    if !h.len().is_multiple_of(2) || h.len() / 2 > bytes.len() {
        return None;
    }
    for (i, pair) in h.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        bytes[i] = (hi * 16 + lo) as u8;
    }
    Key::new(&bytes[..h.len() / 2]).ok()
}

/// Decimal or 0x-hex; `None` for anything else (signs, spaces, overflow).
fn parse_num(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

const HELP: &str = "\
status | show | save | revert | factory | release
set role primary|secondary    set timeout <ms>    set poll <ms>
set cluster <id>              set node <n>        set primary <n>
set key <hex>|none            set never-seen wait|<ms>
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nv::tests::RamNv;
    use std::string::String;

    fn status() -> Status {
        Status {
            state: Some(ListenerState::Holding),
            timeout: Duration::from_secs(10),
            last_progress_age: None,
            media: heapless::Vec::new(),
            framing: [("bad-cobs", 0), ("overlong", 0)],
            gate_open: false,
            stack_peak: None,
        }
    }

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

    #[test]
    fn bad_values_are_refused_with_the_setting_named_and_the_draft_unchanged() {
        let (mut m, mut nv) = menu();
        for (input, expect) in [
            (&b"set timeout ten\r"[..], "error: timeout: milliseconds"),
            (b"set timeout 50\r", "error: timeout: must be at least twice poll"),
            (b"set cluster 0x1FFFFFFFF\r", "error: cluster"),
            (b"set key 12zz\r", "error: key"),
            (b"set role boss\r", "error: role"),
            (b"set primary 1\r", "error: primary: must differ"),
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
