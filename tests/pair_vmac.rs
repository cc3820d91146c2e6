//! `vmac = true`: the VIP moves with its VRRP virtual MAC, so a client whose neighbour entry
//! never updates still reaches it after a failover. Real agents in network namespaces.

mod support;
use std::time::Duration;
use support::netns::*;

const VMAC: &str = "00:00:5e:00:01:33";

fn pair(vmac: bool) -> Pair {
    let mut opts = [NodeOpts::new(200), NodeOpts::new(100)];
    if vmac {
        for o in &mut opts {
            o.pair_keys = "vmac_id = 51".into();
            o.vip_keys = "vmac = true".into();
        }
    }
    let [a, b] = opts;
    let mut p = Pair::new(false, a, b);
    p.start_both();
    p
}

fn sysctl(p: &Pair, node: &str, path: &str) -> String {
    must(&["ip", "netns", "exec", &p.ns(node), "cat", path]).trim().to_string()
}

/// IFF_UP of node's macvlan (operstate says "unknown" for a macvlan that is up).
fn vmac_up(p: &Pair, node: &str) -> bool {
    let flags = sysctl(p, node, "/sys/class/net/vm4-lan/flags");
    u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap() & 1 == 1
}

/// What the sysctl is on an interface no agent touched (the client's): the value to restore.
fn untouched(p: &Pair, key: &str) -> String {
    sysctl(p, "c", &format!("/proc/sys/net/ipv4/conf/lan/{key}"))
}

/// Fails node 1 (its LAN cable cut at the switch) with the client's neighbour entry for the
/// VIP pinned to `pinned`; whether the client reaches the VIP on node 2 within 3 s.
fn failover_with_pinned_client(p: &mut Pair, pinned: &str) -> bool {
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 1", |p| p.client_reaches_vip());
    p.pin_client_neighbour(pinned);
    assert!(p.client_reaches_vip(), "the pinned entry is right while node 1 is active");
    p.set_lan(0, false);
    p.wait_until(Duration::from_secs(5), "node 2 takes over", |p| p.state(1) == "active");
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if p.client_reaches_vip() {
            return true;
        }
    }
    false
}

#[test]
fn with_vmac_a_client_pinned_to_the_virtual_mac_reaches_the_vip_after_a_failover() {
    let mut p = pair(true);
    assert_eq!(p.holders(), vec![0]);
    // The VIP answers from the virtual MAC, on a macvlan that only the active has up.
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 1", |p| p.client_reaches_vip());
    assert_eq!(p.client_vip_mac().as_deref(), Some(VMAC));
    assert_eq!(sysctl(&p, "a", "/sys/class/net/vm4-lan/address"), VMAC);
    assert!(vmac_up(&p, "a") && !vmac_up(&p, "b"), "the macvlan is up on the active only");
    // The standby's drill checks the parent, not its macvlan that is down until it takes over.
    let (code, text) = p.drill(1);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ready     VIP interface lan: present") && !text.contains("vm4-lan"), "{text}");
    for node in ["a", "b"] {
        assert_eq!(sysctl(&p, node, "/proc/sys/net/ipv4/conf/lan/arp_ignore"), "1");
        assert_eq!(sysctl(&p, node, "/proc/sys/net/ipv4/conf/lan/rp_filter"), "2");
    }
    assert!(failover_with_pinned_client(&mut p, VMAC), "client lost the VIP\n{}", p.logs());
    assert_eq!(p.client_vip_mac().as_deref(), Some(VMAC));

    // A clean stop removes the macvlan and puts the sysctls back.
    p.stop(1);
    assert!(!p.exec("b", &["test", "-e", "/sys/class/net/vm4-lan"]).status.success(), "macvlan left behind");
    for key in ["arp_ignore", "arp_announce", "arp_filter", "rp_filter"] {
        assert_eq!(untouched(&p, key), sysctl(&p, "b", &format!("/proc/sys/net/ipv4/conf/lan/{key}")), "{key}");
    }
}

#[test]
fn without_vmac_a_client_pinned_to_the_old_mac_loses_the_vip() {
    let mut p = pair(false);
    let old = p.mac(0);
    assert!(!failover_with_pinned_client(&mut p, &old), "reached the VIP through a stale pinned MAC?\n{}", p.logs());
}

#[test]
fn vip_cleanup_after_a_crash_removes_the_macvlan_and_restores_the_sysctls() {
    let mut p = pair(true);
    p.kill9(1);
    assert!(p.exec("b", &["test", "-e", "/sys/class/net/vm4-lan"]).status.success());
    assert_eq!(sysctl(&p, "b", "/proc/sys/net/ipv4/conf/lan/arp_ignore"), "1");
    let cfg = p.config_path(1);
    let out = p.exec("b", &[env!("CARGO_BIN_EXE_rearguard"), "vip-cleanup", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("removed macvlan vm4-lan on lan"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!p.exec("b", &["test", "-e", "/sys/class/net/vm4-lan"]).status.success(), "macvlan left behind");
    assert_eq!(sysctl(&p, "b", "/proc/sys/net/ipv4/conf/lan/arp_ignore"), untouched(&p, "arp_ignore"));
}
