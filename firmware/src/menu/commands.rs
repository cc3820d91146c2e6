//! The menu's commands over a *draft* config: `set` checks each value and names the setting
//! and what is allowed; `save` validates the draft, writes it to the copy of the A/B store
//! not in use ([`crate::nv`]) and asks the board to apply it; `revert` drops the draft;
//! `release` and `factory` ask for confirmation first.

use super::status::Status;
use crate::board::NvStore;
use crate::nv::Persist;
use crate::report::{self, role_name};
use core::fmt::Write;
use rearguard_shared::config::{ConfigError, ListenerConfig, SlotMisfit};
use rearguard_shared::heartbeat::Role;
use rearguard_shared::integrity::Key;
use rearguard_shared::listener::{NeverSeenPolicy, NodeSet};
use rearguard_shared::packed;
use rearguard_shared::text::Text;
use rearguard_shared::Duration;

/// What the board must do after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Nothing beyond what was printed.
    None,
    /// Operator confirmed "release now".
    ReleaseNow,
    /// A config was saved: restart the listener with it.
    Apply(ListenerConfig),
    /// The operator's `drill`: the board starts it ([`crate::App::drill_start`]) and gives
    /// its verdicts after the polls that follow ([`crate::App::drill_poll`]).
    Drill,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirm {
    Release,
    Factory,
}

pub struct Commands {
    confirm: Option<Confirm>,
    draft: ListenerConfig,
    saved: ListenerConfig,
    persist: Persist,
}

impl Commands {
    /// `running` is the config loaded at boot, `persist` where it came from.
    pub fn new(running: ListenerConfig, persist: Persist) -> Commands {
        Commands { confirm: None, draft: running.clone(), saved: running, persist }
    }

    pub fn draft(&self) -> &ListenerConfig {
        &self.draft
    }

    /// Drops a pending question (the line was cancelled or refused).
    pub fn cancel(&mut self) {
        self.confirm = None;
    }

    /// Runs one trimmed line of printable ASCII.
    pub fn execute<S: NvStore>(
        &mut self,
        line: &str,
        status: &Status,
        nv: Option<&mut S>,
        out: &mut impl Write,
    ) -> Request {
        // One `Text` for the whole line, so that every message goes through `Text::s`.
        self.run(line, status, nv, &mut Text::new(out))
    }

    fn run<S: NvStore>(&mut self, line: &str, status: &Status, nv: Option<&mut S>, t: &mut Text) -> Request {
        if let Some(c) = self.confirm.take() {
            if !line.eq_ignore_ascii_case("yes") {
                t.s(packed!("cancelled (type yes in full to confirm)\n"));
                return Request::None;
            }
            return match c {
                Confirm::Release => {
                    t.s(packed!("releasing the boot now\n"));
                    Request::ReleaseNow
                }
                Confirm::Factory => {
                    self.draft = ListenerConfig::factory();
                    t.s(packed!("factory settings loaded\n"));
                    self.save(status, nv, t)
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
            t.s(HELP);
        } else if is("status") || is("s") {
            let _ = status.print_to(t);
        } else if is("show") {
            self.show(t);
        } else if is("set") {
            match (arg1, arg2, extra) {
                (Some(k), Some(v), false) => self.set(k, v, t),
                _ => {
                    t.s(packed!("usage: set <setting> <value> (see help)\n"));
                }
            }
        } else if is("save") {
            return self.save(status, nv, t);
        } else if is("revert") {
            self.draft = self.saved.clone();
            t.s(packed!("draft reverted to the saved settings\n"));
        } else if is("factory") {
            self.confirm = Some(Confirm::Factory);
            t.s(packed!("reset to factory settings and save? type yes to confirm\n"));
        } else if is("drill") {
            return Request::Drill;
        } else if is("release") {
            if status.gate_open {
                t.s(packed!("the boot is already released\n"));
            } else {
                self.confirm = Some(Confirm::Release);
                t.s(packed!("release now, even if the primary is alive? type yes to confirm\n"));
            }
        } else {
            t.s(packed!("unknown command; type help\n"));
        }
        Request::None
    }

    fn show(&self, t: &mut Text) {
        let d = &self.draft;
        t.s(packed!("role       ")).s(if d.is_spare() { "spare" } else { role_name(d.role) });
        if d.is_spare() {
            d.watch.text(t.s(packed!("\nwatch      ")));
        }
        t.s(packed!("\ntimeout    "))
            .ms(d.timeout)
            .s(packed!("\npoll       "))
            .ms(d.poll_period)
            .s(packed!("\ncluster    "))
            .hex(d.cluster_id)
            .s(packed!("\nnode       "))
            .n(d.node_id)
            .s(packed!("\nprimary    "))
            .n(d.primary_node)
            .s(packed!("\nkey        "))
            .s(if d.key.is_some() { "set (hidden)" } else { "none" })
            .s(packed!("\nnever-seen "));
        match d.never_seen {
            NeverSeenPolicy::WaitForever => t.s("wait"),
            NeverSeenPolicy::ReleaseAfter(w) => t.ms(w),
        }
        .s("\n");
        if *d != self.saved {
            t.s(packed!("(draft differs from the saved settings: save or revert)\n"));
        }
    }

    fn set(&mut self, key: &str, v: &str, t: &mut Text) {
        let mut next = self.draft.clone();
        let k = |w: &str| key.eq_ignore_ascii_case(w);
        let parsed: Result<(), &'static str> = if k("role") {
            if v.eq_ignore_ascii_case("secondary") {
                next.role = Role::Secondary;
                next.watch = NodeSet(0);
                Ok(())
            } else if v.eq_ignore_ascii_case("spare") {
                next.role = Role::Secondary;
                next.watch = next.watched();
                Ok(())
            } else if v.eq_ignore_ascii_case("primary") {
                next.role = Role::Primary;
                next.watch = NodeSet(0);
                Ok(())
            } else {
                Err(packed!("role: use primary, secondary or spare"))
            }
        } else if k("watch") {
            // A spare of these primaries; its `primary` is the lowest (what `release` takes
            // when none is being claimed).
            NodeSet::parse(v)
                .ok()
                .and_then(|w| Some((w, w.iter().next()?)))
                .map(|(w, lowest)| {
                    (next.role, next.watch, next.primary_node) = (Role::Secondary, w, lowest);
                })
                .ok_or(packed!("watch: node ids 0..=31, as a range (0-3) or a list (0,2,5)"))
        } else if k("timeout") {
            parse_num(v)
                .map(|n| next.timeout = Duration::from_millis(n))
                .ok_or(packed!("timeout: milliseconds, e.g. set timeout 10000"))
        } else if k("poll") {
            parse_num(v)
                .map(|n| next.poll_period = Duration::from_millis(n))
                .ok_or(packed!("poll: milliseconds, e.g. set poll 100"))
        } else if k("cluster") {
            parse_num(v)
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| next.cluster_id = n)
                .ok_or(packed!("cluster: a number 0..=4294967295, decimal or 0x-hex"))
        } else if k("node") {
            parse_num(v)
                .and_then(|n| u8::try_from(n).ok())
                .map(|n| next.node_id = n)
                .ok_or(packed!("node: this node's id, 0..=31"))
        } else if k("primary") {
            parse_num(v)
                .and_then(|n| u8::try_from(n).ok())
                .map(|n| (next.primary_node, next.watch) = (n, NodeSet(0)))
                .ok_or(packed!("primary: the watched node's id, 0..=31"))
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
                    None => Err(packed!("key: 32 to 64 hex digits (16-32 bytes), or none")),
                }
            }
        } else if k("never-seen") {
            if v.eq_ignore_ascii_case("wait") {
                next.never_seen = NeverSeenPolicy::WaitForever;
                Ok(())
            } else {
                parse_num(v)
                    .map(|n| next.never_seen = NeverSeenPolicy::ReleaseAfter(Duration::from_millis(n)))
                    .ok_or(packed!("never-seen: wait, or ms to wait for a primary never seen"))
            }
        } else {
            Err(packed!("unknown setting; type help for the list"))
        };
        if let Err(msg) = parsed {
            t.s(packed!("error: ")).s(msg).s("\n");
            return;
        }
        if let Err(e) = next.validate() {
            config_error(t, e).s(packed!("; unchanged\n"));
            return;
        }
        if next.role == Role::Primary && self.draft.role == Role::Secondary {
            t.s(packed!("note: a primary releases the boot at once when saved\n"));
        }
        self.draft = next;
        t.s(packed!("ok (draft; save to keep)\n"));
    }

    fn save<S: NvStore>(&mut self, status: &Status, nv: Option<&mut S>, t: &mut Text) -> Request {
        if let Err(e) = self.draft.validate() {
            config_error(t, e).s(packed!("; not saved\n"));
            return Request::None;
        }
        // A spare's slots against the roles on the disk it runs on: refused here, not at the
        // next start, so that what is saved can run.
        if let Some(primaries) = status.disk_primaries {
            if let Err(m) = self.draft.check_slots(primaries) {
                match m {
                    SlotMisfit::NotPrimary(n) => t.s(packed!("error: watch: node ")).n(n).s(report::NOT_PRIMARY),
                    SlotMisfit::NotSpare(n) => {
                        t.s(packed!("error: node: ")).n(n).s(packed!(" is a primary's slot on the shared disk"))
                    }
                };
                primaries.text(t.s(packed!(" (primaries: "))).s(packed!("); not saved\n"));
                return Request::None;
            }
        }
        // The most demanding running primary's budget (from its heartbeats) against the
        // timeout this draft would run with: the disk's when longer, as at every start.
        if let Some((node, b)) = status.budget() {
            if let Err(v) = b.check(self.draft.timeout.max(status.disk_timeout)) {
                report::bound_broken(t.s(packed!("error: timeout: node ")).n(node).s(": "), &v)
                    .s(packed!("; not saved\n"));
                return Request::None;
            }
        }
        let Some(nv) = nv else {
            t.s(packed!("error: no SD card to save to; settings last until power-off\n"));
            self.saved = self.draft.clone();
            return Request::Apply(self.draft.clone());
        };
        match self.persist.save(nv, &self.draft) {
            Ok((copy, generation)) => {
                t.s(packed!("saved to copy ")).s(copy.name()).s(packed!(" (generation ")).n(generation).s(")\n");
                self.saved = self.draft.clone();
                Request::Apply(self.draft.clone())
            }
            Err(e) => {
                t.s(packed!("error: save failed: ")).say(&e).s(packed!("; the previous settings are intact\n"));
                Request::None
            }
        }
    }
}

/// `error: ` and a validation error with the menu's names for the settings.
fn config_error<'t, 'o>(t: &'t mut Text<'o>, e: ConfigError) -> &'t mut Text<'o> {
    let name = match e.field {
        "poll_period" => "poll",
        "primary_node" => "primary",
        "node_id" => "node",
        "never_seen" => "never-seen",
        other => other,
    };
    t.s(packed!("error: ")).s(name).s(": ").s(e.problem)
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
    if digits.is_empty() {
        return None;
    }
    // Not `u64::from_str_radix`: its sign handling and generic checks cost more flash.
    digits.bytes().try_fold(0u64, |n, c| n.checked_mul(radix.into())?.checked_add((c as char).to_digit(radix)?.into()))
}

const HELP: &str = packed!(
    "\
status | show | save | revert | factory | release | drill
set role primary|secondary|spare  set watch 0-3|0,2,5  set primary <n>
set timeout <ms>  set poll <ms>  set cluster <id>  set node <n>
set key <hex>|none  set never-seen wait|<ms>
"
);

#[cfg(test)]
mod tests {
    use super::parse_num;

    #[test]
    fn numbers_are_decimal_or_0x_hex_and_nothing_else() {
        assert_eq!(parse_num("10000"), Some(10_000));
        assert_eq!(parse_num("0xC0ffee"), Some(0xc0_ffee));
        assert_eq!(parse_num("0X1f"), Some(0x1f));
        assert_eq!(parse_num("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "0x", "+5", "-5", "12ab", "0x1g", " 5", "18446744073709551616", "0x10000000000000000"] {
            assert_eq!(parse_num(bad), None, "{bad:?}");
        }
    }
}
