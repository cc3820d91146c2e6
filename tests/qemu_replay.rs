//! Anti-replay across restarts of the emulated controller (issue 12): the firmware keeps each
//! watched primary's highest (epoch, sequence) on its SD card beside the config copies
//! (`firmware/src/app/marks.rs`), so heartbeat records captured from a live primary's slot and
//! written back after the controller restarts are refused — 0 accepted, and the never-seen
//! policy releases the boot as if nothing came. The control run, the same replay with the marks
//! erased, is taken as liveness and holds the release back. Real agent, real firmware in QEMU,
//! one SD image.

mod support;
use rearguard_shared::config::ListenerConfig;
use rearguard_shared::disk::RECORD_SECTOR;
use rearguard_shared::heartbeat::{self, Verifier, MAX_FRAME};
use rearguard_shared::link::{encode_frame, MAX_ENCODED};
use rearguard_shared::listener::NeverSeenPolicy;
use rearguard_shared::Duration as RgDuration;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use support::disk::{Cluster, Timing};
use support::qemu::*;
use support::*;

const TIMEOUT_MS: u64 = 1000;
/// How long the listener waits for a primary it never saw alive before it releases.
const NEVER_SEEN_MS: u64 = 2000;
/// The replay marks' sector on the card: one block after config copy B.
const MARKS_OFFSET: u64 = NV_OFFSET + 2 * 4096;

fn read_marks(img: &std::path::Path) -> [u8; 512] {
    let mut b = [0u8; 512];
    std::fs::File::open(img).unwrap().read_exact_at(&mut b, MARKS_OFFSET).unwrap();
    b
}

/// Boots the controller on `c`'s image and waits for what it says of its replay marks.
fn boot(c: &Cluster, marks: &str) -> Qemu {
    let q = Qemu::start(c.dir.path(), &c.disk);
    q.wait_for(&format!("replay marks: {marks}"), 0, Duration::from_secs(10));
    q
}

/// Writes each record into slot 0 and sends it as a frame on the serial link (the agent sends
/// the same records on both), each left for three polls; returns when the last was written.
fn replay(c: &Cluster, q: &Qemu, records: &[Vec<u8>]) -> Instant {
    let mut link = UnixStream::connect(&q.link).unwrap();
    link.write_all(&[0]).unwrap();
    let v = Verifier { cluster_id: CLUSTER, key: None };
    c.replay_slot(0, records, Duration::from_millis(300), |r| {
        let mut frame = [0u8; MAX_FRAME];
        let n = heartbeat::encode(&heartbeat::decode(r, &v).unwrap(), None, &mut frame);
        let mut wire = [0u8; MAX_ENCODED];
        let n = encode_frame(&frame[..n], &mut wire);
        link.write_all(&wire[..n]).unwrap();
    })
}

/// A medium's line on the status screen ("disk" or "serial"): (accepted, replay rejections).
fn counts(status: &str, medium: &str) -> (u32, u32) {
    let line = status.lines().find(|l| l.trim_start().starts_with(medium)).unwrap_or_else(|| panic!("{status}"));
    let after = |key: &str| -> u32 {
        line.split(key).nth(1).map_or(0, |s| s.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap())
    };
    (after("accepted "), after("replay="))
}

#[test]
fn slot_records_replayed_after_a_controller_restart_are_refused() {
    // The image: a heartbeat area by `disk init`, the controller's settings as config copy A.
    let dir = tempdir();
    let sd = dir.path().join("sd.img");
    std::fs::File::create(&sd).unwrap().set_len(SD_SIZE).unwrap();
    let c = Cluster::on_device(Timing { timeout_ms: TIMEOUT_MS, ..Timing::default() }, &sd);
    let never_seen = NeverSeenPolicy::ReleaseAfter(RgDuration::from_millis(NEVER_SEEN_MS));
    write_config_copy(&sd, 0, &ListenerConfig { never_seen, ..listener_config(TIMEOUT_MS) }, 1);

    let q = boot(&c, "none for this cluster, watch and disk");
    let mut agent = Agent::start(&agent_config(c.dir.path(), "agent.toml", &sd, None), None);
    q.wait_for("state: watching", 0, Duration::from_secs(10));

    // Capture what the live primary writes for 1.5 s.
    let captured = c.capture_slot(0, Duration::from_millis(1500));
    assert!(captured.len() >= 10, "captured only {} records", captured.len());
    // The marks follow the live primary about once a second: 1.5 s more, and they are above
    // every captured record. Then the controller loses power and the primary dies.
    std::thread::sleep(Duration::from_millis(1500));
    drop(q);
    agent.assert_running();
    agent.kill();
    let v = Verifier { cluster_id: CLUSTER, key: None };
    let last = heartbeat::decode(captured.last().unwrap(), &v).unwrap();
    let mark = u128::from_le_bytes(read_marks(&sd)[16..32].try_into().unwrap());
    assert!(mark > (last.boot_epoch as u128) << 64 | last.sequence as u128, "mark {mark:#x} below the capture");

    // Restarted with its marks, the slot blank: every replayed record is refused.
    c.write_slot(0, &[0; RECORD_SECTOR]);
    let mut q = boot(&c, "loaded; older records refused");
    let started = Instant::now();
    let replayed = replay(&c, &q, &captured);
    let (released, _) = q.wait_for("BOOT RELEASED: primary never seen alive", 0, Duration::from_secs(10));
    println!(
        "with marks: {} records replayed over {} ms, all refused; released {} ms after the restart as never seen",
        captured.len(),
        replayed.duration_since(started).as_millis(),
        released.duration_since(started).as_millis()
    );
    let status = q.command("status");
    let (accepted, refused) = counts(&status, "disk ");
    assert_eq!(accepted, 0, "{status}");
    assert!(refused as usize >= captured.len(), "{refused} replay rejections for {} records: {status}", captured.len());
    assert_eq!(counts(&status, "serial "), (0, captured.len() as u32), "{status}");
    assert!(!q.text().contains("state: watching"), "a replay was taken as liveness: {}", q.text());
    drop(q);

    // The control: the same replay with the marks erased (and the claim cleared, the slot
    // blank) is taken as liveness, and the release waits for the timeout after the last record.
    let f = std::fs::OpenOptions::new().write(true).open(&sd).unwrap();
    f.write_all_at(&[0; 512], MARKS_OFFSET).unwrap();
    f.sync_all().unwrap();
    let o = run(&["disk", "clear", sd.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.write_slot(0, &[0; RECORD_SECTOR]);
    let q = boot(&c, "none for this cluster, watch and disk");
    let started = Instant::now();
    let replayed = replay(&c, &q, &captured);
    q.wait_for("state: watching (primary is alive)", 0, Duration::from_secs(1));
    let (released, _) = q.wait_for("BOOT RELEASED: primary silent for", 0, Duration::from_secs(10));
    println!(
        "without marks: the replay was taken as liveness; released {} ms after the restart, {} ms after the last record",
        released.duration_since(started).as_millis(),
        released.duration_since(replayed).as_millis()
    );
    assert!(released > replayed, "released before the replay ended: {}", q.text());
}
