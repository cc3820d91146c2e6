//! Firewall pair, planned changes: manual switchover, failback with preempt on and none
//! with preempt off, maintenance mode. Real agents in network namespaces.

mod support;
use std::time::Duration;
use support::netns::*;

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
    p.wait_until(Duration::from_secs(2), "node 1 holds the VIP again", |p| {
        p.holders() == vec![0] && p.state(1) == "standby"
    });
    p.hold_for(Duration::from_millis(300), "exactly one holder", |p| p.holders() == vec![0]);
}

#[test]
fn switchover_with_no_live_peer_is_refused_and_says_why() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start(0);
    p.wait_until(Duration::from_secs(3), "node 1 alone active", |p| p.state(0) == "active");
    let out = p.ctl(0, &["switchover"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("peer is not alive"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    p.hold_for(Duration::from_millis(1500), "node 2 keeps the VIP", |p| {
        p.holders() == vec![1] && p.state(1) == "active"
    });
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

#[test]
fn hooks_get_keepalived_arguments_and_rg_variables() {
    let dir = std::env::temp_dir().join(format!("rg-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("hook-a.out");
    let hook = dir.join("hook.sh");
    let _ = std::fs::remove_file(&out);
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$@ state=$RG_STATE term=$RG_TERM node=$RG_NODE_ID\" >> {}\n", out.display()),
    )
    .unwrap();
    must(&["chmod", "+x", hook.to_str().unwrap()]);
    let mut a = NodeOpts::new(200);
    a.pair_keys = format!("hooks = [\"{}\"]", hook.display());
    let mut p = Pair::new(false, a, NodeOpts::new(100));
    p.start_both();
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    p.wait_until(Duration::from_secs(3), "node 1's hook ran with MASTER", |_| {
        read().contains("INSTANCE VI_TEST MASTER 200 state=active")
    });
    assert!(p.ctl(0, &["switchover"]).status.success());
    p.wait_until(Duration::from_secs(3), "the hook ran with BACKUP after the switchover", |_| {
        read().contains("INSTANCE VI_TEST BACKUP 200 state=standby")
    });
    assert!(read().contains("node=1"), "{}", read());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ipv6_vip_moves_with_an_unsolicited_neighbour_advertisement() {
    let mut a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    for o in [&mut a, &mut b] {
        o.extra = "[[pair.vip]]\naddress = \"fd00:200::100/64\"\ninterface = \"lan\"\n".into();
    }
    let mut p = Pair::new(false, a, b);
    must(&["ip", "-n", &p.ns("c"), "-6", "addr", "add", "fd00:200::10/64", "dev", "lan", "nodad"]);
    p.start_both();
    let ping6 = |p: &Pair| {
        sh(&["ip", "netns", "exec", &p.ns("c"), "ping", "-6", "-c1", "-W0.3", "-n", "-q", "fd00:200::100"])
            .status
            .success()
    };
    let neigh6 = |p: &Pair| {
        let o = must(&["ip", "-n", &p.ns("c"), "-6", "neigh", "show", "fd00:200::100"]);
        o.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).map(str::to_string)
    };
    p.wait_until(Duration::from_secs(5), "client reaches the IPv6 VIP on node 1", |p| {
        ping6(p) && neigh6(p) == Some(p.mac(0))
    });
    assert!(p.ctl(0, &["switchover"]).status.success());
    // The client's neighbour entry flips to node 2 without waiting for it to go stale:
    // that is the unsolicited NA (override flag) at work.
    p.wait_until(Duration::from_secs(2), "client's neighbour entry for the IPv6 VIP names node 2", |p| {
        neigh6(p) == Some(p.mac(1))
    });
    p.wait_until(Duration::from_secs(3), "client reaches the IPv6 VIP on node 2", |p| ping6(p));
}

#[test]
fn a_peer_with_another_pair_policy_is_reported_and_refused() {
    let a = NodeOpts::new(200);
    let mut b = NodeOpts::new(100);
    b.dead_count = 5; // policy differs from node 1's (4)
    let mut p = Pair::new(false, a, b);
    p.start_both();
    let st = p.status(0);
    let refused = st["peer"]["refused"].as_str().unwrap_or("");
    assert!(refused.contains("pair-config digest") && refused.contains("[pair] policy identical"), "{st}");
    let out = p.ctl(0, &["switchover"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer refused"), "{}", String::from_utf8_lossy(&out.stderr));
    let human = String::from_utf8_lossy(&p.ctl(1, &["status"]).stdout).into_owned();
    assert!(human.contains("peer REFUSED"), "{human}");
    // Refused, but heard: never a second holder.
    p.hold_for(Duration::from_millis(500), "exactly one holder", |p| p.holders().len() == 1);
}

#[test]
fn a_hwmon_reading_past_its_threshold_hands_over_before_the_crash() {
    // A stand-in for /sys/class/hwmon/hwmonN/temp1_input (millidegrees).
    let dir = std::env::temp_dir().join(format!("rg-hwmon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let temp = dir.join("temp1_input");
    std::fs::write(&temp, "45000\n").unwrap();
    let mut a = NodeOpts::new(200);
    a.checks = format!(
        "[[pair.check]]\nkind = \"hwmon\"\npath = \"{}\"\nmax = 90000\ninterval_ms = 20\nfall = 2\n",
        temp.display()
    );
    let mut p = Pair::new(false, a, NodeOpts::new(100));
    p.start_both();
    assert_eq!(p.holders(), vec![0]);
    std::fs::write(&temp, "97000\n").unwrap();
    p.wait_until(Duration::from_secs(3), "node 1 hands the VIP over on the sensor warning", |p| p.holders() == vec![1]);
    let st = p.status(0);
    assert!(st["last_resign"].as_str().unwrap_or("").contains("health"), "{st}");
    assert!(st["why_not_active"].as_str().unwrap_or("").contains("above 90000"), "{st}");
    assert!(
        !p.status(1)["last_takeover"].as_str().unwrap_or("").contains("silent"),
        "a planned handover, not a timeout"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
