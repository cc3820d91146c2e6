//! N+1 at scale: one spare (a Linux-board listener process) watching 1, 4, 16 and 31 primaries
//! (real agents on one image); the highest-numbered primary — the last one each poll reads —
//! is killed, and the time to `BOOT RELEASED` is measured. The goal is a release
//! latency that does not grow with N. The test asserts only a bound a loaded machine keeps
//! (timeout + 1 s); `RG_RUNS=10 cargo test --release --test spare_scale -- --nocapture`
//! gives the figures in the README.

mod support;
use std::time::Duration;
use support::disk::{SpareCluster, Timing};
use support::median;

fn runs() -> usize {
    std::env::var("RG_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(2)
}

#[test]
fn release_latency_does_not_grow_with_the_number_of_watched_primaries() {
    let t = Timing::default();
    let mut table = Vec::new();
    for n in [1u8, 4, 16, 31] {
        let mut latencies = Vec::new();
        for _ in 0..runs() {
            let c = SpareCluster::new(t, n, 1);
            let mut agents: Vec<_> = (0..n).map(|k| c.spawn_agent(k)).collect();
            let spare = c.spawn_spare(n, &format!("0-{}", n - 1));
            if n == 1 {
                spare.out.expect_line("spare", "state: watching", 0, Duration::from_secs(20));
            } else {
                for k in 0..n {
                    spare.out.expect_line("spare", &format!("primary {k}: watching"), 0, Duration::from_secs(20));
                }
            }
            let victim = n - 1;
            let killed = agents[victim as usize].kill();
            let (at, _) = spare.out.expect("spare", "BOOT RELEASED", 0, Duration::from_secs(10));
            let latency = at.duration_since(killed).as_millis();
            let text = spare.out.text();
            let released = text.lines().find(|l| l.contains("BOOT RELEASED")).unwrap();
            if n > 1 {
                assert!(released.contains(&format!("as node {victim}:")), "{released}");
            }
            let gates = c.gate_runs();
            assert_eq!(gates.len(), 1, "{gates:?}");
            assert!(gates[0].contains(&format!("node={victim} ")), "{gates:?}");
            assert!(
                // The silence counts from the last heartbeat seen, up to an interval before the kill.
                latency + t.interval_ms as u128 >= t.timeout_ms as u128 && latency < (t.timeout_ms + 1000) as u128,
                "N = {n}: released {latency} ms after the kill (timeout {} ms)",
                t.timeout_ms
            );
            for (k, a) in agents.iter_mut().enumerate() {
                if k as u8 != victim {
                    a.assert_running();
                }
            }
            latencies.push(latency);
        }
        let max = *latencies.iter().max().unwrap();
        let med = median(&mut latencies);
        println!(
            "N = {n:2}: release {med} ms median, {max} ms max after the kill ({} runs, timeout {} ms, poll {} ms)",
            runs(),
            t.timeout_ms,
            t.poll_ms
        );
        table.push((n, med, max));
    }
    println!("{table:?}");
}
