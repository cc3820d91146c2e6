//! Randomized fault schedules, seeded and replayable.
//!
//! Firewall pair (network namespaces, tests/support/netns.rs): kill, restart, clean stop,
//! heartbeat loss (nftables numgen), silent partition, link flap, switchover, in random order
//! and dwell. While it runs: never two VIP holders (kernel view, `ip -n NS addr`) for longer
//! than the dead time while both nodes receive each other's adverts (their `accepted` counters
//! in `rearguard status --json` both advance). After the faults heal: exactly one holder
//! within 3 × the dead time, and from one dead time after the heal it stays (a takeover
//! decided on silence from before the heal may still land until then).
//!
//! Cold standby (fault-injecting FUSE disk, tests/support/faultfs.rs): kill, restart, hung
//! writes, EIO on writes, latency. Never a released spare while its primary still serves
//! unfenced: at the release, every agent is dead or has run its fence command — or, if it was
//! (re)starting as the spare decided, it reads the claim at its next cycle and exits 3.
//!
//! `RG_CHAOS_SEED=N` replays one schedule; `RG_CHAOS_SCHEDULES=N` and `RG_CHAOS_BASE=S` run
//! N schedules from seed S (bench/chaos.sh). A failing schedule prints its seed and steps.
//! Root only.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use support::disk::*;
use support::faultfs::*;
use support::netns::*;
use support::Agent;

/// splitmix64: a schedule is a pure function of its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}: expected a number")))
}

/// The seeds to run: one replayed, or `RG_CHAOS_SCHEDULES` from `RG_CHAOS_BASE`.
fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(s) = env_u64("RG_CHAOS_SEED") {
        return vec![s];
    }
    let base = env_u64("RG_CHAOS_BASE").unwrap_or(1);
    (base..base + env_u64("RG_CHAOS_SCHEDULES").unwrap_or(default_count)).collect()
}

/// Runs every seed (each catching its own failure, so a long run counts them all), prints
/// a summary, and fails naming each failing seed.
fn run_all(kind: &str, seeds: &[u64], one: impl Fn(u64) -> String) {
    let started = Instant::now();
    let mut failed = Vec::new();
    for &seed in seeds {
        eprintln!("{kind} chaos: seed {seed} ...");
        match catch_unwind(AssertUnwindSafe(|| one(seed))) {
            Ok(summary) => eprintln!("{kind} chaos: seed {seed} ok: {summary}"),
            Err(_) => {
                eprintln!("{kind} chaos: seed {seed} FAILED; replay with RG_CHAOS_SEED={seed}");
                failed.push(seed);
            }
        }
    }
    eprintln!(
        "{kind} chaos: {} schedules, {} failed {failed:?}, {:.1} s",
        seeds.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{kind} chaos: failing seeds {failed:?}; replay one with RG_CHAOS_SEED=<seed>");
}

#[derive(Clone, Copy, Debug)]
enum PairStep {
    Kill(usize),
    Restart(usize),
    CleanStop(usize),
    Loss(usize, u32),
    Partition,
    LinkFlap(usize, u64),
    Switchover,
}

fn pair_schedule(seed: u64) -> Vec<(PairStep, u64)> {
    let mut r = Rng(seed);
    let n = r.range(3, 7);
    (0..n)
        .map(|_| {
            let i = r.below(2) as usize;
            let step = match r.below(7) {
                0 => PairStep::Kill(i),
                1 => PairStep::Restart(i),
                2 => PairStep::CleanStop(i),
                3 => PairStep::Loss(i, r.range(10, 70) as u32),
                4 => PairStep::Partition,
                5 => PairStep::LinkFlap(i, r.range(50, 400)),
                _ => PairStep::Switchover,
            };
            (step, r.range(100, 800))
        })
        .collect()
}

/// One observation of the pair: VIP holders, and the adverts each node has accepted from the
/// other (None while its agent does not answer).
struct Sample {
    holders: Vec<usize>,
    accepted: [Option<u64>; 2],
}

fn sample(p: &Pair) -> Sample {
    let accepted = [0, 1].map(|i| p.status(i)["media"][0]["accepted"].as_u64());
    Sample { holders: p.holders(), accepted }
}

/// Watches the pair: fails if two nodes hold the VIP for longer than `grace` while both keep
/// accepting each other's adverts. A sample takes a few process runs (slow on a loaded
/// machine), so a two-holder stretch is measured from the end of the first sample that saw it
/// to the start of the last one: never longer than it really was.
struct Watch {
    last: Option<Sample>,
    /// Both nodes accepted each other's adverts between the last two samples.
    mutual: bool,
    /// End of the first sample of the current two-holders-in-contact stretch.
    dual_since: Option<Instant>,
    samples: u64,
    worst_dual: Duration,
}

impl Watch {
    fn new() -> Watch {
        Watch { last: None, mutual: false, dual_since: None, samples: 0, worst_dual: Duration::ZERO }
    }

    /// One sample; returns when it started.
    fn observe(&mut self, p: &Pair, grace: Duration, steps: &str) -> Instant {
        let start = Instant::now();
        let s = sample(p);
        let end = Instant::now();
        let advanced = |i: usize| match (self.last.as_ref().and_then(|l| l.accepted[i]), s.accepted[i]) {
            (Some(a), Some(b)) => b > a,
            _ => false,
        };
        self.mutual = advanced(0) && advanced(1);
        if s.holders.len() == 2 && self.mutual {
            match self.dual_since {
                None => self.dual_since = Some(end),
                Some(since) => {
                    let d = start.saturating_duration_since(since);
                    self.worst_dual = self.worst_dual.max(d);
                    assert!(
                        d <= grace,
                        "two VIP holders for at least {} ms while both nodes accept each other's adverts (limit {} ms)\nsteps: {steps}\n{}",
                        d.as_millis(),
                        grace.as_millis(),
                        p.logs()
                    );
                }
            }
        } else {
            self.dual_since = None;
        }
        self.samples += 1;
        self.last = Some(s);
        start
    }

    fn watch_for(&mut self, p: &Pair, dur: Duration, grace: Duration, steps: &str) {
        let end = Instant::now() + dur;
        while Instant::now() < end {
            self.observe(p, grace, steps);
        }
    }
}

fn pair_run(seed: u64) -> String {
    let schedule = pair_schedule(seed);
    let steps = format!("{schedule:?}");
    eprintln!("  steps: {steps}");
    let (a, b) = (NodeOpts::new(200), NodeOpts::new(100));
    let dead = Duration::from_millis(a.interval_ms * a.dead_count as u64);
    let mut p = Pair::new(false, a, b);
    p.start_both();
    let mut down = [false; 2];
    let mut w = Watch::new();
    for &(step, dwell) in &schedule {
        match step {
            PairStep::Kill(i) if !down[i] => {
                p.kill9(i);
                down[i] = true;
            }
            PairStep::CleanStop(i) if !down[i] => {
                p.stop(i);
                down[i] = true;
            }
            PairStep::Kill(i) | PairStep::CleanStop(i) | PairStep::Restart(i) => {
                p.kill9(i);
                p.start(i);
                down[i] = false;
            }
            PairStep::Loss(i, pct) => p.heartbeat_loss(i, pct),
            PairStep::Partition => {
                p.block_heartbeats(0, true);
                p.block_heartbeats(1, true);
            }
            PairStep::LinkFlap(i, ms) => {
                p.set_lan(i, false);
                w.watch_for(&p, Duration::from_millis(ms), dead, &steps);
                p.set_lan(i, true);
            }
            PairStep::Switchover => {
                if let Some(i) = (0..2).find(|&i| !down[i] && p.state(i) == "active") {
                    p.ctl(i, &["switchover"]);
                }
            }
        }
        w.watch_for(&p, Duration::from_millis(dwell), dead, &steps);
    }
    // Heal everything.
    for (i, was_down) in down.into_iter().enumerate() {
        p.heartbeat_loss(i, 0);
        p.block_heartbeats(i, false);
        p.set_lan(i, true);
        if was_down {
            p.start(i);
        }
    }
    let healed = Instant::now();
    let bound = 3 * dead;
    // Timed by when the sample that saw one holder started: that state arose before the
    // sample ended, and a sample (four process runs) takes hundreds of ms on a loaded 2-core
    // machine, which is the sampler's delay, not the pair's. Lenient by one sample's length.
    // A takeover decided on silence that began before the heal (the heal runs node by node,
    // a process at a time) can still land just after it and move the VIP once: seed 1001 saw
    // A alone, then B took over on 200 ms of pre-heal silence and A resigned to B's higher
    // term. It lands within an advert interval of the heal, so well within one dead time;
    // from then on the single holder must stay (a later takeover needs silence after it).
    let settle = healed + dead;
    let mut first: Option<(Duration, Vec<usize>)> = None;
    let holder = loop {
        let at = w.observe(&p, dead, &steps);
        let holders = &w.last.as_ref().unwrap().holders;
        if holders.len() == 1 {
            first.get_or_insert_with(|| (at.saturating_duration_since(healed), holders.clone()));
            if at >= settle {
                break holders.clone();
            }
        } else {
            assert!(
                at.saturating_duration_since(healed) <= bound,
                "no single holder within {} ms of the heal (holders {holders:?})\nsteps: {steps}\n{}",
                bound.as_millis(),
                p.logs()
            );
        }
    };
    let (one_after, first_holder) = first.unwrap();
    let stable_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < stable_until {
        w.observe(&p, dead, &steps);
        assert_eq!(
            w.last.as_ref().unwrap().holders,
            holder,
            "the holder changed more than one dead time after the heal\nsteps: {steps}\n{}",
            p.logs()
        );
    }
    let moved = if first_holder == holder {
        ""
    } else {
        // Allowed, but rare (once in 600 schedules): the logs show which takeover it was.
        eprintln!("  the VIP moved from {first_holder:?} to {holder:?} after the heal\n{}", p.logs());
        " (the VIP moved once more after the heal)"
    };
    format!(
        "{} steps, one holder {} ms after the heal{moved} (bound {} ms), {} samples, longest dual holding in contact {} ms",
        schedule.len(),
        one_after.as_millis(),
        bound.as_millis(),
        w.samples,
        w.worst_dual.as_millis()
    )
}

#[test]
fn pair_seeded_fault_schedules_heal_to_one_holder_and_never_two_in_contact() {
    require_root_and_tools();
    run_all("pair", &seeds(6), pair_run);
}

#[derive(Clone, Copy, Debug)]
enum ColdStep {
    Kill,
    Restart,
    Hang(u64),
    WriteErrors(u64),
    Latency(u64),
}

fn cold_schedule(seed: u64) -> Vec<(ColdStep, u64)> {
    let mut r = Rng(seed ^ 0xC01D);
    let n = r.range(3, 6);
    (0..n)
        .map(|_| {
            let step = match r.below(5) {
                0 => ColdStep::Kill,
                1 => ColdStep::Restart,
                2 => ColdStep::Hang(r.range(100, 1500)),
                3 => ColdStep::WriteErrors(r.range(100, 1000)),
                _ => ColdStep::Latency(r.range(20, 250)),
            };
            (step, r.range(100, 900))
        })
        .collect()
}

/// One agent of a cold-standby schedule and what became of it.
struct Started {
    agent: Agent,
    started_at: Instant,
    killed_at: Option<Instant>,
}

impl Started {
    fn new(agent: Agent) -> Started {
        Started { agent, started_at: Instant::now(), killed_at: None }
    }
}

fn released(l: &support::process::Process) -> Option<Instant> {
    l.out.wait_line("BOOT RELEASED", 0, Duration::ZERO).map(|l| l.at)
}

fn cold_run(seed: u64) -> String {
    let schedule = cold_schedule(seed);
    let steps = format!("{schedule:?}");
    eprintln!("  steps: {steps}");
    let fs = FaultFs::mount(Options::default());
    let c = Cluster::on_device(Timing::default(), &fs.image());
    let t = c.timing;
    let (agent, listener) = c.start_watched();
    let mut agents = vec![Started::new(agent)];
    for &(step, dwell) in &schedule {
        if released(&listener).is_some() {
            break;
        }
        let cur = agents.last_mut().unwrap();
        let running = cur.killed_at.is_none() && cur.agent.is_running();
        match step {
            ColdStep::Kill if running => cur.killed_at = Some(cur.agent.kill()),
            ColdStep::Kill | ColdStep::Restart => {
                if running {
                    cur.killed_at = Some(cur.agent.kill());
                }
                agents.push(Started::new(c.spawn_agent()));
            }
            ColdStep::Hang(ms) => fs.inject(Fault::HangWrites(1..2, Duration::from_millis(ms))),
            ColdStep::WriteErrors(_) => fs.inject(Fault::WriteError(1..2)),
            ColdStep::Latency(ms) => fs.inject(Fault::Latency(Duration::from_millis(ms))),
        }
        let fault_for = match step {
            ColdStep::WriteErrors(ms) => ms,
            _ => dwell,
        };
        std::thread::sleep(Duration::from_millis(fault_for));
        fs.clear();
        std::thread::sleep(Duration::from_millis(dwell.saturating_sub(fault_for)));
    }
    // The end: the primary dies for good (if it still runs); the spare must take over.
    if released(&listener).is_none() {
        let cur = agents.last_mut().unwrap();
        if cur.killed_at.is_none() && cur.agent.is_running() {
            cur.killed_at = Some(cur.agent.kill());
        }
    }
    let limit = Duration::from_millis(t.timeout_ms + 5000);
    let released_at = listener
        .out
        .wait_line("BOOT RELEASED", 0, limit)
        .unwrap_or_else(|| {
            panic!(
                "no release within {} ms of the primary's death\nsteps: {steps}\n{}",
                limit.as_millis(),
                listener.lines().join("\n")
            )
        })
        .at;
    // Judge every agent at the moment of the release.
    let (mut dead, mut fenced, mut claimed) = (0, 0, 0);
    for (k, s) in agents.iter_mut().enumerate() {
        if s.killed_at.is_some_and(|at| at <= released_at) {
            dead += 1;
            continue;
        }
        let fence = s.agent.out.wait_line("fence command ran", 0, Duration::ZERO).map(|l| l.at);
        if fence.is_some_and(|at| at <= released_at) {
            fenced += 1;
            continue;
        }
        // Alive and unfenced at the release: it may only be one (re)starting as the spare
        // decided (its first heartbeat not yet seen), which must read the claim at its next
        // cycle and stop.
        let age = released_at.saturating_duration_since(s.started_at);
        assert!(
            age < Duration::from_millis(t.timeout_ms),
            "agent {k}, running for {} ms, served unfenced when the spare released\nsteps: {steps}\nagent log:\n{}\nlistener:\n{}",
            age.as_millis(),
            s.agent.log(),
            listener.lines().join("\n")
        );
        let code = s.agent.wait_exit(Duration::from_millis(t.interval_ms + t.write_deadline_ms + 2000));
        assert_eq!(
            code,
            Some(Some(3)),
            "agent {k} served unfenced when the spare released (fence at {:?}, release at {:?})\nsteps: {steps}\nagent log:\n{}\nlistener:\n{}",
            fence,
            released_at,
            s.agent.log(),
            listener.lines().join("\n")
        );
        claimed += 1;
    }
    drop(listener);
    drop(agents);
    format!(
        "{} steps, {} agents: {dead} dead and {fenced} fenced before the release, {claimed} stopped by the claim",
        schedule.len(),
        dead + fenced + claimed
    )
}

#[test]
fn cold_standby_seeded_fault_schedules_never_release_while_the_primary_serves_unfenced() {
    run_all("cold", &seeds(4), cold_run);
}
