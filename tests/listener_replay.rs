//! Anti-replay across restarts of the Linux listener (issue 12): heartbeat records captured
//! from a live primary's slot and written back after the listener restarts are refused
//! (`[listener] state_dir`, boards/linux/src/replay.rs); without the state dir the same
//! replay makes a dead primary look alive. Real agent, real listener processes, a real image.

mod support;

use rearguard_shared::heartbeat::{self, Verifier, MAX_FRAME};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::disk::*;
use support::process::Process;
use support::*;

fn spawn_listener(c: &Cluster, state_dir: Option<&Path>) -> Process {
    let cfg = c.listener_config();
    if let Some(dir) = state_dir {
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, text.replace("[listener]\n", &format!("[listener]\nstate_dir = {dir:?}\n"))).unwrap();
    }
    let mut cmd = rearguard();
    cmd.args(["listener", "--config"]).arg(&cfg).env("REARGUARD_LOG", "warn").stdin(Stdio::null());
    Process::spawn_merged(cmd)
}

/// Writes each record into slot 0 and leaves it there for several polls.
fn replay(c: &Cluster, records: &[Vec<u8>]) {
    c.replay_slot(0, records, Duration::from_millis(60), |_| {});
}

#[test]
fn slot_records_replayed_after_a_listener_restart_are_refused() {
    let c = Cluster::new(Timing::default());
    let state = c.path("state");
    let agent_cfg = c.agent_config();
    let mut agent = Agent::start(&agent_cfg, None);
    let mut listener = spawn_listener(&c, Some(&state));
    listener.wait_line("state: watching", Duration::from_secs(10));

    // Capture what the live primary writes for 1.5 s.
    let captured = c.capture_slot(0, Duration::from_millis(1500));
    assert!(captured.len() >= 10, "captured only {} records", captured.len());
    // Let the listener read the last capture, stop it cleanly, then the primary dies.
    std::thread::sleep(Duration::from_millis(100));
    listener.terminate(Duration::from_secs(5));
    assert!(listener.lines().iter().any(|l| l.contains("stopped by signal")), "{:#?}", listener.lines());
    agent.kill();
    let marks = std::fs::read_to_string(state.join("listener-replay-marks")).unwrap();
    assert!(marks.starts_with("node 0 epoch "), "{marks}");

    // Restarted with its marks: every replayed record is refused, the primary stays unseen.
    let mut listener = spawn_listener(&c, Some(&state));
    listener.wait_line("state: holding", Duration::from_secs(10));
    replay(&c, &captured);
    let seen = listener.lines();
    assert!(!seen.iter().any(|l| l.contains("state: watching")), "a replay was taken as liveness: {seen:#?}");
    // Each replayed record refused, and said once; one more at most: the record the slot held
    // when the listener restarted (written after the capture ended, before the kill).
    let v = Verifier { cluster_id: CLUSTER, key: None };
    for r in &captured {
        let seq = heartbeat::decode(r, &v).unwrap().sequence;
        let said = seen.iter().filter(|l| l.contains(&format!(" seq {seq} is at or below"))).count();
        assert_eq!(said, 1, "record seq {seq}: refused {said} times: {seen:#?}");
    }
    let refused = seen.iter().filter(|l| l.contains("replay refused")).count();
    assert!(refused <= captured.len() + 1, "{refused} refusals for {} records: {seen:#?}", captured.len());

    // The primary's next record (a live one) passes at once: a baseline, then progress.
    let last = heartbeat::decode(captured.last().unwrap(), &v).unwrap();
    for k in 1..=2 {
        let hb = heartbeat::Heartbeat { sequence: last.sequence + 100 + k, ..last };
        let mut f = [0u8; MAX_FRAME];
        let n = heartbeat::encode(&hb, None, &mut f);
        c.write_slot(0, &f[..n]);
        std::thread::sleep(Duration::from_millis(60));
    }
    listener.wait_line("state: watching", Duration::from_secs(2));
    listener.terminate(Duration::from_secs(5));

    // Without the state dir, the same captures fool a restarted listener: the attack is real.
    let c2 = Cluster::new(Timing::default());
    let mut fooled = spawn_listener(&c2, None);
    fooled.wait_line("state: holding", Duration::from_secs(10));
    replay(&c2, &captured);
    fooled.wait_line("state: watching", Duration::from_secs(2));
}
