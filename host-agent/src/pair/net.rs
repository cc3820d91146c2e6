//! Heartbeat media. An IP `[[pair.medium]]` is one UDP socket bound to its interface
//! (SO_BINDTODEVICE), multicast by default (TTL 1, no loopback), unicast when a peer is set.
//! A serial one is a tty carrying the very same adverts, COBS-framed as on the cold-standby
//! link (`rearguard_shared::link`): the classic heartbeat cable, which does not depend on IP.
//!
//! A tty that fails (a USB adapter unplugged and plugged back, a pty whose other end went
//! away) stays dead on its old descriptor: both halves reopen it by its path after an error,
//! at most every [`REOPEN_PAUSE`], so the medium comes back when the device does.

use crate::config::agent::SerialSection;
use crate::config::pair::{IpMedium, Medium};
use rearguard_shared::election::advert::MAX_ADVERT_FRAME;
use rearguard_shared::link::{encode_frame, encoded_len, Feed, FrameReader, FramingError};
use rearguard_shared::reject::Reject;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The least time between two reopenings of a failing tty.
const REOPEN_PAUSE: Duration = Duration::from_millis(100);

/// An advert on the serial wire, delimiter included.
const SERIAL_ENCODED: usize = encoded_len(MAX_ADVERT_FRAME);

/// The sending half of a medium (the driver's).
pub enum Link {
    Udp { sock: UdpSocket, dest: SocketAddr, interface: String },
    Serial { tty: std::fs::File, cfg: SerialSection, reopened: Option<Instant> },
}

/// The receiving half of a medium (its receiver thread's).
pub enum Inbound {
    Udp(UdpSocket),
    Serial(SerialInbound),
}

pub struct SerialInbound {
    tty: std::fs::File,
    cfg: SerialSection,
    reader: Box<FrameReader<SERIAL_ENCODED>>,
    pending: Vec<u8>,
    /// Set by a failed read, cleared by the next good one: the warning is logged once.
    failing: bool,
}

impl SerialInbound {
    fn new(tty: std::fs::File, cfg: SerialSection) -> SerialInbound {
        SerialInbound { tty, cfg, reader: Box::new(FrameReader::sized()), pending: Vec::new(), failing: false }
    }

    /// Reads more bytes; on an error or end of file, reopens the tty by its path (the
    /// caller pauses [`Inbound::retry_pause`] before the next read).
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 256];
        let err = match self.tty.read(&mut chunk) {
            Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "serial line closed"),
            Ok(n) => {
                if std::mem::take(&mut self.failing) {
                    info!("serial medium {}: receiving again", self.cfg.path.display());
                }
                self.pending.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) => e,
        };
        if !std::mem::replace(&mut self.failing, true) {
            warn!("serial medium {}: {err}; reopening it until it reads again", self.cfg.path.display());
        }
        match crate::serial::open_tty(&self.cfg, false) {
            Ok(tty) => {
                self.tty = tty;
                // A frame cut by the failure must not be glued to the next one.
                self.pending.clear();
                *self.reader = FrameReader::sized();
            }
            Err(e) => debug!("serial medium {}: reopen: {e}", self.cfg.path.display()),
        }
        Err(err)
    }
}

impl Link {
    /// Opens medium `m`; errors name the `[[pair.medium]]` and what failed.
    pub fn open(m: &Medium) -> io::Result<(Link, Inbound)> {
        match m {
            Medium::Ip(ip) => {
                let sock = open_udp(ip)?;
                let inbound = Inbound::Udp(sock.try_clone()?);
                Ok((Link::Udp { sock, dest: ip.dest, interface: ip.interface.clone() }, inbound))
            }
            Medium::Serial(s) => {
                let ctx = |e: io::Error| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "[[pair.medium]] serial = {:?}: {e}: set serial to the tty of the cable to the peer \
                             (e.g. /dev/ttyS1, /dev/ttyUSB0), or remove this medium",
                            s.path.display().to_string()
                        ),
                    )
                };
                // Two descriptors: the receiver blocks in read, the election loop never
                // blocks in write.
                let mut tty = crate::serial::open_tty(s, true).map_err(ctx)?;
                let rx = crate::serial::open_tty(s, false).map_err(ctx)?;
                // A lone delimiter ends whatever partial frame the peer's reader holds.
                let _ = tty.write(&[0]);
                let inbound = Inbound::Serial(SerialInbound::new(rx, s.clone()));
                Ok((Link::Serial { tty, cfg: s.clone(), reopened: None }, inbound))
            }
        }
    }

    /// Sends one advert frame. Never blocks: a serial line that cannot take the whole
    /// frame now drops it (the next advert follows an interval later).
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp { sock, dest, .. } => sock.send_to(frame, *dest).map(|_| ()),
            Link::Serial { tty, cfg, reopened } => {
                let mut wire = [0u8; SERIAL_ENCODED];
                let n = encode_frame(frame, &mut wire);
                match tty.write(&wire[..n]) {
                    Ok(m) if m == n => Ok(()),
                    Ok(m) => {
                        Err(io::Error::new(io::ErrorKind::WouldBlock, format!("line full: {m} of {n} bytes written")))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
                    Err(e) => {
                        // This advert is lost; the next one goes out on the reopened tty.
                        if reopened.is_none_or(|at| at.elapsed() >= REOPEN_PAUSE) {
                            *reopened = Some(Instant::now());
                            if let Ok(mut fresh) = crate::serial::open_tty(cfg, true) {
                                let _ = fresh.write(&[0]);
                                *tty = fresh;
                            }
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// The interface or the tty.
    pub fn name(&self) -> String {
        match self {
            Link::Udp { interface, .. } => interface.clone(),
            Link::Serial { cfg, .. } => cfg.path.display().to_string(),
        }
    }

    /// Where adverts go, as status shows it.
    pub fn dest(&self) -> String {
        match self {
            Link::Udp { dest, .. } => dest.to_string(),
            Link::Serial { cfg, .. } => format!("serial {} baud", cfg.baud),
        }
    }
}

impl Inbound {
    /// Blocks for the next frame: `Ok(Ok(n))` is a frame in `buf[..n]`, `Ok(Err(r))` bytes
    /// that were not one (serial noise is counted as `bad-crc`, an overlong chunk as
    /// `truncated`).
    pub fn next(&mut self, buf: &mut [u8]) -> io::Result<Result<usize, Reject>> {
        match self {
            Inbound::Udp(sock) => sock.recv_from(buf).map(|(n, _)| Ok(n)),
            Inbound::Serial(s) => loop {
                while !s.pending.is_empty() {
                    let b = s.pending.remove(0);
                    match s.reader.feed(b) {
                        Feed::Pending => {}
                        Feed::Frame(n) if n <= buf.len() => {
                            buf[..n].copy_from_slice(&s.reader.frame()[..n]);
                            return Ok(Ok(n));
                        }
                        Feed::Frame(_) | Feed::Bad(FramingError::Overlong) => return Ok(Err(Reject::Truncated)),
                        Feed::Bad(FramingError::BadCobs) => return Ok(Err(Reject::BadCrc)),
                    }
                }
                s.fill()?;
            },
        }
    }

    /// How long a receiver waits after an error before reading again: never spin on a
    /// persistent one (a UDP ECONNREFUSED after a send to a peer not listening yet, a tty
    /// whose other end is gone).
    pub fn retry_pause(&self) -> Duration {
        match self {
            Inbound::Udp(_) => Duration::from_millis(1),
            Inbound::Serial(_) => REOPEN_PAUSE,
        }
    }
}

fn open_udp(m: &IpMedium) -> io::Result<UdpSocket> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("[[pair.medium]] {} ({}): {what}: {e}", m.interface, m.dest))
    };
    let domain = if m.dest.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| ctx("socket", e))?;
    s.set_reuse_address(true).map_err(|e| ctx("SO_REUSEADDR", e))?;
    s.bind_device(Some(m.interface.as_bytes())).map_err(|e| ctx("SO_BINDTODEVICE", e))?;
    // Adverts are tiny and urgent: ask for the interactive queue.
    let _ = s.set_tos_v4(0xc0);
    let any: SocketAddr = if m.dest.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), m.port)
    } else {
        SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), m.port)
    };
    s.bind(&any.into()).map_err(|e| ctx("bind", e))?;
    if let IpAddr::V4(group) = m.dest.ip() {
        if group.is_multicast() {
            let idx = super::netlink::ifindex(&m.interface)
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
            s.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(idx)).map_err(|e| ctx("join group", e))?;
            s.set_multicast_loop_v4(false).map_err(|e| ctx("IP_MULTICAST_LOOP", e))?;
            s.set_multicast_ttl_v4(1).map_err(|e| ctx("IP_MULTICAST_TTL", e))?;
        }
    }
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advert_sized_frame_crosses_a_pty_after_noise() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave =
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&pty.slave))).unwrap();
        let (mut link, _) = Link::open(&Medium::Serial(SerialSection { path: slave.clone(), baud: 115_200 })).unwrap();
        let frame: Vec<u8> = (0..MAX_ADVERT_FRAME).map(|i| i as u8).collect();
        link.send(&frame).unwrap();
        let mut master = std::fs::File::from(pty.master);
        let mut wire = vec![0x13, 0x37, 0x00];
        let mut buf = [0u8; 512];
        while !wire.ends_with(&[0]) || wire.len() < 5 {
            let n = master.read(&mut buf).unwrap();
            wire.extend_from_slice(&buf[..n]);
        }
        // Read back through an Inbound over a pipe carrying the same bytes.
        let (r, w) = nix::unistd::pipe().unwrap();
        std::fs::File::from(w).write_all(&wire).unwrap();
        let tty = std::fs::File::from(r);
        let mut inbound = Inbound::Serial(SerialInbound::new(tty, SerialSection { path: slave, baud: 115_200 }));
        assert_eq!(inbound.next(&mut buf).unwrap(), Err(Reject::BadCrc), "the noise before the first delimiter");
        let n = inbound.next(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], &frame[..]);
    }

    #[test]
    fn a_serial_path_that_does_not_exist_names_the_medium_and_the_fix() {
        let m = Medium::Serial(SerialSection { path: "/dev/ttyNOPE9".into(), baud: 115_200 });
        let e = Link::open(&m).err().unwrap().to_string();
        assert!(e.starts_with("[[pair.medium]] serial = \"/dev/ttyNOPE9\": No such file"), "{e}");
        assert!(e.contains("set serial to the tty"), "{e}");
    }
}
