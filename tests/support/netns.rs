//! Firewall-pair test topology in network namespaces, torn down on drop (also after a
//! panic). Every address lives only inside these namespaces.
//!
//! ```text
//!   ns {p}a (node 1)            ns {p}br: bridge br0            ns {p}b (node 2)
//!   lan 10.200.0.1/24 ── veth ── pa   [br0]   pb ── veth ── lan 10.200.0.2/24
//!   side 10.201.0.1/24 ────────── direct veth (optional) ─────── side 10.201.0.2/24
//!                                 pc / px
//!   ns {p}c (client) lan 10.200.0.10/24      ns {p}x (third party) lan 10.200.0.66/24
//!   VIP 10.200.0.100/24
//!
//!   with Pair::add_outside (a firewall between two segments):
//!   ns {p}a wan 10.202.0.1/24 ── veth ── wa  [br1]  wb ── veth ── wan 10.202.0.2/24 ns {p}b
//!                                ws ── veth ── wan 10.202.0.20/24 ns {p}s (server)
//! ```

use super::process::Process;
use super::{euid, rearguard, Agent};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const VIP: &str = "10.200.0.100";
pub const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const GROUP: &str = "239.255.82.71";
pub const PORT: u16 = 5405;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails loudly (never skips) when the test cannot run for real.
pub fn require_root_and_tools() {
    assert_eq!(euid(), 0, "the firewall-pair tests create network namespaces and must run as root: run `sudo bash scripts/setup.sh` then `sudo bash scripts/test.sh`");
    for tool in ["ip", "nft", "ping", "socat"] {
        let ok = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        assert!(
            ok,
            "`{tool}` is missing: run `bash scripts/setup.sh` as root (installs iproute2, nftables, iputils-ping, socat)"
        );
    }
}

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn must(args: &[&str]) -> String {
    let out = sh(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How one node's agent is configured.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    pub priority: u8,
    pub interval_ms: u64,
    pub dead_count: u32,
    pub preempt: bool,
    pub preempt_delay_ms: u64,
    /// Extra `[[pair.check]]` blocks, verbatim.
    pub checks: String,
    pub key: String,
    /// `[[pair.vip]]` blocks appended verbatim after the LAN VIP.
    pub extra: String,
    /// Extra `[pair]` keys (e.g. hooks), verbatim.
    pub pair_keys: String,
    /// `[[pair.medium]]` blocks appended verbatim after the IP media (e.g. a serial one).
    pub media: String,
    /// Extra keys of the LAN VIP's `[[pair.vip]]` (e.g. `vmac = true`), verbatim.
    pub vip_keys: String,
}

impl NodeOpts {
    pub fn new(priority: u8) -> NodeOpts {
        NodeOpts {
            priority,
            interval_ms: 50,
            dead_count: 4,
            preempt: false,
            preempt_delay_ms: 0,
            checks: String::new(),
            key: KEY.into(),
            extra: String::new(),
            pair_keys: String::new(),
            media: String::new(),
            vip_keys: String::new(),
        }
    }
}

pub struct Pair {
    pub p: String,
    pub dir: PathBuf,
    pub side_link: bool,
    /// Each node's running (or last) agent.
    pub agents: [Option<Agent>; 2],
    /// What each node's earlier agents logged, before a restart replaced them.
    earlier_logs: [String; 2],
    pub opts: [NodeOpts; 2],
    /// Other daemons started in the namespaces ([`Pair::spawn_in`]), killed on drop.
    pub daemons: Vec<Process>,
}

/// Every namespace a pair may have; [`Pair::new`] makes all but `s` ([`Pair::add_outside`]).
const NAMESPACES: [&str; 6] = ["br", "a", "b", "c", "x", "s"];

impl Pair {
    /// Builds the namespaces; agents are started with [`Pair::start`].
    pub fn new(side_link: bool, a: NodeOpts, b: NodeOpts) -> Pair {
        require_root_and_tools();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = format!("rgp{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{p}-dir"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pair = Pair {
            p: p.clone(),
            dir: dir.clone(),
            side_link,
            agents: [None, None],
            earlier_logs: Default::default(),
            opts: [a, b],
            daemons: Vec::new(),
        };
        // From here on, Drop cleans up whatever was created.
        for ns in &NAMESPACES[..5] {
            must(&["ip", "netns", "add", &pair.ns(ns)]);
            must(&["ip", "-n", &pair.ns(ns), "link", "set", "lo", "up"]);
        }
        let br = pair.ns("br");
        must(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        for (node, addr) in
            [("a", "10.200.0.1/24"), ("b", "10.200.0.2/24"), ("c", "10.200.0.10/24"), ("x", "10.200.0.66/24")]
        {
            pair.plug(node, "lan", addr, "br0", &format!("p{node}"));
        }
        if side_link {
            must(&[
                "ip",
                "link",
                "add",
                "side",
                "netns",
                &pair.ns("a"),
                "type",
                "veth",
                "peer",
                "name",
                "side",
                "netns",
                &pair.ns("b"),
            ]);
            for (node, addr) in [("a", "10.201.0.1/24"), ("b", "10.201.0.2/24")] {
                must(&["ip", "-n", &pair.ns(node), "addr", "add", addr, "dev", "side"]);
                must(&["ip", "-n", &pair.ns(node), "link", "set", "side", "up"]);
            }
        }
        pair
    }

    /// Node `node`'s interface `ifname` with `addr`, cabled to port `port` of bridge `bridge`.
    fn plug(&self, node: &str, ifname: &str, addr: &str, bridge: &str, port: &str) {
        let br = self.ns("br");
        must(&[
            "ip",
            "link",
            "add",
            ifname,
            "netns",
            &self.ns(node),
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &br,
        ]);
        must(&["ip", "-n", &br, "link", "set", port, "master", bridge]);
        must(&["ip", "-n", &br, "link", "set", port, "up"]);
        must(&["ip", "-n", &self.ns(node), "addr", "add", addr, "dev", ifname]);
        must(&["ip", "-n", &self.ns(node), "link", "set", ifname, "up"]);
    }

    /// A second segment behind the pair (see the module's picture): the nodes become a
    /// firewall between the client's LAN and a server's WAN.
    pub fn add_outside(&mut self) {
        must(&["ip", "netns", "add", &self.ns("s")]);
        must(&["ip", "-n", &self.ns("s"), "link", "set", "lo", "up"]);
        let br = self.ns("br");
        must(&["ip", "-n", &br, "link", "add", "br1", "type", "bridge"]);
        must(&["ip", "-n", &br, "link", "set", "br1", "up"]);
        for (node, addr) in [("a", "10.202.0.1/24"), ("b", "10.202.0.2/24"), ("s", "10.202.0.20/24")] {
            self.plug(node, "wan", addr, "br1", &format!("w{node}"));
        }
    }

    /// Unplugs (or replugs) node i's WAN cable at the switch ([`Pair::add_outside`]).
    pub fn set_wan(&self, i: usize, up: bool) {
        let port = format!("w{}", Self::node(i));
        must(&["ip", "-n", &self.ns("br"), "link", "set", &port, if up { "up" } else { "down" }]);
    }

    /// Starts `argv` inside namespace `node` as a daemon of the test, killed on drop.
    pub fn spawn_in(&mut self, node: &str, argv: &[&str]) -> &mut Process {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(node)]).args(argv);
        self.daemons.push(Process::spawn_merged(cmd));
        self.daemons.last_mut().unwrap()
    }

    /// `cmd` run inside namespace `node`.
    pub fn exec(&self, node: &str, cmd: &[&str]) -> std::process::Output {
        let ns = self.ns(node);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(cmd);
        sh(&full)
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.p)
    }

    pub fn node(i: usize) -> &'static str {
        ["a", "b"][i]
    }

    pub fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.sock", Self::node(i)))
    }

    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.toml", Self::node(i)))
    }

    pub fn write_config(&self, i: usize) -> PathBuf {
        let o = &self.opts[i];
        let mut media = String::from("[[pair.medium]]\ninterface = \"lan\"\n");
        if self.side_link {
            media.push_str(&format!("[[pair.medium]]\ninterface = \"side\"\npeer = \"10.201.0.{}\"\n", 2 - i));
        }
        media.push_str(&o.media);
        let text = format!(
            r#"# generated by tests/support/netns.rs
[cluster]
id = 0xC0FFEE
node_id = {id}
key = "{key}"

[pair]
name = "VI_TEST"
priority = {prio}
interval_ms = {iv}
dead_count = {dc}
preempt = {pre}
preempt_delay_ms = {pd}
announce_count = 3
announce_interval_ms = 20
control_socket = "{sock}"
state_dir = "{state}"
{pair_keys}

[[pair.vip]]
address = "{VIP}/24"
interface = "lan"
{vip_keys}

{extra}

{media}
[[pair.check]]
kind = "carrier"
interface = "lan"
interval_ms = 5

{checks}
"#,
            id = i + 1,
            key = o.key,
            prio = o.priority,
            iv = o.interval_ms,
            dc = o.dead_count,
            pre = o.preempt,
            pd = o.preempt_delay_ms,
            sock = self.socket(i).display(),
            state = self.dir.join(format!("state-{}", Self::node(i))).display(),
            checks = o.checks,
            extra = o.extra,
            pair_keys = o.pair_keys,
            vip_keys = o.vip_keys,
        );
        let path = self.config_path(i);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts (or restarts) node i's agent.
    pub fn start(&mut self, i: usize) {
        let cfg = self.write_config(i);
        let agent = Agent::start(&cfg, Some(&self.ns(Self::node(i))));
        if let Some(old) = self.agents[i].replace(agent) {
            self.earlier_logs[i].push_str(&old.log());
        }
        let sock = self.socket(i);
        self.wait_until(Duration::from_secs(5), &format!("agent {} answers on its control socket", i + 1), |_| {
            sock.exists() && ctl(&sock, &["status", "--json"]).is_some()
        });
    }

    pub fn start_both(&mut self) {
        self.start(0);
        self.start(1);
        self.wait_until(Duration::from_secs(5), "one node active and the other standby", |p| {
            let s = [p.state(0), p.state(1)];
            s.contains(&"active".to_string()) && s.contains(&"standby".to_string())
        });
    }

    /// SIGKILL, no cleanup at all (a crash).
    pub fn kill9(&mut self, i: usize) {
        if let Some(a) = &mut self.agents[i] {
            a.kill();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self, i: usize) {
        if let Some(a) = &mut self.agents[i] {
            a.stop();
        }
    }

    /// `rearguard drill` for node i, run inside its namespace: (exit status, stdout).
    pub fn drill(&self, i: usize) -> (i32, String) {
        let ns = self.ns(Self::node(i));
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_rearguard"), "drill", "--config"])
            .arg(self.config_path(i))
            .env("REARGUARD_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("drill node {}:\n{text}{}", i + 1, String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Everything node i's agents logged, restarts included.
    pub fn log(&self, i: usize) -> String {
        let current = self.agents[i].as_ref().map(Agent::log).unwrap_or_default();
        format!("{}{current}", self.earlier_logs[i])
    }

    pub fn status(&self, i: usize) -> Value {
        ctl(&self.socket(i), &["status", "--json"]).unwrap_or(Value::Null)
    }

    pub fn state(&self, i: usize) -> String {
        self.status(i)["state"].as_str().unwrap_or("unreachable").to_string()
    }

    pub fn ctl(&self, i: usize, args: &[&str]) -> std::process::Output {
        let mut full: Vec<&str> = args.to_vec();
        let sock = self.socket(i);
        full.push("--socket");
        full.push(sock.to_str().unwrap());
        rearguard().args(&full).output().unwrap()
    }

    /// Which nodes have the VIP configured (kernel view, not the agents' word).
    pub fn holders(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| {
                // Every interface: a vmac VIP lives on a macvlan over lan.
                let out = sh(&["ip", "-n", &self.ns(Self::node(i)), "-o", "addr", "show"]);
                String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/"))
            })
            .collect()
    }

    /// The client reaches the VIP (one ICMP echo, 200 ms).
    pub fn client_reaches_vip(&self) -> bool {
        sh(&["ip", "netns", "exec", &self.ns("c"), "ping", "-c1", "-W0.2", "-n", "-q", VIP]).status.success()
    }

    /// Pins the client's neighbour entry for the VIP to `mac` (`nud permanent`): a cache that
    /// no announcement will update.
    pub fn pin_client_neighbour(&self, mac: &str) {
        must(&["ip", "-n", &self.ns("c"), "neigh", "replace", VIP, "lladdr", mac, "dev", "lan", "nud", "permanent"]);
    }

    /// The MAC the client's neighbour table has for the VIP.
    pub fn client_vip_mac(&self) -> Option<String> {
        let out = sh(&["ip", "-n", &self.ns("c"), "neigh", "show", VIP]);
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut it = s.split_whitespace();
        while let Some(w) = it.next() {
            if w == "lladdr" {
                return it.next().map(str::to_string);
            }
        }
        None
    }

    pub fn mac(&self, i: usize) -> String {
        must(&["ip", "netns", "exec", &self.ns(Self::node(i)), "cat", "/sys/class/net/lan/address"]).trim().to_string()
    }

    /// Unplugs (or replugs) node i's LAN cable at the switch: its carrier goes down too.
    pub fn set_lan(&self, i: usize, up: bool) {
        must(&[
            "ip",
            "-n",
            &self.ns("br"),
            "link",
            "set",
            &format!("p{}", Self::node(i)),
            if up { "up" } else { "down" },
        ]);
    }

    /// Drops every heartbeat into and out of node i (nftables in its namespace), silently:
    /// links stay up, ARP and ICMP still pass.
    pub fn block_heartbeats(&self, i: usize, block: bool) {
        self.nft(i, "rgblock", if block { Some("udp dport 5405 drop") } else { None }, true);
    }

    /// Random loss of `pct` % of incoming heartbeats at node i (nftables numgen; this
    /// kernel has no netem).
    pub fn heartbeat_loss(&self, i: usize, pct: u32) {
        let rule = format!("udp dport 5405 numgen random mod 100 < {pct} drop");
        self.nft(i, "rgloss", if pct > 0 { Some(rule.as_str()) } else { None }, false);
    }

    fn nft(&self, i: usize, table: &str, rule: Option<&str>, outgoing_too: bool) {
        let ns = self.ns(Self::node(i));
        let _ = sh(&["ip", "netns", "exec", &ns, "nft", "delete", "table", "inet", table]);
        if let Some(rule) = rule {
            let out = if outgoing_too {
                format!(" chain out {{ type filter hook output priority 0; policy accept; {rule}; }}\n")
            } else {
                String::new()
            };
            let script = format!("table inet {table} {{\n chain in {{ type filter hook input priority 0; policy accept; {rule}; }}\n{out}}}\n");
            let path = self.dir.join(format!("{table}-{i}.nft"));
            std::fs::write(&path, script).unwrap();
            must(&["ip", "netns", "exec", &ns, "nft", "-f", path.to_str().unwrap()]);
        }
    }

    /// A null-modem cable between the nodes: a pty pair joined by socat, whose ends are
    /// `cable-a` and `cable-b` in the test directory (ttys are not network-namespaced).
    /// The cable is cut when the returned process is killed.
    pub fn serial_cable(&self) -> (Process, [PathBuf; 2]) {
        let ends = [self.dir.join("cable-a"), self.dir.join("cable-b")];
        let mut cmd = Command::new("socat");
        cmd.arg("-d").arg("-d");
        for end in &ends {
            cmd.arg(format!("pty,raw,echo=0,link={}", end.display()));
        }
        let mut socat = Process::spawn_merged(cmd);
        socat.wait_line("starting data transfer loop", Duration::from_secs(5));
        (socat, ends)
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for i in 0..2 {
            s.push_str(&format!("----- node {} log -----\n{}\n", i + 1, self.log(i)));
        }
        s
    }

    /// Polls `cond` every 10 ms until it holds; panics with both agents' logs otherwise.
    pub fn wait_until(&self, within: Duration, what: &str, mut cond: impl FnMut(&Pair) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if cond(self) {
                return start.elapsed();
            }
            if start.elapsed() > within {
                panic!(
                    "timed out after {} ms waiting for: {what}\nstatus 1: {}\nstatus 2: {}\nholders: {:?}\n{}",
                    within.as_millis(),
                    self.status(0),
                    self.status(1),
                    self.holders(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts `inv` on every poll for `dur` (for "nothing happens" checks).
    pub fn hold_for(&self, dur: Duration, what: &str, mut inv: impl FnMut(&Pair) -> bool) {
        let start = Instant::now();
        while start.elapsed() < dur {
            assert!(
                inv(self),
                "violated after {} ms: {what}\nholders: {:?}\n{}",
                start.elapsed().as_millis(),
                self.holders(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for i in 0..2 {
            self.kill9(i);
        }
        for d in &mut self.daemons {
            d.kill();
        }
        for ns in NAMESPACES {
            let _ = sh(&["ip", "netns", "del", &self.ns(ns)]);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            for i in 0..2 {
                let _ = std::fs::write(self.dir.join(format!("{}.log", Self::node(i))), self.log(i));
            }
            eprintln!("pair test files kept in {}", self.dir.display());
        }
    }
}

/// `rearguard ARGS --socket SOCK`, parsed as JSON; None if the agent does not answer.
pub fn ctl(sock: &Path, args: &[&str]) -> Option<Value> {
    let out = rearguard().args(args).arg("--socket").arg(sock).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Runs `f` on a thread that has entered network namespace `ns` (setns affects only the
/// calling thread), for traffic a test must originate itself.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns(2) on a valid namespace descriptor; affects this thread only.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread panicked")
}
