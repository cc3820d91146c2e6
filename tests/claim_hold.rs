//! The only spare must not boot while its takeover claim is not on the disk: released without
//! it, a primary that was only down would come back, find no claim and serve beside the spare
//! (what the cold-standby model check found). The shared disk is an image in the
//! fault-injecting FUSE filesystem (tests/support/faultfs.rs), so the listener's claim write
//! fails with EIO through the kernel, as on a failing disk path.
//!
//! Root only (FUSE mount); they fail, never skip, without it.

mod support;

use std::time::{Duration, Instant};
use support::disk::*;
use support::faultfs::*;

/// Node 0's mailbox (block 3 of a two-node area).
const MAILBOX: std::ops::Range<u64> = 3..4;

#[test]
fn a_claim_that_cannot_be_written_holds_the_boot_until_it_can() {
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let t = c.timing;
    let (mut agent, mut listener) = c.start_watched();
    fs.inject(Fault::WriteError(MAILBOX));
    agent.kill();
    let (held_at, held) = listener.wait_line("claim NOT written", Duration::from_secs(10));
    assert!(held.contains("release held"), "{held}");
    // Held for a while: retried every poll, said once, never released.
    let quiet = Duration::from_millis(3 * t.timeout_ms);
    assert!(
        listener.try_wait_line("BOOT RELEASED", quiet).is_none(),
        "released without a claim: {:?}",
        listener.lines()
    );
    let lines = listener.lines();
    assert!(!lines.iter().any(|l| l.contains("GATE-OPENED")), "the gate ran: {lines:?}");
    assert_eq!(lines.iter().filter(|l| l.contains("claim NOT written")).count(), 1, "{lines:?}");
    assert!(fs.stats().write_errors >= quiet.as_millis() as u64 / t.poll_ms / 2, "the claim was not retried");
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "empty");
    // The disk path heals: the next poll writes the claim, and only then is the boot released.
    fs.clear();
    let (claimed_at, _) = listener.wait_line("takeover claim written", Duration::from_secs(5));
    let (released_at, _) = listener.wait_line("BOOT RELEASED", Duration::from_secs(5));
    let lines = listener.lines();
    assert_eq!(lines.iter().filter(|l| l.contains("GATE-OPENED")).count(), 1, "{lines:?}");
    assert!(held_at < claimed_at && claimed_at <= released_at);
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "takeover-claim");
    // The primary's agent, restarted now, finds the claim and refuses to serve.
    let mut again = c.spawn_agent();
    assert_eq!(again.wait_exit(Duration::from_secs(5)), Some(Some(3)), "{}", again.log());
}

#[test]
fn a_primary_back_while_the_claim_is_held_is_watched_again_and_not_taken() {
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let (mut agent, mut listener) = c.start_watched();
    fs.inject(Fault::WriteError(MAILBOX));
    agent.kill();
    listener.wait_line("claim NOT written", Duration::from_secs(10));
    // It was only down: restarted, it finds no claim (none could be written) and serves.
    let mut back = c.spawn_agent();
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.dump_json()["slots"][0]["status"] != "alive" {
        assert!(Instant::now() < deadline, "the restarted agent never heartbeated: {}", back.log());
    }
    fs.clear();
    let t = c.timing;
    let quiet = Duration::from_millis(3 * t.timeout_ms);
    assert!(listener.try_wait_line("BOOT RELEASED", quiet).is_none(), "released beside a live primary");
    assert!(!listener.lines().iter().any(|l| l.contains("GATE-OPENED")));
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "empty", "a claim landed on a live primary");
    back.assert_running();
    assert!(!c.fenced(), "{}", back.log());
}

#[test]
fn a_listener_restarted_after_its_takeover_stays_consumed_under_release_after() {
    let c = Cluster::new(Timing::default());
    let t = c.timing;
    let cfg = c.listener_config();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[disk]",
        &format!("never_seen = \"release-after\"\nnever_seen_release_after_ms = {}\n[disk]", t.timeout_ms),
    );
    std::fs::write(&cfg, text).unwrap();
    let spawn = || {
        let mut cmd = support::rearguard();
        cmd.args(["listener", "--config"]).arg(&cfg).env("REARGUARD_LOG", "warn").stdin(std::process::Stdio::null());
        support::process::Process::spawn(cmd)
    };
    let mut agent = c.spawn_agent();
    let mut listener = spawn();
    listener.wait_line("state: watching", Duration::from_secs(10));
    agent.kill();
    listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    listener.kill();
    // Restarted (a controller reset): the dead primary is never seen alive again, which
    // `release-after` alone would take as a reason to release a second time.
    let mut again = spawn();
    let (_, line) = again.wait_line("before a restart", Duration::from_secs(5));
    assert!(line.contains("released as node 0") && line.contains("own claim on disk"), "{line}");
    let quiet = Duration::from_millis(3 * t.timeout_ms);
    assert!(again.try_wait_line("BOOT RELEASED", quiet).is_none(), "released twice: {:?}", again.lines());
    assert!(!again.lines().iter().any(|l| l.contains("GATE-OPENED")), "the gate ran again: {:?}", again.lines());
    // Cleared by the operator (the primary recommissioned), it is armed again.
    assert!(support::stdout(&support::run(&["disk", "message", c.disk.to_str().unwrap(), "0", "clear"]))
        .contains("mailbox cleared"));
    again.kill();
    let mut third = spawn();
    third.wait_line("BOOT RELEASED", Duration::from_millis(3 * t.timeout_ms));
}
