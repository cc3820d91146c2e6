//! The watchdog fence path, with a stand-in for `/dev/watchdog` (this kernel has no watchdog
//! device and no softdog): a file in the fault-injecting FUSE filesystem that records every
//! open, ioctl, write and close the real agent makes (tests/support/faultfs.rs). Root only.

mod support;

use std::time::{Duration, Instant};
use support::disk::*;
use support::faultfs::*;
use support::Agent;
use WatchdogEvent::*;

const TIMEOUT_S: u32 = 1;

/// A cluster on `fs`'s image whose agent fences with the stand-in watchdog. The secondary's
/// timeout is 3 s: the agent refuses less than 2 × (100 + 300 + 1000) ms.
fn start(fs: &FaultFs) -> (Cluster, Agent) {
    let t = Timing { timeout_ms: 3000, ..Timing::default() };
    let c = Cluster::on_device(t, &fs.image());
    let cfg = c.path("agent-watchdog.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster]\nid = {:#x}\nnode_id = 0\n[disk]\ndevice = {:?}\ninterval_ms = {}\nwrite_deadline_ms = {}\n\
             [fence]\nmethod = \"watchdog\"\ndevice = {:?}\ntimeout_s = {TIMEOUT_S}\n",
            support::CLUSTER,
            c.disk,
            t.interval_ms,
            t.write_deadline_ms,
            fs.watchdog_device()
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&cfg, None);
    agent.wait_line("primary agent started", Duration::from_secs(5));
    (c, agent)
}

/// SIGTERM and the exit status.
fn clean_stop(agent: &mut Agent) -> Option<i32> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.pid()), nix::sys::signal::Signal::SIGTERM).unwrap();
    agent.wait_exit(Duration::from_secs(5)).expect("agent did not stop within 5 s of SIGTERM")
}

/// The stand-in's events once it has been closed (the close reaches it after the exit).
fn events_until_closed(fs: &FaultFs) -> Vec<(Instant, WatchdogEvent)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ev = fs.watchdog_events();
        if ev.iter().any(|(_, e)| matches!(e, Close { .. })) || Instant::now() > deadline {
            return ev;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pets(ev: &[(Instant, WatchdogEvent)]) -> Vec<Instant> {
    ev.iter().filter(|(_, e)| *e == Pet).map(|(t, _)| *t).collect()
}

#[test]
fn the_agent_arms_the_watchdog_pets_it_every_cycle_and_magic_closes_it_on_a_clean_stop() {
    let fs = FaultFs::mount(Options::default());
    let (c, mut agent) = start(&fs);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(clean_stop(&mut agent), Some(0), "{}", agent.log());
    let ev = events_until_closed(&fs);
    let kinds: Vec<&WatchdogEvent> = ev.iter().map(|(_, e)| e).collect();
    assert_eq!(kinds[..2], [&Open, &SetTimeout(TIMEOUT_S)], "armed first: {kinds:?}");
    assert_eq!(kinds[kinds.len() - 2..], [&Magic, &Close { disarmed: true }], "magic close last: {kinds:?}");
    // One pet per completed heartbeat cycle, the last ("leaving") one included.
    let p = pets(&ev);
    let sequence = c.dump_json()["slots"][0]["sequence"].as_u64().unwrap();
    assert_eq!(p.len() as u64, sequence, "pets vs heartbeats written: {kinds:?}");
    let t = c.timing;
    let widest = p.windows(2).map(|w| w[1].duration_since(w[0]).as_millis() as u64).max().unwrap();
    println!("watchdog: {} pets for {sequence} heartbeats, widest gap {widest} ms", p.len());
    assert!(widest < t.interval_ms + t.write_deadline_ms, "a gap of {widest} ms between pets");
    let log = agent.log();
    assert!(log.contains("watchdog armed") && log.contains("watchdog disarmed (magic close)"), "{log}");
}

#[test]
fn a_hung_cycle_stops_the_pets_and_the_watchdog_is_left_armed() {
    let fs = FaultFs::mount(Options::default());
    let (c, mut agent) = start(&fs);
    std::thread::sleep(Duration::from_millis(500));
    let hung_at = Instant::now();
    fs.inject(Fault::HangWrites(1..2, Duration::from_millis(2000)));
    let (fired_at, _) = agent.wait_line("watchdog left armed", Duration::from_secs(5));
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(Some(4)), "{}", agent.log());
    let ev = events_until_closed(&fs);
    let kinds: Vec<&WatchdogEvent> = ev.iter().map(|(_, e)| e).collect();
    assert_eq!(kinds.last(), Some(&&Close { disarmed: false }), "closed without the magic 'V': {kinds:?}");
    assert!(!kinds.contains(&&Magic), "{kinds:?}");
    let p = pets(&ev);
    // A cycle whose write had landed before the hang may still pet once; none after that.
    let after_hang = p.iter().filter(|&&t| t > hung_at).count();
    assert!(after_hang <= 1, "{after_hang} pets after the disk hung");
    let last_pet = *p.last().unwrap();
    assert!(last_pet < fired_at);
    // A real watchdog resets the machine TIMEOUT_S after the last pet: before the secondary
    // (which waits its timeout after the last heartbeat it saw, itself before that pet) boots.
    let reset_after_hang = last_pet.duration_since(hung_at.min(last_pet)).as_millis() as u64 + 1000 * TIMEOUT_S as u64;
    println!(
        "hung cycle: last pet {} ms after the hang, fence monitor fired {} ms after it; a real watchdog resets \
         at most {reset_after_hang} ms after the hang (secondary timeout {} ms)",
        last_pet.saturating_duration_since(hung_at).as_millis(),
        fired_at.duration_since(hung_at).as_millis(),
        c.timing.timeout_ms
    );
    assert!(reset_after_hang < c.timing.timeout_ms);
}

#[test]
fn a_watchdog_without_the_ioctls_is_petted_by_writes_and_the_agent_says_so() {
    let fs = FaultFs::mount(Options { watchdog_ioctls: false, ..Options::default() });
    let (_c, mut agent) = start(&fs);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(clean_stop(&mut agent), Some(0), "{}", agent.log());
    let log = agent.log();
    assert!(log.contains("does not take WDIOC_SETTIMEOUT"), "{log}");
    assert_eq!(log.matches("does not take WDIOC_KEEPALIVE; petting it by writes").count(), 1, "{log}");
    let ev = events_until_closed(&fs);
    let kinds: Vec<&WatchdogEvent> = ev.iter().map(|(_, e)| e).collect();
    let refused = kinds.iter().filter(|e| matches!(e, UnknownIoctl(_))).count();
    assert_eq!(refused, 2, "one try of each ioctl, then writes: {kinds:?}");
    assert!(pets(&ev).len() >= 4, "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 2..], [&Magic, &Close { disarmed: true }], "{kinds:?}");
}
