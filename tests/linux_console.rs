//! The Linux board's console (stdin/stdout) and its settings file: the firmware's menu,
//! driven for real through the listener process's standard input.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
use support::disk::*;
use support::process::Process;
use support::*;

fn listener_with_console(c: &Cluster, nv: &std::path::Path) -> (Process, std::process::ChildStdin) {
    let cfg = c.listener_config();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("poll_ms", &format!("nv_file = {nv:?}\npoll_ms"));
    std::fs::write(&cfg, text).unwrap();
    let mut cmd = rearguard();
    cmd.args(["listener", "--config"]).arg(&cfg).env("REARGUARD_LOG", "warn").stdin(Stdio::piped());
    let mut p = Process::spawn(cmd);
    let stdin = p.take_stdin();
    (p, stdin)
}

#[test]
fn console_settings_are_saved_and_survive_a_restart_and_a_corrupt_copy() {
    let c = Cluster::new(Timing::default());
    let nv = c.path("listener.nv");
    let (mut l, mut input) = listener_with_console(&c, &nv);
    l.wait_line("state: holding", Duration::from_secs(10));
    input.write_all(b"set timeout 2500\nsave\n").unwrap();
    l.wait_line("saved to copy A (generation 1)", Duration::from_secs(5));
    l.wait_line("timeout 2500 ms", Duration::from_secs(5)); // the listener restarted with it
    input.write_all(b"set poll 20\nsave\n").unwrap();
    l.wait_line("saved to copy B (generation 2)", Duration::from_secs(5));
    // Garbage and overlong lines never act and never crash it.
    input.write_all(&[0x1b, b'[', b'A', 0x07, 0xff, b'\n']).unwrap();
    input.write_all(&vec![b'x'; 5000]).unwrap();
    input.write_all(b"\nset timeout banana\n").unwrap();
    l.wait_line("timeout", Duration::from_secs(5));
    assert!(l.is_running());
    drop(input);
    l.kill();

    // Restart: the newest copy (B) wins over the config file.
    let (mut l, _input) = listener_with_console(&c, &nv);
    l.wait_line("copy B (generation 2)", Duration::from_secs(10));
    l.wait_line("timeout 2500 ms, poll 20 ms", Duration::from_secs(5));
    l.kill();

    // Copy B torn: copy A is used, and the listener says so.
    let f = std::fs::OpenOptions::new().write(true).open(&nv).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"torn!", 4096 + 20).unwrap();
    let (mut l, _input) = listener_with_console(&c, &nv);
    let (_, line) = l.wait_line("copy A (generation 1)", Duration::from_secs(10));
    assert!(line.contains("copy B unusable"), "{line}");
    l.wait_line("timeout 2500 ms, poll 10 ms", Duration::from_secs(5));
}

#[test]
fn release_now_from_the_console_asks_first_and_releases_once() {
    let c = Cluster::new(Timing::default());
    let nv = c.path("listener.nv");
    let (mut l, mut input) = listener_with_console(&c, &nv);
    l.wait_line("state: holding", Duration::from_secs(10));
    input.write_all(b"release\nno\n").unwrap();
    l.wait_line("cancelled", Duration::from_secs(5));
    input.write_all(b"release\nyes\n").unwrap();
    l.wait_line("BOOT RELEASED: released by operator", Duration::from_secs(5));
    assert_eq!(l.wait_exit(Duration::from_secs(5)), Some(Some(0)));
    assert_eq!(l.lines().iter().filter(|s| s.contains("BOOT RELEASED")).count(), 1);
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "takeover-claim");
}

#[test]
fn save_refuses_a_timeout_that_breaks_the_running_primarys_budget() {
    let mut c = Cluster::new(Timing { timeout_ms: 1500, ..Timing::default() });
    let mut agent = c.spawn_agent();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.dump_json()["slots"][0]["status"] != "alive" {
        assert!(std::time::Instant::now() < deadline, "the agent never heartbeated: {}", agent.log());
    }
    // The disk's own timeout out of the way (lowered under the running agent), so the
    // console's timeout is the one in force: the primary needs 2 × (100 + 300 + 100) ms.
    c.set_disk_timeout(500);
    let nv = c.path("listener.nv");
    let (mut l, mut input) = listener_with_console(&c, &nv);
    let (_, line) = l.wait_line("fencing budget", Duration::from_secs(10));
    assert!(line.contains("interval 100 ms + write_deadline 300 ms + fence time 100 ms: bound 1000 ms"), "{line}");
    assert!(line.contains("margin 500 ms"), "{line}");
    input.write_all(b"set timeout 800\nsave\n").unwrap();
    let (_, line) = l.wait_line("error: timeout", Duration::from_secs(5));
    assert!(
        line.contains(
            "the secondary's timeout (800 ms) must be at least 2 × (interval 100 ms + write_deadline 300 ms + \
             fence time 100 ms) = 1000 ms; set timeout 1000 or more, or lower the primary's interval, \
             write_deadline or fence time; not saved"
        ),
        "{line}"
    );
    assert!(
        !nv.exists() || std::fs::read(&nv).unwrap().iter().all(|&b| b == 0),
        "a refused save wrote the settings file"
    );
    input.write_all(b"status\n").unwrap();
    let (_, line) = l.wait_line("  fencing budget:", Duration::from_secs(5));
    assert!(line.ends_with("bound 1000 ms, margin 500 ms"), "{line}");
    input.write_all(b"set timeout 1000\nsave\n").unwrap();
    l.wait_line("saved to copy A (generation 1)", Duration::from_secs(5));
    l.wait_line("timeout 1000 ms", Duration::from_secs(5));
    l.kill();
    agent.assert_running();

    // A listener started with a timeout that breaks the bound says so at the first heartbeat.
    std::fs::remove_file(&nv).unwrap();
    c.timing.timeout_ms = 600;
    let (mut l, _input) = listener_with_console(&c, &nv);
    let (_, line) = l.wait_line("WARNING: node 0's fencing budget", Duration::from_secs(10));
    assert!(line.contains("BOUND BROKEN: the secondary's timeout (600 ms)"), "{line}");
    assert!(line.contains("set timeout 1000 or more"), "{line}");
}

/// The firmware's `drill`, from the Linux listener's console: the same checks and lines as
/// on the controller, with the Linux gate command checked (not run).
#[test]
fn the_console_drill_proves_the_listener_ready_and_changes_nothing() {
    let c = Cluster::new(Timing::default());
    let mut agent = c.spawn_agent();
    let nv = c.path("listener.nv");
    let (mut l, mut input) = listener_with_console(&c, &nv);
    l.wait_line("fencing budget", Duration::from_secs(10));
    let mailbox = c.dump_json()["mailboxes"].clone();
    input.write_all(b"drill\n").unwrap();
    let (_, summary) = l.wait_line("drill: ", Duration::from_secs(5));
    let text = l.lines().join("\n");
    assert!(summary.contains("drill: READY (5 checks passed; nothing was changed)"), "{text}");
    for line in [
        "ready     disk reads: cluster ",
        "ready     heartbeat progressing: primary 0: watching",
        "ready     timing bound: node 0: interval 100 ms + write_deadline 300 ms + fence time 100 ms",
        "ready     mailbox write path: node 0: test #1 acknowledged in ",
        "ready     gate path: the gate command is executable (not run)",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert_eq!(c.dump_json()["mailboxes"], mailbox, "the drill left the mailbox changed");
    assert!(!text.contains("BOOT RELEASED"), "{text}");
    agent.assert_running();
}
