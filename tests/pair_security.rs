//! Firewall pair, hostile input: heartbeats from a third namespace with a wrong key, and
//! replays of captured valid heartbeats, are rejected, counted, and change nothing.

mod support;
use rearguard_shared::election::advert::{encode_advert, Advert, MAX_ADVERT_FRAME};
use rearguard_shared::heartbeat::{HealthFlags, Heartbeat, NodeState, Role};
use rearguard_shared::integrity::Key;
use rearguard_shared::Duration as RgDuration;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};
use support::netns::*;

fn rejected(st: &serde_json::Value, reason: &str) -> u64 {
    st["media"][0]["rejected"][reason].as_u64().unwrap_or(0)
}

#[test]
fn wrong_key_and_replayed_heartbeats_are_rejected_counted_and_change_nothing() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start_both();
    let before = [p.status(0), p.status(1)];
    assert_eq!(before[0]["state"], "active");

    let forged_sent = 20u64;
    let replays_sent = in_netns(&p.ns("x"), move || {
        // Capture valid adverts off the LAN (multicast), like an attacker on the segment.
        let s = UdpSocket::bind("0.0.0.0:5405").expect("bind 5405 in the third namespace");
        s.join_multicast_v4(&GROUP.parse().unwrap(), &Ipv4Addr::new(10, 200, 0, 66)).expect("join the heartbeat group");
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut captured: Vec<Vec<u8>> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 512];
        while captured.len() < 10 && Instant::now() < deadline {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                captured.push(buf[..n].to_vec());
            }
        }
        assert!(captured.len() >= 10, "captured only {} adverts from the LAN", captured.len());
        // Forgeries: node 2 claiming to be active with a huge term, signed with another key.
        let wrong = Key::from_hex("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100").unwrap();
        for i in 0..forged_sent {
            let adv = Advert {
                hb: Heartbeat {
                    cluster_id: 0xC0FFEE,
                    node_id: 2,
                    role: Role::Primary,
                    boot_epoch: u32::MAX,
                    sequence: 1_000_000 + i,
                    uptime: RgDuration::from_millis(1),
                    state: NodeState::Active,
                    health: HealthFlags::OK,
                    config_digest: 0,
                    build_stamp: 0,
                    budget: rearguard_shared::fencing::FencingBudget::NONE,
                    test_acks: 0,
                    last_test: 0,
                },
                priority: 255,
                term: 1_000_000,
                flags: Advert::REQUEST,
                ack_epoch: 0,
                ack_seq: 0,
            };
            let mut frame = [0u8; MAX_ADVERT_FRAME];
            let n = encode_advert(&adv, Some(&wrong), &mut frame);
            for dst in ["10.200.0.1:5405", "10.200.0.2:5405"] {
                s.send_to(&frame[..n], dst).unwrap();
            }
        }
        // Replays of the captured, validly signed adverts, twice over.
        let mut sent = 0u64;
        for _ in 0..2 {
            for f in &captured {
                for dst in ["10.200.0.1:5405", "10.200.0.2:5405"] {
                    s.send_to(f, dst).unwrap();
                }
                sent += 1;
            }
        }
        sent
    });

    let after = p.wait_until(Duration::from_secs(3), "the forgeries are counted on both nodes", |p| {
        rejected(&p.status(0), "bad-mac") >= forged_sent && rejected(&p.status(1), "bad-mac") >= forged_sent
    });
    let _ = after;
    let st = [p.status(0), p.status(1)];
    // Every replay is refused: as a replay (the other node's captures) or as our own frame
    // coming back (wrong-node).
    for (i, s) in st.iter().enumerate() {
        let refused = rejected(s, "replay") + rejected(s, "wrong-node");
        assert!(refused >= replays_sent, "node {}: {refused} replays refused of {replays_sent} sent: {s}", i + 1);
        assert!(rejected(s, "replay") > 0, "node {}: {s}", i + 1);
    }
    // No state change anywhere.
    for i in 0..2 {
        for k in ["state", "term", "takeovers", "resigns"] {
            assert_eq!(st[i][k], before[i][k], "node {} {k} changed: {}", i + 1, st[i]);
        }
        assert_eq!(st[i]["peer"]["node_id"], before[i]["peer"]["node_id"]);
    }
    assert_eq!(p.holders(), vec![0]);
    eprintln!(
        "node 1 rejected: bad-mac {}, replay {}, wrong-node {}",
        rejected(&st[0], "bad-mac"),
        rejected(&st[0], "replay"),
        rejected(&st[0], "wrong-node")
    );
}

/// Adverts captured from the LAN by a third host.
fn capture(ns: String, count: usize) -> Vec<Vec<u8>> {
    in_netns(&ns, move || {
        let s = UdpSocket::bind("0.0.0.0:5405").expect("bind 5405 in the third namespace");
        s.join_multicast_v4(&GROUP.parse().unwrap(), &Ipv4Addr::new(10, 200, 0, 66)).expect("join the heartbeat group");
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut captured = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 512];
        while captured.len() < count && Instant::now() < deadline {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                captured.push(buf[..n].to_vec());
            }
        }
        assert!(captured.len() >= count, "captured only {} adverts from the LAN", captured.len());
        captured
    })
}

#[test]
fn adverts_captured_before_a_crash_are_refused_after_the_restart() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    p.start_both();
    let captured = capture(p.ns("x"), 40);
    // Node 1, the active, dies for good; node 2 takes over, then crashes and comes back:
    // everything it accepted before the crash is now a capture.
    p.kill9(0);
    p.wait_until(Duration::from_secs(5), "node 2 takes over", |p| p.state(1) == "active");
    p.kill9(1);
    p.start(1);
    // Replayed as a live stream would come, one every interval, through node 2's start-up
    // listening and beyond: were any taken, node 1 would look alive (and active).
    let ns = p.ns("x");
    let frames = captured;
    let sent = in_netns(&ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for f in &frames {
            s.send_to(f, "10.200.0.2:5405").unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        frames.len() as u64
    });
    p.wait_until(Duration::from_secs(5), "node 2 takes over again", |p| p.state(1) == "active");
    let s = p.status(1);
    let refused = rejected(&s, "replay") + rejected(&s, "stale-epoch") + rejected(&s, "wrong-node");
    eprintln!(
        "after the restart: {} replays sent, accepted {}, refused: replay {}, stale-epoch {}, wrong-node {}",
        sent,
        s["media"][0]["accepted"],
        rejected(&s, "replay"),
        rejected(&s, "stale-epoch"),
        rejected(&s, "wrong-node")
    );
    assert_eq!(s["media"][0]["accepted"], 0, "a replayed advert was accepted after the restart: {s}");
    assert!(refused >= sent, "{refused} refused of {sent} sent: {s}");
    assert!(rejected(&s, "replay") > 0, "{s}");
    // Node 1 was killed without cleanup, so its namespace may still hold the VIP.
    assert!(p.holders().contains(&1), "node 2 holds the VIP again");
}
