//! What the agent asks of the OS beyond files and sockets: real-time scheduling, its own
//! memory use, and systemd's notify protocol.

/// Puts the calling thread under SCHED_RR at `prio` (0 = leave it alone), with
/// SCHED_RESET_ON_FORK so that hooks, check commands and helper threads it starts run at
/// normal priority. A loaded machine must not delay heartbeats past the dead interval.
pub fn realtime(prio: u8) -> Option<std::io::Error> {
    if prio == 0 {
        return None;
    }
    let param = libc::sched_param { sched_priority: prio as i32 };
    // SAFETY: sched_setscheduler(2) on the calling thread (pid 0) with a valid parameter.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    (rc != 0).then(std::io::Error::last_os_error)
}

/// This process's resident memory in KiB, from /proc (None where it cannot be read).
pub fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// systemd notify protocol (READY=1, WATCHDOG=1) without a library. Not the hardware
/// watchdog that fences a node (`fence.rs`): this one tells systemd the agent is up and its
/// loop still turning, and systemd restarts the service when it stops hearing so.
pub struct SystemdNotify {
    sock: Option<(std::os::unix::net::UnixDatagram, std::os::unix::net::SocketAddr)>,
    every: Option<std::time::Duration>,
    last: std::cell::Cell<std::time::Instant>,
}

impl SystemdNotify {
    pub fn from_env() -> SystemdNotify {
        use std::os::linux::net::SocketAddrExt;
        let sock = std::env::var("NOTIFY_SOCKET").ok().and_then(|p| {
            let addr = if let Some(name) = p.strip_prefix('@') {
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&p).ok()?
            };
            Some((std::os::unix::net::UnixDatagram::unbound().ok()?, addr))
        });
        let every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .map(|u| std::time::Duration::from_micros(u / 2));
        SystemdNotify { sock, every, last: std::cell::Cell::new(std::time::Instant::now()) }
    }

    pub fn notify(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock {
            let _ = s.send_to_addr(msg.as_bytes(), addr);
        }
    }

    /// Called every loop turn (at least every 100 ms): the main loop is alive.
    pub fn pet(&self) {
        if let Some(every) = self.every {
            if self.last.get().elapsed() >= every {
                self.notify("WATCHDOG=1");
                self.last.set(std::time::Instant::now());
            }
        }
    }
}

/// How a command run by [`run_bounded`] ended.
#[derive(Debug)]
pub enum Bounded {
    Exited(std::process::ExitStatus),
    /// Over its time: its whole process group was killed (SIGKILL) and reaped.
    TimedOut,
}

/// Runs `cmd` in a process group of its own and waits at most `timeout` for it; past that,
/// the group is killed, so a script's children (a `sleep`, a stuck `curl`) die with it.
/// Hooks and check commands both run this way: a stuck script must never hold up what comes
/// after it. `spawned` sees the child first (to take its pipes).
pub fn run_bounded(
    cmd: &mut std::process::Command,
    timeout: std::time::Duration,
    spawned: impl FnOnce(&mut std::process::Child),
) -> std::io::Result<Bounded> {
    use std::os::unix::process::CommandExt;
    let mut child = cmd.process_group(0).spawn()?;
    spawned(&mut child);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Bounded::Exited(st));
        }
        if std::time::Instant::now() >= deadline {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            return Ok(Bounded::TimedOut);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
