//! What a board must provide. Each trait is as small as the application needs.

use rearguard_shared::config::RECORD_LEN;
use rearguard_shared::disk::RECORD_SECTOR;
use rearguard_shared::listener::Takeover;
use rearguard_shared::text::Say;

/// Which of the two config copies (A/B) a [`NvStore`] call addresses.
pub use rearguard_shared::config::Copy as NvCopy;

/// The shared disk. Every structure on it is a 4096-byte block whose meaningful bytes sit in
/// its first 512-byte sector, so the application moves only that sector: `offset` is the
/// block's byte offset. A board whose device needs whole blocks (O_DIRECT on a 4Kn disk)
/// reads the block and hands over its first sector, and writes the sector zero-padded.
pub trait SharedDisk {
    type Error: core::fmt::Debug + Say;
    fn read_record(&mut self, offset: u64, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), Self::Error>;
    fn write_record(&mut self, offset: u64, buf: &[u8; RECORD_SECTOR]) -> Result<(), Self::Error>;
}

/// A link that delivers whole heartbeat frames (already de-framed, e.g. COBS-decoded).
pub trait FrameLink {
    /// Copies the next complete frame into `buf` and returns its length, or `None` when no
    /// frame is waiting. Must not block.
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize>;
}

/// Whatever holds the secondary at POST. Opening it is irreversible until power-cycle.
pub trait BootGate {
    type Error: core::fmt::Debug + Say;
    /// Opens the gate so the spare boots as `takeover.node` (its boot configuration);
    /// `None`: pass-through (role primary), the host boots as itself.
    fn release(&mut self, takeover: Option<&Takeover>) -> Result<(), Self::Error>;
    /// For the drill: whether the gate could be opened now. Opens nothing. `Ok` says what was
    /// seen, `Err` what is wrong and how to fix it.
    fn check(&mut self) -> Result<&'static str, &'static str>;
}

/// Non-volatile storage for the two config copies (see `rearguard_shared::config`). Each
/// write must replace one copy without touching the other; a write cut by power loss may
/// leave that copy corrupt (its CRC tells), never the other one.
pub trait NvStore {
    type Error: core::fmt::Debug + Say;
    fn read_copy(&mut self, copy: NvCopy, buf: &mut [u8; RECORD_LEN]) -> Result<(), Self::Error>;
    fn write_copy(&mut self, copy: NvCopy, buf: &[u8; RECORD_LEN]) -> Result<(), Self::Error>;
}

/// Non-volatile room for the replay marks (`crate::app::marks`): one sector beside the config
/// copies, rewritten in place about once a second while a primary's heartbeat moves. A write
/// cut by power loss may leave it corrupt (its CRC tells: the next start goes without marks).
/// The Linux board keeps its own (`[listener] state_dir`) and does not implement it.
pub trait MarkStore {
    type Error: core::fmt::Debug + Say;
    fn read_marks(&mut self, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), Self::Error>;
    fn write_marks(&mut self, buf: &[u8; RECORD_SECTOR]) -> Result<(), Self::Error>;
}

/// Placeholder for a board without a shared disk (serial-only listeners).
pub struct NoDisk;
impl SharedDisk for NoDisk {
    type Error = core::convert::Infallible;
    fn read_record(&mut self, _: u64, _: &mut [u8; RECORD_SECTOR]) -> Result<(), Self::Error> {
        unreachable!("NoDisk is never read: the app only polls configured media")
    }
    fn write_record(&mut self, _: u64, _: &[u8; RECORD_SECTOR]) -> Result<(), Self::Error> {
        unreachable!("NoDisk is never written")
    }
}

/// Placeholder for a board without a serial heartbeat link.
pub struct NoLink;
impl FrameLink for NoLink {
    fn next_frame(&mut self, _: &mut [u8]) -> Option<usize> {
        None
    }
}
