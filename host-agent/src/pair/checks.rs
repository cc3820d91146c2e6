//! Tracked health checks and failure predictors. Each check runs on its own thread at its
//! interval and reports its *debounced* state (rise/fall) to the main loop; the first
//! result counts at once, and until it arrives the check counts as failing (a node that
//! has not yet proved itself healthy must not take the VIPs).

use crate::config::pair::{Check, CheckKind};
use crate::sys::{run_bounded, Bounded};
use rearguard_shared::debounce::Debounce;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Read;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A check's debounced verdict.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub index: usize,
    pub ok: bool,
    pub detail: String,
}

/// Runs `check` on its own thread, handing each debounced verdict to `report`; the thread
/// ends when `stop` is set or `report` returns false (the agent has gone).
pub fn spawn(
    index: usize,
    check: Check,
    mut report: impl FnMut(CheckReport) -> bool + Send + 'static,
    stop: Arc<AtomicBool>,
    rt_prio: u8,
) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("check-{index}")).stack_size(256 * 1024).spawn(move || {
        // Carrier checks are the fast path of uplink failover: same priority as the loop.
        // (Commands they run are reset to normal priority on fork.)
        if matches!(check.kind, CheckKind::Carrier { .. }) {
            crate::sys::realtime(rt_prio);
        }
        let mut prober = Prober::new(&check, index);
        let mut debounce = Debounce::new(check.rise, check.fall);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let (ok, detail) = prober.probe(&check.kind);
            if let Some(ok) = debounce.observe(ok) {
                let detail = if ok { detail } else { format!("{}: {detail}", check.name) };
                if !report(CheckReport { index, ok, detail }) {
                    return;
                }
            }
            let spent = started.elapsed();
            if spent < check.interval {
                std::thread::sleep(check.interval - spent);
            }
        }
    })?;
    Ok(())
}

struct Prober {
    icmp: Option<Socket>,
    ident: u16,
    seq: u16,
}

impl Prober {
    fn new(check: &Check, index: usize) -> Prober {
        let icmp = match check.kind {
            CheckKind::Ping { .. } => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).ok(),
            _ => None,
        };
        Prober { icmp, ident: (std::process::id() as u16) ^ ((index as u16) << 11), seq: 0 }
    }

    fn probe(&mut self, kind: &CheckKind) -> (bool, String) {
        match kind {
            CheckKind::Carrier { interface } => {
                match std::fs::read_to_string(format!("/sys/class/net/{interface}/carrier")) {
                    Ok(s) if s.trim() == "1" => (true, format!("{interface} carrier up")),
                    Ok(_) => (false, format!("{interface} has no carrier")),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (false, format!("{interface} is down")),
                    Err(e) => (false, format!("{interface}: {e}")),
                }
            }
            CheckKind::Ping { target, timeout_ms } => self.ping(*target, Duration::from_millis(*timeout_ms)),
            CheckKind::Process { pidfile: Some(p), .. } => {
                let pid = std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<i32>().ok());
                match pid {
                    None => (false, format!("pidfile {} missing or unreadable", p.display())),
                    Some(pid) => match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
                        Ok(()) | Err(nix::errno::Errno::EPERM) => (true, format!("pid {pid} alive")),
                        Err(_) => (false, format!("pid {pid} from {} is not running", p.display())),
                    },
                }
            }
            CheckKind::Process { name: Some(n), .. } => {
                if process_named(n) {
                    (true, format!("process {n} running"))
                } else {
                    (false, format!("no process named {n}"))
                }
            }
            CheckKind::Process { .. } => (false, "process check without pidfile or name".into()),
            CheckKind::Systemd { unit } => run_status(
                &["systemctl".to_string(), "is-active".into(), "--quiet".into(), unit.clone()],
                Duration::from_secs(5),
            ),
            CheckKind::Command { argv, timeout_ms } => run_status(argv, Duration::from_millis(*timeout_ms)),
            CheckKind::Hwmon { path, min, max } => {
                match std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<i64>().ok()) {
                    None => (false, format!("{} unreadable", path.display())),
                    Some(v) if max.is_some_and(|m| v > m) => {
                        (false, format!("{} = {v} above {}", path.display(), max.unwrap()))
                    }
                    Some(v) if min.is_some_and(|m| v < m) => {
                        (false, format!("{} = {v} below {}", path.display(), min.unwrap()))
                    }
                    Some(v) => (true, format!("{} = {v}", path.display())),
                }
            }
        }
    }

    fn ping(&mut self, target: Ipv4Addr, timeout: Duration) -> (bool, String) {
        let Some(s) = &self.icmp else {
            return (false, "cannot open a raw ICMP socket (needs root or CAP_NET_RAW)".into());
        };
        self.seq = self.seq.wrapping_add(1);
        let mut pkt = [0u8; 16];
        pkt[0] = 8; // echo request
        pkt[4..6].copy_from_slice(&self.ident.to_be_bytes());
        pkt[6..8].copy_from_slice(&self.seq.to_be_bytes());
        pkt[8..16].copy_from_slice(b"rearguar");
        let sum = inet_checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        if let Err(e) = s.send_to(&pkt, &SocketAddr::new(target.into(), 0).into()) {
            return (false, format!("target {target} unreachable ({e})"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (false, format!("target {target} unreachable (no echo reply in {} ms)", timeout.as_millis()));
            }
            let _ = s.set_read_timeout(Some(left));
            let mut buf = [MaybeUninit::<u8>::uninit(); 256];
            let Ok((n, from)) = s.recv_from(&mut buf) else { continue };
            // SAFETY: recv_from initialised the first `n` bytes.
            let buf: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
            let from_ok = from.as_socket_ipv4().is_some_and(|a| *a.ip() == target);
            // Raw IPv4 sockets deliver the IP header first.
            let ihl = (buf.first().copied().unwrap_or(0) & 0x0f) as usize * 4;
            if !from_ok || buf.len() < ihl + 8 {
                continue;
            }
            let icmp = &buf[ihl..];
            if icmp[0] == 0 && icmp[4..6] == self.ident.to_be_bytes() && icmp[6..8] == self.seq.to_be_bytes() {
                return (true, format!("target {target} reachable"));
            }
        }
    }
}

fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], 0]) };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn process_named(name: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    dir.flatten().any(|e| {
        e.file_name().to_str().is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
    })
}

/// Runs argv, killing it (and its children) after `timeout`; healthy when it exits 0.
pub fn run_status(argv: &[String], timeout: Duration) -> (bool, String) {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // The first stderr line says why a failing command failed; read it while the command
    // runs, or a chatty one could fill the pipe and block until killed.
    let (tx, rx) = std::sync::mpsc::channel();
    let st = run_bounded(&mut cmd, timeout, |child| {
        if let Some(mut e) = child.stderr.take() {
            let tx = tx.clone();
            let _ = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
                let mut err = String::new();
                let _ = e.read_to_string(&mut err);
                let _ = tx.send(err);
            });
        }
    });
    match st {
        Err(e) => (false, format!("cannot run {}: {e}", argv[0])),
        Ok(Bounded::TimedOut) => (false, format!("{} timed out after {} ms", argv[0], timeout.as_millis())),
        Ok(Bounded::Exited(st)) if st.success() => (true, format!("{} exited 0", argv[0])),
        Ok(Bounded::Exited(st)) => {
            let err = rx.recv_timeout(Duration::from_millis(100)).unwrap_or_default();
            let err = err.lines().next().unwrap_or("").to_string();
            (
                false,
                format!("{} failed ({st}){}", argv[0], if err.is_empty() { String::new() } else { format!(": {err}") }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_echo_request() {
        // type 8, code 0, id 1, seq 1, no payload: checksum 0xf7fd
        let mut p = [8u8, 0, 0, 0, 0, 1, 0, 1];
        let c = inet_checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(c, 0xf7fd);
        assert_eq!(inet_checksum(&p), 0);
    }

    #[test]
    fn a_command_check_reports_exit_status_and_timeouts() {
        assert!(run_status(&["true".into()], Duration::from_secs(2)).0);
        let (ok, why) = run_status(&["false".into()], Duration::from_secs(2));
        assert!(!ok && why.contains("failed"), "{why}");
        let (ok, why) = run_status(&["sleep".into(), "5".into()], Duration::from_millis(50));
        assert!(!ok && why.contains("timed out"), "{why}");
    }
}
