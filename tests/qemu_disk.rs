//! The emulated controller (QEMU lm3s6965evb running the real firmware) watching the real
//! agent's heartbeats on a shared SD-card image.

mod support;
use std::time::Duration;
use support::qemu::*;
use support::*;

const TIMEOUT_MS: u64 = 1000;
/// Generous bound on kill → BOOT RELEASED: the timeout, plus the agent's last interval, one
/// poll period and one tick are the design figure (≈ 1.2 s); the rest is slack for a loaded
/// machine running QEMU without icount.
const BOUND_MS: u128 = TIMEOUT_MS as u128 + 1500;

#[test]
fn disk_heartbeats_hold_the_boot_and_a_killed_agent_releases_it() {
    let dir = tempdir();
    let sd = sd_image(dir.path(), "sd.img", Some(TIMEOUT_MS), Some(&listener_config(TIMEOUT_MS)));
    let q = Qemu::start(dir.path(), &sd);
    q.wait_for("media: disk+serial", 0, Duration::from_secs(10));
    let mut agent = Agent::start(&agent_config(dir.path(), "agent.toml", &sd, None), None);
    let (_, at) = q.wait_for("state: watching", 0, Duration::from_secs(10));
    // Three timeouts of live heartbeats: the boot stays held.
    assert!(q.try_wait_for("BOOT RELEASED", 0, Duration::from_millis(3 * TIMEOUT_MS)).is_none(), "{}", q.text());
    agent.assert_running();
    let killed = agent.kill();
    let (released, _) = q.wait_for("BOOT RELEASED: primary silent", at, Duration::from_secs(10));
    let ms = released.duration_since(killed).as_millis();
    println!("disk: kill → BOOT RELEASED in {ms} ms (timeout {TIMEOUT_MS} ms)");
    assert!(ms >= TIMEOUT_MS as u128 - 150, "released before the timeout: {ms} ms");
    assert!(ms <= BOUND_MS, "released {ms} ms after the kill; bound {BOUND_MS} ms");
    q.wait_for("takeover claim written", 0, Duration::from_secs(5));
}

/// Ten takeovers, for the release-latency figure (median and max are printed; run with
/// `--nocapture` to see them).
#[test]
fn release_latency_over_ten_runs() {
    let mut lat = Vec::new();
    for run in 0..10 {
        let dir = tempdir();
        let sd = sd_image(dir.path(), "sd.img", Some(TIMEOUT_MS), Some(&listener_config(TIMEOUT_MS)));
        let q = Qemu::start(dir.path(), &sd);
        let mut agent = Agent::start(&agent_config(dir.path(), "agent.toml", &sd, None), None);
        let (_, at) = q.wait_for("state: watching", 0, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(300)); // a few more beats, as in service
        agent.assert_running();
        let killed = agent.kill();
        let (released, _) = q.wait_for("BOOT RELEASED", at, Duration::from_secs(10));
        let ms = released.duration_since(killed).as_millis();
        println!("run {run}: {ms} ms");
        assert!(ms <= BOUND_MS, "run {run}: released {ms} ms after the kill; bound {BOUND_MS} ms");
        lat.push(ms);
    }
    let max = *lat.iter().max().unwrap();
    println!(
        "release latency over {} runs (timeout {TIMEOUT_MS} ms): median {} ms, max {max} ms",
        lat.len(),
        median(&mut lat)
    );
}
