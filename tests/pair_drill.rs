//! `rearguard drill --config pair.toml` (issue 10): ready when the standby could take over,
//! not ready with the reason for each failed check — and nothing changed by the drill: the
//! VIP holder, both nodes' states, the client's neighbour entry and the hook log.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::netns::{must, NodeOpts, Pair};

/// What the drill must not change.
#[derive(Debug, PartialEq)]
struct World {
    holders: Vec<usize>,
    states: [String; 2],
    terms: [u64; 2],
    client_mac: Option<String>,
    hook_log: String,
}

fn world(p: &Pair, hook_log: &Path) -> World {
    World {
        holders: p.holders(),
        states: [p.state(0), p.state(1)],
        terms: [0, 1].map(|i| p.status(i)["term"].as_u64().unwrap_or(0)),
        client_mac: p.client_vip_mac(),
        hook_log: std::fs::read_to_string(hook_log).unwrap_or_default(),
    }
}

/// Drills node i and asserts that nothing changed; returns (exit status, stdout).
fn drill_changes_nothing(p: &Pair, i: usize, hook_log: &Path) -> (i32, String) {
    let before = world(p, hook_log);
    let t = std::time::Instant::now();
    let out = p.drill(i);
    eprintln!("drill took {} ms", t.elapsed().as_millis());
    // Long enough for a hook, an announcement or a state change to have shown.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(world(p, hook_log), before, "the drill changed something");
    out
}

fn verdict<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines().find(|l| l[10..].starts_with(check)).unwrap_or_else(|| panic!("no `{check}` line in:\n{text}"))
}

/// Node 2 (standby) with a hook and a monitored target (the client); node 1 active.
fn pair_with_hook() -> (Pair, PathBuf, PathBuf) {
    pair_with_hook_and(|_| {})
}

/// [`pair_with_hook`], `setup` run on the pair before the agents start.
fn pair_with_hook_and(setup: impl FnOnce(&mut Pair)) -> (Pair, PathBuf, PathBuf) {
    let mut p0 = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    setup(&mut p0);
    let hook = p0.dir.join("hook.sh");
    let log = p0.dir.join("hook.log");
    std::fs::write(&hook, format!("#!/bin/sh\necho \"$3\" >> {}\n", log.display())).unwrap();
    must(&["chmod", "+x", hook.to_str().unwrap()]);
    p0.opts[1].pair_keys.insert_str(0, &format!("hooks = [\"{}\"]\n", hook.display()));
    p0.opts[1].checks = "[[pair.check]]\nkind = \"ping\"\ntarget = \"10.200.0.10\"\ninterval_ms = 200\n".into();
    p0.start_both();
    p0.wait_until(Duration::from_secs(5), "node 1 active, node 2's checks passing and its hook run", |p| {
        p.holders() == vec![0]
            && p.status(1)["healthy"] == true
            && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("BACKUP"))
    });
    // The client has talked to the VIP: its neighbour entry is part of what must not move.
    assert!(p0.client_reaches_vip());
    (p0, hook, log)
}

#[test]
fn the_standby_drill_is_ready_and_changes_nothing() {
    let (p, hook, log) = pair_with_hook();
    let (code, text) = drill_changes_nothing(&p, 1, &log);
    assert_eq!(code, 0, "{text}");
    for check in [
        "agent",
        "in service",
        "peer fresh on lan",
        "build and policy match",
        "own checks healthy",
        "target 10.200.0.10 reachable",
        "roles",
        "VIP interface lan",
        "rtnetlink permission",
        "raw socket permission",
        &format!("hook {}", hook.display()),
        "conntrackd answering",
    ] {
        assert!(verdict(&text, check).starts_with("ready     "), "{check}:\n{text}");
    }
    assert!(verdict(&text, "roles").contains("node 1 holds the VIPs"), "{text}");
    assert!(verdict(&text, "conntrackd answering").contains("not configured"), "{text}");
    assert!(text.ends_with("nothing was changed)\n"), "{text}");
    // The active node's drill passes as well.
    assert_eq!(drill_changes_nothing(&p, 0, &log).0, 0);
}

#[test]
fn a_failed_check_makes_the_drill_not_ready_with_the_reason() {
    let (mut p, hook, log) = pair_with_hook();

    // A hook that is not executable.
    must(&["chmod", "-x", hook.to_str().unwrap()]);
    let (code, text) = drill_changes_nothing(&p, 1, &log);
    assert_eq!(code, 2, "{text}");
    let line = verdict(&text, &format!("hook {}", hook.display()));
    assert!(line.starts_with("NOT READY") && line.contains("not executable: `chmod +x"), "{line}");
    assert!(text.contains("drill: NOT READY (1 of "), "exactly one check failed:\n{text}");
    must(&["chmod", "+x", hook.to_str().unwrap()]);

    // The VIP interface of the standby down (its checks and medium go with it).
    must(&["ip", "-n", &p.ns("b"), "link", "set", "lan", "down"]);
    p.wait_until(Duration::from_secs(3), "node 2 sees its own link down and its FAULT hook ran", |p| {
        p.status(1)["healthy"] == false && std::fs::read_to_string(&log).is_ok_and(|l| l.ends_with("FAULT\n"))
    });
    let (code, text) = drill_changes_nothing(&p, 1, &log);
    assert_eq!(code, 2, "{text}");
    let line = verdict(&text, "VIP interface lan");
    assert!(line.starts_with("NOT READY") && line.contains("is down: `ip link set lan up`"), "{line}");
    assert!(verdict(&text, "own checks healthy").contains("carrier lan"), "{text}");
    must(&["ip", "-n", &p.ns("b"), "link", "set", "lan", "up"]);
    p.wait_until(Duration::from_secs(5), "node 2 ready again", |p| p.drill(1).0 == 0);

    // The peer stopped: node 2 takes over (that is the stop, not the drill), and its drill
    // says it has nobody to fail over to.
    p.stop(0);
    p.wait_until(Duration::from_secs(3), "node 2 took over and its MASTER hook ran", |p| {
        p.holders() == vec![1] && std::fs::read_to_string(&log).is_ok_and(|l| l.ends_with("MASTER\n"))
    });
    p.wait_until(Duration::from_secs(3), "node 2 hears nothing from node 1", |p| {
        p.status(1)["media"][0]["peer_alive"] == false
    });
    let (code, text) = drill_changes_nothing(&p, 1, &log);
    assert_eq!(code, 2, "{text}");
    let line = verdict(&text, "peer fresh on lan");
    assert!(line.starts_with("NOT READY") && line.contains("no advert from node 1"), "{line}");

    // On the stopped node, the agent itself is the failed check; the machine's own checks
    // still run.
    let (code, text) = p.drill(0);
    assert_eq!(code, 2, "{text}");
    assert!(verdict(&text, "agent").contains("cannot reach the pair agent"), "{text}");
    assert!(verdict(&text, "VIP interface lan").starts_with("ready"), "{text}");
}

/// conntrackd in stats mode (enough to answer `-s`), its control socket in `dir`.
fn conntrackd_conf(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let socket = dir.join(format!("{name}.ctl"));
    let conf = dir.join(format!("{name}.conf"));
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "General {{\n Syslog off\n LogFile {d}/{name}.log\n LockFile {d}/{name}.lock\n UNIX {{\n  Path {}\n }}\n}}\nStats {{\n LogFile off\n}}\n",
            socket.display()
        ),
    )
    .unwrap();
    (conf, socket)
}

#[test]
fn a_conntrackd_that_does_not_answer_makes_the_drill_not_ready_and_changes_nothing() {
    let (mut p, _hook, log) = pair_with_hook_and(|p| {
        // Node 2: a real conntrackd. Node 1 (the active): a socket that accepts and never
        // answers, as a hung daemon does; 1500 ms is far beyond node 1's dead interval
        // (4 x 50 ms), so a drill that waited on it in the election loop would hand the
        // VIPs to node 2.
        let (conf, socket) = conntrackd_conf(&p.dir, "ct-b");
        p.spawn_in("b", &["conntrackd", "-C", conf.to_str().unwrap()]);
        let c = conf.clone();
        p.wait_until(Duration::from_secs(5), "node 2's conntrackd answers", move |_| {
            support::netns::sh(&["conntrackd", "-C", c.to_str().unwrap(), "-s"]).status.success()
        });
        assert!(socket.exists());
        p.opts[1].pair_keys = format!("[pair.conntrack]\nconfig = \"{}\"\n", conf.display());
        let (conf, socket) = conntrackd_conf(&p.dir, "ct-a");
        let hung = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in hung.incoming() {
                held.push(c);
            }
        });
        p.opts[0].pair_keys = format!("[pair.conntrack]\nconfig = \"{}\"\ntimeout_ms = 1500\n", conf.display());
    });

    // The standby's conntrackd answers.
    let (code, text) = drill_changes_nothing(&p, 1, &log);
    assert_eq!(code, 0, "{text}");
    assert!(verdict(&text, "conntrackd answering").contains("answered its statistics request"), "{text}");

    // The active's hangs: not ready after the timeout, and the active kept its VIPs.
    let t = std::time::Instant::now();
    let (code, text) = drill_changes_nothing(&p, 0, &log);
    assert_eq!(code, 2, "{text}");
    assert!(t.elapsed() >= Duration::from_millis(1500), "the drill waited for conntrackd");
    let line = verdict(&text, "conntrackd answering");
    assert!(
        line.starts_with("NOT READY") && line.contains("does not answer") && line.contains("timed out after 1500 ms"),
        "{line}"
    );
    assert!(line.contains("start conntrackd (`conntrackd -C"), "{line}");
    assert!(text.contains("drill: NOT READY (1 of "), "exactly one check failed:\n{text}");
    assert_eq!(p.status(1)["state"], "standby", "node 2 did not take over during the drill");

    // The standby's conntrackd gone: not ready, with conntrackd's own reason.
    p.daemons[0].kill();
    let (code, text) = drill_changes_nothing(&p, 1, &log);
    assert_eq!(code, 2, "{text}");
    let line = verdict(&text, "conntrackd answering");
    assert!(line.starts_with("NOT READY") && line.contains("can't connect"), "{line}");
    assert!(text.contains("drill: NOT READY (1 of "), "exactly one check failed:\n{text}");
}

#[test]
fn drill_names_the_configs_it_takes() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent.toml");
    let out = support::run(&["drill", "--config", agent.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = support::stderr(&out);
    assert!(e.contains("this file is an agent config") && e.contains("drill takes a pair config ([pair])"), "{e}");
}
