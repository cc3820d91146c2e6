//! Shared-disk clusters: an image (or a device) with a heartbeat area made by the real
//! `rearguard disk init`, the raw slots and mailboxes on it, and the agent and Linux-listener
//! configs that point at it.

use super::process::Process;
use super::{rearguard, run, stderr, tempdir, Agent, CLUSTER};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

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

/// `rearguard disk init` over `disk` (overwriting whatever is there), creating it as an image
/// file first if `create`.
pub fn init_disk(disk: &Path, t: &Timing, create: bool) {
    let mut cmd = rearguard();
    cmd.args(["disk", "init"]).arg(disk).args(["--cluster-id", &format!("{CLUSTER:#x}")]);
    cmd.args(["--interval-ms", &t.interval_ms.to_string(), "--timeout-ms", &t.timeout_ms.to_string(), "--force"]);
    if create {
        cmd.arg("--create");
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "disk init failed: {}", stderr(&o));
}

/// Rewrites the header's timeout in place, as if the disk were set up again under a running
/// agent (which checked the old timeout at its start only).
pub fn set_disk_timeout(disk: &Path, ms: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(disk).unwrap();
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, 0).unwrap();
    let mut h = rearguard_shared::disk::DiskHeader::decode(&b).unwrap();
    h.timeout = rearguard_shared::Duration::from_millis(ms);
    h.encode(&mut b);
    f.write_all_at(&b, 0).unwrap();
    f.sync_data().unwrap();
}

/// Writes the primary's (node 0) agent config to `path`: heartbeats on `disk` (and on the
/// serial link `serial` if given) at `t`'s interval; fencing runs `fence`.
pub fn write_agent_config(path: &Path, disk: &Path, t: &Timing, fence: &[&str], serial: Option<&Path>) {
    write_node_agent_config(path, 0, disk, t, fence, serial)
}

/// [`write_agent_config`] for the primary in slot `node`.
pub fn write_node_agent_config(path: &Path, node: u8, disk: &Path, t: &Timing, fence: &[&str], serial: Option<&Path>) {
    let mut text = format!(
        "[cluster]\nid = {CLUSTER:#x}\nnode_id = {node}\n[disk]\ndevice = {disk:?}\ninterval_ms = {}\nwrite_deadline_ms = {}\n\
         [fence]\nmethod = \"command\"\ncommand = {fence:?}\nfence_time_ms = {}\n",
        t.interval_ms, t.write_deadline_ms, t.fence_time_ms
    );
    if let Some(s) = serial {
        text.push_str(&format!("[serial]\npath = {s:?}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// A primary (node 0) and a Linux-board listener (node 1) sharing one disk, with their
/// configs in a temp directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub timing: Timing,
}

impl Cluster {
    /// A fresh image file with an initialised heartbeat area.
    pub fn new(timing: Timing) -> Cluster {
        let dir = tempdir();
        let disk = dir.path().join("disk.img");
        init_disk(&disk, &timing, true);
        Cluster { dir, disk, timing }
    }

    /// A cluster whose shared disk is `disk` (a block device or a file elsewhere).
    pub fn on_device(timing: Timing, disk: &Path) -> Cluster {
        init_disk(disk, &timing, false);
        Cluster { dir: tempdir(), disk: disk.to_path_buf(), timing }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an agent config whose fence command touches `fenced` in the work dir.
    pub fn agent_config(&self) -> PathBuf {
        let p = self.path("agent.toml");
        let marker = self.path("fenced");
        write_agent_config(&p, &self.disk, &self.timing, &["touch", marker.to_str().unwrap()], None);
        p
    }

    /// Writes the listener's config; its gate command prints `GATE-OPENED`.
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

    pub fn spawn_agent(&self) -> Agent {
        Agent::start(&self.agent_config(), None)
    }

    /// The listener, its console (stdout) collected line by line; its log (stderr) is the
    /// test's.
    pub fn spawn_listener(&self) -> Process {
        let mut c = rearguard();
        c.args(["listener", "--config"]).arg(self.listener_config()).env("REARGUARD_LOG", "warn").stdin(Stdio::null());
        Process::spawn(c)
    }

    /// Starts the primary's agent and the listener, and waits until the listener watches.
    pub fn start_watched(&self) -> (Agent, Process) {
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
        self.write_block(1 + node as u64, bytes);
    }

    pub fn read_slot(&self, node: u8) -> Vec<u8> {
        let f = std::fs::File::open(&self.disk).unwrap();
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, (1 + node as u64) * 4096).unwrap();
        b
    }

    /// The records node `node`'s slot held over `dur` (read every 20 ms, each kept once, in
    /// order): what somebody with access to the disk captures to replay later.
    pub fn capture_slot(&self, node: u8, dur: Duration) -> Vec<Vec<u8>> {
        let mut captured: Vec<Vec<u8>> = Vec::new();
        let end = Instant::now() + dur;
        while Instant::now() < end {
            let r = self.read_slot(node)[..rearguard_shared::disk::RECORD_SECTOR].to_vec();
            if captured.last() != Some(&r) {
                captured.push(r);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        captured
    }

    /// Writes each record into node `node`'s slot, hands it to `also` (to replay it on another
    /// medium too), and leaves it there for `hold` (a few of the listener's polls); returns
    /// when the last one was written.
    pub fn replay_slot(&self, node: u8, records: &[Vec<u8>], hold: Duration, mut also: impl FnMut(&[u8])) -> Instant {
        let mut last = Instant::now();
        for r in records {
            self.write_slot(node, r);
            also(r);
            last = Instant::now();
            std::thread::sleep(hold);
        }
        last
    }

    /// Writes a raw mailbox block for node `node` (block 1 + slots + node, with 2 slots).
    pub fn write_mailbox(&self, node: u8, bytes: &[u8]) {
        self.write_block(3 + node as u64, bytes);
    }

    fn write_block(&self, block: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new().write(true).open(&self.disk).unwrap();
        f.write_all_at(bytes, block * 4096).unwrap();
        f.sync_data().unwrap();
    }

    pub fn set_disk_timeout(&self, ms: u64) {
        set_disk_timeout(&self.disk, ms);
    }

    pub fn dump_json(&self) -> serde_json::Value {
        let o = run(&["disk", "dump", self.disk.to_str().unwrap(), "--json", "--watch-ms", "250"]);
        assert!(o.status.success(), "dump failed: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

/// SIGKILLs the primary's agent and waits for the listener to release the boot. Returns
/// when the kill happened, when the release line arrived, and the line.
pub fn kill_primary(agent: &mut Agent, listener: &mut Process) -> (Instant, Instant, String) {
    let killed = agent.kill();
    let (at, line) = listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    (killed, at, line)
}

/// N primaries and S spares on one image (`disk init --primaries N --spares S`): agents for
/// the primaries (slots 0..N), Linux-board spares for the rest. Every spare's gate command
/// appends `spare=S node=N arg=N epoch=E reason=…` to `gates.log` (the node both from
/// `RG_TAKEOVER_NODE` and from `{node}` in its argv), so the test counts the releases.
pub struct SpareCluster {
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub timing: Timing,
    pub primaries: u8,
}

impl SpareCluster {
    pub fn new(timing: Timing, primaries: u8, spares: u8) -> SpareCluster {
        let dir = tempdir();
        let disk = dir.path().join("disk.img");
        let o = run(&[
            "disk",
            "init",
            disk.to_str().unwrap(),
            "--cluster-id",
            &format!("{CLUSTER:#x}"),
            "--primaries",
            &primaries.to_string(),
            "--spares",
            &spares.to_string(),
            "--interval-ms",
            &timing.interval_ms.to_string(),
            "--timeout-ms",
            &timing.timeout_ms.to_string(),
            "--create",
        ]);
        assert!(o.status.success(), "disk init failed: {}", stderr(&o));
        SpareCluster { dir, disk, timing, primaries }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The agent of primary `node`; its fence command touches `fenced-NODE`.
    pub fn spawn_agent(&self, node: u8) -> Agent {
        let p = self.path(&format!("agent-{node}.toml"));
        let marker = self.path(&format!("fenced-{node}"));
        write_node_agent_config(&p, node, &self.disk, &self.timing, &["touch", marker.to_str().unwrap()], None);
        Agent::start(&p, None)
    }

    /// A spare's config: node `node`, `[listener]` lines `extra` (role, watch…).
    pub fn spare_config(&self, node: u8, extra: &str) -> PathBuf {
        let t = self.timing;
        let p = self.path(&format!("spare-{node}.toml"));
        let log = self.path("gates.log");
        let script = format!(
            "echo \"spare={node} node=$RG_TAKEOVER_NODE arg=$0 epoch=$RG_PRIMARY_EPOCH reason=$RG_TAKEOVER_REASON\" >> {}",
            log.display()
        );
        std::fs::write(
            &p,
            format!(
                "[cluster]\nid = {CLUSTER:#x}\n[listener]\nnode_id = {node}\n{extra}\ntimeout_ms = {}\npoll_ms = {}\n\
                 [disk]\ndevice = {:?}\n[gate]\ncommand = [\"sh\", \"-c\", {script:?}, \"{{node}}\"]\n",
                t.timeout_ms, t.poll_ms, self.disk
            ),
        )
        .unwrap();
        p
    }

    /// A spare watching `watch` (`"0-2"`), its console collected.
    pub fn spawn_spare(&self, node: u8, watch: &str) -> Process {
        let cfg = self.spare_config(node, &format!("role = \"spare\"\nwatch = {watch:?}"));
        let mut c = rearguard();
        c.args(["listener", "--config"]).arg(cfg).env("REARGUARD_LOG", "warn").stdin(Stdio::null());
        Process::spawn(c)
    }

    /// Every gate command run so far, one line each.
    pub fn gate_runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("gates.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

/// A loop device over a file (a temp image, or a fault-injecting FUSE image), detached on
/// drop.
pub struct Loop {
    pub dev: PathBuf,
    _backing: Option<tempfile::TempDir>,
}

impl Loop {
    /// A loop device over a new zeroed temp file of `size` bytes.
    pub fn new(size: u64, sector_size: u32) -> Loop {
        let dir = tempdir();
        let backing = dir.path().join("backing.img");
        std::fs::File::create(&backing).unwrap().set_len(size).unwrap();
        let mut lo = Loop::over(&backing, sector_size);
        lo._backing = Some(dir);
        lo
    }

    /// `losetup --direct-io=on` over `file`, with `sector_size`-byte logical sectors: the
    /// loop driver does its I/O to the file with O_DIRECT, so every block request reaches it.
    pub fn over(file: &Path, sector_size: u32) -> Loop {
        let o = std::process::Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on", "--sector-size", &sector_size.to_string()])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("losetup: {e} — run scripts/setup.sh as root (util-linux)"));
        assert!(o.status.success(), "losetup over {} failed: {}", file.display(), String::from_utf8_lossy(&o.stderr));
        Loop { dev: PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()), _backing: None }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}
