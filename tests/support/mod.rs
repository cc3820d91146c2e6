//! What the whole-system tests share: the real `rearguard` binary and its agent
//! ([`Agent`]), processes whose output is waited on ([`process`]), disk images and configs
//! ([`disk`]), the firmware in QEMU ([`qemu`]), and firewall pairs in network namespaces
//! ([`netns`]). Each test binary uses a part of it.
//!
//! Nothing here skips a test: a missing tool, firmware build or root fails it and says how to
//! get it.
#![allow(dead_code)]

pub mod disk;
pub mod faultfs;
pub mod netns;
pub mod process;
pub mod qemu;

use process::Process;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The cluster id of every test cluster.
pub const CLUSTER: u32 = 0xC0FFEE;

pub fn rearguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rearguard"))
}

/// Runs `rearguard ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    rearguard().args(args).env("REARGUARD_LOG", "warn").output().expect("run rearguard")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A unique temp directory for one test, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("rearguard-test-").tempdir().expect("temp dir")
}

/// The effective uid, from /proc/self/status ("Uid: real effective saved fs").
pub fn euid() -> u32 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// The median of a list of figures (the mean of the middle two for an even count).
pub fn median(v: &mut [u128]) -> u128 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// A `rearguard agent`, its log (stdout and stderr) in [`Process::out`]; SIGKILLed on drop or
/// by [`Process::kill`], the way a primary dies. Everything a [`Process`] does, it does.
pub struct Agent {
    pub process: Process,
    pub config: PathBuf,
}

impl Agent {
    /// Starts `rearguard agent --config CONFIG`, inside network namespace `netns` if given.
    pub fn start(config: &Path, netns: Option<&str>) -> Agent {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(env!("CARGO_BIN_EXE_rearguard"));
                c
            }
            None => rearguard(),
        };
        cmd.args(["agent", "--config"]).arg(config).env("REARGUARD_LOG", "info");
        Agent { process: Process::spawn_merged(cmd), config: config.to_path_buf() }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.process.out.text()
    }

    /// Panics with the agent's log if it exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(st) = self.process.exit_status() {
            panic!("agent {} exited early ({st}):\n{}", self.config.display(), self.log());
        }
    }

    /// SIGTERM, and up to 5 s for the agent's clean stop.
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(5));
    }
}

impl std::ops::Deref for Agent {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}
