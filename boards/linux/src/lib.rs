//! The Linux board: runs the unchanged firmware application as a Linux process, so a
//! Linux-based controller or BMC can be the listener. Disk = a file or block device opened
//! O_DIRECT; boot gate = a configured command; console = stdout.

use rearguard_firmware::app::{App, Event, StartError};
use rearguard_firmware::board::{BootGate, NoLink, SharedDisk};
use rearguard_host_agent::blockdev::{DirectDisk, DiskError};
use rearguard_host_agent::config::LinuxListenerConfig;
use rearguard_host_agent::time::now;
use rearguard_shared::disk::{BLOCK, RECORD_SECTOR};
use rearguard_shared::listener::ListenerState;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// The shared disk through O_DIRECT, which needs whole aligned blocks on 4Kn devices: the
/// record sector is cut from (or zero-padded into) a full block.
pub struct LinuxDisk {
    dev: DirectDisk,
    block: Box<[u8; BLOCK]>,
}

impl LinuxDisk {
    pub fn new(dev: DirectDisk) -> LinuxDisk {
        LinuxDisk { dev, block: Box::new([0; BLOCK]) }
    }
}

impl SharedDisk for LinuxDisk {
    type Error = DiskError;
    fn read_record(&mut self, offset: u64, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        self.dev.read_block(offset, &mut self.block)?;
        buf.copy_from_slice(&self.block[..RECORD_SECTOR]);
        Ok(())
    }
    fn write_record(&mut self, offset: u64, buf: &[u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        self.block.fill(0);
        self.block[..RECORD_SECTOR].copy_from_slice(buf);
        self.dev.write_block(offset, &self.block)
    }
}

/// Releases the boot by running a command (a BMC call, a QMP `cont`, a GPIO tool…).
pub struct CommandGate {
    pub argv: Vec<String>,
}

#[derive(Debug)]
pub enum GateError {
    Spawn(std::io::Error),
    Failed(std::process::ExitStatus),
}

impl BootGate for CommandGate {
    type Error = GateError;
    fn release(&mut self) -> Result<(), GateError> {
        let status = std::process::Command::new(&self.argv[0]).args(&self.argv[1..]).status().map_err(GateError::Spawn)?;
        tracing::info!(command = ?self.argv, %status, "boot gate command finished");
        if status.success() {
            Ok(())
        } else {
            Err(GateError::Failed(status))
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
}

/// How the listener ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ListenerExit {
    Released,
    Stopped,
}

/// Runs the listener until it releases the boot (then returns) or `stop` is set. Every event
/// is printed as a line on `console`; the release line starts with `BOOT RELEASED`.
pub fn run(cfg: &LinuxListenerConfig, console: &mut dyn Write, stop: &AtomicBool) -> Result<ListenerExit, ListenerError> {
    let disk = LinuxDisk::new(DirectDisk::open(&cfg.device, true)?);
    let gate = CommandGate { argv: cfg.gate_command.clone() };
    let start = now();
    let mut app: App<LinuxDisk, NoLink, CommandGate> = App::new(cfg.listener.clone(), Some(disk), None, gate, start)
        .map_err(|e: StartError<DiskError>| ListenerError::Start { device: cfg.device.display().to_string(), message: e.to_string() })?;
    let timeout = app.listener().params().timeout;
    let _ = writeln!(
        console,
        "listener: watching node {} on {} (timeout {}, poll {}); state holding",
        cfg.listener.primary_node,
        cfg.device.display(),
        timeout,
        cfg.listener.poll_period
    );
    let poll = std::time::Duration::from_millis(cfg.listener.poll_period.as_millis());
    let mut next = std::time::Instant::now();
    let mut last_reject = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = writeln!(console, "listener: stopped by signal; boot still held");
            return Ok(ListenerExit::Stopped);
        }
        let t = now();
        let mut gate_failure = None;
        for ev in app.poll(t) {
            let ms = t.saturating_since(start).as_millis();
            let line = match ev {
                Event::State(ListenerState::Watching) => "state watching: primary is alive".to_string(),
                Event::State(ListenerState::Holding) => "state holding".to_string(),
                Event::State(ListenerState::Released { .. }) => continue,
                Event::TimeoutRaised { configured, disk } => {
                    format!("warning: timeout raised from {configured} to the disk's {disk} to keep the primary's fencing bound")
                }
                Event::ClaimWritten { primary_epoch } => {
                    let epoch = primary_epoch.map_or("never seen".to_string(), |e| e.to_string());
                    format!("takeover claim written to node {}'s mailbox (primary epoch {epoch})", cfg.listener.primary_node)
                }
                Event::ClaimFailed(e) => format!("warning: takeover claim NOT written: {e}"),
                Event::Released(reason) => format!("BOOT RELEASED: {reason}"),
                Event::PassThrough => "BOOT RELEASED: role is primary, nothing to watch".to_string(),
                Event::GateFailed(e) => {
                    gate_failure = Some(format!("{e:?}"));
                    format!("error: boot gate command failed: {e:?}")
                }
                Event::DiskReadFailed(e) => format!("warning: slot read failed: {e}"),
            };
            let _ = writeln!(console, "[{:>8} ms] {line}", ms);
        }
        if let Some(m) = app.disk_medium().map(|id| app.listener().media()[id.0 as usize]) {
            if m.last_reject != last_reject {
                if let Some(r) = m.last_reject {
                    let ms = t.saturating_since(start).as_millis();
                    let _ = writeln!(console, "[{ms:>8} ms] slot rejected: {} ({r}); {} rejected so far", r.name(), m.rejected_total());
                }
                last_reject = m.last_reject;
            }
        }
        let _ = console.flush();
        if app.gate_opened() {
            return match gate_failure {
                Some(why) => Err(ListenerError::Gate { argv: cfg.gate_command.clone(), why }),
                None => Ok(ListenerExit::Released),
            };
        }
        next += poll;
        let now_std = std::time::Instant::now();
        if next > now_std {
            std::thread::sleep(next - now_std);
        } else {
            next = now_std;
        }
    }
}
