//! Firewall pair, planned changes: manual switchover, failback with preempt on and none
//! with preempt off, maintenance mode. Real agents in network namespaces.

mod pair_support;
use pair_support::*;
use std::time::Duration;

#[test]
fn manual_switchover_moves_the_vip_without_overlap() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start_both();
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 1", |p| p.client_reaches_vip());
    let out = p.ctl(0, &["switchover"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let moved = p.wait_until(Duration::from_secs(2), "node 2 holds the VIP, node 1 standby", |p| {
        p.holders() == vec![1] && p.state(0) == "standby" && p.state(1) == "active"
    });
    eprintln!("switchover from the active: moved within {} ms (as seen by polling)", moved.as_millis());
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 2", |p| {
        p.client_reaches_vip() && p.client_vip_mac() == Some(p.mac(1))
    });
    // Issued on the standby (node 1 now): it asks, node 2 hands over.
    let out = p.ctl(0, &["switchover"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    p.wait_until(Duration::from_secs(2), "node 1 holds the VIP again", |p| p.holders() == vec![0] && p.state(1) == "standby");
    p.hold_for(Duration::from_millis(300), "exactly one holder", |p| p.holders() == vec![0]);
}

#[test]
fn switchover_with_no_live_peer_is_refused_and_says_why() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start(0);
    p.wait_until(Duration::from_secs(3), "node 1 alone active", |p| p.state(0) == "active");
    let out = p.ctl(0, &["switchover"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer is not alive"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(p.holders(), vec![0]);
}

fn failback(preempt: bool) -> Pair {
    let mut a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    for o in [&mut a, &mut b] {
        o.preempt = preempt;
        o.preempt_delay_ms = 300;
    }
    let mut p = Pair::new(false, a, b);
    p.start_both();
    assert_eq!(p.holders(), vec![0]);
    p.set_lan(0, false);
    p.wait_until(Duration::from_secs(3), "node 2 takes over", |p| p.state(1) == "active");
    p.set_lan(0, true);
    p
}

#[test]
fn failback_with_preempt_on() {
    let p = failback(true);
    p.wait_until(Duration::from_secs(5), "node 1 (priority 200) takes the VIP back", |p| {
        p.holders() == vec![0] && p.state(0) == "active" && p.state(1) == "standby"
    });
    assert!(p.status(1)["last_resign"].as_str().unwrap_or("").contains("requested"), "{}", p.status(1));
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 1", |p| {
        p.client_reaches_vip() && p.client_vip_mac() == Some(p.mac(0))
    });
}

#[test]
fn no_failback_with_preempt_off() {
    let p = failback(false);
    p.wait_until(Duration::from_secs(3), "node 1 back as standby", |p| p.state(0) == "standby");
    // Several preempt delays and dead intervals: node 2 keeps the VIP.
    p.hold_for(Duration::from_millis(1500), "node 2 keeps the VIP", |p| p.holders() == vec![1] && p.state(1) == "active");
    assert_eq!(p.status(0)["why_not_active"], "peer is active and alive");
}

#[test]
fn maintenance_hands_over_and_never_takes_over() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start_both();
    assert!(p.ctl(0, &["maintenance", "on"]).status.success());
    p.wait_until(Duration::from_secs(2), "node 2 holds the VIP", |p| p.holders() == vec![1]);
    assert_eq!(p.state(0), "maintenance");
    // The active dies: a node in maintenance still does not take over.
    p.kill9(1);
    let _ = must(&["ip", "-n", &p.ns("b"), "addr", "del", &format!("{VIP}/24"), "dev", "lan"]);
    p.hold_for(Duration::from_millis(800), "node 1 in maintenance holds nothing", |p| p.holders().is_empty());
    assert_eq!(p.status(0)["why_not_active"], "maintenance mode");
    assert!(p.ctl(0, &["maintenance", "off"]).status.success());
    p.wait_until(Duration::from_secs(2), "node 1 takes over once out of maintenance", |p| p.holders() == vec![0]);
}
