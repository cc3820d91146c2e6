//! The pair's serial side link (issue 10): a pty pair joined by socat stands in for the
//! null-modem cable between the two nodes' namespaces. Real agents, real ttys.

mod support;

use std::time::{Duration, Instant};
use support::netns::{NodeOpts, Pair};

fn serial_medium(end: &std::path::Path) -> String {
    format!("[[pair.medium]]\nserial = \"{}\"\nbaud = 115200\n", end.display())
}

/// A pair whose only media are the LAN and the cable; node 1 (priority 200) active.
fn pair_with_cable(interval_ms: u64, dead_count: u32) -> (Pair, support::process::Process) {
    let (mut a, mut b) = (NodeOpts::new(200), NodeOpts::new(100));
    for o in [&mut a, &mut b] {
        o.interval_ms = interval_ms;
        o.dead_count = dead_count;
    }
    let mut p = Pair::new(false, a, b);
    let (cable, ends) = p.serial_cable();
    p.opts[0].media = serial_medium(&ends[0]);
    p.opts[1].media = serial_medium(&ends[1]);
    p.start_both();
    p.wait_until(Duration::from_secs(5), "node 1 active, both hearing each other on the cable", |p| {
        p.holders() == vec![0] && (0..2).all(|i| p.status(i)["media"][1]["peer_alive"] == true)
    });
    (p, cable)
}

#[test]
fn an_active_that_loses_its_uplink_resigns_over_the_serial_link_at_once() {
    // A dead interval of 2 s: a takeover well inside it came from the resign on the cable.
    let (p, _cable) = pair_with_cable(100, 20);
    let t0 = Instant::now();
    p.set_lan(0, false);
    let took = p.wait_until(Duration::from_secs(5), "node 2 takes the VIP", |p| p.holders() == vec![1]);
    eprintln!("uplink lost -> node 2 holds the VIP in {} ms (dead interval 2000 ms)", took.as_millis());
    let s = p.status(1);
    let why = s["last_takeover"].as_str().unwrap_or_default().to_string();
    assert!(!why.contains("silent"), "node 2 took over on silence, not on the resign: {why}");
    assert!(took < Duration::from_millis(1000), "took {} ms: {why}\n{}", took.as_millis(), p.logs());
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(s["media"][1]["interface"].as_str().unwrap(), p.dir.join("cable-b").to_str().unwrap());
    assert!(p.status(0)["resigns"].as_u64() == Some(1), "{}", p.status(0));
}

#[test]
fn losing_every_ip_path_while_the_serial_link_lives_is_not_death() {
    let (p, mut cable) = pair_with_cable(50, 4);
    p.block_heartbeats(1, true);
    p.wait_until(Duration::from_secs(3), "node 2 hears node 1 on the cable only", |p| {
        let m = &p.status(1)["media"];
        m[0]["peer_alive"] == false && m[1]["peer_alive"] == true
    });
    // Five dead intervals with no UDP heartbeat at all.
    p.hold_for(Duration::from_millis(1000), "node 1 alone holds the VIP, node 2 stands by", |p| {
        p.holders() == vec![0] && p.state(1) == "standby"
    });
    let accepted = |p: &Pair| p.status(1)["media"][1]["accepted"].as_u64().unwrap();
    let before = accepted(&p);
    std::thread::sleep(Duration::from_millis(300));
    assert!(accepted(&p) > before, "adverts keep arriving on the cable");
    // The same partition without the cable is death: node 2 takes over.
    cable.kill();
    let took = p.wait_until(Duration::from_secs(3), "node 2 takes over once the cable is cut too", |p| {
        p.holders().contains(&1)
    });
    eprintln!("cable cut -> node 2 took over in {} ms (dead interval 200 ms)", took.as_millis());
}

#[test]
fn a_serial_path_that_does_not_exist_is_a_clear_start_error() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.opts[0].media = serial_medium(std::path::Path::new("/dev/ttyREARGUARD9"));
    let cfg = p.write_config(0);
    let mut agent = support::Agent::start(&cfg, Some(&p.ns("a")));
    assert_eq!(agent.wait_exit(Duration::from_secs(5)), Some(Some(1)), "{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains("[[pair.medium]] serial = \"/dev/ttyREARGUARD9\": No such file or directory")
            && log.contains("set serial to the tty"),
        "{log}"
    );
    assert!(p.holders().is_empty(), "nothing was configured");
}

#[test]
fn a_cable_unplugged_and_plugged_back_carries_adverts_again() {
    let (p, mut cable) = pair_with_cable(50, 4);
    // Unplugged: socat's ptys go away (as a USB adapter's tty does), the agents' descriptors
    // fail.
    cable.kill();
    p.wait_until(Duration::from_secs(3), "neither node hears the other on the cable", |p| {
        (0..2).all(|i| p.status(i)["media"][1]["peer_alive"] == false)
    });
    let stale = [0, 1].map(|i| p.status(i)["media"][1]["accepted"].as_u64().unwrap());
    // Plugged back: new ptys behind the same paths.
    for end in ["cable-a", "cable-b"] {
        let _ = std::fs::remove_file(p.dir.join(end));
    }
    let (_cable, _) = p.serial_cable();
    let back = p.wait_until(Duration::from_secs(3), "both nodes hear each other on the cable again", |p| {
        (0..2).all(|i| p.status(i)["media"][1]["peer_alive"] == true)
    });
    eprintln!("cable plugged back -> adverts on it again within {} ms", back.as_millis());
    for (i, stale) in stale.into_iter().enumerate() {
        assert!(p.status(i)["media"][1]["accepted"].as_u64().unwrap() > stale, "node {} accepts on it", i + 1);
        let log = p.log(i);
        assert!(log.contains("reopening it until it reads again") && log.contains("receiving again"), "{log}");
    }
    // Nothing moved meanwhile: the LAN kept the pair together.
    assert_eq!(p.holders(), vec![0]);
}
