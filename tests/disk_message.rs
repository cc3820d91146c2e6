//! `rearguard disk message DEVICE NODE test|poison|clear` against a running primary's agent
//! on an image file.

mod support;
use std::time::{Duration, Instant};
use support::disk::{Cluster, Timing};
use support::{run, stderr, stdout};

fn message(c: &Cluster, node: &str, kind: &str) -> String {
    let o = run(&["disk", "message", c.disk.to_str().unwrap(), node, kind]);
    assert!(o.status.success(), "disk message {node} {kind}: {}", stderr(&o));
    stdout(&o)
}

/// Waits until node 0's slot, as `disk dump --json` shows it, satisfies `ok`.
fn wait_slot(c: &Cluster, within: Duration, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let d = c.dump_json();
        if ok(&d["slots"][0]) {
            return d;
        }
        assert!(Instant::now() < deadline, "slot 0 never got there: {d:#}");
    }
}

#[test]
fn poison_fences_a_running_primary_which_exits_3_and_stays_down() {
    let c = Cluster::new(Timing::default());
    let mut agent = c.spawn_agent();
    wait_slot(&c, Duration::from_secs(10), |s| s["status"] == "alive");
    assert!(!c.fenced());
    let out = message(&c, "0", "poison");
    assert!(out.contains("poison pill written"), "{out}");
    let t = Instant::now();
    let code = agent.wait_exit(Duration::from_secs(5)).expect("the agent kept running after a poison pill");
    println!("agent exited {code:?} {} ms after the poison pill", t.elapsed().as_millis());
    assert_eq!(code, Some(3), "{}", agent.log());
    assert!(c.fenced(), "the fence command did not run: {}", agent.log());
    assert!(agent.log().contains("poison pill from node 255"), "{}", agent.log());
    // It refuses to start again until the mailbox is cleared.
    let mut again = c.spawn_agent();
    assert_eq!(again.wait_exit(Duration::from_secs(5)), Some(Some(3)), "{}", again.log());
    assert!(message(&c, "0", "clear").contains("mailbox cleared"));
    let mut third = c.spawn_agent();
    wait_slot(&c, Duration::from_secs(10), |s| s["status"] == "alive");
    third.assert_running();
}

#[test]
fn a_test_message_is_logged_and_acknowledged_in_the_heartbeat_and_is_not_a_claim() {
    let c = Cluster::new(Timing::default());
    let mut agent = c.spawn_agent();
    wait_slot(&c, Duration::from_secs(10), |s| s["status"] == "alive" && s["test_acks"] == 0);
    let out = message(&c, "0", "test");
    assert!(out.contains("test message #1 written"), "{out}");
    let d = wait_slot(&c, Duration::from_secs(5), |s| s["test_acks"] == 1 && s["last_test"] == 1);
    assert_eq!(d["mailboxes"][0]["message"], "test", "{d:#}");
    assert_eq!(d["slots"][0]["status"], "alive", "{d:#}");
    // A second message gets the next sequence and a second acknowledgement.
    assert!(message(&c, "0", "test").contains("test message #2 written"));
    wait_slot(&c, Duration::from_secs(5), |s| s["test_acks"] == 2 && s["last_test"] == 2);
    agent.assert_running();
    assert!(!c.fenced(), "a test message fenced the node: {}", agent.log());
    assert!(agent.log().contains("test message in the mailbox; acknowledged"), "{}", agent.log());
    // The text dump shows the counter too.
    let o = run(&["disk", "dump", c.disk.to_str().unwrap(), "--watch-ms", "200"]);
    assert!(stdout(&o).contains("test acks 2, last #2"), "{}", stdout(&o));
    assert!(message(&c, "0", "clear").contains("mailbox cleared"));
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "empty");
    agent.assert_running();
}

#[test]
fn a_message_to_an_absent_node_is_refused_and_nothing_is_written() {
    let c = Cluster::new(Timing::default());
    let before = std::fs::read(&c.disk).unwrap();
    let o = run(&["disk", "message", c.disk.to_str().unwrap(), "7", "poison"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("node 7") && stderr(&o).contains("nodes 0..1"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&c.disk).unwrap(), before);
}

#[test]
fn a_message_over_a_takeover_claim_is_refused_until_the_claim_is_cleared() {
    let c = Cluster::new(Timing::default());
    let mut claim = [0u8; 512];
    rearguard_shared::disk::MailboxMessage::TakeoverClaim { by: 1, primary_epoch: 4 }.encode(&mut claim);
    c.write_mailbox(0, &claim);
    let before = std::fs::read(&c.disk).unwrap();
    for kind in ["test", "poison"] {
        let o = run(&["disk", "message", c.disk.to_str().unwrap(), "0", kind]);
        assert!(!o.status.success(), "{kind} over a claim was written");
        let e = stderr(&o);
        assert!(e.contains("spare 1's takeover claim") && e.contains("0 clear`"), "{e}");
        assert_eq!(std::fs::read(&c.disk).unwrap(), before, "{kind} changed the disk");
    }
    assert!(message(&c, "0", "clear").contains("mailbox cleared"));
    assert!(message(&c, "0", "poison").contains("poison pill written"));
}
