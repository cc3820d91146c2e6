//! Bad input on the emulated controller's serial heartbeat link: random bytes, corrupt CRCs,
//! a wrong cluster, a forged MAC and replayed frames are rejected and counted by reason, and
//! never count as liveness — no release while valid heartbeats continue, release once they stop.

mod support;
use rearguard_shared::heartbeat::{self, HealthFlags, Heartbeat, NodeState, Role, MAX_FRAME};
use rearguard_shared::integrity::Key;
use rearguard_shared::link::{encode_frame, MAX_ENCODED};
use rearguard_shared::Duration as RgDuration;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use support::qemu::*;
use support::*;

const TIMEOUT_MS: u64 = 1000;

fn hb(cluster_id: u32, sequence: u64) -> Heartbeat {
    Heartbeat {
        cluster_id,
        node_id: 0,
        role: Role::Primary,
        boot_epoch: 7,
        sequence,
        uptime: RgDuration::from_millis(sequence * 100),
        state: NodeState::Active,
        health: HealthFlags::OK,
        config_digest: 0,
        build_stamp: 0,
        budget: rearguard_shared::fencing::FencingBudget::NONE,
        test_acks: 0,
        last_test: 0,
    }
}

fn frame(h: &Heartbeat, key: Option<&Key>) -> Vec<u8> {
    let mut f = [0u8; MAX_FRAME];
    let n = heartbeat::encode(h, key, &mut f);
    f[..n].to_vec()
}

fn send(link: &mut UnixStream, frame: &[u8]) {
    let mut wire = [0u8; MAX_ENCODED];
    let n = encode_frame(frame, &mut wire);
    link.write_all(&wire[..n]).unwrap();
}

/// Count of `reason=N` on the status screen (0 when absent): rejections on the serial line,
/// framing errors on the link line.
fn count(status: &str, reason: &str) -> u32 {
    assert!(status.lines().any(|l| l.trim_start().starts_with("serial")), "no serial line in status: {status}");
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{reason}=")).map(|n| n.parse().unwrap()))
        .unwrap_or(0)
}

#[test]
fn bad_frames_are_rejected_and_counted_and_never_keep_the_primary_alive() {
    let dir = tempdir();
    let key = Key::new(&[0x42; 32]).unwrap();
    let other_key = Key::new(&[0x24; 32]).unwrap();
    let mut cfg = listener_config(TIMEOUT_MS);
    cfg.key = Some(key.clone());
    let sd = sd_image(dir.path(), "sd.img", None, Some(&cfg)); // serial link only
    let mut q = Qemu::start(dir.path(), &sd);
    q.wait_for("media: serial", 0, Duration::from_secs(10));
    let mut link = UnixStream::connect(&q.link).unwrap();
    link.write_all(&[0]).unwrap();

    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let (mut n_crc, mut n_cluster, mut n_mac, mut n_replay, mut n_random) = (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut sent = Vec::new();
    let mut seq = 100u64;
    let start = Instant::now();
    let mut watching_at = None;
    // 4 timeouts of valid heartbeats every 100 ms, each followed by one kind of bad input.
    while start.elapsed() < Duration::from_millis(4 * TIMEOUT_MS + 500) {
        seq += 1;
        let good = frame(&hb(CLUSTER, seq), Some(&key));
        send(&mut link, &good);
        sent.push(good);
        match seq % 5 {
            0 => {
                // Line noise: random bytes, then a delimiter.
                let noise: Vec<u8> = (0..48)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng as u8
                    })
                    .collect();
                link.write_all(&noise).unwrap();
                link.write_all(&[0]).unwrap();
                n_random += 1;
            }
            1 => {
                let mut bad = frame(&hb(CLUSTER, seq + 1), Some(&key));
                bad[8] ^= 0x10; // inside the body: the CRC no longer matches
                send(&mut link, &bad);
                n_crc += 1;
            }
            2 => {
                send(&mut link, &frame(&hb(0xBAD, seq + 1), Some(&key)));
                n_cluster += 1;
            }
            3 => {
                send(&mut link, &frame(&hb(CLUSTER, seq + 1), Some(&other_key)));
                n_mac += 1;
            }
            _ => {
                let old = sent[sent.len().saturating_sub(4)].clone();
                send(&mut link, &old);
                n_replay += 1;
            }
        }
        if watching_at.is_none() {
            watching_at = q.try_wait_for("state: watching", 0, Duration::ZERO).map(|x| x.1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(watching_at.is_some(), "valid heartbeats among the noise were never seen:\n{}", q.text());
    assert!(
        q.try_wait_for("BOOT RELEASED", 0, Duration::ZERO).is_none(),
        "released while valid heartbeats continued:\n{}",
        q.text()
    );

    let status = q.command("status");
    println!("{status}");
    let (peak, room) = assert_stack_within_budget(&status);
    println!("stack: peak {peak} of {room} bytes (keyed frames: HMAC-SHA256 on the deepest path)");
    println!("sent: {n_crc} bad-crc, {n_cluster} wrong-cluster, {n_mac} bad-mac, {n_replay} replays, {n_random} noise bursts");
    assert!(count(&status, "bad-crc") >= n_crc, "{status}");
    assert_eq!(count(&status, "wrong-cluster"), n_cluster, "{status}");
    assert_eq!(count(&status, "bad-mac"), n_mac, "{status}");
    assert_eq!(count(&status, "replay"), n_replay, "{status}");
    let noise_seen: u32 =
        ["bad-cobs", "overlong", "bad-magic", "truncated", "never-written", "unsupported-version", "missing-mac"]
            .iter()
            .map(|r| count(&status, r))
            .sum::<u32>()
            + count(&status, "bad-crc")
            - n_crc;
    assert!(noise_seen >= 1, "noise bursts left no trace in the counters: {status}");

    // The valid heartbeats stop, the noise goes on: released after the timeout.
    let stopped = Instant::now();
    for _ in 0..20 {
        send(&mut link, &frame(&hb(0xBAD, 1), Some(&key)));
        send(&mut link, &sent[0]);
        std::thread::sleep(Duration::from_millis(100));
        if q.try_wait_for("BOOT RELEASED", 0, Duration::ZERO).is_some() {
            break;
        }
    }
    let (released, _) = q.wait_for("BOOT RELEASED: primary silent", 0, Duration::from_secs(10));
    let ms = released.duration_since(stopped).as_millis();
    println!("valid beats stopped → BOOT RELEASED in {ms} ms");
    assert!(ms <= TIMEOUT_MS as u128 + 1500, "{ms} ms");
}
