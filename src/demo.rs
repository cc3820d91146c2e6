//! `rearguard demo`: a whole cold-standby takeover on this machine, with real processes.
//!
//! A temporary image stands in for the shared disk; this same binary runs as the primary's
//! agent and as the listener (the Linux board); the "boot" is a command that prints a line.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Timeline {
    start: Instant,
}

impl Timeline {
    fn say(&self, what: &str) {
        let t = self.start.elapsed();
        println!("  +{:>3}.{:03}s  {what}", t.as_secs(), t.subsec_millis());
    }
}

/// Lines from a child's pipe, stamped when they arrived.
fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it and every line seen before it.
fn wait_for(
    rx: &mpsc::Receiver<(Instant, String)>,
    needle: &str,
    within: Duration,
) -> anyhow::Result<(Instant, String, Vec<String>)> {
    let deadline = Instant::now() + within;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((t, line)) if line.contains(needle) => return Ok((t, line, before)),
            Ok((_, line)) => before.push(line),
            Err(_) => bail!("did not see {needle:?} within {} ms", within.as_millis()),
        }
    }
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(interval_ms: u64, timeout_ms: u64, poll_ms: u64, runs: u32) -> anyhow::Result<u8> {
    if runs <= 1 {
        let latency = one_takeover(interval_ms, timeout_ms, poll_ms, true)?;
        println!();
        println!(
            "takeover complete: boot released {} ms after the primary was killed (timeout {timeout_ms} ms, interval {interval_ms} ms, poll {poll_ms} ms)",
            latency.as_millis()
        );
        return Ok(0);
    }
    let mut ms = Vec::new();
    for i in 0..runs {
        let l = one_takeover(interval_ms, timeout_ms, poll_ms, false)?;
        println!("run {:>2}: release {} ms after SIGKILL", i + 1, l.as_millis());
        ms.push(l.as_millis() as u64);
    }
    ms.sort_unstable();
    let median = if ms.len() % 2 == 1 { ms[ms.len() / 2] } else { (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2 };
    println!(
        "release latency over {runs} runs: median {median} ms, min {} ms, max {} ms (timeout {timeout_ms} ms, interval {interval_ms} ms, poll {poll_ms} ms)",
        ms[0],
        ms[ms.len() - 1]
    );
    Ok(0)
}

/// Writes `name` (`agent.toml`, `agent-2.toml`…): the agent of primary `node`.
fn write_agent_config(dir: &Path, name: &str, node: u8, interval_ms: u64, timeout_ms: u64) -> anyhow::Result<()> {
    let img = dir.join("shared-disk.img");
    // The fencing bound wants timeout ≥ 2 × (interval + write_deadline + fence time); the
    // demo splits what is left of the timeout between the write deadline and fence time.
    let budget = (timeout_ms / 2).saturating_sub(interval_ms).max(2);
    let (write_deadline, fence_time) = (budget - budget / 4, budget / 4);
    std::fs::write(
        dir.join(name),
        format!(
            "[cluster]\nid = 0xDE30\nnode_id = {node}\n\n[disk]\ndevice = {img:?}\ninterval_ms = {interval_ms}\nwrite_deadline_ms = {write_deadline}\n\n\
             [fence]\nmethod = \"command\"\ncommand = [\"sh\", \"-c\", \"echo '[fence] demo primary fenced itself'\"]\nfence_time_ms = {fence_time}\n"
        ),
    )?;
    Ok(())
}

fn write_configs(dir: &Path, interval_ms: u64, timeout_ms: u64, poll_ms: u64) -> anyhow::Result<()> {
    let img = dir.join("shared-disk.img");
    write_agent_config(dir, "agent.toml", 0, interval_ms, timeout_ms)?;
    std::fs::write(
        dir.join("listener.toml"),
        format!(
            "[cluster]\nid = 0xDE30\n\n[listener]\nnode_id = 1\nprimary_node = 0\ntimeout_ms = {timeout_ms}\npoll_ms = {poll_ms}\n\n\
             [disk]\ndevice = {img:?}\n\n[gate]\ncommand = [\"echo\", \"[gate] secondary server leaves POST and boots the OS from the shared disk\"]\n"
        ),
    )?;
    Ok(())
}

fn one_takeover(interval_ms: u64, timeout_ms: u64, poll_ms: u64, verbose: bool) -> anyhow::Result<Duration> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let dir = tempfile::Builder::new().prefix("rearguard-demo-").tempdir()?;
    let img = dir.path().join("shared-disk.img");
    let tl = Timeline { start: Instant::now() };
    let say = |s: &str| {
        if verbose {
            tl.say(s)
        }
    };
    if verbose {
        println!("Rearguard demo: cold standby from a shared disk (all on this machine, no root)");
        println!("  workdir {}", dir.path().display());
        println!();
    }
    let init = disk_init(&exe, &img, interval_ms, timeout_ms, &[])?;
    say(&format!("shared disk image created: {init}"));
    write_configs(dir.path(), interval_ms, timeout_ms, poll_ms)?;

    let mut agent = spawn_agent(&exe, dir.path(), "agent")?;
    say(&format!("primary's agent started (pid {}), heartbeat every {interval_ms} ms", agent.0.id()));

    let (mut listener, rx) = spawn_listener(&exe, &dir.path().join("listener.toml"))?;
    say(&format!("listener started (pid {}): the secondary is held at POST", listener.0.id()));
    wait_for(&rx, "state: watching", Duration::from_millis(timeout_ms * 5 + 5000))?;
    say("listener sees the primary's heartbeat advancing: watching");

    // Let it run a while; the kill lands at a random point of the heartbeat interval, so
    // repeated runs sample every phase between two writes.
    let jitter =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
    std::thread::sleep(Duration::from_millis(3 * interval_ms + jitter % interval_ms.max(1)));
    let killed = kill(&mut agent)?;
    say("primary's agent killed with SIGKILL (the primary server \"dies\")");

    let (released_at, line, before) = wait_for(&rx, "BOOT RELEASED", Duration::from_millis(timeout_ms * 3 + 5000))?;
    let latency = released_at.saturating_duration_since(killed);
    let strip = |l: &str| l.split_once("] ").map_or(l.to_string(), |x| x.1.to_string());
    for l in before.iter().filter(|l| l.contains("takeover claim")) {
        say(&format!("listener: {}", strip(l)));
    }
    say(&format!("listener: {}", strip(&line)));
    for l in before.iter().filter(|l| l.starts_with("[gate]")) {
        say(l);
    }
    say(&format!("secondary's boot released {} ms after the kill", latency.as_millis()));
    let status = listener.0.wait()?;
    if !status.success() {
        bail!("listener exited with {status}");
    }

    say("the old primary comes back and starts its agent again…");
    say(&format!("…and refuses to serve (exit 3): {}", restart_refused(&exe, &dir.path().join("agent.toml"))?));
    Ok(latency)
}

/// `rearguard disk init` of the demo image; returns what it printed.
fn disk_init(exe: &Path, img: &Path, interval_ms: u64, timeout_ms: u64, roles: &[&str]) -> anyhow::Result<String> {
    let init = Command::new(exe)
        .args(["disk", "init"])
        .arg(img)
        .args(["--create", "--cluster-id", "0xDE30"])
        .args(["--interval-ms", &interval_ms.to_string(), "--timeout-ms", &timeout_ms.to_string()])
        .args(roles)
        .output()?;
    if !init.status.success() {
        bail!("disk init failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    Ok(String::from_utf8_lossy(&init.stdout).trim().to_string())
}

/// Starts the agent of `NAME.toml` in `dir`, its log in `NAME.log`.
fn spawn_agent(exe: &Path, dir: &Path, name: &str) -> anyhow::Result<KillOnDrop> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    Ok(KillOnDrop(
        Command::new(exe)
            .args(["agent", "--config"])
            .arg(dir.join(format!("{name}.toml")))
            .env("REARGUARD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    ))
}

/// Starts a listener; its console lines arrive on the receiver.
fn spawn_listener(exe: &Path, config: &Path) -> anyhow::Result<(KillOnDrop, mpsc::Receiver<(Instant, String)>)> {
    let mut l = KillOnDrop(
        Command::new(exe)
            .args(["listener", "--config"])
            .arg(config)
            .env("REARGUARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let rx = lines(l.0.stdout.take().expect("piped"));
    Ok((l, rx))
}

/// SIGKILL, the way a server dies; returns when.
fn kill(agent: &mut KillOnDrop) -> anyhow::Result<Instant> {
    let killed = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.0.id() as i32), nix::sys::signal::Signal::SIGKILL)?;
    let _ = agent.0.wait();
    Ok(killed)
}

/// Starts the agent of `config` again after a takeover; it must refuse (exit 3). Returns why.
fn restart_refused(exe: &Path, config: &Path) -> anyhow::Result<String> {
    let again = Command::new(exe).args(["agent", "--config"]).arg(config).env("REARGUARD_LOG", "warn").output()?;
    let msg = String::from_utf8_lossy(&again.stderr);
    if again.status.code() != Some(3) {
        bail!("the restarted primary did not refuse to serve (exit {:?}): {msg}", again.status.code());
    }
    let first = msg.lines().find(|l| l.starts_with("error:")).unwrap_or("");
    Ok(first.trim_start_matches("error: ").to_string())
}

/// `rearguard demo n-plus-1`: three primaries and one spare on one image; primary 1 is
/// killed and the spare boots as node 1, while primaries 0 and 2 keep running.
pub fn n_plus_1(interval_ms: u64, timeout_ms: u64, poll_ms: u64) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let dir = tempfile::Builder::new().prefix("rearguard-demo-").tempdir()?;
    let img = dir.path().join("shared-disk.img");
    let tl = Timeline { start: Instant::now() };
    println!("Rearguard demo: N+1 — one spare for three primaries on one shared disk (all on this machine, no root)");
    println!("  workdir {}", dir.path().display());
    println!();
    let init = disk_init(&exe, &img, interval_ms, timeout_ms, &["--primaries", "3", "--spares", "1"])?;
    tl.say(&format!("shared disk image created: {init}"));
    let mut agents = Vec::new();
    for node in 0..3u8 {
        let name = format!("agent-{node}");
        write_agent_config(dir.path(), &format!("{name}.toml"), node, interval_ms, timeout_ms)?;
        agents.push(spawn_agent(&exe, dir.path(), &name)?);
        tl.say(&format!(
            "primary {node}'s agent started (pid {}), heartbeat every {interval_ms} ms",
            agents[node as usize].0.id()
        ));
    }
    let spare_toml = dir.path().join("spare.toml");
    std::fs::write(
        &spare_toml,
        format!(
            "[cluster]\nid = 0xDE30\n\n[listener]\nnode_id = 3\nrole = \"spare\"\nwatch = \"0-2\"\ntimeout_ms = {timeout_ms}\npoll_ms = {poll_ms}\n\n\
             [disk]\ndevice = {img:?}\n\n[gate]\ncommand = [\"sh\", \"-c\", \"echo \\\"[gate] the spare leaves POST with node $0's boot configuration (RG_TAKEOVER_NODE=$RG_TAKEOVER_NODE, primary epoch $RG_PRIMARY_EPOCH) and boots its OS from the shared disk\\\"\", \"{{node}}\"]\n"
        ),
    )?;
    let (_spare, rx) = spawn_listener(&exe, &spare_toml)?;
    tl.say("spare (node 3) started, watching primaries 0-2: held at POST");
    // One "primary K: watching (alive)" line each, in whichever order they come.
    for _ in 0..3 {
        wait_for(&rx, ": watching (alive)", Duration::from_millis(timeout_ms * 5 + 5000))?;
    }
    tl.say("spare sees all three heartbeats advancing: watching");
    std::thread::sleep(Duration::from_millis(3 * interval_ms));
    let killed = kill(&mut agents[1])?;
    tl.say("primary 1's agent killed with SIGKILL (server 1 \"dies\"); primaries 0 and 2 keep running");
    let (released_at, line, before) =
        wait_for(&rx, "BOOT RELEASED as node 1", Duration::from_millis(timeout_ms * 3 + 5000))?;
    let strip = |l: &str| l.split_once("] ").map_or(l.to_string(), |x| x.1.to_string());
    for l in before.iter().filter(|l| l.contains("takeover claim") || l.contains("primary 1:")) {
        tl.say(&format!("spare: {}", strip(l)));
    }
    tl.say(&format!("spare: {}", strip(&line)));
    // The gate command runs before the release line is printed: its line came first.
    for l in before.iter().filter(|l| l.starts_with("[gate]")) {
        tl.say(l);
    }
    let latency = released_at.saturating_duration_since(killed);
    tl.say(&format!("spare booted as node 1, {} ms after the kill", latency.as_millis()));
    for (node, a) in agents.iter_mut().enumerate().filter(|(n, _)| *n != 1) {
        if let Some(st) = a.0.try_wait()? {
            bail!("primary {node} stopped ({st}) while the spare took over node 1");
        }
    }
    tl.say("primaries 0 and 2 still heartbeat; the spare is consumed (another death would be reported, not taken)");
    tl.say("the old primary 1 comes back and starts its agent again…");
    tl.say(&format!("…and refuses to serve (exit 3): {}", restart_refused(&exe, &dir.path().join("agent-1.toml"))?));
    println!();
    println!(
        "N+1 takeover complete: the spare booted as node 1 {} ms after it was killed (timeout {timeout_ms} ms, interval {interval_ms} ms, poll {poll_ms} ms)",
        latency.as_millis()
    );
    Ok(0)
}
