//! Helpers for the emulated-controller tests: boot the real firmware ELF in
//! `qemu-system-arm -machine lm3s6965evb`, talk to its console (UART0 on QEMU's stdio), give it
//! a heartbeat link (UART1 on a unix socket), and run the real `rearguard agent` against it.
//!
//! Nothing here is skipped: a missing QEMU or firmware build fails the test and says how to
//! get it (scripts/setup.sh installs QEMU and the target; scripts/test.sh builds the firmware).
#![allow(dead_code)]

use rearguard_shared::config::{encode_record, ListenerConfig, RECORD_LEN};
use rearguard_shared::listener::NeverSeenPolicy;
use rearguard_shared::Duration as RgDuration;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const CLUSTER: u32 = 0xC0FFEE;
/// Where the firmware keeps config copy A (copy B is one 4096-byte block later).
pub const NV_OFFSET: u64 = 1 << 20;
pub const SD_SIZE: u64 = 2 << 20;

pub fn firmware_elf() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("boards/qemu-lm3s6965/target/thumbv7m-none-eabi/release/rearguard-fw");
    assert!(
        p.exists(),
        "the firmware is not built ({}): run scripts/test.sh, which runs scripts/setup.sh and \
         `(cd boards/qemu-lm3s6965 && cargo build --release)` before the tests",
        p.display()
    );
    p
}

pub fn qemu() -> &'static str {
    let ok = Command::new("qemu-system-arm").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        matches!(ok, Ok(s) if s.success()),
        "qemu-system-arm is not installed: run scripts/setup.sh (as root; it installs the Debian package qemu-system-arm)"
    );
    "qemu-system-arm"
}

/// A unique temp directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("rearguard-qemu-").tempdir().expect("temp dir")
}

pub fn listener_config(timeout_ms: u64) -> ListenerConfig {
    ListenerConfig {
        cluster_id: CLUSTER,
        timeout: RgDuration::from_millis(timeout_ms),
        poll_period: RgDuration::from_millis(100),
        never_seen: NeverSeenPolicy::WaitForever,
        ..ListenerConfig::factory()
    }
}

/// A 2 MiB SD image. With `area`, `rearguard disk init` writes a heartbeat area (the real CLI);
/// with `cfg`, the listener config is stored as copy A, generation 1.
pub fn sd_image(dir: &Path, name: &str, area: Option<u64>, cfg: Option<&ListenerConfig>) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(SD_SIZE).unwrap();
    drop(f);
    if let Some(timeout_ms) = area {
        let out = Command::new(env!("CARGO_BIN_EXE_rearguard"))
            .args(["disk", "init", "--cluster-id", &CLUSTER.to_string(), "--timeout-ms", &timeout_ms.to_string()])
            .arg(&p)
            .output()
            .unwrap();
        assert!(out.status.success(), "disk init: {}", String::from_utf8_lossy(&out.stderr));
    }
    if let Some(cfg) = cfg {
        write_config_copy(&p, 0, cfg, 1);
    }
    p
}

/// Writes one config copy (0 = A, 1 = B) straight into the image, as a save would.
pub fn write_config_copy(img: &Path, copy: u64, cfg: &ListenerConfig, generation: u32) {
    let mut rec = [0u8; RECORD_LEN];
    encode_record(cfg, generation, &mut rec);
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&rec, NV_OFFSET + copy * 4096).unwrap();
    f.sync_all().unwrap();
}

pub fn read_config_copy(img: &Path, copy: u64) -> [u8; RECORD_LEN] {
    let mut rec = [0u8; RECORD_LEN];
    std::fs::File::open(img).unwrap().read_exact_at(&mut rec, NV_OFFSET + copy * 4096).unwrap();
    rec
}

#[derive(Default)]
struct Output {
    text: String,
    closed: bool,
}

/// The emulated controller. Killed on drop.
pub struct Qemu {
    child: Child,
    stdin: ChildStdin,
    out: Arc<(Mutex<Output>, Condvar)>,
    /// UART1: the heartbeat link, a unix socket QEMU listens on.
    pub link: PathBuf,
}

impl Qemu {
    pub fn start(dir: &Path, sd: &Path) -> Qemu {
        let link = dir.join("link.sock");
        let _ = std::fs::remove_file(&link);
        let mut child = Command::new(qemu())
            .args(["-machine", "lm3s6965evb", "-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-serial")
            .arg(format!("unix:{},server=on,wait=off", link.display()))
            .arg("-drive")
            .arg(format!("if=sd,format=raw,file={}", sd.display()))
            .arg("-kernel")
            .arg(firmware_elf())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-system-arm");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (m, cv) = &*o;
                let mut g = m.lock().unwrap();
                if n == 0 {
                    g.closed = true;
                    cv.notify_all();
                    return;
                }
                g.text.push_str(&String::from_utf8_lossy(&buf[..n]));
                cv.notify_all();
            }
        });
        let q = Qemu { child, stdin, out, link };
        // The link socket exists once QEMU is up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !q.link.exists() {
            assert!(Instant::now() < deadline, "QEMU did not create {} in 10 s", q.link.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        q
    }

    /// Everything the console printed so far.
    pub fn text(&self) -> String {
        self.out.0.lock().unwrap().text.clone()
    }

    /// Current end of the console output, to search from later.
    pub fn mark(&self) -> usize {
        self.out.0.lock().unwrap().text.len()
    }

    /// Waits until `needle` appears after byte `from`; returns when it was seen and the
    /// offset just past it. Panics with the console output when the deadline passes.
    pub fn wait_for(&self, needle: &str, from: usize, within: Duration) -> (Instant, usize) {
        match self.try_wait_for(needle, from, within) {
            Some(x) => x,
            None => panic!(
                "console did not show {needle:?} within {} ms; console so far:\n{}",
                within.as_millis(),
                self.text()
            ),
        }
    }

    pub fn try_wait_for(&self, needle: &str, from: usize, within: Duration) -> Option<(Instant, usize)> {
        let deadline = Instant::now() + within;
        let (m, cv) = &*self.out;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(i) = g.text.get(from..).and_then(|t| t.find(needle)) {
                return Some((Instant::now(), from + i + needle.len()));
            }
            let now = Instant::now();
            if now >= deadline || g.closed {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Types on the console.
    pub fn send(&mut self, s: &str) {
        self.stdin.write_all(s.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.stdin.write_all(b).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a line and waits for the menu's next prompt.
    pub fn command(&mut self, line: &str) -> String {
        let from = self.mark();
        self.send(line);
        self.send("\r");
        let (_, end) = self.wait_for("rearguard> ", from, Duration::from_secs(10));
        self.text()[from..end].to_string()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `rearguard agent` (the primary), killed with SIGKILL on drop or by [`Agent::kill`]: the
/// way a primary dies.
pub struct Agent {
    child: Option<Child>,
    pub log: PathBuf,
}

/// Writes an agent config: heartbeats every 100 ms on `disk`, and on `serial` if given.
pub fn agent_config(dir: &Path, name: &str, disk: &Path, serial: Option<&Path>) -> PathBuf {
    let p = dir.join(name);
    let mut t = format!(
        "[cluster]\nid = {CLUSTER}\nnode_id = 0\n\n[disk]\ndevice = {:?}\ninterval_ms = 100\nwrite_deadline_ms = 200\n\n\
         [fence]\nmethod = \"command\"\ncommand = [\"true\"]\nfence_time_ms = 100\n",
        disk.display().to_string()
    );
    if let Some(s) = serial {
        t.push_str(&format!("\n[serial]\npath = {:?}\n", s.display().to_string()));
    }
    std::fs::write(&p, t).unwrap();
    p
}

impl Agent {
    pub fn start(config: &Path) -> Agent {
        let log = config.with_extension("log");
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rearguard"))
            .arg("agent")
            .arg("--config")
            .arg(config)
            .env("REARGUARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start rearguard agent");
        Agent { child: Some(child), log }
    }

    /// SIGKILL: no goodbye heartbeat, like a power cut. Returns when it was killed.
    pub fn kill(&mut self) -> Instant {
        let mut c = self.child.take().expect("agent already killed");
        let t = Instant::now();
        let _ = c.kill();
        let _ = c.wait();
        t
    }

    /// Panics with the agent's log if it exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!("agent exited early ({st}):\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Checks the status screen's "stack peak N of M bytes": the stack stayed within the RAM the
/// statics leave it (8 KiB in all), with a margin. Returns (N, M).
pub fn assert_stack_within_budget(status: &str) -> (u32, u32) {
    let line = status.lines().find(|l| l.contains("stack peak")).unwrap_or_else(|| panic!("no stack line: {status}"));
    let nums: Vec<u32> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let (peak, room) = (nums[0], nums[1]);
    assert!(peak + 64 <= room, "stack peak {peak} bytes leaves less than 64 of {room} bytes: {line}");
    assert!(room <= 8192, "RAM region larger than the 8 KiB budget: {line}");
    (peak, room)
}

pub fn median(v: &mut [u128]) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}
