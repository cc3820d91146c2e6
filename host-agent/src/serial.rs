//! The serial heartbeat medium: COBS-framed heartbeats on a tty (a null-modem cable to the
//! secondary's controller) or on a unix socket (QEMU's `-serial unix:PATH,server=on,wait=off`
//! or `-chardev socket`, used by the tests and the emulated controller).
//!
//! Sending never holds up the disk heartbeat: the descriptor is non-blocking, a frame that
//! does not fit is dropped (the next one follows an interval later), and a lost connection is
//! retried at most once per second. A serial failure alone never fences the node — the disk
//! write is what proves this node alive to the fencing bound; serial is an extra medium.

use crate::config::agent::SerialSection;
use rearguard_shared::link::{encode_frame, MAX_ENCODED};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

enum Port {
    Socket(UnixStream),
    Tty(std::fs::File),
}

impl Port {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Port::Socket(s) => s.write(b),
            Port::Tty(f) => f.write(b),
        }
    }
}

/// A heartbeat sender on one serial path.
pub struct SerialSink {
    cfg: SerialSection,
    port: Option<Port>,
    next_attempt: Instant,
    /// Whether the last failure was already logged (log changes, not every beat).
    complained: bool,
    pub sent: u64,
    pub dropped: u64,
}

impl SerialSink {
    pub fn new(cfg: SerialSection) -> SerialSink {
        SerialSink { cfg, port: None, next_attempt: Instant::now(), complained: false, sent: 0, dropped: 0 }
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Sends one heartbeat frame (unframed bytes from `heartbeat::encode`).
    pub fn send(&mut self, frame: &[u8]) {
        if self.port.is_none() && Instant::now() >= self.next_attempt {
            match open(&self.cfg) {
                Ok(mut p) => {
                    // A lone delimiter ends whatever partial frame the receiver holds.
                    let _ = p.write(&[0]);
                    tracing::info!(path = %self.cfg.path.display(), "serial heartbeat link up");
                    self.complained = false;
                    self.port = Some(p);
                }
                Err(e) => {
                    if !self.complained {
                        tracing::warn!(path = %self.cfg.path.display(), error = %e, "serial heartbeat link down; retrying every second");
                        self.complained = true;
                    }
                    self.next_attempt = Instant::now() + Duration::from_secs(1);
                }
            }
        }
        let Some(port) = self.port.as_mut() else {
            self.dropped += 1;
            return;
        };
        let mut wire = [0u8; MAX_ENCODED];
        let n = encode_frame(frame, &mut wire);
        match port.write(&wire[..n]) {
            Ok(m) if m == n => self.sent += 1,
            // A partial write leaves half a frame on the line; the receiver's COBS/CRC check
            // drops it, and the next frame's delimiter resynchronises.
            Ok(_) => self.dropped += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.dropped += 1,
            Err(e) => {
                tracing::warn!(path = %self.cfg.path.display(), error = %e, "serial heartbeat link lost; reconnecting");
                self.port = None;
                self.dropped += 1;
                self.next_attempt = Instant::now() + Duration::from_secs(1);
            }
        }
    }
}

fn open(cfg: &SerialSection) -> std::io::Result<Port> {
    let meta = std::fs::metadata(&cfg.path)?;
    if meta.file_type().is_socket() {
        let s = UnixStream::connect(&cfg.path)?;
        s.set_nonblocking(true)?;
        return Ok(Port::Socket(s));
    }
    if !meta.file_type().is_char_device() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither a tty nor a unix socket: set [serial] path to a serial device or QEMU's chardev socket",
        ));
    }
    Ok(Port::Tty(open_tty(cfg, true)?))
}

/// Opens a tty in raw mode at `[serial] baud` (also the pair's serial medium, which reads
/// it blocking on one descriptor and writes it non-blocking on another).
pub fn open_tty(cfg: &SerialSection, nonblocking: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = libc::O_NOCTTY | libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    let f = std::fs::OpenOptions::new().write(true).read(true).custom_flags(flags).open(&cfg.path)?;
    raw_mode(&f, cfg)?;
    Ok(f)
}

/// 8N1, raw, no flow control, at `[serial] baud`.
fn raw_mode(f: &std::fs::File, cfg: &SerialSection) -> std::io::Result<()> {
    use nix::sys::termios::{cfmakeraw, cfsetspeed, tcgetattr, tcsetattr, ControlFlags, SetArg};
    let mut t = tcgetattr(f.as_fd())?;
    cfmakeraw(&mut t);
    t.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD;
    t.control_flags &= !ControlFlags::CRTSCTS;
    let speed = cfg
        .baud_rate()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsupported baud rate"))?;
    cfsetspeed(&mut t, speed)?;
    tcsetattr(f.as_fd(), SetArg::TCSANOW, &t)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rearguard_shared::link::{Feed, FrameReader};
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    #[test]
    fn frames_arrive_cobs_framed_on_a_socket_and_the_sink_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut sink = SerialSink::new(SerialSection { path: path.clone(), baud: 115_200 });
        sink.send(b"RGhello");
        let (mut conn, _) = listener.accept().unwrap();
        sink.send(b"RG\x00two");
        drop(sink);
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        let mut r = FrameReader::new();
        let frames: Vec<Vec<u8>> = got
            .iter()
            .filter_map(|&b| match r.feed(b) {
                Feed::Frame(n) => Some(r.frame()[..n].to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(frames, vec![b"RGhello".to_vec(), b"RG\x00two".to_vec()]);
    }

    #[test]
    fn frames_arrive_on_a_tty() {
        // A pseudo-terminal pair stands in for a null-modem cable: the sink writes the slave
        // side (set raw at 115200), the test reads the master side.
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave =
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&pty.slave))).unwrap();
        let mut sink = SerialSink::new(SerialSection { path: slave, baud: 115_200 });
        sink.send(b"RG\x00tty");
        assert_eq!((sink.sent, sink.dropped), (1, 0));
        let mut master = std::fs::File::from(pty.master);
        let mut r = FrameReader::new();
        let mut buf = [0u8; 64];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let n = master.read(&mut buf).unwrap();
            if let Some(f) = buf[..n].iter().find_map(|&b| match r.feed(b) {
                Feed::Frame(n) => Some(r.frame()[..n].to_vec()),
                _ => None,
            }) {
                assert_eq!(f, b"RG\x00tty");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no frame on the pty");
        }
    }

    #[test]
    fn a_missing_path_is_retried_not_fatal() {
        let mut sink = SerialSink::new(SerialSection { path: "/nonexistent/rearguard.sock".into(), baud: 115_200 });
        sink.send(b"RGx");
        sink.send(b"RGy");
        assert_eq!((sink.sent, sink.dropped), (0, 2));
    }
}
