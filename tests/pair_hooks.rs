//! Hooks in order (issue 10): one hook at a time in transition order, a timeout that kills a
//! hanging hook with its children, FAULT for an unhealthy standby, STOP at a clean stop, and
//! keepalived's notify_fifo carrying the same events. Real agents in network namespaces.

mod support;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::netns::{must, NodeOpts, Pair};

/// A hook that logs `start STATE NANOS` and `end STATE NANOS` around a pause, so runs that
/// overlap or come out of order show in its log.
fn logging_hook(dir: &Path, name: &str, pause: &str) -> (PathBuf, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let hook = dir.join(format!("{name}.sh"));
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"start $3 $(date +%s%N)\" >> {log}\n{pause}\necho \"end $3 $(date +%s%N)\" >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    must(&["chmod", "+x", hook.to_str().unwrap()]);
    (hook, log)
}

/// (what, state, nanoseconds) per line of a hook log.
fn entries(log: &Path) -> Vec<(String, String, u128)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].to_string(), w[1].to_string(), w[2].parse().unwrap())
        })
        .collect()
}

/// Asserts that the hook runs never overlapped and returns their states in order.
fn sequential_runs(log: &Path) -> Vec<String> {
    let e = entries(log);
    assert!(e.len().is_multiple_of(2), "a run did not finish: {e:?}");
    let mut states = Vec::new();
    let mut last_end = 0;
    for pair in e.chunks(2) {
        let (start, end) = (&pair[0], &pair[1]);
        assert_eq!((start.0.as_str(), end.0.as_str()), ("start", "end"), "runs overlap: {e:?}");
        assert_eq!(start.1, end.1, "runs overlap: {e:?}");
        assert!(start.2 >= last_end, "a run started before the previous one ended: {e:?}");
        last_end = end.2;
        states.push(start.1.clone());
    }
    states
}

/// The test's end of a notify_fifo: created before the agent starts and held open for
/// reading and writing, so the agent always finds a reader; read without blocking.
struct FifoReader {
    file: std::fs::File,
    text: String,
}

impl FifoReader {
    fn create(path: &Path) -> FifoReader {
        must(&["mkfifo", path.to_str().unwrap()]);
        let file =
            std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path).unwrap();
        FifoReader { file, text: String::new() }
    }

    fn lines(&mut self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.file.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        self.text.lines().map(str::to_string).collect()
    }
}

fn hook_keys(hook: &Path, extra: &str) -> String {
    format!("hooks = [\"{}\"]\n{extra}", hook.display())
}

#[test]
fn a_burst_of_transitions_runs_the_hooks_in_order_one_at_a_time_and_stop_last() {
    let dir = support::tempdir();
    let (hook, log) = logging_hook(dir.path(), "a", "sleep 0.2");
    let fifo_path = dir.path().join("a.fifo");
    let mut fifo = FifoReader::create(&fifo_path);
    let mut a = NodeOpts::new(200);
    a.pair_keys = hook_keys(&hook, &format!("notify_fifo = \"{}\"", fifo_path.display()));
    // Node 2's FIFO has no reader: its lines are dropped and its elections go on.
    let mut b = NodeOpts::new(100);
    b.pair_keys = format!("notify_fifo = \"{}\"", dir.path().join("b.fifo").display());
    let mut p = Pair::new(false, a, b);
    p.start_both();
    p.wait_until(Duration::from_secs(3), "node 1 active", |p| p.holders() == vec![0]);
    // Four switchovers, each as soon as the last one is done: far faster than the hooks
    // (200 ms each), so their events queue up behind a running hook.
    let started = std::time::Instant::now();
    for n in 0..4 {
        let (from, to) = if n % 2 == 0 { (0, 1) } else { (1, 0) };
        let out = p.ctl(from, &["switchover"]);
        assert!(out.status.success(), "switchover {n}: {}", String::from_utf8_lossy(&out.stderr));
        p.wait_until(Duration::from_secs(3), &format!("switchover {n}: node {} holds the VIP", to + 1), |p| {
            p.holders() == vec![to] && p.state(to) == "active"
        });
    }
    let burst = started.elapsed();
    let queued = p.status(0)["hooks"]["pending"].as_u64().unwrap();
    eprintln!("4 switchovers in {} ms; {queued} hook events still queued on node 1", burst.as_millis());
    p.wait_until(Duration::from_secs(5), "node 1's hooks ran for every event", |p| {
        p.status(0)["hooks"]["pending"] == 0
    });
    // Node 1 starts BACKUP when it heard node 2 before deciding, MASTER at once when alone.
    let states = sequential_runs(&log);
    let first_master = states.iter().position(|s| s == "MASTER").unwrap();
    assert!(first_master <= 1 && states[..first_master].iter().all(|s| s == "BACKUP"), "{states:?}");
    assert_eq!(states[first_master..], ["MASTER", "BACKUP", "MASTER", "BACKUP", "MASTER"]);
    let expect: Vec<String> = states.iter().map(|s| format!("INSTANCE \"VI_TEST\" {s} 200")).collect();
    assert_eq!(fifo.lines(), expect, "the FIFO carries the same events in the same order");
    let h = &p.status(0)["hooks"];
    assert_eq!(h["last"]["state"], "MASTER", "{h}");
    assert_eq!(h["last"]["result"], "exited 0", "{h}");
    let n = states.len() as u64;
    assert_eq!((h["runs"].as_u64(), h["failures"].as_u64()), (Some(n), Some(0)), "{h}");
    assert_eq!(h["fifo"]["written"], n, "{h}");
    let b_fifo = &p.status(1)["hooks"]["fifo"];
    assert!(b_fifo["dropped"].as_u64().unwrap() >= 5 && b_fifo["written"] == 0, "{b_fifo}");
    let text = String::from_utf8_lossy(&p.ctl(0, &["status"]).stdout).into_owned();
    assert!(text.contains("hooks: 1 configured, 0 pending, 0 failed (0 timed out); last"), "{text}");
    assert!(text.contains("MASTER exited 0"), "{text}");
    // A clean stop: STOP, after everything before it.
    p.stop(0);
    let states = sequential_runs(&log);
    assert_eq!(states.last().map(String::as_str), Some("STOP"), "{states:?}");
    assert_eq!(fifo.lines().last().map(String::as_str), Some("INSTANCE \"VI_TEST\" STOP 0"));
}

#[test]
fn a_hanging_hook_is_killed_with_its_children_at_the_timeout() {
    let dir = support::tempdir();
    let child = dir.path().join("child.pid");
    // MASTER hangs in a child process; every other state returns at once.
    let pause = format!("if [ \"$3\" = MASTER ]; then sleep 60 & echo $! > {}; wait; fi", child.display());
    let (hook, log) = logging_hook(dir.path(), "a", &pause);
    let mut a = NodeOpts::new(200);
    a.pair_keys = hook_keys(&hook, "hook_timeout_ms = 500");
    let mut p = Pair::new(false, a, NodeOpts::new(100));
    p.start_both();
    p.wait_until(Duration::from_secs(3), "node 1 active", |p| p.holders() == vec![0]);
    p.wait_until(Duration::from_secs(3), "the MASTER hook started its child", |_| child.exists());
    // The BACKUP event queues behind the hanging MASTER hook.
    assert!(p.ctl(0, &["switchover"]).status.success());
    // From node 1's first MASTER on (it may have been BACKUP for a moment at start).
    let since_master = || {
        let e = entries(&log);
        let at = e.iter().position(|e| e.0 == "start" && e.1 == "MASTER").unwrap();
        e[at..].to_vec()
    };
    p.wait_until(Duration::from_secs(5), "the BACKUP hook ran after the MASTER hook was killed", |_| {
        since_master().iter().any(|e| e.0 == "end" && e.1 == "BACKUP")
    });
    let e = since_master();
    let states: Vec<(&str, &str)> = e.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(states, [("start", "MASTER"), ("start", "BACKUP"), ("end", "BACKUP")], "{e:?}");
    // How long the agent let the MASTER hook run, from its log line
    // `hook killed after the 500 ms timeout (hook_timeout_ms) hook=… state="MASTER" took_ms=N`.
    let log0 = p.log(0);
    let line = log0.lines().find(|l| l.contains("killed after the 500 ms timeout")).unwrap_or_else(|| panic!("{log0}"));
    assert!(line.contains("MASTER"), "{line}");
    let took: u64 = line.split("took_ms=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    eprintln!("the hanging MASTER hook was killed after {took} ms (timeout 500 ms)");
    assert!((500..3000).contains(&took), "killed after {took} ms: {line}");
    let pid = std::fs::read_to_string(&child).unwrap().trim().to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "the hook's child {pid} survived the kill: {stat}");
    let h = &p.status(0)["hooks"];
    assert_eq!((h["timeouts"].as_u64(), h["failures"].as_u64()), (Some(1), Some(1)), "{h}");
}

#[test]
fn an_unhealthy_standby_gets_fault_and_backup_when_it_recovers() {
    let dir = support::tempdir();
    let (hook, log) = logging_hook(dir.path(), "b", "");
    let fifo_path = dir.path().join("b.fifo");
    let mut fifo = FifoReader::create(&fifo_path);
    let flag = dir.path().join("broken");
    let mut b = NodeOpts::new(100);
    b.pair_keys = hook_keys(&hook, &format!("notify_fifo = \"{}\"", fifo_path.display()));
    b.checks = format!(
        "[[pair.check]]\nkind = \"command\"\nargv = [\"test\", \"!\", \"-e\", \"{}\"]\ninterval_ms = 50\n",
        flag.display()
    );
    let mut p = Pair::new(false, NodeOpts::new(200), b);
    p.start_both();
    p.wait_until(Duration::from_secs(3), "node 2's BACKUP hook ran", |_| entries(&log).len() >= 2);
    std::fs::write(&flag, "").unwrap();
    p.wait_until(Duration::from_secs(3), "node 2's FAULT hook ran", |_| entries(&log).len() >= 4);
    assert_eq!(p.state(1), "standby", "FAULT came while the pair state stayed standby");
    std::fs::remove_file(&flag).unwrap();
    p.wait_until(Duration::from_secs(3), "node 2's BACKUP hook ran again", |_| entries(&log).len() >= 6);
    assert_eq!(sequential_runs(&log), ["BACKUP", "FAULT", "BACKUP"]);
    assert_eq!(p.holders(), vec![0], "node 1 kept the VIP throughout");
    assert_eq!(
        fifo.lines(),
        ["INSTANCE \"VI_TEST\" BACKUP 100", "INSTANCE \"VI_TEST\" FAULT 0", "INSTANCE \"VI_TEST\" BACKUP 100"]
    );
    p.stop(1);
    assert_eq!(sequential_runs(&log).last().map(String::as_str), Some("STOP"));
    assert_eq!(fifo.lines().last().map(String::as_str), Some("INSTANCE \"VI_TEST\" STOP 0"));
}
