//! The emulated controller: the real firmware ELF in `qemu-system-arm -machine lm3s6965evb`,
//! its console (UART0 on QEMU's stdio), its heartbeat link (UART1 on a unix socket) and its SD
//! card (an image file holding the heartbeat area and the firmware's config copies).

use super::disk::{init_disk, write_agent_config, Timing};
use super::process::Process;
use super::CLUSTER;
use rearguard_shared::config::{encode_record, ListenerConfig, RECORD_LEN};
use rearguard_shared::listener::NeverSeenPolicy;
use rearguard_shared::Duration as RgDuration;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The firmware's listener settings for a test: the test cluster, `timeout_ms`, polling every
/// 100 ms, never releasing for a primary it never saw.
pub fn listener_config(timeout_ms: u64) -> ListenerConfig {
    ListenerConfig {
        cluster_id: CLUSTER,
        timeout: RgDuration::from_millis(timeout_ms),
        poll_period: RgDuration::from_millis(100),
        never_seen: NeverSeenPolicy::WaitForever,
        ..ListenerConfig::factory()
    }
}

/// A 2 MiB SD image. With `area`, `rearguard disk init` writes a heartbeat area with that
/// timeout (the real CLI); with `cfg`, the listener config is stored as copy A, generation 1.
pub fn sd_image(dir: &Path, name: &str, area: Option<u64>, cfg: Option<&ListenerConfig>) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(SD_SIZE).unwrap();
    if let Some(timeout_ms) = area {
        init_disk(&p, &Timing { timeout_ms, ..Timing::default() }, false);
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

/// Writes the agent config of the primary the emulated controller watches: heartbeats every
/// 100 ms on `disk`, and on `serial` if given; its fence command does nothing.
pub fn agent_config(dir: &Path, name: &str, disk: &Path, serial: Option<&Path>) -> PathBuf {
    let p = dir.join(name);
    write_agent_config(&p, disk, &Timing { write_deadline_ms: 200, ..Timing::default() }, &["true"], serial);
    p
}

/// The emulated controller. Killed on drop.
pub struct Qemu {
    process: Process,
    stdin: ChildStdin,
    /// UART1: the heartbeat link, a unix socket QEMU listens on.
    pub link: PathBuf,
    /// QEMU's human monitor, a unix socket: reads the GPIO pins ([`Qemu::read_word`]).
    monitor: PathBuf,
}

impl Qemu {
    pub fn start(dir: &Path, sd: &Path) -> Qemu {
        let link = dir.join("link.sock");
        let monitor = dir.join("monitor.sock");
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_file(&monitor);
        let mut cmd = Command::new(qemu());
        cmd.args(["-machine", "lm3s6965evb", "-display", "none", "-serial", "stdio"])
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .arg("-serial")
            .arg(format!("unix:{},server=on,wait=off", link.display()))
            .arg("-drive")
            .arg(format!("if=sd,format=raw,file={}", sd.display()))
            .arg("-kernel")
            .arg(firmware_elf())
            .stdin(Stdio::piped())
            .stderr(Stdio::null());
        let mut process = Process::spawn(cmd);
        let stdin = process.take_stdin();
        // The link socket exists once QEMU is up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !link.exists() {
            assert!(Instant::now() < deadline, "QEMU did not create {} in 10 s", link.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        Qemu { process, stdin, link, monitor }
    }

    /// A 32-bit word of the emulated machine's physical memory (a device register: reading
    /// it through the monitor goes to the device model, as the CPU's read would).
    pub fn read_word(&self, addr: u32) -> u32 {
        use std::io::{BufRead, BufReader};
        let mut s = std::os::unix::net::UnixStream::connect(&self.monitor).expect("QEMU monitor socket");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        writeln!(s, "xp /1wx {addr:#x}").unwrap();
        // The monitor greets, echoes the command, then answers `ADDR: 0xVALUE`.
        for line in BufReader::new(s).lines() {
            let line = line.expect("QEMU monitor answers");
            if let Some((_, v)) = line.rsplit_once(": 0x") {
                if line.trim_start().starts_with('0') && !line.contains("xp ") {
                    return u32::from_str_radix(v.trim(), 16).unwrap_or_else(|e| panic!("{line}: {e}"));
                }
            }
        }
        panic!("QEMU monitor closed without answering xp {addr:#x}");
    }

    /// Everything the console printed so far.
    pub fn text(&self) -> String {
        self.process.out.text()
    }

    /// Current end of the console output, to search from later.
    pub fn mark(&self) -> usize {
        self.process.out.mark()
    }

    /// Waits until `needle` appears after byte `from`; returns when it arrived and the
    /// offset just past it. Panics with the console output when the deadline passes.
    pub fn wait_for(&self, needle: &str, from: usize, within: Duration) -> (Instant, usize) {
        self.process.out.expect("console", needle, from, within)
    }

    pub fn try_wait_for(&self, needle: &str, from: usize, within: Duration) -> Option<(Instant, usize)> {
        self.process.out.wait_for(needle, from, within)
    }

    /// Types on the console.
    pub fn send(&mut self, s: &str) {
        self.send_bytes(s.as_bytes());
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
