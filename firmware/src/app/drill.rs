//! The menu's `drill`: proves this running listener could take over now, and changes
//! nothing. The controller's counterpart of `rearguard drill --config listener.toml`, with the
//! same checks and the same lines (`ready     <check>: …` / `NOT READY <check>: …`, then
//! `drill: READY (…)` or `drill: NOT READY (…)`):
//!
//! | check | passes when |
//! |---|---|
//! | disk reads | the header reads, belongs to this cluster, and gives every watched node a primary's slot |
//! | heartbeat progressing | each watched primary made progress during the drill |
//! | timing bound | the timeout in force ≥ 2 × (interval + write deadline + fence time) of the primary's latest budget |
//! | mailbox write path | a test message in the primary's mailbox is acknowledged in its heartbeat |
//! | gate path | the gate is not yet opened and the board can drive it ([`BootGate::check`]) |
//!
//! It runs beside the listener, not instead of it: `drill_start` writes one test message per
//! watched primary, every poll goes on as usual (a primary that dies meanwhile is taken as
//! ever), and `drill_poll` gives the verdicts after two of the slowest primary's intervals
//! and one poll to read the answer. Each mailbox is then put
//! back as it was found, unless something else (a real takeover claim) replaced the test
//! message meanwhile: that is left alone and said. A mailbox holding anything but a test
//! message is not touched at all. (Put back means re-encoded: a mailbox is only ever written
//! whole by `MailboxMessage::encode`, so its bytes past the message are zeros.)
//!
//! Per primary the drill keeps one [`Probe`] (16 bytes): 31 primaries cost 0.5 KiB of RAM.
//!
//! Limit, shared with `rearguard drill`: putting a mailbox back is a read, then a write. On a
//! disk with several spares (Linux listeners that arbitrate; this controller build refuses
//! to share its disk), another spare's claim landing between the two would be overwritten,
//! and that spare would back off from the dead primary at its re-read. A drill is for a
//! healthy cluster: run it when no primary is failing.

use super::App;
use crate::board::{BootGate, FrameLink, SharedDisk};
use core::fmt::Write;
use rearguard_shared::disk::MailboxMessage;
use rearguard_shared::heartbeat;
use rearguard_shared::packed;
use rearguard_shared::text::Text;
use rearguard_shared::time::Stamp;
use rearguard_shared::{Duration, Instant};

// Each check's name as its line says it.
const DISK: &str = packed!("disk reads: ");
const PROGRESS: &str = packed!("heartbeat progressing: ");
const BOUND: &str = packed!("timing bound: ");
const MAILBOX: &str = packed!("mailbox write path: ");
const GATE: &str = packed!("gate path: ");

/// What the drill did with one watched primary's mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    /// The disk did not read: nothing was tried.
    NotChecked,
    /// The mailbox could not be read or written, or held something other than a test
    /// message (a claim, a poison, garbage): no test message in it.
    Untouched,
    /// Test message `seq` was written over `found`; `acked_ms` after the start the primary's
    /// heartbeat acknowledged it (`u32::MAX`: not yet).
    Sent { seq: u32, found: MailboxMessage, acked_ms: u32 },
}

/// A running drill (or none: `started` is never).
pub(super) struct Drill<const P: usize> {
    started: Stamp,
    window: Duration,
    /// Checks run and failed so far.
    checks: u8,
    failed: u8,
    probes: [Probe; P],
}

impl<const P: usize> Drill<P> {
    pub(super) const fn blank() -> Self {
        Drill { started: Stamp::NEVER, window: Duration::ZERO, checks: 0, failed: 0, probes: [Probe::NotChecked; P] }
    }

    /// The heartbeat of the `i`-th watched primary said `last_test`.
    pub(super) fn see(&mut self, i: usize, last_test: u32, now: Instant) {
        let Some(t0) = self.started.get() else { return };
        if let Some(Probe::Sent { seq, acked_ms, .. }) = self.probes.get_mut(i) {
            if *seq == last_test && *acked_ms == u32::MAX {
                *acked_ms = now.saturating_since(t0).as_millis().min(u32::MAX as u64 - 1) as u32;
            }
        }
    }

    /// Starts a verdict line (`ready     <check>: ` or `NOT READY <check>: `), counting it.
    fn verdict<'t, 'o>(&mut self, t: &'t mut Text<'o>, ready: bool, check: &str) -> &'t mut Text<'o> {
        self.checks += 1;
        self.failed += !ready as u8;
        t.s(if ready { packed!("ready     ") } else { packed!("NOT READY ") }).s(check)
    }
}

impl<D: SharedDisk, L: FrameLink, G: BootGate, const P: usize> App<D, L, G, P> {
    /// Whether a drill waits for its verdicts ([`App::drill_poll`]).
    pub fn drilling(&self) -> bool {
        self.drill.started.get().is_some()
    }

    /// The operator's `drill`: checks the disk (its line now), writes a test message into
    /// every watched primary's mailbox, and leaves the rest to [`App::drill_poll`].
    #[inline(never)]
    pub fn drill_start(&mut self, now: Instant, out: &mut impl Write) {
        let t = &mut Text::new(out);
        self.drill_cancel();
        let d = &mut self.drill;
        (d.checks, d.failed) = (0, 0);
        if !self.running {
            d.verdict(t, false, "listener: ").s(crate::report::NOT_RUNNING).nl().ok();
            self.drill_summary(t);
            return;
        }
        let watched = self.cfg.watched();
        let disk_reads = match self.disk.as_mut() {
            None => {
                d.verdict(t, false, DISK).s(packed!("no shared disk (serial link only)"));
                false
            }
            Some(m) => match Self::check_disk(&mut m.dev, &self.cfg, watched, &mut self.block) {
                Ok(h) => {
                    d.verdict(t, true, DISK)
                        .s(packed!("cluster "))
                        .hex(h.cluster_id)
                        .s(packed!(", "))
                        .n(h.slot_count)
                        .s(packed!(" slots"));
                    true
                }
                Err(e) => {
                    d.verdict(t, false, DISK).say(&e);
                    false
                }
            },
        };
        t.nl().ok();
        // Two of the slowest primary's intervals (the disk's, or a budget's when longer),
        // and one poll to read the answer.
        let mut interval = self.disk.as_ref().map_or(Duration::ZERO, |m| m.header.interval);
        for b in self.budgets() {
            interval = interval.max(b.interval);
        }
        self.drill.window = interval.saturating_mul(2) + self.cfg.poll_period;
        for i in 0..self.listener.primaries().len() {
            self.drill.probes[i] = if disk_reads { self.probe(i) } else { Probe::NotChecked };
        }
        self.drill.started = Stamp::at(now);
    }

    /// Writes a test message into the `i`-th watched primary's mailbox, if it holds nothing or
    /// a test message (which is put back at the end).
    fn probe(&mut self, i: usize) -> Probe {
        let node = self.listener.primaries()[i].node;
        let Some(m) = self.disk.as_mut() else { return Probe::NotChecked };
        let slot = m.header.slot_offset(node).unwrap_or(0);
        // The new test's number follows the last one acknowledged and the one in the mailbox.
        let acked = match m.dev.read_record(slot, &mut self.block) {
            Ok(()) => heartbeat::decode(&self.block, &self.cfg.verifier()).map_or(0, |hb| hb.last_test),
            Err(_) => 0,
        };
        let (found, in_box) = match self.read_mailbox(node) {
            Some(Ok(MailboxMessage::Empty)) => (MailboxMessage::Empty, 0),
            Some(Ok(f @ MailboxMessage::Test { seq, .. })) => (f, seq),
            _ => return Probe::Untouched,
        };
        let seq = acked.max(in_box).wrapping_add(1).max(1);
        MailboxMessage::Test { by: self.cfg.node_id, seq }.encode(&mut self.block);
        match self.write_mailbox(node) {
            Some(Ok(())) => Probe::Sent { seq, found, acked_ms: u32::MAX },
            _ => Probe::Untouched,
        }
    }

    /// Gives the verdicts of a running drill once its window passed. Call after every poll.
    #[inline(never)]
    pub fn drill_poll(&mut self, now: Instant, out: &mut impl Write) {
        let Some(t0) = self.drill.started.get() else { return };
        if now.saturating_since(t0) < self.drill.window {
            return;
        }
        self.drill.started = Stamp::NEVER;
        let t = &mut Text::new(out);
        let timeout = self.listener.params().timeout;
        for i in 0..self.listener.primaries().len() {
            let p = &self.listener.primaries()[i];
            let d = &mut self.drill;
            let progressed = p.last_progress().is_some_and(|at| at > t0);
            crate::report::watched_primary(d.verdict(t, progressed, PROGRESS), p, now).nl().ok();
            let b = self.budgets[i];
            let bound = !b.is_none() && b.check(timeout).is_ok();
            crate::report::budget(d.verdict(t, bound, BOUND).s(packed!("node ")).n(p.node), &b, timeout).nl().ok();
            self.mailbox_verdict(i, t);
        }
        let d = &mut self.drill;
        match (self.gate_opened, self.gate.check()) {
            (true, _) => d.verdict(t, false, GATE).s(packed!("the boot is already released")),
            (false, Ok(seen)) => d.verdict(t, true, GATE).s(seen),
            (false, Err(why)) => d.verdict(t, false, GATE).s(why),
        }
        .nl()
        .ok();
        self.drill_summary(t);
    }

    /// The mailbox line of the `i`-th watched primary; puts its mailbox back.
    fn mailbox_verdict(&mut self, i: usize, t: &mut Text<'_>) {
        let node = self.listener.primaries()[i].node;
        let probe = self.drill.probes[i];
        let (ready, restored) = match probe {
            Probe::Sent { seq, found, acked_ms } => (acked_ms != u32::MAX, self.restore(node, seq, found)),
            _ => (false, false),
        };
        let t = self.drill.verdict(t, ready, MAILBOX).s(packed!("node ")).n(node);
        match probe {
            Probe::NotChecked => t.s(packed!(": not checked (the disk does not read)")),
            Probe::Untouched => {
                t.s(packed!(": mailbox unreadable, unwritable or holding more than a test message: untouched (see `rearguard disk dump`)"))
            }
            Probe::Sent { seq, acked_ms, .. } => {
                t.s(packed!(": test #")).n(seq);
                match acked_ms {
                    u32::MAX => t
                        .s(packed!(" not acknowledged in "))
                        .ms(self.drill.window)
                        .s(packed!(": is its agent running?")),
                    ms => t.s(packed!(" acknowledged in ")).n(ms).s(packed!(" ms")),
                };
                t.s(if restored {
                    packed!("; mailbox restored")
                } else {
                    packed!("; mailbox changed meanwhile, left as is")
                })
            }
        }
        .nl()
        .ok();
    }

    /// Puts `node`'s mailbox back to `found` if it still holds this drill's test `seq`.
    fn restore(&mut self, node: u8, seq: u32, found: MailboxMessage) -> bool {
        let by = self.cfg.node_id;
        if self.read_mailbox(node) != Some(Ok(MailboxMessage::Test { by, seq })) {
            return false;
        }
        found.encode(&mut self.block);
        matches!(self.write_mailbox(node), Some(Ok(())))
    }

    /// Ends a running drill without verdicts, its mailboxes put back (the listener restarts).
    pub fn drill_cancel(&mut self) {
        if self.drill.started.get().is_none() {
            return;
        }
        self.drill.started = Stamp::NEVER;
        for i in 0..self.listener.primaries().len() {
            if let Probe::Sent { seq, found, .. } = self.drill.probes[i] {
                self.restore(self.listener.primaries()[i].node, seq, found);
            }
        }
    }

    fn drill_summary(&mut self, t: &mut Text<'_>) {
        let d = &self.drill;
        if d.failed == 0 {
            t.s(packed!("drill: READY (")).n(d.checks).s(packed!(" checks passed; nothing was changed)"))
        } else {
            t.s(packed!("drill: NOT READY ("))
                .n(d.failed)
                .s(packed!(" of "))
                .n(d.checks)
                .s(packed!(" checks failed; nothing was changed)"))
        }
        .nl()
        .ok();
    }
}

#[cfg(test)]
mod tests {
    /// What a drill costs a controller per watched primary (the module docs say 16 bytes).
    #[test]
    fn a_probe_is_16_bytes() {
        assert_eq!(core::mem::size_of::<super::Probe>(), 16);
    }
}
