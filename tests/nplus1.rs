//! N+1: spares (Linux-board listener processes) on one image with several primaries (real
//! agents), primaries killed with SIGKILL. Every release is counted by the gate command itself
//! (it appends a line to a file), so a second release cannot hide.

mod support;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::disk::{SpareCluster, Timing};
use support::process::Process;
use support::{median, rearguard, run, stderr, stdout};

/// Small numbers keep the test short: interval 50 ms, timeout 500 ms, poll 20 ms. The agents'
/// bound holds: 2 × (50 + 150 + 40) = 480 ≤ 500.
fn timing() -> Timing {
    Timing { interval_ms: 50, timeout_ms: 500, poll_ms: 20, write_deadline_ms: 150, fence_time_ms: 40 }
}

const RUNS: usize = 20;

/// Waits until one of `spares` prints a line containing `needle`; returns its index and when.
fn first_to_show(spares: &[&Process], needle: &str, within: Duration) -> (usize, Instant) {
    let end = Instant::now() + within;
    loop {
        for (i, s) in spares.iter().enumerate() {
            if let Some(l) = s.out.wait_line(needle, 0, Duration::ZERO) {
                return (i, l.at);
            }
        }
        assert!(
            Instant::now() < end,
            "no spare showed {needle:?}:\n{}",
            spares.iter().map(|s| s.out.text()).collect::<Vec<_>>().join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn watching_all(spare: &Process, name: &str, primaries: u8) {
    for n in 0..primaries {
        spare.out.expect_line(name, &format!("primary {n}: watching"), 0, Duration::from_secs(10));
    }
}

#[test]
fn of_two_spares_exactly_one_takes_each_dead_primary_and_the_other_takes_the_next() {
    let mut latencies = Vec::new();
    for run in 0..RUNS {
        let c = SpareCluster::new(timing(), 3, 2);
        let mut agents: Vec<_> = (0..3).map(|n| c.spawn_agent(n)).collect();
        let spares = [c.spawn_spare(3, "0-2"), c.spawn_spare(4, "0-2")];
        for (i, s) in spares.iter().enumerate() {
            watching_all(s, &format!("spare {}", 3 + i), 3);
        }
        let victim = (run % 3) as u8;
        let killed = agents[victim as usize].kill();
        let (winner, at) = first_to_show(
            &[&spares[0], &spares[1]],
            &format!("BOOT RELEASED as node {victim}:"),
            Duration::from_secs(10),
        );
        latencies.push(at.duration_since(killed).as_millis());
        let loser = 1 - winner;
        // The loser decided not to take it: it says who did (or that the claim was not its).
        spares[loser].out.expect_line("losing spare", &format!("primary {victim}: claim"), 0, Duration::from_secs(5));
        let gates = c.gate_runs();
        assert_eq!(gates.len(), 1, "run {run}: {gates:?}");
        let (w, l) = (3 + winner, 3 + loser);
        assert!(gates[0].starts_with(&format!("spare={w} node={victim} arg={victim} epoch=")), "run {run}: {gates:?}");
        assert!(gates[0].contains("reason=primary silent for"), "{gates:?}");
        assert!(!spares[loser].out.text().contains("BOOT RELEASED"), "run {run}: the loser released too");
        for (n, a) in agents.iter_mut().enumerate() {
            if n as u8 != victim {
                a.assert_running();
            }
        }
        // Every fourth run: a second primary dies. The spare left takes it; the consumed one
        // reports it and takes nothing.
        if run % 4 == 0 {
            let next = (victim + 1) % 3;
            let killed = agents[next as usize].kill();
            let (at, _) = spares[loser].out.expect(
                "surviving spare",
                &format!("BOOT RELEASED as node {next}:"),
                0,
                Duration::from_secs(10),
            );
            latencies.push(at.duration_since(killed).as_millis());
            spares[winner].out.expect_line(
                "consumed spare",
                &format!("primary {next}: silent past the timeout: no spare left"),
                0,
                Duration::from_secs(5),
            );
            let gates = c.gate_runs();
            assert_eq!(gates.len(), 2, "run {run}: {gates:?}");
            assert!(gates[1].starts_with(&format!("spare={l} node={next} arg={next} epoch=")), "run {run}: {gates:?}");
        }
    }
    let max = *latencies.iter().max().unwrap();
    println!(
        "n+1: kill → BOOT RELEASED as node K, median {} ms, max {max} ms over {} releases (timeout 500 ms)",
        median(&mut latencies),
        latencies.len()
    );
}

#[test]
fn a_consumed_spare_reports_a_second_death_and_its_status_says_who_claimed_whom() {
    let c = SpareCluster::new(timing(), 2, 1);
    let mut agents: Vec<_> = (0..2).map(|n| c.spawn_agent(n)).collect();
    let cfg = c.spare_config(2, "role = \"spare\"\nwatch = [0, 1]");
    let mut cmd = rearguard();
    cmd.args(["listener", "--config"]).arg(cfg).env("REARGUARD_LOG", "warn").stdin(Stdio::piped());
    let mut spare = Process::spawn(cmd);
    let mut console = spare.take_stdin();
    spare.wait_line("spare: watching primaries 0,1; the only spare on the disk", Duration::from_secs(10));
    watching_all(&spare, "spare", 2);
    agents[1].kill();
    spare.wait_line("BOOT RELEASED as node 1: primary silent for", Duration::from_secs(10));
    agents[0].kill();
    spare.wait_line("primary 0: silent past the timeout: no spare left", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.gate_runs().len(), 1, "{:?}", c.gate_runs());
    assert!(c.gate_runs()[0].starts_with("spare=2 node=1 arg=1 epoch="), "{:?}", c.gate_runs());
    writeln!(console, "status").unwrap();
    spare.wait_line("primary 0: no-spare-left, last progressed", Duration::from_secs(5));
    spare.wait_line("primary 1: taken, last progressed", Duration::from_secs(5));
    let dump = run(&["disk", "dump", c.disk.to_str().unwrap(), "--watch-ms", "60"]);
    let text = stdout(&dump);
    assert!(text.contains("node 1 (primary) taken over by node 2 (spare)"), "{text}");
    assert!(!text.contains("node 0 (primary) taken over"), "{text}");
    assert!(text.contains("slot 2: never-written — spare slot"), "{text}");
}

fn image(c: &SpareCluster) -> Vec<u8> {
    std::fs::read(&c.disk).unwrap()
}

#[test]
fn bad_areas_are_refused_and_nothing_is_written() {
    let c = SpareCluster::new(timing(), 3, 2);
    let before = image(&c);
    let dev = c.disk.to_str().unwrap();
    for (args, expect) in [
        (vec!["--primaries", "0", "--spares", "1"], "--primaries 0: an area needs at least one primary"),
        (vec!["--primaries", "30", "--spares", "3"], "33 slots, but an area holds at most 32"),
        (vec!["--primaries", "2", "--spares", "0"], "--spares 0: nothing could take over"),
    ] {
        let mut a = vec!["disk", "init", dev, "--cluster-id", "0xC0FFEE", "--force"];
        a.extend(args);
        let o = run(&a);
        assert!(!o.status.success(), "{a:?} was accepted");
        assert!(stderr(&o).contains(expect), "{a:?}: {}", stderr(&o));
        assert_eq!(image(&c), before, "{a:?} wrote to the image");
    }
    let absent = c.path("absent.img");
    let o = run(&["disk", "init", absent.to_str().unwrap(), "--cluster-id", "1", "--primaries", "0", "--create"]);
    assert!(!o.status.success() && !absent.exists(), "a refused init created the image");
    // The two-node default is layout 1, as before roles existed; 3 + 2 is layout 2.
    let two = c.path("two.img");
    let o = run(&["disk", "init", two.to_str().unwrap(), "--cluster-id", "1", "--create"]);
    assert!(stdout(&o).contains("1 primary (node 0), 1 spare (node 1) (layout 1)"), "{}", stdout(&o));
    assert_eq!(&std::fs::read(&two).unwrap()[8..10], &1u16.to_le_bytes());
    assert_eq!(&before[8..10], &2u16.to_le_bytes());
}

#[test]
fn bad_spare_configs_are_refused_and_the_disk_is_untouched() {
    let c = SpareCluster::new(timing(), 3, 2);
    let before = image(&c);
    for (node, extra, expect) in [
        (
            3,
            "role = \"spare\"\nwatch = \"0-3\"",
            "[listener] watch = \"0-3\": names this spare's own slot (node_id = 3)",
        ),
        (3, "role = \"spare\"\nwatch = [0, 7]", "node 7 has no slot on the shared disk (it has 5)"),
        (
            3,
            "role = \"spare\"\nwatch = \"0,4\"",
            "node 4 is not a primary's slot on the shared disk: watch only primaries",
        ),
        (
            1,
            "role = \"spare\"\nwatch = \"0\"",
            "node_id 1 is a primary's slot on the shared disk: give this spare its own",
        ),
        (3, "role = \"spare\"", "[listener] role = \"spare\": a spare needs watch"),
    ] {
        let cfg = c.spare_config(node, extra);
        let o = run(&["check-config", cfg.to_str().unwrap()]);
        assert!(!o.status.success(), "{extra}: accepted: {}", stdout(&o));
        assert!(stderr(&o).contains(expect), "{extra}: {}", stderr(&o));
        let mut l = rearguard();
        let o = l.args(["listener", "--config"]).arg(&cfg).stdin(Stdio::null()).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{extra}");
        assert!(stderr(&o).contains(expect), "{extra}: {}", stderr(&o));
        assert_eq!(image(&c), before, "{extra}: the disk was written");
    }
    assert!(c.gate_runs().is_empty());
    // Two spares share this disk: a spare polling no faster than the settle time (twice the
    // interval, 100 ms) could never confirm a claim.
    let slow = SpareCluster::new(Timing { poll_ms: 100, ..timing() }, 3, 2);
    let cfg = slow.spare_config(3, "role = \"spare\"\nwatch = \"0-2\"");
    let o = run(&["check-config", cfg.to_str().unwrap()]);
    assert!(stderr(&o).contains("poll_ms = 100 is not below the claim settle time 100 ms"), "{}", stderr(&o));
    let ok = c.spare_config(3, "role = \"spare\"\nwatch = \"0-2\"");
    let o = run(&["check-config", ok.to_str().unwrap()]);
    assert!(
        o.status.success() && stdout(&o).contains("watches primaries 0,1,2 as a spare"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// A spare that crashed mid-arbitration left its *pending* claim in the dead primary's
/// mailbox. Restarted, it knows it did not release (only a settled claim says so): it stays
/// free and takes the next primary that dies, and the pending claim keeps holding the first
/// one for an operator. (Before claims were sealed it took its own claim for a release it had
/// made, said `released as node 1 before a restart`, and took nothing more.)
#[test]
fn a_spare_restarted_with_its_own_pending_claim_is_not_consumed_and_takes_the_next() {
    let c = SpareCluster::new(timing(), 3, 2);
    let mut agents: Vec<_> = (0..3).map(|n| c.spawn_agent(n)).collect();
    let mut spare = c.spawn_spare(3, "0-2");
    watching_all(&spare, "spare 3", 3);
    spare.kill();
    agents[1].kill();
    // What spare 3 would have written before crashing in its settle wait.
    let epoch = c_dump_epoch(&c, 1);
    let mut block = [0u8; 4096];
    rearguard_shared::disk::MailboxMessage::PendingClaim { by: 3, primary_epoch: epoch }.encode(&mut block);
    let f = std::fs::OpenOptions::new().write(true).open(&c.disk).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &block, (1 + 5 + 1) * 4096).unwrap();
    let text = stdout(&run(&["disk", "dump", c.disk.to_str().unwrap()]));
    assert!(text.contains("node 1: TAKEOVER CLAIM by node 3, PENDING"), "{text}");

    let spare = c.spawn_spare(3, "0-2");
    spare.out.expect_line("spare 3", "primary 0: watching", 0, Duration::from_secs(10));
    assert!(!spare.out.text().contains("before a restart"), "{}", spare.out.text());
    agents[0].kill();
    spare.out.expect_line("spare 3", "BOOT RELEASED as node 0:", 0, Duration::from_secs(10));
    let gates = c.gate_runs();
    assert_eq!(gates.len(), 1, "{gates:?}");
    assert!(gates[0].starts_with("spare=3 node=0 arg=0 epoch="), "{gates:?}");
    let dump = c_dump(&c);
    assert_eq!(dump["mailboxes"][1]["pending"], true, "{dump}");
    assert_eq!(dump["mailboxes"][1]["by"], 3, "{dump}");
    agents[2].assert_running();
}

fn c_dump(c: &SpareCluster) -> serde_json::Value {
    serde_json::from_slice(&run(&["disk", "dump", c.disk.to_str().unwrap(), "--json"]).stdout).unwrap()
}

fn c_dump_epoch(c: &SpareCluster, node: usize) -> u32 {
    let dump = c_dump(c);
    dump["slots"][node]["epoch"].as_u64().unwrap_or_else(|| panic!("{dump}")) as u32
}
