//! Readiness drills: prove that a standby *could* take over, and change nothing.
//!
//! A drill is a list of checks, each with a verdict. The cold-standby listener's drill
//! (`rearguard drill --config listener.toml`) and the firewall pair's drill
//! (`rearguard drill --config pair.toml`) both report through [`Report`], so an operator reads
//! one format: one line per check, then one summary line, and exit status 0 only if every
//! check passed — the shape of `sbd list`/`crm_mon` checks and of a replication suite's
//! switchover test.

use std::fmt::Write as _;

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The check passed; the text says what was seen (e.g. "node 2 acknowledged in 140 ms").
    Ready(String),
    /// The check failed; the text says what is wrong and how to fix it.
    NotReady(String),
}

impl Verdict {
    pub fn is_ready(&self) -> bool {
        matches!(self, Verdict::Ready(_))
    }
}

/// The verdicts of one drill, in the order the checks ran.
#[derive(Clone, Debug, Default)]
pub struct Report {
    checks: Vec<(String, Verdict)>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Records a check's verdict under `name` (short, stable: "disk reads", "peer fresh on uplink").
    pub fn add(&mut self, name: impl Into<String>, verdict: Verdict) {
        self.checks.push((name.into(), verdict));
    }

    pub fn ready(&mut self, name: impl Into<String>, seen: impl Into<String>) {
        self.add(name, Verdict::Ready(seen.into()));
    }

    pub fn not_ready(&mut self, name: impl Into<String>, why: impl Into<String>) {
        self.add(name, Verdict::NotReady(why.into()));
    }

    /// True only if there was at least one check and every one passed.
    pub fn is_ready(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|(_, v)| v.is_ready())
    }

    pub fn checks(&self) -> &[(String, Verdict)] {
        &self.checks
    }

    /// One line per check (`ready     disk reads: …` / `NOT READY gate command: …`), then the
    /// summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, v) in &self.checks {
            let (word, text) = match v {
                Verdict::Ready(t) => ("ready    ", t),
                Verdict::NotReady(t) => ("NOT READY", t),
            };
            let _ = writeln!(out, "{word} {name}: {text}");
        }
        let failed = self.checks.iter().filter(|(_, v)| !v.is_ready()).count();
        if self.is_ready() {
            let _ = writeln!(out, "drill: READY ({} checks passed; nothing was changed)", self.checks.len());
        } else if self.checks.is_empty() {
            let _ = writeln!(out, "drill: NOT READY (no check ran)");
        } else {
            let _ = writeln!(
                out,
                "drill: NOT READY ({failed} of {} checks failed; nothing was changed)",
                self.checks.len()
            );
        }
        out
    }

    /// The process exit status: 0 when ready, 2 when not (1 stays "could not run the drill").
    pub fn exit_code(&self) -> u8 {
        if self.is_ready() {
            0
        } else {
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passed() {
        let mut r = Report::new();
        assert!(!r.is_ready(), "an empty drill proves nothing");
        r.ready("disk reads", "header ok");
        assert!(r.is_ready());
        assert_eq!(r.exit_code(), 0);
        r.not_ready("gate command", "/usr/local/bin/gate does not exist: set [gate] command");
        assert!(!r.is_ready());
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn one_line_per_check_then_a_summary() {
        let mut r = Report::new();
        r.ready("disk reads", "header ok");
        r.not_ready("gate command", "missing");
        let text = r.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "ready     disk reads: header ok");
        assert_eq!(lines[1], "NOT READY gate command: missing");
        assert_eq!(lines[2], "drill: NOT READY (1 of 2 checks failed; nothing was changed)");
    }
}
