//! Firewall pair, unplanned failures: node death (link cut), uplink loss with the side link
//! alive, and an agent killed with SIGKILL. Real agents in network namespaces.

mod support;
use std::time::Duration;
use support::netns::*;

#[test]
fn the_active_node_dies_and_the_standby_holds_the_vip_for_the_client() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start_both();
    assert_eq!(p.state(0), "active");
    assert_eq!(p.holders(), vec![0]);
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 1", |p| p.client_reaches_vip());
    assert_eq!(p.client_vip_mac(), Some(p.mac(0)));

    // Cut node 1's cable at the switch.
    p.set_lan(0, false);
    let took = p.wait_until(Duration::from_secs(5), "node 2 takes over", |p| p.state(1) == "active");
    eprintln!("node death: standby active {} ms after the cut (dead interval {} ms)", took.as_millis(), 50 * 4);
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 2", |p| {
        p.client_reaches_vip() && p.client_vip_mac() == Some(p.mac(1))
    });
    let st = p.status(1);
    assert!(st["last_takeover"].as_str().unwrap().contains("silent"), "{st}");

    // The cable comes back: exactly one holder, the later takeover (node 2), and node 1 has
    // removed its VIP.
    p.set_lan(0, true);
    p.wait_until(Duration::from_secs(3), "exactly one holder (node 2) after the link returns", |p| {
        p.holders() == vec![1] && p.state(0) == "standby"
    });
    p.hold_for(Duration::from_millis(500), "still exactly one holder", |p| p.holders() == vec![1]);
    assert!(p.client_reaches_vip());
}

#[test]
fn uplink_loss_with_the_side_link_alive_resigns_at_once() {
    // A long dead interval (2 s) so that only an immediate resign can explain a fast takeover.
    let mut a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    a.dead_count = 40;
    b.dead_count = 40;
    let mut p = Pair::new(true, a, b);
    p.start_both();
    assert_eq!(p.holders(), vec![0]);
    p.set_lan(0, false);
    let took = p.wait_until(Duration::from_secs(1), "node 2 active well before the 2 s dead interval", |p| {
        p.state(1) == "active"
    });
    eprintln!("uplink loss: standby active {} ms after the carrier dropped (dead interval 2000 ms)", took.as_millis());
    let st = p.status(1);
    let why = st["last_takeover"].as_str().unwrap_or("");
    assert!(!why.contains("silent"), "takeover must come from the resign over the side link, not a timeout: {st}");
    let st1 = p.status(0);
    assert_eq!(st1["state"], "standby", "{st1}");
    assert!(st1["last_resign"].as_str().unwrap_or("").contains("health"), "{st1}");
    assert!(st1["why_not_active"].as_str().unwrap_or("").contains("carrier"), "{st1}");
    // Node 2 hears node 1 on the side link only.
    assert_eq!(st["peer"]["alive"], true, "{st}");
    assert_eq!(p.holders(), vec![1]);
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 2", |p| p.client_reaches_vip());
}

#[test]
fn an_agent_killed_with_sigkill_leaves_no_duplicate_vip_once_it_restarts() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start_both();
    assert_eq!(p.holders(), vec![0]);
    p.kill9(0);
    // The dead agent could not clean up: its address is still configured.
    p.wait_until(Duration::from_secs(5), "node 2 takes over", |p| p.state(1) == "active");
    assert_eq!(p.holders(), vec![0, 1], "a SIGKILL leaves the VIP behind until restart (or ExecStopPost)");
    p.start(0);
    p.wait_until(Duration::from_secs(3), "exactly one holder after the restart, the restarted node standby", |p| {
        p.holders() == vec![1] && p.state(0) == "standby"
    });
    assert!(p.log(0).contains("removed stale VIP"));
    p.hold_for(Duration::from_millis(500), "no duplicate VIP", |p| p.holders() == vec![1]);
}

#[test]
fn vip_cleanup_removes_what_a_crash_left_behind() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start(0);
    p.wait_until(Duration::from_secs(3), "node 1 alone becomes active", |p| p.holders() == vec![0]);
    p.kill9(0);
    let cfg = p.config_path(0);
    let out = must(&[
        "ip",
        "netns",
        "exec",
        &p.ns("a"),
        env!("CARGO_BIN_EXE_rearguard"),
        "vip-cleanup",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(out.contains("removed 10.200.0.100/24"), "{out}");
    assert!(p.holders().is_empty());
}

#[test]
fn a_clean_stop_hands_over_at_once_and_leaves_no_vip() {
    let mut a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    a.dead_count = 40;
    b.dead_count = 40; // 2 s: only the leaving advert explains a fast takeover
    let mut p = Pair::new(false, a, b);
    p.start_both();
    p.stop(0);
    let took =
        p.wait_until(Duration::from_secs(1), "node 2 active well before the dead interval", |p| p.holders() == vec![1]);
    eprintln!("clean stop: node 2 holds the VIP {} ms after SIGTERM returned", took.as_millis());
    assert!(!p.status(1)["last_takeover"].as_str().unwrap_or("").contains("silent"), "{}", p.status(1));
    assert!(!p.socket(0).exists(), "control socket removed on exit");
}
