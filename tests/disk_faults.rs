//! Disk faults under the real agent and listener: the shared disk is an image in a
//! fault-injecting FUSE filesystem (tests/support/faultfs.rs), so EIO, hung, dropped and torn
//! writes reach the processes through the kernel, as from a failing disk (and through a loop
//! device where a block device is wanted). Each test asserts what an operator would see: the
//! agent's log and exit status, the listener's console, `rearguard disk dump`.
//!
//! Root only (FUSE mount, loop device); they fail, never skip, without it.

mod support;

use std::time::{Duration, Instant};
use support::disk::*;
use support::faultfs::*;
use support::process::Process;
use support::Agent;

/// Node 0's heartbeat slot (block 1 of the area).
const SLOT: std::ops::Range<u64> = 1..2;

fn slot_status(c: &Cluster) -> String {
    c.dump_json()["slots"][0]["status"].as_str().unwrap_or("?").to_string()
}

/// Starts agent and listener on `c` and lets a few heartbeats land, so the fault hits a
/// primary the listener has seen alive.
fn watched(c: &Cluster) -> (Agent, Process) {
    let (agent, listener) = c.start_watched();
    std::thread::sleep(Duration::from_millis(300));
    (agent, listener)
}

#[test]
fn a_hung_slot_write_fences_the_primary_before_the_spare_releases() {
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let t = c.timing;
    let (mut agent, mut listener) = watched(&c);
    let hung_at = Instant::now();
    // Longer than the listener's timeout: the write is still stuck when the spare takes over.
    fs.inject(Fault::HangWrites(SLOT, Duration::from_millis(3 * t.timeout_ms)));
    let (fenced_at, line) = agent.wait_line("fence command ran", Duration::from_secs(5));
    let fenced_after = fenced_at.duration_since(hung_at).as_millis() as u64;
    println!(
        "hung write: fence command ran {fenced_after} ms after the disk hung (budget: interval + write deadline = {} ms from the last good cycle)",
        t.interval_ms + t.write_deadline_ms
    );
    assert!(c.fenced(), "the fence command did not run: {line}");
    assert!(fenced_after < t.timeout_ms, "fenced {fenced_after} ms after the hang; the spare may already have booted");
    let (released_at, released) = listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    assert!(fenced_at < released_at, "the spare released before the primary fenced itself");
    assert!(released.contains("silent for"), "{released}");
    // The stuck write completes when the disk comes back; only then can the process exit.
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(Some(4)), "{}", agent.log());
    assert!(agent.log().contains("fenced: no heartbeat cycle"), "{}", agent.log());
    assert!(fs.stats().hung >= 1);
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "takeover-claim");
}

#[test]
fn eio_on_the_slot_through_a_loop_device_fences_the_primary_and_the_listener_reports_the_silence() {
    let fs = FaultFs::mount(Options::default());
    let lo = Loop::over(&fs.image(), 4096);
    let c = Cluster::on_device(Timing::default(), &lo.dev);
    let (mut agent, mut listener) = watched(&c);
    let failed_at = Instant::now();
    fs.inject(Fault::WriteError(SLOT));
    let (_, warn) = agent.wait_line("heartbeat write failed", Duration::from_secs(5));
    assert!(warn.contains("Input/output error") && warn.contains(lo.dev.to_str().unwrap()), "{warn}");
    let (fenced_at, _) = agent.wait_line("fence command ran", Duration::from_secs(5));
    println!(
        "EIO on the slot: fenced {} ms after the first failed write; the agent said: {warn}",
        fenced_at.duration_since(failed_at).as_millis()
    );
    assert_eq!(agent.wait_exit(Duration::from_secs(5)), Some(Some(4)), "{}", agent.log());
    let (released_at, released) = listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    assert!(fenced_at < released_at, "released before the primary fenced");
    assert!(released.contains("primary silent for"), "{released}");
    assert!(fs.stats().write_errors >= 1);
    assert_eq!(slot_status(&c), "stalled");
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "takeover-claim");
    // Processes off the device before the loop device goes, and that before the mount.
    drop((agent, listener));
    drop(lo);
}

#[test]
fn silently_dropped_writes_are_no_liveness_the_spare_takes_over_and_the_primary_stops() {
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let t = c.timing;
    let (mut agent, mut listener) = watched(&c);
    assert_eq!(slot_status(&c), "alive");
    let dropped_at = Instant::now();
    fs.inject(Fault::DropWrites(SLOT));
    // The agent cannot tell: its writes "succeed". The disk says otherwise.
    assert_eq!(slot_status(&c), "stalled", "dump should show the slot not advancing");
    let (released_at, released) = listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    let after = released_at.duration_since(dropped_at).as_millis() as u64;
    println!("dropped writes: released {after} ms after the writes started vanishing: {released}");
    assert!(released.contains("silent for"), "{released}");
    assert!(after + t.interval_ms + t.poll_ms >= t.timeout_ms, "released after only {after} ms");
    // The mailbox still works: the primary reads the claim and stops serving (exit 3).
    assert_eq!(agent.wait_exit(Duration::from_secs(5)), Some(Some(3)), "{}", agent.log());
    assert!(agent.log().contains("takeover claim"), "{}", agent.log());
    assert!(!agent.log().contains("fenced: no heartbeat cycle"), "the agent saw nothing wrong with its writes");
    assert!(fs.stats().dropped >= 5);
}

#[test]
fn listener_read_errors_hold_the_release_and_are_reported() {
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let t = c.timing;
    let (mut agent, mut listener) = watched(&c);
    // Only reads of the slot fail: the agent (which writes it and reads its mailbox) is
    // unaffected; the spare cannot see its primary.
    fs.inject(Fault::ReadError(SLOT));
    let (_, warn) = listener.wait_line("slot read failed", Duration::from_secs(5));
    assert!(warn.contains("Input/output error"), "{warn}");
    // The primary beats on for a while, then dies, while the spare is blind: the spare must
    // not boot from a disk it cannot read, however long that lasts.
    std::thread::sleep(Duration::from_millis(3 * t.interval_ms));
    agent.kill();
    let held_for = Duration::from_millis(3 * t.timeout_ms);
    assert!(
        listener.try_wait_line("BOOT RELEASED", held_for).is_none(),
        "released while the slot could not be read:\n{}",
        listener.lines().join("\n")
    );
    assert!(listener.is_running());
    let failures = fs.stats().read_errors;
    assert!(failures >= 3 * t.timeout_ms / t.poll_ms / 2, "the listener kept trying: {failures} failed reads");
    // The disk recovers: the listener says so, sees no progress, and releases a timeout later.
    let healed_at = Instant::now();
    fs.clear();
    listener.wait_line("slot reads work again", Duration::from_secs(5));
    let (released_at, released) = listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    let after = released_at.duration_since(healed_at).as_millis() as u64;
    println!(
        "listener read errors: held {} ms while blind, released {after} ms after the disk recovered",
        held_for.as_millis()
    );
    assert!(released.contains("silent for"), "{released}");
    // The slot showed a newer heartbeat than the last one seen before the reads failed: that
    // is progress, and a whole timeout must pass after it.
    assert!(after + t.poll_ms >= t.timeout_ms, "released {after} ms after the disk recovered");
}

#[test]
fn torn_slot_writes_are_refused_by_the_listener_and_counted_and_the_spare_takes_over() {
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let (mut agent, mut listener) = watched(&c);
    // The write tears after 20 bytes (header, ids, epoch, the new sequence): the rest of the
    // record and its CRC are the previous one's.
    fs.inject(Fault::TornWrites(SLOT, 20));
    let (_, rejected) = listener.wait_line("slot rejected", Duration::from_secs(5));
    assert!(rejected.contains("crc"), "{rejected}");
    let (_, released) = listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
    println!("torn writes: the listener said {rejected:?}, then {released:?}");
    assert!(released.contains("silent for"), "{released}");
    assert_eq!(agent.wait_exit(Duration::from_secs(5)), Some(Some(3)), "{}", agent.log());
    fs.clear();
    let dump = c.dump_json();
    assert!(dump["slots"][0]["status"].as_str().unwrap().contains("crc"), "{dump}");
    assert!(fs.stats().torn >= 5);
}

#[test]
fn a_latency_spike_within_the_deadline_warns_but_neither_fences_nor_releases() {
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let t = c.timing;
    let (mut agent, mut listener) = watched(&c);
    // Each request 90 ms late: a cycle (write + mailbox read) takes ~180 ms, more than half
    // the 300 ms write deadline (the early warning), less than interval + deadline.
    fs.inject(Fault::Latency(Duration::from_millis(90)));
    let (_, warn) = agent.wait_line("slow heartbeat cycle", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(2 * t.timeout_ms));
    fs.clear();
    println!("latency spike: the agent said {warn:?}");
    agent.assert_running();
    assert!(!c.fenced(), "fenced on a slow but working disk:\n{}", agent.log());
    assert!(listener.try_wait_line("BOOT RELEASED", Duration::ZERO).is_none(), "{}", listener.lines().join("\n"));
    assert_eq!(slot_status(&c), "alive");
}

#[test]
fn the_control_file_takes_faults_as_text_and_refuses_nonsense() {
    let fs = FaultFs::mount(Options::default());
    let control = fs.dir().join("control");
    let img = fs.image();
    let read_block = |b: u64| {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; BLOCK as usize];
        std::fs::File::open(&img).unwrap().read_exact_at(&mut buf, b * BLOCK).map(|_| buf)
    };
    std::fs::write(&control, "read-error 2-3\n").unwrap();
    assert_eq!(read_block(2).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(read_block(3).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(read_block(4).is_ok() && read_block(1).is_ok());
    let e = std::fs::write(&control, "hang 1\n").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    std::fs::write(&control, "clear\n").unwrap();
    assert!(read_block(2).is_ok());
    let log = std::fs::read_to_string(&control).unwrap();
    assert_eq!(log, "ok: read-error 2-3\nerror: \"hang 1\": for how many ms?\nok: cleared\n", "{log}");
}
