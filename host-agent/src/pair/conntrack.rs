//! conntrackd on every transition, so that the connections through a firewall pair survive
//! a failover: the new active commits the states the old one sent it before traffic comes.
//!
//! The commands and their order are conntrackd's own primary-backup.sh (shipped in
//! /usr/share/doc/conntrackd/examples/sync/): primary `-c -f -R -B`, backup `-t -n`, fault
//! `-t`. Each runs as `conntrackd -C CONFIG -X` under a timeout on one worker thread, in
//! transition order, so the election loop never waits for conntrackd. A failed or hung
//! command is logged and shown in `status`, and the sequence goes on, as the script does.

use super::checks::run_status;
use crate::config::pair::Conntrack;
use serde_json::json;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::{info, warn};

/// keepalived's transition names, as primary-backup.sh takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
    Fault,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::Fault => "fault",
        }
    }

    /// primary-backup.sh's commands for this transition, with what each is for.
    fn steps(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Role::Primary => &[
                ("-c", "commit the external cache into the kernel table"),
                ("-f", "flush the internal and the external caches"),
                ("-R", "resynchronise the internal cache with the kernel table"),
                ("-B", "send a bulk update to the backup"),
            ],
            Role::Backup => &[
                ("-t", "shorten the kernel's conntrack timers (zombie entries)"),
                ("-n", "request a resynchronisation from the primary"),
            ],
            Role::Fault => &[("-t", "shorten the kernel's conntrack timers (zombie entries)")],
        }
    }
}

struct Job {
    role: Role,
    /// Run right after the first step (`-c` on the primary): the VIPs' announcement.
    after_first: Option<Box<dyn FnOnce() + Send>>,
}

/// What `status` shows.
#[derive(Default)]
struct Outcome {
    /// At start: whether conntrackd answered (`-s`), and if not why.
    probe: Option<Result<(), String>>,
    role: Option<Role>,
    at: Option<Instant>,
    steps: Vec<serde_json::Value>,
    failures: u64,
    last_error: Option<String>,
}

pub struct Conntrackd {
    cfg: Conntrack,
    jobs: Sender<Job>,
    last_role: Option<Role>,
    outcome: Arc<Mutex<Outcome>>,
}

/// Runs `conntrackd -C CONFIG ARG` within the configured timeout.
fn command(cfg: &Conntrack, arg: &str) -> Result<(), String> {
    let argv = [
        cfg.binary.to_string_lossy().into_owned(),
        "-C".to_string(),
        cfg.config.to_string_lossy().into_owned(),
        arg.to_string(),
    ];
    match run_status(&argv, cfg.timeout) {
        (true, _) => Ok(()),
        (false, why) => Err(why),
    }
}

/// Whether conntrackd answers: `conntrackd -C CONFIG -s` (statistics) exits 0. The same test
/// primary-backup.sh makes before a backup transition; the pair drill calls it too.
pub fn probe(cfg: &Conntrack) -> Result<(), String> {
    command(cfg, "-s").map_err(|why| format!("conntrackd ({}) does not answer: {why}", cfg.config.display()))
}

impl Conntrackd {
    /// Probes the daemon (a warning, not an error, if it does not answer: the node still
    /// serves its VIPs, only without the connection states) and starts the worker.
    pub fn start(cfg: &Conntrack) -> std::io::Result<Conntrackd> {
        let first = probe(cfg);
        match &first {
            Ok(()) => info!("conntrackd answers ({})", cfg.config.display()),
            Err(why) => warn!("{why}; failovers will not keep connections until it runs"),
        }
        let outcome = Arc::new(Mutex::new(Outcome { probe: Some(first), ..Outcome::default() }));
        let (jobs, rx) = channel::<Job>();
        let worker = (cfg.clone(), outcome.clone());
        std::thread::Builder::new()
            .name("conntrackd".into())
            .stack_size(128 * 1024)
            .spawn(move || work(&worker.0, &worker.1, rx))?;
        Ok(Conntrackd { cfg: cfg.clone(), jobs, last_role: None, outcome })
    }

    /// Queues `role`'s commands. `after_first` runs once the first command has finished (or
    /// failed, or timed out): on the primary, the announcement waits for the commit.
    /// A repeated role (BACKUP then BACKUP again) is not run twice.
    pub fn transition(&mut self, role: Role, after_first: Option<Box<dyn FnOnce() + Send>>) {
        if self.last_role == Some(role) && role != Role::Primary {
            return;
        }
        self.last_role = Some(role);
        if let Err(e) = self.jobs.send(Job { role, after_first }) {
            // The worker is gone (it never exits on its own): announce anyway.
            warn!("conntrackd worker stopped; {} not run", role.name());
            if let Some(f) = e.0.after_first {
                f();
            }
        }
    }

    /// The `conntrack` object of `status`.
    pub fn status(&self) -> serde_json::Value {
        let o = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        json!({
            "config": self.cfg.config.display().to_string(),
            "answered_at_start": o.probe.as_ref().map(|p| p.is_ok()),
            "start_error": o.probe.as_ref().and_then(|p| p.as_ref().err().cloned()),
            "last_transition": o.role.map(Role::name),
            "last_transition_ago_ms": o.at.map(|at| at.elapsed().as_millis()),
            "steps": o.steps,
            "ok": o.role.is_some() && o.steps.iter().all(|s| s["ok"] == true),
            "failures": o.failures,
            "last_error": o.last_error,
        })
    }
}

fn work(cfg: &Conntrack, outcome: &Mutex<Outcome>, rx: Receiver<Job>) {
    for mut job in rx {
        {
            let mut o = outcome.lock().unwrap_or_else(|p| p.into_inner());
            o.role = Some(job.role);
            o.at = Some(Instant::now());
            o.steps.clear();
        }
        for (arg, what) in job.role.steps() {
            let t = Instant::now();
            let done = command(cfg, arg);
            let ms = t.elapsed().as_millis();
            if let Some(f) = job.after_first.take() {
                f();
            }
            let mut o = outcome.lock().unwrap_or_else(|p| p.into_inner());
            match &done {
                Ok(()) => info!("conntrackd {arg} ({}): {what}, {ms} ms", job.role.name()),
                Err(why) => {
                    warn!("conntrackd {arg} ({}) failed: {what}: {why}", job.role.name());
                    o.failures += 1;
                    o.last_error = Some(format!("{arg} ({}): {why}", job.role.name()));
                }
            }
            o.steps.push(json!({"command": arg, "ok": done.is_ok(), "ms": ms, "error": done.err()}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn wait_for(what: impl Fn() -> bool) {
        let t = Instant::now();
        while !what() {
            assert!(t.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // The order of the commands against the real daemon: tests/pair_conntrack.rs.
    #[test]
    fn a_daemon_that_does_not_answer_is_reported_and_the_announcement_still_goes_out() {
        let cfg = Conntrack {
            config: PathBuf::from("/nonexistent/conntrackd.conf"),
            binary: PathBuf::from("/nonexistent/conntrackd"),
            timeout: Duration::from_millis(200),
        };
        assert!(probe(&cfg).unwrap_err().contains("does not answer"));
        let mut ct = Conntrackd::start(&cfg).unwrap();
        assert_eq!(ct.status()["answered_at_start"], false);
        let announced = Arc::new(AtomicBool::new(false));
        let seen = announced.clone();
        ct.transition(Role::Primary, Some(Box::new(move || seen.store(true, Ordering::SeqCst))));
        wait_for(|| announced.load(Ordering::SeqCst));
        wait_for(|| ct.status()["failures"] == 4);
        assert_eq!(ct.status()["ok"], false);
    }
}
