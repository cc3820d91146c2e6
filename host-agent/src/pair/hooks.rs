//! Operator hooks on state changes, called as keepalived calls its notify scripts so that
//! existing scripts keep working — but one at a time, in the order of the transitions (one
//! queue, one runner thread), each killed with its process group past `hook_timeout_ms`.
//! The same events go to `notify_fifo` as keepalived's FIFO lines, for consumers that want
//! a stream.
//!
//! An event is a change of the keepalived state (MASTER, BACKUP, FAULT), not of every
//! internal state: `starting → standby` is BACKUP both sides and runs nothing, while a
//! standby whose checks fail becomes FAULT though its pair state did not move.

use crate::config::pair::PairConfig;
use crate::sys::{run_bounded, Bounded};
use rearguard_shared::election::PairState;
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// keepalived's name for the state a node entered: a node that is not active because its
/// own checks fail is FAULT, not BACKUP, so scripts can tell "standing by" from "broken".
pub(super) fn keepalived_state(to: PairState, healthy: bool) -> &'static str {
    match to {
        PairState::Active => "MASTER",
        PairState::Standby | PairState::Starting | PairState::Maintenance if !healthy => "FAULT",
        _ => "BACKUP",
    }
}

/// What one event tells the hooks: keepalived's arguments and the RG_* variables.
#[derive(Clone, Debug)]
pub(super) struct HookEvent {
    /// MASTER, BACKUP, FAULT or STOP.
    pub state: &'static str,
    pub rg_state: PairState,
    pub term: u32,
    pub priority: u8,
    pub peer: Option<u8>,
    pub reason: String,
}

/// A hook's run, as `rearguard status` shows it.
struct Outcome {
    hook: PathBuf,
    state: &'static str,
    result: String,
    ok: bool,
    took: Duration,
    at: Instant,
}

/// What the runner thread has done, shared with the status reply.
#[derive(Default)]
struct Progress {
    /// Events handed to the runner, and those whose hooks all ran.
    queued: u64,
    done: u64,
    runs: u64,
    failures: u64,
    timeouts: u64,
    running: Option<(PathBuf, &'static str, Instant)>,
    last: Option<Outcome>,
}

/// keepalived's notify_fifo: one line per event, `INSTANCE "NAME" STATE PRIORITY`. Written
/// non-blocking: with no reader, or a reader that does not keep up, a line is dropped and
/// counted, never waited for.
struct Fifo {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    dropped: u64,
    /// The last failure was logged (log changes, not every line).
    complained: bool,
}

impl Fifo {
    /// Creates the FIFO (mode 0600) unless it exists; something else at the path is an error.
    fn create(path: &Path) -> std::io::Result<Fifo> {
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_fifo() => {}
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                    "[pair] notify_fifo = {:?}: exists and is not a FIFO: remove it, or point notify_fifo elsewhere",
                    path.display().to_string()
                ),
                ))
            }
            Err(_) => nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| {
                std::io::Error::new(
                    std::io::Error::from(e).kind(),
                    format!("[pair] notify_fifo = {:?}: cannot create the FIFO: {e}", path.display().to_string()),
                )
            })?,
        }
        Ok(Fifo { path: path.to_path_buf(), file: None, written: 0, dropped: 0, complained: false })
    }

    fn write(&mut self, line: &str) {
        if self.file.is_none() {
            // ENXIO: nobody reads the FIFO now.
            self.file = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&self.path)
                .ok();
        }
        // A line is far below PIPE_BUF, so it is written whole or not at all.
        let sent = self.file.as_mut().map(|f| f.write_all(line.as_bytes()));
        match sent {
            Some(Ok(())) => {
                self.written += 1;
                self.complained = false;
            }
            failed => {
                self.dropped += 1;
                if let Some(Err(e)) = &failed {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        self.file = None; // the reader went away: reopen for the next line
                    }
                }
                if !self.complained {
                    warn!(fifo = %self.path.display(), "notify_fifo line dropped (no reader, or the reader is behind)");
                    self.complained = true;
                }
            }
        }
    }
}

/// The hooks of one agent: the queue, its runner, the FIFO and the last state delivered.
pub(super) struct Hooks {
    queue: Option<Sender<HookEvent>>,
    runner: Option<JoinHandle<()>>,
    progress: Arc<Mutex<Progress>>,
    fifo: Option<Fifo>,
    name: String,
    configured: usize,
    timeout: Duration,
    /// The keepalived state last delivered; None before the first decision.
    delivered: Option<&'static str>,
    /// Every check has reported at least once (set by the driver).
    pub(super) checks_reported: bool,
}

impl Hooks {
    /// Creates the FIFO and starts the runner.
    pub(super) fn start(cfg: &PairConfig) -> std::io::Result<Hooks> {
        let fifo = cfg.notify_fifo.as_deref().map(Fifo::create).transpose()?;
        let progress = Arc::new(Mutex::new(Progress::default()));
        let (tx, rx) = channel::<HookEvent>();
        let (hooks, timeout, p) = (cfg.hooks.clone(), cfg.hook_timeout, progress.clone());
        let fixed = Fixed {
            name: cfg.name.clone(),
            node_id: cfg.node_id.to_string(),
            vips: cfg
                .vips
                .iter()
                .map(|v| format!("{}/{}@{}", v.addr, v.prefix, v.interface))
                .collect::<Vec<_>>()
                .join(" "),
        };
        let runner = std::thread::Builder::new().name("hooks".into()).stack_size(256 * 1024).spawn(move || {
            for ev in rx {
                for hook in &hooks {
                    run_one(hook, &ev, &fixed, timeout, &p);
                }
                p.lock().unwrap().done += 1;
            }
        })?;
        Ok(Hooks {
            queue: Some(tx),
            runner: Some(runner),
            progress,
            fifo,
            name: cfg.name.clone(),
            configured: cfg.hooks.len(),
            timeout,
            delivered: None,
            checks_reported: cfg.checks.is_empty(),
        })
    }

    /// The node's position changed (a transition, or its health): delivers an event if its
    /// keepalived state differs from the last one delivered, and returns that new state.
    pub(super) fn observe(
        &mut self,
        to: PairState,
        healthy: bool,
        term: u32,
        priority: u8,
        peer: Option<u8>,
        reason: &str,
    ) -> Option<&'static str> {
        let state = keepalived_state(to, healthy);
        // Nothing is announced before the first decision and the checks' first reports:
        // every node starts out "failing" until its checks report, and that is not a FAULT.
        let undecided = to == PairState::Starting || !self.checks_reported;
        if self.delivered == Some(state) || (self.delivered.is_none() && undecided) {
            return None;
        }
        self.delivered = Some(state);
        self.deliver(HookEvent { state, rg_state: to, term, priority, peer, reason: reason.to_string() });
        Some(state)
    }

    /// The FIFO line now; the hooks after those queued before.
    fn deliver(&mut self, ev: HookEvent) {
        info!(state = ev.state, "notify {} ({})", ev.state, ev.reason);
        if let Some(f) = &mut self.fifo {
            f.write(&format!("INSTANCE \"{}\" {} {}\n", self.name, ev.state, ev.priority));
        }
        if self.configured == 0 {
            return;
        }
        self.progress.lock().unwrap().queued += 1;
        if let Some(q) = &self.queue {
            let _ = q.send(ev);
        }
    }

    /// Clean stop: STOP after everything queued, and wait for the hooks to finish (each
    /// is bounded by the timeout).
    pub(super) fn stop(&mut self, ev: HookEvent) {
        self.deliver(ev);
        self.queue = None;
        if let Some(r) = self.runner.take() {
            let _ = r.join();
        }
    }

    /// The `hooks` object of `rearguard status --json`.
    pub(super) fn status(&self) -> serde_json::Value {
        let p = self.progress.lock().unwrap();
        json!({
            "configured": self.configured,
            "timeout_ms": self.timeout.as_millis() as u64,
            "delivered": self.delivered,
            "pending": p.queued - p.done,
            "runs": p.runs,
            "failures": p.failures,
            "timeouts": p.timeouts,
            "running": p.running.as_ref().map(|(hook, state, since)| json!({
                "hook": hook.display().to_string(), "state": state, "for_ms": since.elapsed().as_millis() as u64,
            })),
            "last": p.last.as_ref().map(|o| json!({
                "hook": o.hook.display().to_string(),
                "state": o.state,
                "result": o.result,
                "ok": o.ok,
                "took_ms": o.took.as_millis() as u64,
                "ago_ms": o.at.elapsed().as_millis() as u64,
            })),
            "fifo": self.fifo.as_ref().map(|f| json!({
                "path": f.path.display().to_string(), "written": f.written, "dropped": f.dropped,
            })),
        })
    }
}

/// What every hook run gets besides the event.
struct Fixed {
    name: String,
    node_id: String,
    vips: String,
}

/// keepalived-compatible notify: `SCRIPT INSTANCE NAME STATE PRIORITY`, plus RG_* variables.
fn run_one(hook: &Path, ev: &HookEvent, fixed: &Fixed, timeout: Duration, p: &Mutex<Progress>) {
    let started = Instant::now();
    p.lock().unwrap().running = Some((hook.to_path_buf(), ev.state, started));
    let mut cmd = Command::new(hook);
    cmd.args(["INSTANCE", &fixed.name, ev.state, &ev.priority.to_string()])
        .env("RG_STATE", ev.rg_state.name())
        .env("RG_KEEPALIVED_STATE", ev.state)
        .env("RG_NODE_ID", &fixed.node_id)
        .env("RG_PEER_ID", ev.peer.map(|p| p.to_string()).unwrap_or_default())
        .env("RG_TERM", ev.term.to_string())
        .env("RG_PRIORITY", ev.priority.to_string())
        .env("RG_REASON", &ev.reason)
        .env("RG_VIPS", &fixed.vips)
        .stdin(Stdio::null());
    let done = run_bounded(&mut cmd, timeout, |_| {});
    let took = started.elapsed();
    let (ok, result) = match &done {
        Ok(Bounded::Exited(st)) if st.success() => (true, "exited 0".to_string()),
        Ok(Bounded::Exited(st)) => (false, format!("failed ({st})")),
        Ok(Bounded::TimedOut) => {
            (false, format!("killed after the {} ms timeout (hook_timeout_ms)", timeout.as_millis()))
        }
        Err(e) => (false, format!("cannot run: {e}")),
    };
    if ok {
        info!(hook = %hook.display(), state = ev.state, took_ms = took.as_millis() as u64, "hook {result}");
    } else {
        warn!(hook = %hook.display(), state = ev.state, took_ms = took.as_millis() as u64, "hook {result}");
    }
    let mut p = p.lock().unwrap();
    p.running = None;
    p.runs += 1;
    p.failures += u64::from(!ok);
    p.timeouts += u64::from(matches!(done, Ok(Bounded::TimedOut)));
    p.last = Some(Outcome { hook: hook.to_path_buf(), state: ev.state, result, ok, took, at: Instant::now() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_is_master_whatever_the_health() {
        assert_eq!(keepalived_state(PairState::Active, true), "MASTER");
        assert_eq!(keepalived_state(PairState::Active, false), "MASTER");
    }

    #[test]
    fn not_active_is_backup_when_healthy_and_fault_when_not() {
        for s in [PairState::Starting, PairState::Standby, PairState::Maintenance] {
            assert_eq!(keepalived_state(s, true), "BACKUP", "{s:?}");
            assert_eq!(keepalived_state(s, false), "FAULT", "{s:?}");
        }
    }

    #[test]
    fn a_fifo_without_a_reader_drops_the_line_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Fifo::create(&dir.path().join("notify")).unwrap();
        let t = Instant::now();
        f.write("INSTANCE \"x\" MASTER 100\n");
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!((f.written, f.dropped), (0, 1));
    }

    #[test]
    fn a_fifo_path_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        std::fs::write(&path, "").unwrap();
        let e = Fifo::create(&path).err().unwrap().to_string();
        assert!(e.contains("notify_fifo") && e.contains("not a FIFO"), "{e}");
    }
}
