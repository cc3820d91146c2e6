//! The emulated controller watching heartbeats on its serial link (UART1, COBS frames from
//! the agent's [serial] medium), alone and together with the shared disk.

mod support;
use std::time::Duration;
use support::qemu::*;
use support::*;

const TIMEOUT_MS: u64 = 1000;
const BOUND_MS: u128 = TIMEOUT_MS as u128 + 1500;

#[test]
fn serial_only_heartbeats_hold_and_a_killed_agent_releases() {
    let dir = tempdir();
    // No heartbeat area on the SD card: the firmware watches the serial link only.
    let sd = sd_image(dir.path(), "sd.img", None, Some(&listener_config(TIMEOUT_MS)));
    let scratch = sd_image(dir.path(), "agent-disk.img", Some(TIMEOUT_MS), None);
    let q = Qemu::start(dir.path(), &sd);
    q.wait_for("media: serial", 0, Duration::from_secs(10));
    let mut agent = Agent::start(&agent_config(dir.path(), "agent.toml", &scratch, Some(&q.link)), None);
    let (_, at) = q.wait_for("state: watching", 0, Duration::from_secs(10));
    assert!(q.try_wait_for("BOOT RELEASED", 0, Duration::from_millis(3 * TIMEOUT_MS)).is_none(), "{}", q.text());
    agent.assert_running();
    let killed = agent.kill();
    let (released, _) = q.wait_for("BOOT RELEASED: primary silent", at, Duration::from_secs(10));
    let ms = released.duration_since(killed).as_millis();
    println!("serial: kill → BOOT RELEASED in {ms} ms (timeout {TIMEOUT_MS} ms)");
    assert!(ms <= BOUND_MS, "released {ms} ms after the kill; bound {BOUND_MS} ms");
}

/// Two agents for the same primary: one writes the shared disk, the other the serial link.
/// `first` dies first; the survivor alone must keep the boot held; then it dies too.
fn one_medium_dies(first_dies: &str) {
    let dir = tempdir();
    let sd = sd_image(dir.path(), "sd.img", Some(TIMEOUT_MS), Some(&listener_config(TIMEOUT_MS)));
    let scratch = sd_image(dir.path(), "agent-disk.img", Some(TIMEOUT_MS), None);
    let mut q = Qemu::start(dir.path(), &sd);
    q.wait_for("media: disk+serial", 0, Duration::from_secs(10));
    let mut disk_agent = Agent::start(&agent_config(dir.path(), "disk-agent.toml", &sd, None), None);
    let mut serial_agent = Agent::start(&agent_config(dir.path(), "serial-agent.toml", &scratch, Some(&q.link)), None);
    q.wait_for("state: watching", 0, Duration::from_secs(10));
    // Both media must be carrying beats before one dies (the status screen says so).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = q.command("status");
        let live = |m: &str| {
            s.lines()
                .any(|l| l.trim_start().starts_with(m) && !l.contains("heartbeat never") && !l.contains("accepted 0,"))
        };
        if live("disk") && live("serial") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "both media never carried heartbeats:\n{s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (dead, alive) =
        if first_dies == "disk" { (&mut disk_agent, &mut serial_agent) } else { (&mut serial_agent, &mut disk_agent) };
    dead.assert_running();
    dead.kill();
    let from = q.mark();
    assert!(
        q.try_wait_for("BOOT RELEASED", 0, Duration::from_millis(4 * TIMEOUT_MS)).is_none(),
        "released although the {} medium was alive:\n{}",
        if first_dies == "disk" { "serial" } else { "disk" },
        q.text()
    );
    alive.assert_running();
    let killed = alive.kill();
    let (released, _) = q.wait_for("BOOT RELEASED: primary silent", from, Duration::from_secs(10));
    let ms = released.duration_since(killed).as_millis();
    println!("{first_dies} died first; survivor killed → BOOT RELEASED in {ms} ms");
    assert!(ms <= BOUND_MS, "released {ms} ms after the last medium died; bound {BOUND_MS} ms");
}

#[test]
fn disk_dies_serial_lives_no_release_until_both_are_gone() {
    one_medium_dies("disk");
}

#[test]
fn serial_dies_disk_lives_no_release_until_both_are_gone() {
    one_medium_dies("serial");
}
