//! Self-fencing: taking this node out of service when it can no longer prove it is alive.

use crate::config::agent::Fence;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

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
                unsafe { wdioc_settimeout(file.as_raw_fd(), &mut t) }.map_err(|e| FenceError::SetTimeout {
                    path: device.clone(),
                    timeout_s: *timeout_s,
                    source: e.into(),
                })?;
                Ok(Fencer::Watchdog { file, path: device.clone() })
            }
            Fence::Command { argv, .. } => Ok(Fencer::Command { argv: argv.clone() }),
        }
    }

    /// Proof of life after a completed heartbeat cycle.
    pub fn pet(&self) {
        if let Fencer::Watchdog { file, path } = self {
            let mut dummy: libc::c_int = 0;
            // SAFETY: WDIOC_KEEPALIVE ignores its argument; the pointer is valid regardless.
            if let Err(e) = unsafe { wdioc_keepalive(file.as_raw_fd(), &mut dummy) } {
                tracing::warn!(device = %path.display(), error = %e, "watchdog keepalive failed");
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
    pub fn disarm(&self) {
        if let Fencer::Watchdog { file, path } = self {
            if let Err(e) = (&*file).write_all(b"V") {
                tracing::warn!(device = %path.display(), error = %e, "watchdog magic close failed; the machine may reset");
            }
        }
    }
}
