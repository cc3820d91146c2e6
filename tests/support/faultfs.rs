//! A fault-injecting FUSE filesystem, served by the test process itself (the `fuser` crate,
//! mounted directly by root, no libfuse): the shared disk lives in it as `disk.img`, so the
//! real agent and listener processes do their real `O_DIRECT` I/O through the kernel into
//! it, and a test decides at run time what the "disk" does — EIO on reads or writes of chosen
//! blocks, writes that hang for a time, writes silently dropped, torn (partial-sector) writes,
//! latency on every request. A loop device on top ([`super::disk::Loop::over`]) gives a real block device
//! with the same faults.
//!
//! `watchdog` in the same mount stands in for `/dev/watchdog` (this kernel has neither one nor
//! softdog): it records each open, `WDIOC_SETTIMEOUT`, `WDIOC_KEEPALIVE`, write ('V' being the
//! magic close) and close, with the time, so a test sees exactly what the agent did to it. With
//! [`Options::watchdog_ioctls`] off it answers the ioctls with ENOTTY, like a device (or FIFO)
//! that has none.
//!
//! `control` takes the same faults as text (`read-error 1`, `hang 1-2 800`, `clear`, one per
//! write; see [`Fault`]'s `FromStr`), for a shell next to a running test.
//!
//! Everything is undone on drop, also after a panic: the faults are cleared (so a hung request
//! completes), then the mount is detached. Drop a loop device over the image, and kill the
//! processes using it, before the [`FaultFs`].

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, IoctlFlags, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyWrite,
    Request, SessionACL, WriteFlags,
};
use std::ffi::OsStr;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The unit faults are placed in: a block of the heartbeat area (block 0 the header, 1 + i
/// node i's slot, 1 + N + i its mailbox).
pub const BLOCK: u64 = 4096;

/// One fault. Block ranges are in [`BLOCK`]s, end exclusive; a request is hit when it touches
/// any block of the range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Reads of these blocks fail with EIO.
    ReadError(Range<u64>),
    /// Writes to these blocks fail with EIO; nothing is written.
    WriteError(Range<u64>),
    /// Writes to these blocks complete (and land) only after this long.
    HangWrites(Range<u64>, Duration),
    /// Writes to these blocks report success and are thrown away.
    DropWrites(Range<u64>),
    /// Writes to these blocks report success, but only their first this-many bytes land (a
    /// sector torn part-way: heartbeat records are far shorter than half a sector).
    TornWrites(Range<u64>, usize),
    /// Every read and write of the image is answered this much later.
    Latency(Duration),
}

impl Fault {
    fn hits(&self, blocks: &Range<u64>) -> bool {
        let r = match self {
            Fault::ReadError(r)
            | Fault::WriteError(r)
            | Fault::HangWrites(r, _)
            | Fault::DropWrites(r)
            | Fault::TornWrites(r, _) => r,
            Fault::Latency(_) => return true,
        };
        r.start < blocks.end && blocks.start < r.end
    }
}

/// `read-error B`, `write-error B`, `hang B MS`, `drop B`, `torn B BYTES`, `latency MS`, where B is
/// a block `N`, a range `N-M` (inclusive) or `all`.
impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        let blocks = |i: usize| -> Result<Range<u64>, String> {
            let b = w.get(i).ok_or_else(|| format!("{s:?}: which blocks? (N, N-M or all)"))?;
            if *b == "all" {
                return Ok(0..u64::MAX);
            }
            let num = |x: &str| x.parse::<u64>().map_err(|_| format!("{s:?}: {x:?} is not a block number"));
            match b.split_once('-') {
                Some((a, z)) => Ok(num(a)?..num(z)? + 1),
                None => Ok(num(b)?..num(b)? + 1),
            }
        };
        let ms = |i: usize| -> Result<Duration, String> {
            let m = w.get(i).ok_or_else(|| format!("{s:?}: for how many ms?"))?;
            m.parse().map(Duration::from_millis).map_err(|_| format!("{s:?}: {m:?} is not a number of ms"))
        };
        match w.first().copied() {
            Some("read-error") => Ok(Fault::ReadError(blocks(1)?)),
            Some("write-error") => Ok(Fault::WriteError(blocks(1)?)),
            Some("hang") => Ok(Fault::HangWrites(blocks(1)?, ms(2)?)),
            Some("drop") => Ok(Fault::DropWrites(blocks(1)?)),
            Some("torn") => {
                let n = w.get(2).and_then(|n| n.parse().ok()).ok_or_else(|| format!("{s:?}: how many bytes land?"))?;
                Ok(Fault::TornWrites(blocks(1)?, n))
            }
            Some("latency") => Ok(Fault::Latency(ms(1)?)),
            _ => Err(format!("{s:?}: expected read-error, write-error, hang, drop, torn, latency or clear")),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let b =
            |r: &Range<u64>| if r.end == u64::MAX { "all".to_string() } else { format!("{}-{}", r.start, r.end - 1) };
        match self {
            Fault::ReadError(r) => write!(f, "read-error {}", b(r)),
            Fault::WriteError(r) => write!(f, "write-error {}", b(r)),
            Fault::HangWrites(r, d) => write!(f, "hang {} {}", b(r), d.as_millis()),
            Fault::DropWrites(r) => write!(f, "drop {}", b(r)),
            Fault::TornWrites(r, n) => write!(f, "torn {} {n}", b(r)),
            Fault::Latency(d) => write!(f, "latency {}", d.as_millis()),
        }
    }
}

/// What happened to the stand-in watchdog, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchdogEvent {
    Open,
    SetTimeout(u32),
    /// `WDIOC_KEEPALIVE`, or a write (any write pets a Linux watchdog).
    Pet,
    /// A write containing 'V': the next close disarms.
    Magic,
    /// Closed; `disarmed` when a 'V' came before it (the magic close). A close without it
    /// leaves a real watchdog running: the machine resets when it expires.
    Close {
        disarmed: bool,
    },
    /// An ioctl this device does not know, or any ioctl with ioctls off.
    UnknownIoctl(u32),
}

/// Request counts, for asserting what the disk saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub reads: u64,
    pub writes: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub hung: u64,
    pub dropped: u64,
    pub torn: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub image_bytes: u64,
    /// Answer `WDIOC_SETTIMEOUT` / `WDIOC_KEEPALIVE` (else ENOTTY).
    pub watchdog_ioctls: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { image_bytes: 1 << 20, watchdog_ioctls: true }
    }
}

#[derive(Default)]
struct State {
    image: Vec<u8>,
    faults: Vec<Fault>,
    stats: Stats,
    watchdog: Vec<(Instant, WatchdogEvent)>,
    watchdog_magic: bool,
    control_log: String,
}

type Shared = Arc<Mutex<State>>;

const ROOT: u64 = 1;
const IMAGE: u64 = 2;
const WATCHDOG: u64 = 3;
const CONTROL: u64 = 4;
const FILES: [(u64, &str); 3] = [(IMAGE, "disk.img"), (WATCHDOG, "watchdog"), (CONTROL, "control")];

// <linux/watchdog.h>: _IOR('W', 5, int) and _IOWR('W', 6, int).
const WDIOC_KEEPALIVE: u32 = 0x8004_5705;
const WDIOC_SETTIMEOUT: u32 = 0xC004_5706;

struct Fs {
    state: Shared,
    opts: Options,
}

impl Fs {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm, size) = match ino {
            ROOT => (FileType::Directory, 0o755, 0),
            IMAGE => (FileType::RegularFile, 0o600, self.state.lock().unwrap().image.len() as u64),
            WATCHDOG | CONTROL => (FileType::RegularFile, 0o600, 0),
            _ => return None,
        };
        let t = SystemTime::UNIX_EPOCH;
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink: if ino == ROOT { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK as u32,
            flags: 0,
        })
    }

    fn watchdog(&self, e: WatchdogEvent) {
        self.state.lock().unwrap().watchdog.push((Instant::now(), e));
    }
}

fn blocks_of(offset: u64, len: usize) -> Range<u64> {
    offset / BLOCK..(offset + len.max(1) as u64).div_ceil(BLOCK)
}

/// Answers `reply` after `delay` from a thread of its own, so one slow request does not hold
/// up the others (a disk with a queue, not a global lock).
fn later(delay: Duration, f: impl FnOnce() + Send + 'static) {
    if delay.is_zero() {
        f();
    } else {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            f();
        });
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match FILES.iter().find(|(_, n)| OsStr::new(n) == name) {
            Some(&(ino, _)) if parent.0 == ROOT => {
                reply.entry(&Duration::ZERO, &self.attr(ino).unwrap(), fuser::Generation(0))
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(a) => reply.attr(&Duration::ZERO, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The image has a fixed size (a disk does not grow); O_TRUNC on `control` is fine.
        match self.attr(ino.0) {
            Some(a) => reply.attr(&Duration::ZERO, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [(ROOT, FileType::Directory, "."), (ROOT, FileType::Directory, "..")]
            .into_iter()
            .chain(FILES.iter().map(|&(i, n)| (i, FileType::RegularFile, n)));
        for (i, (ino, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == WATCHDOG {
            self.state.lock().unwrap().watchdog_magic = false;
            self.watchdog(WatchdogEvent::Open);
        }
        // Direct I/O: every read and write reaches this server (no page cache in between), as
        // every O_DIRECT access reaches a real disk.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.state.lock().unwrap();
        match ino.0 {
            IMAGE => {}
            CONTROL => {
                let log = s.control_log.as_bytes();
                let from = (offset as usize).min(log.len());
                return reply.data(&log[from..(from + size as usize).min(log.len())]);
            }
            _ => return reply.data(&[]),
        }
        s.stats.reads += 1;
        let blocks = blocks_of(offset, size as usize);
        let delay = latency(&s.faults);
        if s.faults.iter().any(|f| matches!(f, Fault::ReadError(_)) && f.hits(&blocks)) {
            s.stats.read_errors += 1;
            return later(delay, move || reply.error(Errno::EIO));
        }
        let from = (offset as usize).min(s.image.len());
        let data = s.image[from..(from + size as usize).min(s.image.len())].to_vec();
        later(delay, move || reply.data(&data));
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match ino.0 {
            IMAGE => {}
            WATCHDOG => {
                if data.contains(&b'V') {
                    self.state.lock().unwrap().watchdog_magic = true;
                    self.watchdog(WatchdogEvent::Magic);
                } else {
                    self.watchdog(WatchdogEvent::Pet);
                }
                return reply.written(data.len() as u32);
            }
            CONTROL => {
                let text = String::from_utf8_lossy(data).into_owned();
                let mut s = self.state.lock().unwrap();
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let answer = if line == "clear" {
                        s.faults.clear();
                        "ok: cleared".to_string()
                    } else {
                        match line.parse::<Fault>() {
                            Ok(f) => {
                                let a = format!("ok: {f}");
                                s.faults.push(f);
                                a
                            }
                            Err(e) => {
                                s.control_log.push_str(&format!("error: {e}\n"));
                                return reply.error(Errno::EINVAL);
                            }
                        }
                    };
                    s.control_log.push_str(&answer);
                    s.control_log.push('\n');
                }
                return reply.written(data.len() as u32);
            }
            _ => return reply.error(Errno::EBADF),
        }
        let mut s = self.state.lock().unwrap();
        s.stats.writes += 1;
        let blocks = blocks_of(offset, data.len());
        let hit = |f: &Fault| f.hits(&blocks);
        let mut delay = latency(&s.faults);
        if s.faults.iter().any(|f| matches!(f, Fault::WriteError(_)) && hit(f)) {
            s.stats.write_errors += 1;
            return later(delay, move || reply.error(Errno::EIO));
        }
        let n = data.len() as u32;
        if s.faults.iter().any(|f| matches!(f, Fault::DropWrites(_)) && hit(f)) {
            s.stats.dropped += 1;
            return later(delay, move || reply.written(n));
        }
        let mut land = data.to_vec();
        if let Some(n) = s.faults.iter().find_map(|f| match f {
            Fault::TornWrites(_, n) if hit(f) => Some(*n),
            _ => None,
        }) {
            s.stats.torn += 1;
            land.truncate(n);
        }
        let hang = s.faults.iter().find_map(|f| match f {
            Fault::HangWrites(_, d) if hit(f) => Some(*d),
            _ => None,
        });
        if let Some(d) = hang {
            s.stats.hung += 1;
            delay += d;
        }
        drop(s);
        let state = self.state.clone();
        // A hung write lands when it completes, as on a disk that comes back.
        later(delay, move || {
            let mut s = state.lock().unwrap();
            let from = (offset as usize).min(s.image.len());
            let to = (from + land.len()).min(s.image.len());
            s.image[from..to].copy_from_slice(&land[..to - from]);
            drop(s);
            reply.written(n);
        });
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if ino.0 == WATCHDOG {
            let disarmed = std::mem::take(&mut self.state.lock().unwrap().watchdog_magic);
            self.watchdog(WatchdogEvent::Close { disarmed });
        }
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        if ino.0 != WATCHDOG || !self.opts.watchdog_ioctls {
            if ino.0 == WATCHDOG {
                self.watchdog(WatchdogEvent::UnknownIoctl(cmd));
            }
            return reply.error(Errno::ENOTTY);
        }
        match cmd {
            WDIOC_KEEPALIVE => {
                self.watchdog(WatchdogEvent::Pet);
                reply.ioctl(0, &0i32.to_ne_bytes());
            }
            WDIOC_SETTIMEOUT if in_data.len() >= 4 => {
                let t = i32::from_ne_bytes(in_data[..4].try_into().unwrap());
                self.watchdog(WatchdogEvent::SetTimeout(t as u32));
                reply.ioctl(0, &t.to_ne_bytes());
            }
            _ => {
                self.watchdog(WatchdogEvent::UnknownIoctl(cmd));
                reply.error(Errno::ENOTTY);
            }
        }
    }
}

fn latency(faults: &[Fault]) -> Duration {
    faults.iter().filter_map(|f| if let Fault::Latency(d) = f { Some(*d) } else { None }).sum()
}

/// The mounted filesystem. See the module doc.
pub struct FaultFs {
    mnt: tempfile::TempDir,
    state: Shared,
    session: Option<fuser::BackgroundSession>,
}

impl FaultFs {
    /// Mounts a fresh filesystem with a zeroed image of `opts.image_bytes`. Needs root (and
    /// /dev/fuse); fails saying so.
    pub fn mount(opts: Options) -> FaultFs {
        assert_eq!(
            super::euid(),
            0,
            "the disk-fault tests mount a FUSE filesystem and must run as root: `sudo scripts/test.sh`"
        );
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: load the fuse module (`modprobe fuse`) and run scripts/setup.sh (package fuse3)"
        );
        let mnt = tempfile::Builder::new().prefix("rearguard-faultfs-").tempdir().unwrap();
        let state: Shared =
            Arc::new(Mutex::new(State { image: vec![0; opts.image_bytes as usize], ..State::default() }));
        let mut cfg = Config::default();
        cfg.mount_options = vec![MountOption::FSName("rearguard-faultfs".into()), MountOption::RW];
        cfg.acl = SessionACL::All;
        let fs = Fs { state: state.clone(), opts };
        let session = fuser::spawn_mount(fs, mnt.path(), &cfg)
            .unwrap_or_else(|e| panic!("mount the fault-injecting FUSE filesystem on {}: {e}", mnt.path().display()));
        FaultFs { mnt, state, session: Some(session) }
    }

    pub fn dir(&self) -> &Path {
        self.mnt.path()
    }

    /// The disk image, through the mount (what the agent and listener open).
    pub fn image(&self) -> PathBuf {
        self.dir().join("disk.img")
    }

    /// The stand-in watchdog device.
    pub fn watchdog_device(&self) -> PathBuf {
        self.dir().join("watchdog")
    }

    /// Adds a fault; it holds until [`FaultFs::clear`].
    pub fn inject(&self, f: Fault) {
        self.state.lock().unwrap().faults.push(f);
    }

    /// Removes every fault (requests already hung still finish their time).
    pub fn clear(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats
    }

    /// What the stand-in watchdog saw so far, with when.
    pub fn watchdog_events(&self) -> Vec<(Instant, WatchdogEvent)> {
        self.state.lock().unwrap().watchdog.clone()
    }

    /// A copy of `len` bytes of the image at `offset`, read without going through the kernel
    /// (and so without faults).
    pub fn peek(&self, offset: u64, len: usize) -> Vec<u8> {
        self.state.lock().unwrap().image[offset as usize..offset as usize + len].to_vec()
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        self.clear();
        // A lazy unmount cannot fail on a busy mount; the session then ends with the last user.
        let _ = Command::new("umount").arg("-l").arg(self.mnt.path()).status();
        drop(self.session.take());
    }
}
