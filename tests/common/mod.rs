//! Helpers shared by the whole-system tests: run the real `rearguard` binary, read its
//! output line by line with deadlines, and build disks and configs in temp directories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// A child process killed when dropped, with its stdout available as timestamped lines.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<(Instant, String)>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn rearguard");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), l)).is_err() {
                    return;
                }
            }
        });
        Proc { child, lines: rx, seen: Vec::new() }
    }

    /// Waits for a line containing `needle`; panics with everything seen if it does not come.
    pub fn wait_line(&mut self, needle: &str, within: Duration) -> (Instant, String) {
        match self.try_wait_line(needle, within) {
            Some(x) => x,
            None => panic!(
                "no line containing {needle:?} within {} ms; output so far:\n{}",
                within.as_millis(),
                self.seen.join("\n")
            ),
        }
    }

    pub fn try_wait_line(&mut self, needle: &str, within: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, l)) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Some((t, l));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Collects the lines that arrived so far without waiting.
    pub fn drain(&mut self) -> &[String] {
        while let Ok((_, l)) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for exit up to `within`; returns the exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s.code());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const CLUSTER: u32 = 0xC0FFEE;

/// Timings of one test cluster.
#[derive(Clone, Copy)]
pub struct Timing {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub poll_ms: u64,
    pub write_deadline_ms: u64,
    pub fence_time_ms: u64,
}

impl Default for Timing {
    /// The reference setting: timeout 1 s, poll 10 ms, interval 100 ms.
    fn default() -> Self {
        Timing { interval_ms: 100, timeout_ms: 1000, poll_ms: 10, write_deadline_ms: 300, fence_time_ms: 100 }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub timing: Timing,
}

impl Cluster {
    /// A fresh image file with an initialised heartbeat area.
    pub fn new(timing: Timing) -> Cluster {
        let dir = tempfile::Builder::new().prefix("rearguard-test-").tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let c = Cluster { dir, disk, timing };
        c.init_disk(&c.disk.clone(), true);
        c
    }

    /// A cluster whose shared disk is `disk` (a block device or a file elsewhere).
    pub fn on_device(timing: Timing, disk: &Path) -> Cluster {
        let dir = tempfile::Builder::new().prefix("rearguard-test-").tempdir().unwrap();
        let c = Cluster { dir, disk: disk.to_path_buf(), timing };
        c.init_disk(disk, false);
        c
    }

    fn init_disk(&self, disk: &Path, create: bool) {
        let t = self.timing;
        let mut args = vec![
            "disk".to_string(),
            "init".into(),
            disk.display().to_string(),
            "--cluster-id".into(),
            format!("{CLUSTER:#x}"),
            "--interval-ms".into(),
            t.interval_ms.to_string(),
            "--timeout-ms".into(),
            t.timeout_ms.to_string(),
            "--force".into(),
        ];
        if create {
            args.push("--create".into());
        }
        let o = rearguard().args(&args).output().unwrap();
        assert!(o.status.success(), "disk init failed: {}", stderr(&o));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an agent config whose fence command touches `fenced` in the work dir.
    pub fn agent_config(&self) -> PathBuf {
        let t = self.timing;
        let p = self.path("agent.toml");
        let marker = self.path("fenced");
        std::fs::write(
            &p,
            format!(
                "[cluster]\nid = {CLUSTER:#x}\nnode_id = 0\n[disk]\ndevice = {:?}\ninterval_ms = {}\nwrite_deadline_ms = {}\n\
                 [fence]\nmethod = \"command\"\ncommand = [\"touch\", {:?}]\nfence_time_ms = {}\n",
                self.disk, t.interval_ms, t.write_deadline_ms, marker, t.fence_time_ms
            ),
        )
        .unwrap();
        p
    }

    pub fn listener_config(&self) -> PathBuf {
        let t = self.timing;
        let p = self.path("listener.toml");
        std::fs::write(
            &p,
            format!(
                "[cluster]\nid = {CLUSTER:#x}\n[listener]\nnode_id = 1\nprimary_node = 0\ntimeout_ms = {}\npoll_ms = {}\n\
                 [disk]\ndevice = {:?}\n[gate]\ncommand = [\"echo\", \"GATE-OPENED\"]\n",
                t.timeout_ms, t.poll_ms, self.disk
            ),
        )
        .unwrap();
        p
    }

    pub fn spawn_agent(&self) -> Proc {
        let mut c = rearguard();
        c.args(["agent", "--config"]).arg(self.agent_config()).env("REARGUARD_LOG", "warn");
        Proc::spawn(c)
    }

    pub fn spawn_listener(&self) -> Proc {
        let mut c = rearguard();
        c.args(["listener", "--config"]).arg(self.listener_config()).env("REARGUARD_LOG", "warn").stdin(Stdio::null());
        Proc::spawn(c)
    }

    /// Starts the primary's agent and the listener, and waits until the listener watches.
    pub fn start_watched(&self) -> (Proc, Proc) {
        let agent = self.spawn_agent();
        let mut listener = self.spawn_listener();
        listener.wait_line("state: watching", Duration::from_secs(10));
        (agent, listener)
    }

    pub fn fenced(&self) -> bool {
        self.path("fenced").exists()
    }

    /// Overwrites the first bytes of node `node`'s slot (block 1 + node).
    pub fn write_slot(&self, node: u8, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new().write(true).open(&self.disk).unwrap();
        f.write_all_at(bytes, (1 + node as u64) * 4096).unwrap();
        f.sync_data().unwrap();
    }

    pub fn read_slot(&self, node: u8) -> Vec<u8> {
        let f = std::fs::File::open(&self.disk).unwrap();
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, (1 + node as u64) * 4096).unwrap();
        b
    }

    /// Writes a raw mailbox block for node `node` (block 1 + slots + node, with 2 slots).
    pub fn write_mailbox(&self, node: u8, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new().write(true).open(&self.disk).unwrap();
        f.write_all_at(bytes, (3 + node as u64) * 4096).unwrap();
        f.sync_data().unwrap();
    }

    pub fn dump_json(&self) -> serde_json::Value {
        let o = run(&["disk", "dump", self.disk.to_str().unwrap(), "--json", "--watch-ms", "250"]);
        assert!(o.status.success(), "dump failed: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

/// SIGKILLs the primary's agent and waits for the listener to release the boot. Returns
/// when the kill happened, when the release line arrived, and the line.
pub fn kill_primary(agent: &mut Proc, listener: &mut Proc) -> (Instant, Instant, String) {
    let killed = Instant::now();
    agent.sigkill();
    let (at, line) = listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    (killed, at, line)
}

/// Median of a list of durations in ms.
pub fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}
