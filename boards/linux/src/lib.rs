//! The Linux board: runs the unchanged firmware application as a Linux process, so a
//! Linux-based controller or BMC can be the listener. Disk = a file or block device opened
//! O_DIRECT; boot gate = a configured command; console = stdin/stdout (the firmware's menu);
//! NV store = a file.

pub mod config;
pub mod drill;
pub mod replay;

use config::LinuxListenerConfig;
use rearguard_firmware::app::{App, Event, StartError};
use rearguard_firmware::board::{BootGate, NoLink, NvCopy, NvStore, SharedDisk};
use rearguard_firmware::menu::{Menu, Request, Status};
use rearguard_firmware::nv::{self, LoadReport};
use rearguard_firmware::report;
use rearguard_host_agent::blockdev::{DirectDisk, DiskError};
use rearguard_host_agent::time::now;
use rearguard_shared::config::{ListenerConfig, RecordError, RECORD_LEN};
use rearguard_shared::disk::{BLOCK, RECORD_SECTOR};
use rearguard_shared::listener::Takeover;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;

/// The shared disk through O_DIRECT, which needs whole aligned blocks on 4Kn devices: the
/// record sector is cut from (or zero-padded into) a full block.
pub struct LinuxDisk {
    dev: DirectDisk,
    block: Box<[u8; BLOCK]>,
    /// Refuses slot records replayed after a restart (`[listener] state_dir`).
    pub replay: Option<replay::ReplayGuard>,
}

impl LinuxDisk {
    pub fn new(dev: DirectDisk) -> LinuxDisk {
        LinuxDisk { dev, block: Box::new([0; BLOCK]), replay: None }
    }
}

impl SharedDisk for LinuxDisk {
    type Error = DiskError;
    fn read_record(&mut self, offset: u64, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        self.dev.read_block(offset, &mut self.block)?;
        buf.copy_from_slice(&self.block[..RECORD_SECTOR]);
        if let Some(guard) = self.replay.as_mut() {
            guard.check(buf);
        }
        Ok(())
    }
    fn write_record(&mut self, offset: u64, buf: &[u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        self.block.fill(0);
        self.block[..RECORD_SECTOR].copy_from_slice(buf);
        self.dev.write_block(offset, &self.block)
    }
}

/// Releases the boot by running a command (a BMC call, a QMP `cont`, a GPIO tool…), told
/// which node to boot as: `{node}` in its argv is replaced by the node id, and its
/// environment carries `RG_TAKEOVER_NODE`, `RG_TAKEOVER_REASON` and `RG_PRIMARY_EPOCH`
/// (empty when the primary was never seen).
pub struct CommandGate {
    pub argv: Vec<String>,
    /// This listener's node id: what a pass-through (role primary) boots as.
    pub own_node: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("the command could not be started: {0}")]
    Spawn(std::io::Error),
    #[error("the command ended with {0}")]
    Failed(std::process::ExitStatus),
}

impl rearguard_shared::text::Say for GateError {
    fn say(&self, t: &mut rearguard_shared::text::Text<'_>) {
        t.d(self);
    }
}

impl BootGate for CommandGate {
    type Error = GateError;
    fn release(&mut self, takeover: Option<&Takeover>) -> Result<(), GateError> {
        let (node, reason, epoch) = match takeover {
            Some(t) => (t.node, report::Reason(t.reason).to_string(), t.primary_epoch.map(|e| e.to_string())),
            None => (self.own_node, "role is primary (pass-through)".to_string(), None),
        };
        let argv: Vec<String> = self.argv.iter().map(|a| a.replace("{node}", &node.to_string())).collect();
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("RG_TAKEOVER_NODE", node.to_string())
            .env("RG_TAKEOVER_REASON", &reason)
            .env("RG_PRIMARY_EPOCH", epoch.unwrap_or_default())
            .status()
            .map_err(GateError::Spawn)?;
        tracing::info!(command = ?argv, node, %status, "boot gate command finished");
        if status.success() {
            Ok(())
        } else {
            Err(GateError::Failed(status))
        }
    }
    fn check(&mut self) -> Result<&'static str, &'static str> {
        match drill::executable(&self.argv[0]) {
            Ok(_) => Ok("the gate command is executable (not run)"),
            Err(_) => Err("the gate command does not exist or is not executable: fix [gate] command"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{device}: {message}")]
    Start { device: String, message: String },
    #[error("boot gate command {argv:?} failed: {why}; the boot was NOT released — release it by hand")]
    Gate { argv: Vec<String>, why: String },
    #[error("{path}: cannot open the console settings file: {source}")]
    Nv { path: PathBuf, source: std::io::Error },
}

/// How the listener ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ListenerExit {
    Released,
    Stopped,
}

/// The console's settings store: the two A/B copies in a small file (copy A at offset 0,
/// copy B at 4096), each written with one O_DSYNC write.
pub struct FileNv {
    file: std::fs::File,
}

impl FileNv {
    pub fn open(path: &Path) -> Result<FileNv, ListenerError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc_o_dsync())
            .open(path)
            .map_err(|source| ListenerError::Nv { path: path.to_path_buf(), source })?;
        Ok(FileNv { file })
    }

    fn offset(copy: NvCopy) -> u64 {
        match copy {
            NvCopy::A => 0,
            NvCopy::B => BLOCK as u64,
        }
    }
}

/// The settings file's I/O error, as the firmware application prints it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct NvError(#[from] std::io::Error);

impl rearguard_shared::text::Say for NvError {
    fn say(&self, t: &mut rearguard_shared::text::Text<'_>) {
        t.d(self);
    }
}

impl NvStore for FileNv {
    type Error = NvError;
    fn read_copy(&mut self, copy: NvCopy, buf: &mut [u8; RECORD_LEN]) -> Result<(), NvError> {
        buf.fill(0);
        // A short file (never saved, or only copy A so far) reads as blank.
        let n = self.file.read_at(buf, Self::offset(copy))?;
        buf[n..].fill(0);
        Ok(())
    }
    fn write_copy(&mut self, copy: NvCopy, buf: &[u8; RECORD_LEN]) -> Result<(), NvError> {
        Ok(self.file.write_all_at(buf, Self::offset(copy))?)
    }
}

fn libc_o_dsync() -> i32 {
    rearguard_host_agent::blockdev::O_DSYNC
}

/// Up to every slot of a disk area can be a watched primary.
type LinuxApp = App<LinuxDisk, NoLink, CommandGate, { rearguard_shared::disk::MAX_SLOTS as usize }>;

/// Writes to the console through `core::fmt::Write`, as the firmware's menu expects.
struct FmtOut<'a>(&'a mut dyn Write);
impl core::fmt::Write for FmtOut<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.write_all(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

/// Stamps every line with the milliseconds since the listener started, for the console
/// log: `[    1234 ms] state: watching (primary is alive)`.
struct Stamped<'a> {
    out: &'a mut dyn Write,
    ms: u64,
    line_start: bool,
}

impl<'a> Stamped<'a> {
    fn new(out: &'a mut dyn Write, since_start: rearguard_shared::Duration) -> Stamped<'a> {
        Stamped { out, ms: since_start.as_millis(), line_start: true }
    }
}

impl core::fmt::Write for Stamped<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for piece in s.split_inclusive('\n') {
            if std::mem::replace(&mut self.line_start, piece.ends_with('\n')) {
                write!(self.out, "[{:>8} ms] ", self.ms).map_err(|_| core::fmt::Error)?;
            }
            self.out.write_all(piece.as_bytes()).map_err(|_| core::fmt::Error)?;
        }
        Ok(())
    }
}

/// Swallows the menu's echo: a terminal in line mode already echoes what is typed.
struct NoEcho;
impl core::fmt::Write for NoEcho {
    fn write_str(&mut self, _: &str) -> core::fmt::Result {
        Ok(())
    }
}

/// Opens the disk and builds the application: every check the firmware makes at start
/// (config, header, cluster, slot, the disk's timeout) runs here.
fn build_app(cfg: &LinuxListenerConfig, listener: ListenerConfig, write: bool) -> Result<LinuxApp, ListenerError> {
    let mut disk = LinuxDisk::new(DirectDisk::open(&cfg.device, write)?);
    // Only a running listener moves its marks (`check-config` opens the disk read-only).
    disk.replay = cfg.state_dir.as_deref().filter(|_| write).map(|dir| replay::ReplayGuard::open(dir, &listener));
    let gate = CommandGate { argv: cfg.gate_command.clone(), own_node: listener.node_id };
    let refused = |message: String| ListenerError::Start { device: cfg.device.display().to_string(), message };
    let app = LinuxApp::new(listener, Some(disk), None, gate, now())
        .map_err(|e: StartError<DiskError>| refused(e.to_string()))?;
    // A spare whose poll is not shorter than the settle time would back off from every
    // claim it writes (see rearguard_shared::listener): nobody would take over.
    if let Some(a) = app.listener().params().arbitration {
        if app.config().poll_period >= a.settle {
            return Err(refused(format!(
                "{}: [listener] poll_ms = {} is not below the claim settle time {} ms (twice the disk's interval) that \
                 spares sharing this disk use: lower poll_ms below {}",
                cfg.file.display(),
                app.config().poll_period.as_millis(),
                a.settle.as_millis(),
                a.settle.as_millis()
            )));
        }
    }
    Ok(app)
}

/// What `check-config` reports: the checks of a real start, read-only, gate untouched.
/// Returns the timeout the listener would use (the disk's, when that is longer).
pub fn check(cfg: &LinuxListenerConfig) -> Result<rearguard_shared::Duration, ListenerError> {
    let app = build_app(cfg, cfg.listener.clone(), false)?;
    Ok(app.listener().params().timeout)
}

fn start_app(
    cfg: &LinuxListenerConfig,
    listener: ListenerConfig,
    console: &mut dyn Write,
) -> Result<LinuxApp, ListenerError> {
    let app = build_app(cfg, listener, true)?;
    let media = format!("disk {}", cfg.device.display());
    let _ = report::started(&mut FmtOut(console), app.config(), app.listener().params().timeout, &media);
    if app.config().is_spare() {
        let _ = report::spare_started(&mut FmtOut(console), app.config().watch, app.listener().params().arbitration);
    }
    Ok(app)
}

/// Runs the listener until it releases the boot (then returns; a spare goes on reporting
/// until stopped) or `stop` is set. Every event
/// is printed as a line on `console`; the release line starts with `BOOT RELEASED`. Bytes
/// arriving on `input` drive the firmware's configuration menu (type `help`); settings saved
/// there go to `[listener] nv_file` and override the config file's at the next start.
pub fn run(
    cfg: &LinuxListenerConfig,
    console: &mut dyn Write,
    input: Option<Receiver<u8>>,
    stop: &AtomicBool,
) -> Result<ListenerExit, ListenerError> {
    let mut nv = cfg.nv_file.as_deref().map(FileNv::open).transpose()?;
    let (listener, persist) = match nv.as_mut() {
        None => (cfg.listener.clone(), nv::Persist::NONE),
        Some(store) => {
            let (saved, persist, report) = nv::load(store);
            match report {
                LoadReport::Loaded { .. } => {
                    let _ = writeln!(
                        console,
                        "{report}: settings saved from the console override [cluster] and [listener] in {}",
                        cfg.file.display()
                    );
                    (saved, persist)
                }
                LoadReport::Factory { a: RecordError::Blank, b: RecordError::Blank } => (cfg.listener.clone(), persist),
                other => {
                    let _ = writeln!(console, "warning: {other}; using [listener] from {} instead", cfg.file.display());
                    (cfg.listener.clone(), persist)
                }
            }
        }
    };
    // The disk and gate always come from the config file; the console saves only the
    // listener record (cluster id, key, ids, timings, never-seen policy).
    let mut app = start_app(cfg, listener.clone(), console)?;
    let mut menu = Menu::new(listener, persist);
    let start = now();
    let mut next = std::time::Instant::now();
    let mut last_reject = None;
    let (mut read_failures, mut last_failure_note) = (0u32, None);
    // Under systemd: READY once the disk was read and the state is known, STATUS on change,
    // WATCHDOG pings from this loop.
    let systemd = rearguard_host_agent::sys::SystemdNotify::from_env();
    let mut told = None;
    loop {
        let state = app.listener().state().name();
        if told != Some(state) {
            told = Some(state);
            systemd.ready(&format!("listener: {state}, primary node {}", app.config().primary_node));
        }
        systemd.pet();
        if stop.load(Ordering::Relaxed) {
            let _ = writeln!(console, "listener: stopped by signal; boot still held");
            return Ok(ListenerExit::Stopped);
        }
        let t = now();
        let mut gate_failure = None;
        let mut events = Vec::new();
        app.poll_with(t, &mut |e| events.push(e));
        while let Some(b) = input.as_ref().and_then(|rx| rx.try_recv().ok()) {
            if !menu.feed(b, &mut NoEcho) {
                continue;
            }
            let status = Status::of(Some(&app), [("bad-cobs", 0), ("overlong", 0)], t);
            let request = menu.run_line(&status, nv.as_mut(), &mut FmtOut(console));
            match request {
                Request::None => {}
                Request::ReleaseNow => app.release_now(t, &mut |e| events.push(e)),
                Request::Drill => app.drill_start(t, &mut FmtOut(console)),
                Request::Apply(new) if !app.gate_opened() => {
                    app.drill_cancel();
                    app = start_app(cfg, new, console)?;
                    last_reject = None;
                }
                Request::Apply(_) => {
                    let _ = report::saved_after_release(&mut FmtOut(console));
                }
            }
        }
        let mut out = Stamped::new(console, t.saturating_since(start));
        if last_failure_note.is_some()
            && !events.iter().any(|e| matches!(e, Event::DiskReadFailed(_)))
            && app.disk_medium().is_some()
        {
            let _ = report::reads_recovered(&mut out, read_failures);
            (read_failures, last_failure_note) = (0, None);
        }
        for ev in events {
            match &ev {
                Event::GateFailed(e) => gate_failure = Some(e.to_string()),
                Event::DiskReadFailed(_) => {
                    // First failure at once, then a reminder every 10 s: a dead device must
                    // not flood the log at the poll rate.
                    read_failures = read_failures.saturating_add(1);
                    if last_failure_note
                        .is_some_and(|at: rearguard_shared::Instant| t.saturating_since(at).as_millis() < 10_000)
                    {
                        continue;
                    }
                    last_failure_note = Some(t);
                }
                _ => {}
            }
            let _ = report::event(&mut out, &ev, read_failures);
        }
        app.drill_poll(t, &mut out);
        if let Some(m) = app.disk_medium().map(|id| app.listener().media()[id.0 as usize]) {
            if m.last_reject != last_reject {
                if let Some(r) = m.last_reject {
                    let _ = report::slot_rejected(&mut out, r, m.rejected_total());
                }
                last_reject = m.last_reject;
            }
        }
        let _ = console.flush();
        if let Some(why) = gate_failure {
            return Err(ListenerError::Gate { argv: cfg.gate_command.clone(), why });
        }
        // A spare stays up once consumed: it reports primaries that die with no spare left,
        // and its console's status shows who claimed whom. A secondary's work is done.
        if app.gate_opened() && cfg.watch.is_none() {
            return Ok(ListenerExit::Released);
        }
        let poll = std::time::Duration::from_millis(app.config().poll_period.as_millis());
        next += poll;
        let now_std = std::time::Instant::now();
        if next > now_std {
            std::thread::sleep(next - now_std);
        } else {
            next = now_std;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write as _;

    #[test]
    fn every_line_gets_one_stamp_however_it_is_written() {
        let mut console = Vec::new();
        let mut out = Stamped::new(&mut console, rearguard_shared::Duration::from_millis(1234));
        let state = "watching";
        write!(out, "state: {state}").unwrap();
        out.write_str(" (primary is alive)\nsecond\nthird").unwrap();
        out.write_str(" line\n").unwrap();
        assert_eq!(
            String::from_utf8(console).unwrap(),
            "[    1234 ms] state: watching (primary is alive)\n[    1234 ms] second\n[    1234 ms] third line\n"
        );
    }
}
