//! `rearguard drill --config listener.toml` against a real primary's agent on an image file:
//! ready, and each way of not being ready — and every time the disk (outside the primary's
//! own, ever-changing slot) and the boot gate are exactly as before.

mod support;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::disk::{Cluster, Timing};
use support::{rearguard, stderr, stdout, CLUSTER};

/// A listener config whose gate command would create `gate-ran` (it must never run).
fn listener_config(c: &Cluster, timeout_ms: u64, gate: &str, gate_test: Option<&str>) -> PathBuf {
    let p = c.path("listener.toml");
    let marker = c.path("gate-ran");
    let mut text = format!(
        "[cluster]\nid = {CLUSTER:#x}\n[listener]\nnode_id = 1\nprimary_node = 0\ntimeout_ms = {timeout_ms}\npoll_ms = 10\n\
         [disk]\ndevice = {:?}\n[gate]\ncommand = [{gate:?}, {:?}]\n",
        c.disk,
        marker.to_str().unwrap()
    );
    if let Some(t) = gate_test {
        text.push_str(&format!("gate_test = [\"sh\", \"-c\", {t:?}]\n"));
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// Header, node 1's slot and both mailboxes: everything the drill must leave as it was.
fn untouchable(disk: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(disk).unwrap();
    [0u64, 2, 3, 4]
        .iter()
        .map(|b| {
            let mut v = vec![0u8; 4096];
            f.read_exact_at(&mut v, b * 4096).unwrap();
            v
        })
        .collect()
}

/// Runs the drill; returns its exit code and output, after checking that it changed nothing.
fn drill(c: &Cluster, config: &Path) -> (i32, String) {
    let before = untouchable(&c.disk);
    let t = Instant::now();
    let o = rearguard().args(["drill", "--config"]).arg(config).output().unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    println!("drill took {} ms:\n{out}", t.elapsed().as_millis());
    assert_eq!(untouchable(&c.disk), before, "the drill changed the disk (header, node 1's slot or a mailbox)\n{out}");
    assert!(!c.path("gate-ran").exists(), "the drill ran the gate command\n{out}");
    (o.status.code().unwrap(), out)
}

fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines().find(|l| l.contains(&format!(" {check}: "))).unwrap_or_else(|| panic!("no {check} line:\n{out}"))
}

fn wait_alive(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.dump_json()["slots"][0]["status"] != "alive" {
        assert!(Instant::now() < deadline, "the agent never heartbeated");
    }
}

#[test]
fn a_healthy_standby_is_ready_and_nothing_changes() {
    let c = Cluster::new(Timing::default());
    let mut agent = c.spawn_agent();
    wait_alive(&c);
    let cfg = listener_config(&c, 1000, "touch", Some("test -d /"));
    let (code, out) = drill(&c, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "disk reads").starts_with("ready"), "{out}");
    assert!(line(&out, "heartbeat progressing").starts_with("ready"), "{out}");
    assert!(
        line(&out, "timing bound").ends_with(
            "timeout 1000 ms ≥ 2 × (interval 100 ms + write_deadline 300 ms + fence time 100 ms) = 1000 ms, margin 0 ms"
        ),
        "{out}"
    );
    assert!(line(&out, "mailbox write path").contains("node 0 acknowledged test #1 in"), "{out}");
    assert!(line(&out, "mailbox write path").ends_with("mailbox restored"), "{out}");
    assert!(line(&out, "gate path").contains("touch is executable (not run)"), "{out}");
    assert!(line(&out, "gate test").starts_with("ready"), "{out}");
    assert!(out.contains("drill: READY (6 checks passed; nothing was changed)"), "{out}");
    // The acknowledgement is in the primary's heartbeat; a second drill uses the next message.
    assert_eq!(c.dump_json()["slots"][0]["test_acks"], 1);
    let (code, out) = drill(&c, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "mailbox write path").contains("test #2"), "{out}");
    agent.assert_running();
    assert!(!c.fenced());
}

#[test]
fn a_stopped_primary_does_not_acknowledge_and_the_drill_says_so() {
    let c = Cluster::new(Timing::default());
    let mut agent = c.spawn_agent();
    wait_alive(&c);
    let pid = nix::unistd::Pid::from_raw(agent.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (code, out) = drill(&c, &listener_config(&c, 1000, "touch", None));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(line(&out, "disk reads").starts_with("ready"), "{out}");
    assert!(line(&out, "heartbeat progressing").starts_with("NOT READY"), "{out}");
    let m = line(&out, "mailbox write path");
    assert!(m.starts_with("NOT READY") && m.contains("did not acknowledge test #1 within 200 ms"), "{out}");
    assert!(m.ends_with("mailbox restored"), "{out}");
    assert!(out.contains("drill: NOT READY (2 of 5 checks failed; nothing was changed)"), "{out}");
    agent.kill();
}

#[test]
fn a_timeout_that_breaks_the_primarys_budget_is_not_ready_with_the_numbers() {
    let c = Cluster::new(Timing::default());
    let mut agent = c.spawn_agent();
    wait_alive(&c);
    // The disk's timeout lowered after the agent checked it at start (the case a start-time
    // check misses): 800 ms < 2 × (100 + 300 + 100).
    c.set_disk_timeout(800);
    let (code, out) = drill(&c, &listener_config(&c, 500, "touch", None));
    assert_eq!(code, 2, "{out}");
    let bound = line(&out, "timing bound");
    assert!(bound.starts_with("NOT READY"), "{out}");
    assert!(
        bound.contains(
            "the secondary's timeout (800 ms) must be at least 2 × (interval 100 ms + write_deadline 300 ms + \
             fence time 100 ms) = 1000 ms; set timeout 1000 or more"
        ),
        "{out}"
    );
    for check in ["disk reads", "heartbeat progressing", "mailbox write path", "gate path"] {
        assert!(line(&out, check).starts_with("ready"), "{check}: {out}");
    }
    agent.assert_running();
}

#[test]
fn a_missing_gate_command_or_failing_gate_test_is_not_ready() {
    let c = Cluster::new(Timing::default());
    let mut agent = c.spawn_agent();
    wait_alive(&c);
    let (code, out) = drill(&c, &listener_config(&c, 1000, "/nonexistent/gate", Some("exit 7")));
    assert_eq!(code, 2, "{out}");
    let g = line(&out, "gate path");
    assert!(
        g.starts_with("NOT READY") && g.contains("\"/nonexistent/gate\" does not exist: fix [gate] command"),
        "{out}"
    );
    let t = line(&out, "gate test");
    assert!(t.starts_with("NOT READY") && t.contains("exit status: 7"), "{out}");
    assert!(line(&out, "mailbox write path").starts_with("ready"), "{out}");
    agent.assert_running();
}

#[test]
fn the_drill_refuses_an_agent_config_and_names_the_configs_it_takes() {
    let c = Cluster::new(Timing::default());
    let o = rearguard().args(["drill", "--config"]).arg(c.agent_config()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("drill takes a pair config ([pair]) or a listener config ([listener])"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_spare_drills_every_watched_primary_and_names_the_one_not_ready() {
    let c = support::disk::SpareCluster::new(Timing::default(), 3, 1);
    let mut agents: Vec<_> = (0..3).map(|n| c.spawn_agent(n)).collect();
    let dump = || {
        let o = support::run(&["disk", "dump", c.disk.to_str().unwrap(), "--json"]);
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..3).any(|n| dump()["slots"][n]["status"] != "alive") {
        assert!(Instant::now() < deadline, "the agents never heartbeated: {:#}", dump());
    }
    let pid = nix::unistd::Pid::from_raw(agents[1].pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let cfg = c.spare_config(3, "role = \"spare\"\nwatch = \"0-2\"");
    let mailboxes = dump()["mailboxes"].clone();
    let o = rearguard().args(["drill", "--config"]).arg(&cfg).output().unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    println!("{out}");
    assert_eq!(o.status.code(), Some(2), "{out}");
    let of = |check: &str, node: u8| {
        out.lines()
            .find(|l| l.contains(&format!(" {check}: node {node}")))
            .unwrap_or_else(|| panic!("no {check} line for node {node}:\n{out}"))
    };
    for n in [0, 1, 2] {
        assert!(of("timing bound", n).starts_with("ready"), "{out}");
    }
    for n in [0, 2] {
        assert!(of("heartbeat progressing", n).starts_with("ready"), "{out}");
        assert!(of("mailbox write path", n).starts_with("ready"), "{out}");
    }
    assert!(of("heartbeat progressing", 1).starts_with("NOT READY"), "{out}");
    assert!(of("mailbox write path", 1).starts_with("NOT READY"), "{out}");
    assert!(out.contains("drill: NOT READY (2 of 11 checks failed; nothing was changed)"), "{out}");
    // Every mailbox as before (each test message put back); no gate ran.
    assert_eq!(dump()["mailboxes"], mailboxes, "{out}");
    assert!(c.gate_runs().is_empty(), "{:?}", c.gate_runs());
    // (Node 1's agent, stopped past its fencing bound, fences itself when continued.)
    for n in [0, 2] {
        agents[n].assert_running();
    }
}
