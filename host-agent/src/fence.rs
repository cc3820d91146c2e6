//! Self-fencing: taking this node out of service when it can no longer prove it is alive.

use crate::config::agent::Fence;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("[fence] device {path}: cannot open the watchdog: {source}; load a driver (e.g. `modprobe softdog`) or use method = \"command\"")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("[fence] device {path}: cannot set the watchdog timeout to {timeout_s} s: {source}")]
    SetTimeout { path: PathBuf, timeout_s: u32, source: std::io::Error },
}

pub enum Fencer {
    /// Armed watchdog: petted after every good cycle; firing means "stop petting".
    Watchdog {
        file: File,
        path: PathBuf,
        /// False once the device refused WDIOC_KEEPALIVE: then it is petted by a write, which
        /// every Linux watchdog driver also takes as a keepalive.
        keepalive_ioctl: AtomicBool,
    },
    Command {
        argv: Vec<String>,
    },
}

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);

impl Fencer {
    pub fn arm(fence: &Fence) -> Result<Fencer, FenceError> {
        match fence {
            Fence::Watchdog { device, timeout_s } => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(device)
                    .map_err(|source| FenceError::Open { path: device.clone(), source })?;
                let mut t = *timeout_s as libc::c_int;
                // SAFETY: WDIOC_SETTIMEOUT reads and writes one c_int through a valid pointer.
                match unsafe { wdioc_settimeout(file.as_raw_fd(), &mut t) } {
                    Ok(_) if t as u32 != *timeout_s => tracing::warn!(
                        device = %device.display(), asked_s = timeout_s, got_s = t,
                        "the watchdog chose another timeout than [fence] timeout_s; the fencing bound assumes timeout_s"
                    ),
                    Ok(_) => tracing::info!(device = %device.display(), timeout_s, "watchdog armed"),
                    // A device without the ioctl (a stand-in, some drivers) still fences by
                    // not being petted; its own timeout applies, which the budget cannot check.
                    Err(e) if not_supported(e) => tracing::warn!(
                        device = %device.display(), timeout_s,
                        "the watchdog does not take WDIOC_SETTIMEOUT; armed with its own timeout, which must not exceed [fence] timeout_s"
                    ),
                    Err(e) => {
                        return Err(FenceError::SetTimeout {
                            path: device.clone(),
                            timeout_s: *timeout_s,
                            source: e.into(),
                        })
                    }
                }
                Ok(Fencer::Watchdog { file, path: device.clone(), keepalive_ioctl: AtomicBool::new(true) })
            }
            Fence::Command { argv, .. } => Ok(Fencer::Command { argv: argv.clone() }),
        }
    }

    /// Proof of life after a completed heartbeat cycle.
    pub fn pet(&self) {
        if let Fencer::Watchdog { file, path, keepalive_ioctl } = self {
            if keepalive_ioctl.load(Ordering::Relaxed) {
                let mut dummy: libc::c_int = 0;
                // SAFETY: WDIOC_KEEPALIVE ignores its argument; the pointer is valid regardless.
                match unsafe { wdioc_keepalive(file.as_raw_fd(), &mut dummy) } {
                    Ok(_) => return,
                    Err(e) if not_supported(e) => {
                        keepalive_ioctl.store(false, Ordering::Relaxed);
                        tracing::warn!(device = %path.display(), "the watchdog does not take WDIOC_KEEPALIVE; petting it by writes");
                    }
                    Err(e) => {
                        tracing::warn!(device = %path.display(), error = %e, "watchdog keepalive failed");
                        return;
                    }
                }
            }
            // Any write but 'V' is a keepalive.
            if let Err(e) = (&*file).write_all(b"\0") {
                tracing::warn!(device = %path.display(), error = %e, "watchdog keepalive (write) failed");
            }
        }
    }

    /// Takes the node out of service. With a watchdog this only stops petting: the process
    /// exits without the magic close, so the kernel resets the machine when it expires.
    pub fn fire(&self, why: &str) {
        tracing::error!(reason = why, "FENCING this node");
        match self {
            Fencer::Watchdog { path, .. } => {
                tracing::error!(device = %path.display(), "watchdog left armed; the machine resets when it expires");
            }
            Fencer::Command { argv } => {
                let status = Command::new(&argv[0]).args(&argv[1..]).env("REARGUARD_FENCE_REASON", why).status();
                match status {
                    Ok(s) => tracing::error!(command = ?argv, status = %s, "fence command ran"),
                    Err(e) => tracing::error!(command = ?argv, error = %e, "fence command could not start"),
                }
            }
        }
    }

    /// Clean shutdown: disarm the watchdog with the magic close so the node is not reset.
    /// The close itself happens when the process exits (the fence monitor shares the file).
    pub fn disarm(&self) {
        if let Fencer::Watchdog { file, path, .. } = self {
            match (&*file).write_all(b"V") {
                Ok(()) => tracing::info!(device = %path.display(), "watchdog disarmed (magic close)"),
                Err(e) => {
                    tracing::warn!(device = %path.display(), error = %e, "watchdog magic close failed; the machine may reset")
                }
            }
        }
    }
}

/// ENOTTY: no such ioctl on this file. EINVAL is not tolerated: a real driver answers an
/// out-of-range timeout with it, and its own (longer) timeout would break the fencing bound.
fn not_supported(e: nix::errno::Errno) -> bool {
    e == nix::errno::Errno::ENOTTY
}
