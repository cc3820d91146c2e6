//! Firewall pair, partitions and loss: a silent partition heals to exactly one holder; a
//! standby whose monitored target is unreachable does not take over and says why; random
//! heartbeat loss causes no false takeover. nftables in the namespaces (no netem here).

mod support;
use std::time::{Duration, Instant};
use support::netns::*;

#[test]
fn a_silent_partition_heals_to_exactly_one_holder_within_an_interval() {
    let mut a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    a.interval_ms = 100;
    b.interval_ms = 100;
    let mut p = Pair::new(false, a, b);
    p.start_both();
    assert_eq!(p.holders(), vec![0]);
    // Heartbeats dropped both ways; links stay up: both believe the other died.
    p.block_heartbeats(0, true);
    p.block_heartbeats(1, true);
    p.wait_until(Duration::from_secs(3), "both nodes active during the partition", |p| p.holders() == vec![0, 1]);
    let loser_log_len = p.log(0).len();
    let healed = Instant::now();
    p.block_heartbeats(0, false);
    p.block_heartbeats(1, false);
    let took = p.wait_until(Duration::from_secs(2), "exactly one holder after the heal", |p| p.holders().len() == 1);
    eprintln!(
        "partition heal: one holder {} ms after the heal (interval 100 ms; polling adds up to 10 ms + 2 `ip` calls)",
        took.as_millis()
    );
    // The later takeover (node 2, higher term) keeps the VIP; node 1 removed its VIP and
    // announced nothing.
    assert_eq!(p.holders(), vec![1]);
    assert_eq!(p.state(0), "standby");
    let log = p.log(0);
    let after = &log[loser_log_len..];
    assert!(after.contains("released the VIPs (both active; peer wins"), "{after}");
    assert!(!after.contains("re-announcing") && !after.contains("took the VIPs"), "{after}");
    assert!(healed.elapsed() < Duration::from_secs(2));
    p.hold_for(Duration::from_millis(500), "still one holder", |p| p.holders() == vec![1]);
    p.wait_until(Duration::from_secs(3), "client reaches the VIP", |p| {
        p.client_reaches_vip() && p.client_vip_mac() == Some(p.mac(1))
    });
}

#[test]
fn a_standby_whose_monitored_target_is_unreachable_does_not_take_over_and_says_why() {
    let a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    // Nobody has 10.200.0.254: the target is unreachable from node 2.
    b.checks =
        "[[pair.check]]\nkind = \"ping\"\ntarget = \"10.200.0.254\"\ninterval_ms = 100\ntimeout_ms = 100\nfall = 1\n"
            .into();
    let mut p = Pair::new(false, a, b);
    p.start(0);
    p.start(1);
    p.wait_until(Duration::from_secs(3), "node 1 active, node 2 reports the target", |p| {
        p.state(0) == "active" && p.status(1)["healthy"] == false
    });
    p.set_lan(0, false);
    p.wait_until(Duration::from_secs(3), "node 2 sees node 1 dead", |p| p.status(1)["peer"]["alive"] == false);
    p.hold_for(Duration::from_millis(600), "node 2 does not take over", |p| {
        p.state(1) == "standby" && !p.holders().contains(&1)
    });
    let st = p.status(1);
    let why = st["why_not_active"].as_str().unwrap_or("");
    assert!(why.contains("health") && why.contains("10.200.0.254") && why.contains("unreachable"), "{st}");
    let human = String::from_utf8_lossy(&p.ctl(1, &["status"]).stdout).into_owned();
    assert!(human.contains("not active:") && human.contains("10.200.0.254"), "{human}");
}

#[test]
fn twenty_percent_heartbeat_loss_causes_no_false_takeover() {
    let mut a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    a.dead_count = 8;
    b.dead_count = 8;
    let mut p = Pair::new(false, a, b);
    p.start_both();
    p.heartbeat_loss(0, 20);
    p.heartbeat_loss(1, 20);
    p.hold_for(Duration::from_secs(3), "node 1 keeps the VIP under 20 % loss", |p| p.holders() == vec![0]);
    let st = p.status(1);
    assert_eq!(st["takeovers"], 0, "{st}");
    assert_eq!(st["state"], "standby", "{st}");
}
