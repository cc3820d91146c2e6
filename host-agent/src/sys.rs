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

/// One malloc arena for all threads. glibc gives each thread that allocates an arena of its
/// own (a 132 KiB reservation and its touched pages); the agent's threads are few and mostly
/// asleep, so they lose nothing by sharing the main one, and the process keeps less resident
/// (README "Footprint"). Call before any thread starts.
pub fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt(3) with a valid parameter and value, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// This process's resident memory in KiB, from /proc (None where it cannot be read).
pub fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Whether stderr is the journal: JOURNAL_STREAM is "device:inode" of the stream systemd
/// connected stderr to, and it only holds while fd 2 is still that stream (not after a
/// redirect by a wrapper script).
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    let Ok(meta) = std::io::stderr().as_fd().try_clone_to_owned().map(std::fs::File::from).and_then(|f| f.metadata())
    else {
        return false;
    };
    meta.dev() == dev && meta.ino() == ino
}

/// Prints the error that ends the program on stderr. Under systemd each line carries the
/// `<3>` prefix the journal's stream reads as priority err (SyslogLevelPrefix=, on by
/// default), so `journalctl -p err` shows it; unprefixed, a stream line is info. Written to
/// the stream rather than sent as a journal datagram: the process exits next, and journald
/// ties a datagram from a process already gone to no unit, so `journalctl -u` would miss it.
pub fn print_fatal(text: &str) {
    use std::io::Write;
    let prefix = if stderr_is_journal() { "<3>" } else { "" };
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(prefix);
        out.push_str(line);
        out.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// systemd's notify protocol, through the `sd-notify` crate: READY=1 once the node knows its
/// role, STATUS= when the line changes (`systemctl status` shows it), WATCHDOG=1 from the
/// loop that does the work. Not the hardware watchdog that fences a node (`fence.rs`): this
/// one lets systemd restart a service whose loop stopped turning (WatchdogSec=). Outside
/// systemd (no NOTIFY_SOCKET) every call is a no-op.
pub struct SystemdNotify {
    every: Option<std::time::Duration>,
    last: std::cell::Cell<std::time::Instant>,
    ready: std::cell::Cell<bool>,
    status: std::cell::RefCell<String>,
}

impl SystemdNotify {
    pub fn from_env() -> SystemdNotify {
        SystemdNotify {
            // Ping at half the timeout, as sd_watchdog_enabled(3) advises.
            every: sd_notify::watchdog_enabled().map(|t| t / 2),
            last: std::cell::Cell::new(std::time::Instant::now()),
            ready: std::cell::Cell::new(false),
            status: std::cell::RefCell::new(String::new()),
        }
    }

    fn send(&self, states: &[sd_notify::NotifyState]) {
        // systemd gone or no socket: nothing to tell, and nothing the agent could do about it.
        let _ = sd_notify::notify(states);
    }

    /// READY=1 (the first call only) with the status line: `systemctl start` returns now.
    pub fn ready(&self, status: &str) {
        if !self.ready.replace(true) {
            *self.status.borrow_mut() = status.to_string();
            self.send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]);
        } else {
            self.status(status);
        }
    }

    /// STATUS=line, sent only when it differs from the last one.
    pub fn status(&self, status: &str) {
        if *self.status.borrow() != status {
            *self.status.borrow_mut() = status.to_string();
            self.send(&[sd_notify::NotifyState::Status(status)]);
        }
    }

    /// Called every turn of the working loop (at least twice per WatchdogSec).
    pub fn pet(&self) {
        if let Some(every) = self.every {
            if self.last.get().elapsed() >= every {
                self.send(&[sd_notify::NotifyState::Watchdog]);
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
