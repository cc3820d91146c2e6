//! The Debian package under a real systemd: `scripts/package.sh` builds the .deb, lintian
//! finds no error in it, and a minimal Debian (debootstrap, cached under target/nspawn/)
//! boots in `systemd-nspawn --network-veth`, its veth's outer end moved onto the bridge of
//! the firewall-pair topology (tests/support/netns.rs, whose client namespace pings the VIP).
//! The package is installed there with `dpkg -i` and driven with
//! systemctl through `nsenter` into the container's PID 1: Type=notify READY and STATUS, the
//! journal's RG_* fields, ExecStopPost after SIGKILL, the watchdog after SIGSTOP, a broken
//! config that fails once (its error at priority err) and is not retried in a loop; in the
//! same container the cold-standby units, `rearguard-agent` heartbeating to a disk image and
//! `rearguard-listener` releasing when it stops; `dpkg -r`/`--purge`. And two containers
//! where stopping the active one moves the VIP to the other.
//!
//! The root is booted with --volatile=overlay: the cached tree is never written, every change
//! lives in a tmpfs that goes with the container.

mod support;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::netns::*;

/// What the root must hold besides minbase: systemd as init, D-Bus for systemctl, `ip`.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,iproute2";

struct Prepared {
    deb: PathBuf,
    root: PathBuf,
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// The .deb (built and linted) and the cached Debian root, once per test binary.
fn prepared() -> &'static Prepared {
    PREPARED.get_or_init(|| {
        require_root_and_tools();
        for tool in ["debootstrap", "systemd-nspawn", "nsenter", "lintian", "cargo-deb"] {
            assert!(
                Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success(),
                "`{tool}` is missing: run `bash scripts/setup.sh` as root"
            );
        }
        let deb = build_deb();
        lint(&deb);
        Prepared { deb, root: debian_root() }
    })
}

/// Packages the release build the suite already made (REARGUARD_PACKAGE_PROFILE=dist tests
/// the shipped profile, at the cost of a fat-LTO build of everything).
fn build_deb() -> PathBuf {
    let t = Instant::now();
    let profile = std::env::var("REARGUARD_PACKAGE_PROFILE").unwrap_or_else(|_| "release".into());
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh"))
        .args(["--profile", &profile])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "scripts/package.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let deb = PathBuf::from(stdout.lines().last().expect("package.sh prints the .deb path").trim());
    let size = std::fs::metadata(&deb).unwrap().len();
    let info = must(&["dpkg-deb", "-f", deb.to_str().unwrap(), "Installed-Size"]);
    eprintln!(
        "package: {} ({size} bytes, installed {} KiB), built in {} ms",
        deb.display(),
        info.trim(),
        t.elapsed().as_millis()
    );
    deb
}

/// lintian's errors (E:) fail the test; warnings are printed.
fn lint(deb: &Path) {
    let out = sh(&["lintian", "--no-tag-display-limit", deb.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian reports errors:\n{}", errors.join("\n"));
}

/// The machine's own Debian mirror and suite (the one apt uses), so debootstrap reaches it.
fn mirror_and_suite() -> (String, String) {
    let suite = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(|s| s.trim_matches('"').to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bookworm".into());
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<_> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
            .collect();
        files.sort();
        texts.extend(files.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()));
    }
    let mirror = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            let l = l.trim();
            let url = l.strip_prefix("URIs:").map(str::trim).or_else(|| {
                l.strip_prefix("deb ").map(|r| r.split_whitespace().find(|w| w.starts_with("http")).unwrap_or(""))
            })?;
            url.split_whitespace().next().map(str::to_string)
        })
        .find(|u| u.starts_with("http") && !u.contains("security"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    (mirror, suite)
}

/// target/nspawn/debian-SUITE-HASH: made once with debootstrap (about a minute), keyed by
/// what went into it, then reused.
fn debian_root() -> PathBuf {
    let (mirror, suite) = mirror_and_suite();
    let key = format!("{suite} {mirror} minbase {INCLUDE}");
    let hash = key.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    // The test binary is target/<profile>/deps/package_systemd-*: target/ is three up.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let root = target.join("nspawn").join(format!("debian-{suite}-{hash:016x}"));
    if root.join("usr/lib/systemd/systemd").exists() {
        return root;
    }
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
    let t = Instant::now();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), &suite])
        .arg(&tmp)
        .arg(&mirror)
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!(
            "debootstrap {suite} from {mirror} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&tmp, &root).unwrap();
    eprintln!("debootstrap: {} in {} s", root.display(), t.elapsed().as_secs());
    root
}

/// A booted container: systemd as PID 1 in its own PID and mount namespaces, its network the
/// given namespace. Killed (and its mounts gone with it) on drop.
struct Container {
    name: String,
    nspawn: Child,
    init: u32,
    console: PathBuf,
}

impl Container {
    /// Boots `name` (at most 12 characters: its veth is ve-NAME) with host0 at `addr` on the
    /// pair's LAN bridge.
    fn boot(name: &str, pair: &Pair, addr: &str, p: &Prepared) -> Container {
        let console = std::env::temp_dir().join(format!("{name}.console"));
        let log = std::fs::File::create(&console).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args(["--boot", "--register=no", "--keep-unit", "--volatile=overlay", "--quiet"])
            // Its own network namespace (so its /sys/class/net is its own) with one veth.
            .arg("--network-veth")
            .arg(format!("--machine={name}"))
            .arg(format!("--bind-ro={}:/root/rearguard.deb", p.deb.display()))
            .arg("-D")
            .arg(&p.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn");
        let mut c = Container { name: name.into(), init: 0, nspawn, console };
        // nspawn's child execs the container's systemd.
        let t = Instant::now();
        while c.init == 0 {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", c.nspawn.id())).unwrap_or_default();
            for pid in children.split_whitespace() {
                if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|s| s.trim() == "systemd") {
                    c.init = pid.parse().unwrap();
                }
            }
            assert!(t.elapsed() < Duration::from_secs(30), "{name}: no systemd in the container\n{}", c.console_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until systemd listens on its socket, systemctl answers nothing; then it says
        // "initializing", "starting", and at last "running" (or "degraded").
        let mut state = String::new();
        while state != "running" && state != "degraded" {
            assert!(t.elapsed() < Duration::from_secs(120), "{name}: boot stuck at {state:?}\n{}", c.console_text());
            std::thread::sleep(Duration::from_millis(100));
            state = c.stdout("systemctl is-system-running");
        }
        eprintln!("{name}: booted ({state}) in {} ms", t.elapsed().as_millis());
        let (br, outer) = (pair.ns("br"), format!("ve-{name}"));
        must(&["ip", "link", "set", &outer, "netns", &br]);
        must(&["ip", "-n", &br, "link", "set", &outer, "master", "br0"]);
        must(&["ip", "-n", &br, "link", "set", &outer, "up"]);
        c.must(&format!("ip addr add {addr} dev host0 && ip link set host0 up"));
        c
    }

    /// `path` inside the container, seen from the host (its root through /proc).
    fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.init))
    }

    /// The VIP is on host0 (the kernel's view, not the agent's word).
    fn holds_vip(&self) -> bool {
        self.stdout("ip -o addr show dev host0").contains(&format!(" {VIP}/"))
    }

    fn mac(&self) -> String {
        self.stdout("cat /sys/class/net/host0/address")
    }

    fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Runs a shell script inside the container (all its namespaces, its root).
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--", "/bin/sh", "-c", script])
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .env("LANG", "C")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn must(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{}: `{script}` failed ({}):\n{}\n{}\nunits' journal:\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal_of("rearguard-*")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn stdout(&self, script: &str) -> String {
        String::from_utf8_lossy(&self.sh(script).stdout).trim().to_string()
    }

    fn write(&self, path: &str, text: &str) {
        let mut child = Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "--", "/bin/sh", "-c", &format!("cat > {path}")])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "{}: writing {path}", self.name);
    }

    fn unit(&self, prop: &str) -> String {
        self.unit_of("rearguard-pair", prop)
    }

    fn unit_of(&self, unit: &str, prop: &str) -> String {
        self.stdout(&format!("systemctl show -p {prop} --value {unit}"))
    }

    fn journal(&self) -> String {
        self.journal_of("rearguard-pair")
    }

    /// `unit` may be a glob: `rearguard-*` is every unit of the package.
    fn journal_of(&self, unit: &str) -> String {
        self.stdout(&format!("journalctl -u '{unit}' --no-pager -o short-monotonic"))
    }

    /// Polls `cond` every 20 ms for up to `within`; panics with the unit's journal otherwise.
    fn wait(&self, within: Duration, what: &str, mut cond: impl FnMut(&Container) -> bool) -> Duration {
        let t = Instant::now();
        while !cond(self) {
            assert!(
                t.elapsed() < within,
                "{}: timed out after {} ms waiting for: {what}\n{}\n{}",
                self.name,
                within.as_millis(),
                self.stdout("systemctl status 'rearguard-*' --no-pager"),
                self.journal_of("rearguard-*")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t.elapsed()
    }

    /// `systemctl poweroff` inside, and the container's end.
    fn poweroff(&mut self) {
        let _ = self.sh("systemctl poweroff --no-block");
        let t = Instant::now();
        while self.nspawn.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(30), "{}: did not power off\n{}", self.name, self.console_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.nspawn.try_wait().ok().flatten().is_none() {
            // PID 1 of a PID namespace takes every process of the container with it.
            if self.init != 0 {
                let _ = Command::new("kill").args(["-9", &self.init.to_string()]).status();
            }
            let t = Instant::now();
            while self.nspawn.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        let _ = std::fs::remove_file(&self.console);
    }
}

fn pair_config(node_id: u8, priority: u8) -> String {
    format!(
        r#"# written by tests/package_systemd.rs
[cluster]
id = 0xC0FFEE
node_id = {node_id}
key = "{KEY}"

[pair]
priority = {priority}
interval_ms = 100
dead_count = 3
control_socket = "/run/rearguard/pair.sock"
state_dir = "/var/lib/rearguard"

[[pair.vip]]
address = "{VIP}/24"
interface = "host0"

[[pair.check]]
kind = "carrier"
interface = "host0"
"#
    )
}

fn install(c: &Container) {
    c.must("dpkg -i /root/rearguard.deb");
    for unit in ["rearguard-agent", "rearguard-pair", "rearguard-listener"] {
        assert_eq!(c.stdout(&format!("systemctl is-enabled {unit}")), "disabled", "{unit} must install disabled");
        assert_eq!(c.stdout(&format!("systemctl is-active {unit}")), "inactive", "{unit} must not start on install");
    }
}

/// The cold-standby roles in the same container: `rearguard-agent` heartbeats to a disk image
/// and `rearguard-listener` watches it; both are Type=notify with a STATUS= line, and the
/// listener runs its gate (releases the secondary's boot) once the agent is stopped.
fn cold_standby_units(c: &Container) {
    use support::disk::{write_agent_config, Timing};
    let t = Timing::default();
    let disk = "/srv/rearguard/disk.img";
    c.must(&format!(
        "mkdir -p /srv/rearguard && rearguard disk init {disk} --create --force --cluster-id {:#x} \
         --interval-ms {} --timeout-ms {}",
        support::CLUSTER,
        t.interval_ms,
        t.timeout_ms
    ));
    // No watchdog device here: the fence is a command, and it is never due in this test.
    write_agent_config(&c.path("/etc/rearguard/agent.toml"), Path::new(disk), &t, &["true"], None);
    // The agent unit makes the whole tree read-only (ProtectSystem=strict) but /dev: a disk
    // image instead of a device needs its directory opened, as an operator would in a drop-in.
    c.must(
        "mkdir -p /etc/systemd/system/rearguard-agent.service.d && printf '[Service]\\nReadWritePaths=/srv/rearguard\\n' \
         > /etc/systemd/system/rearguard-agent.service.d/image.conf && systemctl daemon-reload",
    );
    c.write(
        "/etc/rearguard/listener.toml",
        &format!(
            "# written by tests/package_systemd.rs\n[cluster]\nid = {:#x}\n[listener]\nnode_id = 1\nprimary_node = 0\n\
             timeout_ms = {}\npoll_ms = {}\n[disk]\ndevice = \"{disk}\"\n[gate]\n\
             command = [\"sh\", \"-c\", \"echo node=$RG_TAKEOVER_NODE > /var/lib/rearguard/released\"]\n",
            support::CLUSTER,
            t.timeout_ms,
            t.poll_ms
        ),
    );

    // Type=notify: `start` returns only after READY (the first heartbeat cycle was written).
    c.must("timeout 60 systemctl start rearguard-agent");
    assert_eq!(c.unit_of("rearguard-agent", "Type"), "notify");
    assert_eq!(c.unit_of("rearguard-agent", "ActiveState"), "active");
    let status = c.unit_of("rearguard-agent", "StatusText");
    assert!(status.starts_with("primary node 0: serving, a heartbeat every"), "agent STATUS: {status:?}");
    assert!(
        c.stdout("systemctl status rearguard-agent --no-pager").contains("Status: \"primary node 0: serving"),
        "systemctl status shows no STATUS line for the agent"
    );

    // The listener: READY once it read the disk; it sees the primary alive and watches.
    c.must("timeout 60 systemctl start rearguard-listener");
    assert_eq!(c.unit_of("rearguard-listener", "Type"), "notify");
    c.wait(Duration::from_secs(5), "the listener watches the primary", |c| {
        c.unit_of("rearguard-listener", "StatusText") == "listener: watching, primary node 0"
    });
    assert_eq!(c.unit_of("rearguard-listener", "ActiveState"), "active");
    assert!(!c.path("/var/lib/rearguard/released").exists(), "released while the primary is alive");

    // The primary stops: its heartbeats end, the listener runs its gate once and exits 0
    // (released is final: Restart=on-failure leaves it stopped).
    c.must("systemctl stop rearguard-agent");
    let took = c.wait(Duration::from_secs(10), "the listener releases after the agent stopped", |c| {
        c.path("/var/lib/rearguard/released").exists()
    });
    eprintln!("listener released {} ms after the agent stopped", took.as_millis());
    assert_eq!(std::fs::read_to_string(c.path("/var/lib/rearguard/released")).unwrap().trim(), "node=0");
    c.wait(Duration::from_secs(5), "the listener exits after releasing", |c| {
        c.unit_of("rearguard-listener", "ActiveState") == "inactive"
    });
    assert_eq!(c.unit_of("rearguard-listener", "Result"), "success");
    assert_eq!(c.unit_of("rearguard-listener", "NRestarts"), "0");
    // The drop-in is the admin's (purge rightly keeps it): the test takes its own away.
    c.must("rm -r /etc/systemd/system/rearguard-agent.service.d && systemctl daemon-reload");
}

#[test]
fn the_units_run_report_restart_and_uninstall_cleanly() {
    let t0 = Instant::now();
    let prep = prepared();
    let pair = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    let c = Container::boot(&format!("rgk{}a", std::process::id()), &pair, "10.200.0.21/24", prep);
    install(&c);
    c.must(
        "test -f /usr/share/man/man1/rearguard-agent.1.gz && test -f /usr/share/bash-completion/completions/rearguard",
    );
    c.must("test -f /usr/share/doc/rearguard/examples/pair.toml && test -f /etc/rearguard/pair.toml");

    // Enabled with a config: `enable --now` returns once the agent said READY (it knows its
    // role); alone on the LAN it becomes active and holds the VIP.
    c.write("/etc/rearguard/pair.toml", &pair_config(1, 200));
    c.must("timeout 60 systemctl enable --now rearguard-pair");
    assert_eq!(c.stdout("systemctl is-active rearguard-pair"), "active");
    c.wait(Duration::from_secs(5), "node 1 holds the VIP", |c| c.holds_vip());
    c.wait(Duration::from_secs(5), "STATUS= says active", |c| {
        c.unit("StatusText").starts_with("pair node 1: active, term")
    });
    let status = c.stdout("systemctl status rearguard-pair --no-pager");
    assert!(status.contains("Status: \"pair node 1: active, term"), "{status}");

    // Structured fields: the journal can be filtered by the new state.
    c.wait(Duration::from_secs(5), "journal entry with RG_STATE=active", |c| {
        c.stdout("journalctl -u rearguard-pair RG_STATE=active -o verbose --no-pager").contains("RG_STATE=active")
    });
    let entry = c.stdout("journalctl -u rearguard-pair RG_STATE=active -o verbose --no-pager");
    for field in ["RG_TERM=", "RG_REASON=", "RG_FROM=", "MESSAGE=state "] {
        assert!(entry.contains(field), "{field} missing in:\n{entry}");
    }

    // SIGKILL: systemd runs ExecStopPost (vip-cleanup) before the restart, so the VIP is
    // gone while the unit waits to restart; then a new agent takes it again.
    let pid = c.unit("MainPID");
    c.must(&format!("kill -9 {pid}"));
    c.wait(Duration::from_secs(5), "VIP removed while waiting to restart", |c| {
        c.unit("SubState") == "auto-restart" && !c.holds_vip()
    });
    c.wait(Duration::from_secs(10), "restarted and active again", |c| {
        c.unit("ActiveState") == "active" && c.unit("MainPID") != pid && c.holds_vip()
    });
    assert_eq!(c.unit("NRestarts"), "1");

    // SIGSTOP: the loop stops pinging; WatchdogSec=2s ends it and systemd restarts it.
    let pid = c.unit("MainPID");
    c.must(&format!("kill -STOP {pid}"));
    let took = c.wait(Duration::from_secs(15), "the watchdog restarts the stopped agent", |c| {
        c.unit("NRestarts") == "2" && c.unit("ActiveState") == "active" && c.unit("MainPID") != pid
    });
    eprintln!("watchdog restart {} ms after SIGSTOP", took.as_millis());
    assert!(c.journal().contains("Failed with result 'watchdog'"), "{}", c.journal());
    c.wait(Duration::from_secs(5), "VIP held again", |c| c.holds_vip());

    // A broken config: the start fails with the error in the journal, and is not retried.
    let broken = pair_config(1, 200).replace("priority = 200", "priorty = 200");
    c.write("/etc/rearguard/pair.toml", &broken);
    assert!(
        !c.sh("timeout 60 systemctl restart rearguard-pair").status.success(),
        "a broken config must fail the start"
    );
    let restarts = c.unit("NRestarts");
    std::thread::sleep(Duration::from_secs(4)); // 4 × RestartSec
    assert_eq!(c.stdout("systemctl is-active rearguard-pair"), "failed");
    assert_eq!(c.unit("NRestarts"), restarts, "restarted after a config error:\n{}", c.journal());
    let journal = c.journal();
    assert!(
        journal.contains("priorty") && journal.contains("pair.toml:"),
        "config error not in the journal:\n{journal}"
    );
    // At priority err: `journalctl -p err` (what an operator filters on) shows it.
    let errors = c.stdout("journalctl -u rearguard-pair -p err --no-pager -o cat");
    assert!(errors.contains("error: ") && errors.contains("priorty"), "config error not at priority err:\n{errors}");
    assert!(!c.holds_vip(), "VIP left behind");

    cold_standby_units(&c);

    // Fixed again, then removed: the unit stops (its VIP with it) and no unit remains.
    c.write("/etc/rearguard/pair.toml", &pair_config(1, 200));
    c.must("systemctl reset-failed rearguard-pair; timeout 60 systemctl start rearguard-pair");
    c.wait(Duration::from_secs(5), "active again", |c| c.holds_vip());
    c.must("dpkg -r rearguard");
    assert!(!c.holds_vip(), "dpkg -r left the VIP");
    // Debian masks a removed package's units (deb-systemd-helper) until it is purged, so
    // that a reinstall keeps the admin's enable/disable choice: masked, never running.
    let units = c.stdout("systemctl list-units --all --plain --no-legend 'rearguard*'");
    assert!(units.lines().all(|l| l.contains(" masked inactive dead")), "after dpkg -r:\n{units}");
    assert_eq!(c.stdout("ls /usr/lib/systemd/system /lib/systemd/system | grep rearguard"), "");
    assert_eq!(c.stdout("ls -l /proc/[0-9]*/exe 2>/dev/null | grep -c /usr/bin/rearguard"), "0", "an agent still runs");
    assert!(c.sh("test -f /etc/rearguard/pair.toml").status.success(), "dpkg -r keeps conffiles");
    c.must("dpkg --purge rearguard");
    assert!(!c.sh("test -e /etc/rearguard").status.success(), "dpkg --purge leaves /etc/rearguard");
    assert!(!c.sh("test -e /var/lib/rearguard").status.success(), "dpkg --purge leaves /var/lib/rearguard");
    assert_eq!(c.stdout("find /etc/systemd -name 'rearguard*'"), "", "unit links or masks left after purge");
    // The package's postrm reloads systemd: nothing of it is loaded any more.
    assert_eq!(c.stdout("systemctl list-units --all --plain --no-legend 'rearguard*'"), "", "a unit left after purge");
    eprintln!("single-node package test: {} s", t0.elapsed().as_secs());
}

#[test]
fn stopping_the_active_container_moves_the_vip_to_the_other() {
    let t0 = Instant::now();
    let prep = prepared();
    let pair = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    let id = std::process::id();
    let mut a = Container::boot(&format!("rgk{id}b"), &pair, "10.200.0.21/24", prep);
    let b = Container::boot(&format!("rgk{id}c"), &pair, "10.200.0.22/24", prep);
    for (c, node, prio) in [(&a, 1, 200), (&b, 2, 100)] {
        install(c);
        c.write("/etc/rearguard/pair.toml", &pair_config(node, prio));
    }
    a.must("timeout 60 systemctl enable --now rearguard-pair");
    a.wait(Duration::from_secs(5), "node 1 active", |a| a.holds_vip());
    b.must("timeout 60 systemctl enable --now rearguard-pair");
    b.wait(Duration::from_secs(5), "node 2 standby beside an active peer", |c| {
        let s = c.unit("StatusText");
        s.starts_with("pair node 2: standby") && s.ends_with("peer 1 active")
    });
    assert!(!b.holds_vip(), "two holders");
    b.wait(Duration::from_secs(5), "client reaches the VIP on node 1", |_| {
        pair.client_reaches_vip() && pair.client_vip_mac() == Some(a.mac())
    });

    // The active's machine shuts down: its agent resigns on the way, node 2 takes over.
    a.poweroff();
    b.wait(Duration::from_secs(10), "node 2 holds the VIP", |b| b.holds_vip());
    b.wait(Duration::from_secs(5), "client reaches the VIP on node 2", |_| {
        pair.client_reaches_vip() && pair.client_vip_mac() == Some(b.mac())
    });
    assert!(b.unit("StatusText").starts_with("pair node 2: active"), "{}", b.unit("StatusText"));
    eprintln!("two-container package test: {} s", t0.elapsed().as_secs());
}
