//! Whole-block I/O on the shared disk with O_DIRECT | O_DSYNC, so every heartbeat reaches the
//! device (not the page cache) and every read sees what the other machine wrote.

use rearguard_shared::disk::BLOCK;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "{path}: no such file or device; check the path (to make a test image: `rearguard disk init {path} --create`)"
    )]
    NotFound { path: PathBuf },
    #[error("{path}: permission denied; run as a user that may open it read-write (often root, or the `disk` group)")]
    PermissionDenied { path: PathBuf },
    #[error(
        "{path}: {size} bytes is too small for the heartbeat area ({need} bytes); use a larger device or fewer slots"
    )]
    TooSmall { path: PathBuf, size: u64, need: u64 },
    #[error("{path}: {op} at offset {offset} failed: {source}")]
    Io { path: PathBuf, op: &'static str, offset: u64, source: std::io::Error },
}

/// The Linux listener prints it on the firmware application's lines.
impl rearguard_shared::text::Say for DiskError {
    fn say(&self, t: &mut rearguard_shared::text::Text<'_>) {
        t.d(self);
    }
}

/// Open flag for synchronous data writes, for callers outside this module.
pub const O_DSYNC: i32 = libc::O_DSYNC;

/// 4096-aligned buffer, as O_DIRECT requires on 4Kn disks.
#[repr(C, align(4096))]
struct Aligned([u8; BLOCK]);

pub struct DirectDisk {
    file: File,
    path: PathBuf,
    direct: bool,
    buf: Box<Aligned>,
}

impl DirectDisk {
    /// Opens `path` for block I/O. Falls back to buffered I/O with O_DSYNC on filesystems
    /// that refuse O_DIRECT (then [`DirectDisk::is_direct`] is false and callers say so).
    pub fn open(path: &Path, write: bool) -> Result<DirectDisk, DiskError> {
        let open = |direct: bool| {
            let mut flags = libc::O_DSYNC;
            if direct {
                flags |= libc::O_DIRECT;
            }
            OpenOptions::new().read(true).write(write).custom_flags(flags).open(path)
        };
        let (file, direct) = match open(true) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(false).map_err(|e| map_open(path, e))?, false),
            Err(e) => return Err(map_open(path, e)),
        };
        Ok(DirectDisk { file, path: path.to_path_buf(), direct, buf: Box::new(Aligned([0; BLOCK])) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Size in bytes of the file or block device.
    pub fn size(&self) -> Result<u64, DiskError> {
        let meta = self.file.metadata().map_err(|e| self.io("stat", 0, e))?;
        if meta.file_type().is_block_device() {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid and aligned.
            let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKGETSIZE64, &mut size) };
            if rc != 0 {
                return Err(self.io("BLKGETSIZE64", 0, std::io::Error::last_os_error()));
            }
            Ok(size)
        } else {
            Ok(meta.len())
        }
    }

    /// Logical sector size (512 for regular files).
    pub fn logical_sector_size(&self) -> u16 {
        let is_blk = self.file.metadata().map(|m| m.file_type().is_block_device()).unwrap_or(false);
        if !is_blk {
            return 512;
        }
        let mut ss: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one c_int through the pointer, which is valid and aligned.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKSSZGET, &mut ss) };
        if rc == 0 && ss > 0 {
            ss as u16
        } else {
            512
        }
    }

    pub fn read_block(&mut self, offset: u64, out: &mut [u8; BLOCK]) -> Result<(), DiskError> {
        let n = self.file.read_at(&mut self.buf.0, offset).map_err(|e| self.io("read", offset, e))?;
        if n != BLOCK {
            let e =
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("short read ({n} of {BLOCK} bytes)"));
            return Err(self.io("read", offset, e));
        }
        out.copy_from_slice(&self.buf.0);
        Ok(())
    }

    /// One single-block write; returns once the device has it (O_DSYNC).
    pub fn write_block(&mut self, offset: u64, data: &[u8; BLOCK]) -> Result<(), DiskError> {
        self.buf.0.copy_from_slice(data);
        let n = self.file.write_at(&self.buf.0, offset).map_err(|e| self.io("write", offset, e))?;
        if n != BLOCK {
            let e = std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write ({n} of {BLOCK} bytes)"));
            return Err(self.io("write", offset, e));
        }
        Ok(())
    }

    fn io(&self, op: &'static str, offset: u64, source: std::io::Error) -> DiskError {
        DiskError::Io { path: self.path.clone(), op, offset, source }
    }
}

fn map_open(path: &Path, e: std::io::Error) -> DiskError {
    match e.kind() {
        std::io::ErrorKind::NotFound => DiskError::NotFound { path: path.to_path_buf() },
        std::io::ErrorKind::PermissionDenied => DiskError::PermissionDenied { path: path.to_path_buf() },
        _ => DiskError::Io { path: path.to_path_buf(), op: "open", offset: 0, source: e },
    }
}

// From <linux/fs.h>; libc does not export these request numbers on every target.
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        std::fs::write(&p, vec![0u8; 4 * BLOCK]).unwrap();
        let mut d = DirectDisk::open(&p, true).unwrap();
        let mut blk = [0u8; BLOCK];
        blk[..5].copy_from_slice(b"hello");
        d.write_block(2 * BLOCK as u64, &blk).unwrap();
        let mut back = [0u8; BLOCK];
        d.read_block(2 * BLOCK as u64, &mut back).unwrap();
        assert_eq!(&back[..5], b"hello");
        assert_eq!(d.size().unwrap(), 4 * BLOCK as u64);
    }

    #[test]
    fn a_missing_device_is_named_with_the_fix() {
        let e = DirectDisk::open(Path::new("/nonexistent/disk"), false).err().unwrap();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/disk") && msg.contains("disk init"), "{msg}");
    }
}
