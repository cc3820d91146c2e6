//! A spawned child process and the text it prints, collected by a reader thread with the time
//! each piece arrived. Every wait in the tests is one of two questions to a [`Transcript`]:
//! "does `needle` appear after byte P within D?" ([`Transcript::wait_for`], the QEMU console's
//! way) and "does a whole line containing `needle` start after byte P within D?"
//! ([`Transcript::wait_line`], a listener's way). Both return when the bytes arrived, not when
//! the test got round to looking, so latencies measured from them do not include the test's own
//! delays.

use std::io::Read;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Everything a process printed so far, shared with the thread that reads it.
#[derive(Clone, Default)]
pub struct Transcript {
    shared: Arc<(Mutex<Text>, Condvar)>,
}

#[derive(Default)]
struct Text {
    text: String,
    /// (end offset, arrival) of each piece read: the byte at offset k arrived at the first
    /// entry whose end is past k.
    arrivals: Vec<(usize, Instant)>,
    /// The writer closed its end: nothing more will come.
    closed: bool,
}

impl Text {
    fn arrival(&self, offset: usize) -> Instant {
        let i = self.arrivals.partition_point(|&(end, _)| end <= offset);
        self.arrivals[i].1
    }

    /// The first whole line at or after `from` that contains `needle`: (start, end of its text,
    /// offset past its newline). A last line without a newline is whole once the writer closed.
    fn line_with(&self, needle: &str, from: usize) -> Option<(usize, usize, usize)> {
        let mut start = from;
        let rest = self.text.get(from..)?;
        for piece in rest.split_inclusive('\n') {
            let next = start + piece.len();
            if !piece.ends_with('\n') && !self.closed {
                return None;
            }
            let body = piece.strip_suffix('\n').unwrap_or(piece);
            let body = body.strip_suffix('\r').unwrap_or(body);
            if body.contains(needle) {
                return Some((start, start + body.len(), next));
            }
            start = next;
        }
        None
    }
}

/// A whole line found by [`Transcript::wait_line`].
pub struct Line {
    /// When its last byte arrived.
    pub at: Instant,
    /// The line without its line ending.
    pub text: String,
    /// Offset just past its newline: where the next line starts.
    pub end: usize,
}

impl Transcript {
    /// Starts a thread that appends everything `source` yields until it closes.
    pub fn collect(source: impl Read + Send + 'static) -> Transcript {
        let t = Transcript::default();
        let shared = t.shared.clone();
        std::thread::spawn(move || {
            let mut source = source;
            let mut buf = [0u8; 4096];
            // Bytes of a UTF-8 sequence cut by the end of a read wait for the rest.
            let mut pending = Vec::new();
            loop {
                let n = source.read(&mut buf).unwrap_or(0);
                let at = Instant::now();
                pending.extend_from_slice(&buf[..n]);
                let piece = if n == 0 { String::from_utf8_lossy(&pending).into_owned() } else { decode(&mut pending) };
                let (m, cv) = &*shared;
                let mut g = m.lock().unwrap();
                g.text.push_str(&piece);
                let end = g.text.len();
                g.arrivals.push((end, at));
                g.closed = n == 0;
                cv.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        t
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.shared.0.lock().unwrap().text.clone()
    }

    /// The current end of the text, to search from later.
    pub fn mark(&self) -> usize {
        self.shared.0.lock().unwrap().text.len()
    }

    /// Every whole line printed so far.
    pub fn lines(&self) -> Vec<String> {
        let g = self.shared.0.lock().unwrap();
        let whole = if g.closed { g.text.as_str() } else { &g.text[..g.text.rfind('\n').map_or(0, |i| i + 1)] };
        whole.lines().map(str::to_string).collect()
    }

    /// Waits until `needle` appears after byte `from`; returns when it arrived and the offset
    /// just past it. None when `within` passes or the writer closes first.
    pub fn wait_for(&self, needle: &str, from: usize, within: Duration) -> Option<(Instant, usize)> {
        self.wait(within, |t| {
            let end = from + t.text.get(from..)?.find(needle)? + needle.len();
            Some((t.arrival(end - 1), end))
        })
    }

    /// Waits for a whole line, starting at or after byte `from`, that contains `needle`.
    pub fn wait_line(&self, needle: &str, from: usize, within: Duration) -> Option<Line> {
        self.wait(within, |t| {
            let (start, body_end, end) = t.line_with(needle, from)?;
            Some(Line { at: t.arrival(end - 1), text: t.text[start..body_end].to_string(), end })
        })
    }

    /// Waits up to `within` for the writer to close; true if it did.
    pub fn wait_closed(&self, within: Duration) -> bool {
        self.wait(within, |t| t.closed.then_some(())).is_some()
    }

    /// [`Transcript::wait_for`] that panics, naming `what` and showing the text so far.
    pub fn expect(&self, what: &str, needle: &str, from: usize, within: Duration) -> (Instant, usize) {
        self.wait_for(needle, from, within).unwrap_or_else(|| self.timed_out(what, needle, within))
    }

    /// [`Transcript::wait_line`] that panics, naming `what` and showing the text so far.
    pub fn expect_line(&self, what: &str, needle: &str, from: usize, within: Duration) -> Line {
        self.wait_line(needle, from, within).unwrap_or_else(|| self.timed_out(what, needle, within))
    }

    fn timed_out(&self, what: &str, needle: &str, within: Duration) -> ! {
        panic!("{what} did not show {needle:?} within {} ms; {what} so far:\n{}", within.as_millis(), self.text())
    }

    /// The one wait: re-runs `find` on every new piece of text until it answers, `within`
    /// passes, or the writer closes.
    fn wait<T>(&self, within: Duration, mut find: impl FnMut(&Text) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + within;
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(x) = find(&g) {
                return Some(x);
            }
            let now = Instant::now();
            if now >= deadline || g.closed {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

/// Takes the decodable front of `pending` (invalid bytes become U+FFFD) and leaves in it only
/// an incomplete sequence at its end.
fn decode(pending: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut rest: &[u8] = pending;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap());
                match e.error_len() {
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &bad[n..];
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    *pending = rest.to_vec();
    out
}

/// A child process whose output goes to a [`Transcript`]; SIGKILLed and reaped on drop.
pub struct Process {
    child: Child,
    name: String,
    pub out: Transcript,
    /// Where [`Process::wait_line`] searches next: just past the last line it returned.
    cursor: usize,
}

impl Process {
    /// Spawns `cmd` with its stdout collected; stderr goes where `cmd` says.
    pub fn spawn(mut cmd: Command) -> Process {
        let name = program(&cmd);
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let out = Transcript::collect(child.stdout.take().unwrap());
        Process { child, name, out, cursor: 0 }
    }

    /// Spawns `cmd` with stdout and stderr collected together, in the order they were written
    /// (one pipe for both, as a terminal or a log file would get them).
    pub fn spawn_merged(mut cmd: Command) -> Process {
        let name = program(&cmd);
        let (reader, writer) = std::io::pipe().expect("pipe");
        cmd.stdout(writer.try_clone().expect("pipe")).stderr(writer);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        // The parent's copies of the write end went with `cmd`: the reader sees EOF when the
        // child (and anything it started that kept the pipe) exits.
        drop(cmd);
        Process { child, name, out: Transcript::collect(reader), cursor: 0 }
    }

    /// Waits for the next line containing `needle` (after the last line this returned);
    /// panics with the output if it does not come within `within`.
    pub fn wait_line(&mut self, needle: &str, within: Duration) -> (Instant, String) {
        let l = self.out.expect_line(&self.name, needle, self.cursor, within);
        self.cursor = l.end;
        (l.at, l.text)
    }

    /// [`Process::wait_line`] that returns None instead of panicking (the cursor stays).
    pub fn try_wait_line(&mut self, needle: &str, within: Duration) -> Option<(Instant, String)> {
        let l = self.out.wait_line(needle, self.cursor, within)?;
        self.cursor = l.end;
        Some((l.at, l.text))
    }

    /// Every whole line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.lines()
    }

    pub fn take_stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("stdin was not piped, or already taken")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL and reap: no goodbye, like a power cut. Returns when the signal was sent.
    pub fn kill(&mut self) -> Instant {
        let t = Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        t
    }

    /// SIGTERM, then up to `within` for a clean exit; SIGKILL after that.
    pub fn terminate(&mut self, within: Duration) {
        if self.exit_status().is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGTERM);
            if self.wait_exit(within).is_none() {
                self.kill();
            }
        }
    }

    /// Waits for exit up to `within`; returns the exit code (None if killed by a signal).
    /// Its output is then complete, unless something it started still holds the pipe.
    pub fn wait_exit(&mut self, within: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.exit_status() {
                self.out.wait_closed(deadline.saturating_duration_since(Instant::now()));
                return Some(s.code());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How it exited, or None while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn program(cmd: &Command) -> String {
    std::path::Path::new(cmd.get_program()).file_name().unwrap_or_default().to_string_lossy().into_owned()
}
