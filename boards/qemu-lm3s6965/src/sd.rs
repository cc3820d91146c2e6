//! The shared disk: an SD card on SSI0 in SPI mode, chip select on GPIO port D pin 0 (active
//! low), as the lm3s6965evb wires its microSD slot.
//!
//! A small SPI-mode driver of our own rather than embedded-sdmmc's `SdCard`: QEMU's `ssi-sd`
//! (7.2) answers CMD58 (READ_OCR) with R1 = 0x01 (the idle bit) even after initialisation,
//! which embedded-sdmmc 0.8 treats as `Cmd58Error`, so it never brings the card up under
//! QEMU. This driver accepts any R1 without error bits there, and only uses the commands every
//! SPI-mode card supports: CMD0, CMD8, ACMD41, CMD58, CMD16, CMD9, CMD17, CMD24.
//! The application moves only the first 512-byte sector of each 4096-byte block (where every
//! on-disk record lives): one single-sector command each way.

use crate::regs::{ssi0, GPIO_A, GPIO_D, RCGC1, RCGC2};
use rearguard_firmware::board::{MarkStore, NvCopy, NvStore, SharedDisk};
use rearguard_shared::config::RECORD_LEN;
use rearguard_shared::disk::{BLOCK, RECORD_SECTOR};
use rearguard_shared::text::Text;
use rearguard_shared::packed;

const SR_TNF: u32 = 1 << 1;
const SR_RNE: u32 = 1 << 2;
const SECTOR: usize = 512;

/// Where the two config copies live on the SD image: copy A at 1 MiB, copy B one block later.
/// The heartbeat area is at most (1 + 2 × 32) × 4096 = 260 KiB from offset 0, so they never
/// overlap; an image must be at least 2 MiB (QEMU wants a power of two anyway).
pub const NV_OFFSET: u64 = 1 << 20;
/// The replay marks (`rearguard_firmware::app::marks`): one block after copy B.
pub const MARKS_OFFSET: u64 = NV_OFFSET + 2 * BLOCK as u64;

/// SSI0 as an SPI master, mode 0, 8-bit frames.
pub struct Spi;

impl Spi {
    pub fn init() -> Spi {
        RCGC1.set_bits(1 << 4);
        RCGC2.set_bits((1 << 0) | (1 << 3));
        // PA2 (clock), PA4 (rx), PA5 (tx) to the SSI; PD0 a GPIO output, high (deselected).
        GPIO_A.afsel().set_bits(0b11_0100);
        GPIO_A.den().set_bits(0b11_0100);
        GPIO_D.dir().set_bits(1);
        GPIO_D.den().set_bits(1);
        GPIO_D.data(1).write(1);
        ssi0::CR1.write(0); // disabled while configuring; master
        ssi0::CR0.write(0x07); // 8-bit frames, Motorola SPI mode 0
        ssi0::CPSR.write(2);
        ssi0::CR1.write(1 << 1); // SSE: enable
        Spi
    }

    fn xfer(&mut self, out: u8) -> u8 {
        while ssi0::SR.read() & SR_TNF == 0 {}
        ssi0::DR.write(out as u32);
        while ssi0::SR.read() & SR_RNE == 0 {}
        ssi0::DR.read() as u8
    }

    fn select(&mut self, on: bool) {
        GPIO_D.data(1).write(if on { 0 } else { 1 });
        if !on {
            self.xfer(0xFF); // a card releases its data-out line one clock after deselect
        }
    }
}

/// What went wrong talking to the card.
#[derive(Clone, Copy)]
pub enum CardError {
    /// No answer to a command (no card, or not in SPI mode).
    NoResponse(u8),
    /// The card answered a command with error bits set (R1).
    Rejected { cmd: u8, r1: u8 },
    /// The card never finished initialising (ACMD41 kept saying idle).
    InitTimeout,
    /// No data token, or an error token, for a read.
    ReadToken(u8),
    /// The card refused a written sector (data response).
    WriteRefused(u8),
    /// The card stayed busy after a write.
    Busy,
}

pub struct Card {
    spi: Spi,
    /// SDHC/SDXC address sectors, older cards bytes.
    sector_addressing: bool,
    pub sectors: u32,
}

impl Card {
    /// Brings the card into SPI mode and reads its size.
    pub fn init(mut spi: Spi) -> Result<Card, CardError> {
        spi.select(false);
        for _ in 0..10 {
            spi.xfer(0xFF); // ≥ 74 clocks with CS high
        }
        let mut c = Card { spi, sector_addressing: false, sectors: 0 };
        let r = c.bring_up();
        c.spi.select(false);
        r.map(|()| c)
    }

    fn bring_up(&mut self) -> Result<(), CardError> {
        self.spi.select(true);
        let mut r1 = 0xFF;
        for _ in 0..10 {
            r1 = self.cmd(0, 0)?;
            if r1 == 0x01 {
                break;
            }
        }
        if r1 != 0x01 {
            return Err(CardError::Rejected { cmd: 0, r1 });
        }
        // CMD8: v2 cards echo the check pattern; v1 cards call it illegal.
        let v2 = self.cmd(8, 0x1AA)? & 0x04 == 0;
        if v2 {
            let mut r7 = [0u8; 4];
            self.read_bytes(&mut r7);
            if r7[3] != 0xAA {
                return Err(CardError::Rejected { cmd: 8, r1: r7[3] });
            }
        }
        let mut ready = false;
        for _ in 0..10_000 {
            self.cmd(55, 0)?;
            if self.cmd(41, if v2 { 1 << 30 } else { 0 })? == 0 {
                ready = true;
                break;
            }
        }
        if !ready {
            return Err(CardError::InitTimeout);
        }
        if v2 {
            self.ok(58, 0)?;
            let mut ocr = [0u8; 4];
            self.read_bytes(&mut ocr);
            self.sector_addressing = ocr[0] & 0x40 != 0;
        }
        if !self.sector_addressing {
            self.ok(16, SECTOR as u32)?;
        }
        self.ok(9, 0)?;
        let mut csd = [0u8; 16];
        self.read_data(&mut csd, 0)?;
        self.sectors = csd_sectors(&csd);
        Ok(())
    }

    /// Sends a command and returns its R1 (CS must be low).
    fn cmd(&mut self, cmd: u8, arg: u32) -> Result<u8, CardError> {
        // Wait while a previous operation holds the line busy (bounded).
        for _ in 0..50_000 {
            if self.spi.xfer(0xFF) == 0xFF {
                break;
            }
        }
        let crc = match cmd {
            0 => 0x95,
            8 => 0x87,
            _ => 0x01,
        };
        let a = arg.to_be_bytes();
        for b in [0x40 | cmd, a[0], a[1], a[2], a[3], crc] {
            self.spi.xfer(b);
        }
        for _ in 0..16 {
            let r = self.spi.xfer(0xFF);
            if r & 0x80 == 0 {
                return Ok(r);
            }
        }
        Err(CardError::NoResponse(cmd))
    }

    /// A command whose R1 must carry no error bits (the idle bit is tolerated: see above).
    fn ok(&mut self, cmd: u8, arg: u32) -> Result<(), CardError> {
        match self.cmd(cmd, arg)? {
            r1 if r1 & 0xFE == 0 => Ok(()),
            r1 => Err(CardError::Rejected { cmd, r1 }),
        }
    }

    fn read_bytes(&mut self, out: &mut [u8]) {
        out.iter_mut().for_each(|b| *b = self.spi.xfer(0xFF));
    }

    /// Waits for the data token, reads `out` and then `skip` more bytes, skips the CRC.
    fn read_data(&mut self, out: &mut [u8], skip: usize) -> Result<(), CardError> {
        let mut tok = 0xFF;
        for _ in 0..100_000 {
            tok = self.spi.xfer(0xFF);
            if tok != 0xFF {
                break;
            }
        }
        if tok != 0xFE {
            return Err(CardError::ReadToken(tok));
        }
        self.read_bytes(out);
        for _ in 0..skip + 2 {
            self.spi.xfer(0xFF);
        }
        Ok(())
    }

    fn addr(&self, sector: u32) -> u32 {
        if self.sector_addressing {
            sector
        } else {
            sector * SECTOR as u32
        }
    }

    pub fn read_sector(&mut self, sector: u32, out: &mut [u8]) -> Result<(), CardError> {
        self.spi.select(true);
        // Straight into `out` (no sector buffer: stack is scarce); a short `out` skips the rest.
        let n = out.len().min(SECTOR);
        let r = self.ok(17, self.addr(sector)).and_then(|()| self.read_data(&mut out[..n], SECTOR - n));
        self.spi.select(false);
        r
    }

    /// Writes one sector; `data` shorter than a sector is padded with 0xFF.
    pub fn write_sector(&mut self, sector: u32, data: &[u8]) -> Result<(), CardError> {
        self.spi.select(true);
        let r = self.ok(24, self.addr(sector)).and_then(|()| {
            self.spi.xfer(0xFF);
            self.spi.xfer(0xFE);
            for i in 0..SECTOR {
                self.spi.xfer(data.get(i).copied().unwrap_or(0xFF));
            }
            self.spi.xfer(0xFF);
            self.spi.xfer(0xFF);
            let resp = self.spi.xfer(0xFF);
            if resp & 0x1F != 0x05 {
                return Err(CardError::WriteRefused(resp));
            }
            for _ in 0..100_000 {
                if self.spi.xfer(0xFF) != 0x00 {
                    return Ok(());
                }
            }
            Err(CardError::Busy)
        });
        self.spi.select(false);
        r
    }
}

/// Card size in 512-byte sectors from its CSD register (versions 1 and 2).
fn csd_sectors(csd: &[u8; 16]) -> u32 {
    let bits = |hi: usize, lo: usize| -> u32 {
        // CSD bit n is bit (n % 8) of byte 15 - n / 8.
        let mut v = 0u32;
        for n in (lo..=hi).rev() {
            v = (v << 1) | ((csd[15 - n / 8] >> (n % 8)) & 1) as u32;
        }
        v
    };
    if csd[0] >> 6 == 1 {
        (bits(69, 48) + 1) * 1024
    } else {
        let blocks = (bits(73, 62) + 1) << (bits(49, 47) + 2);
        let block_len = 1u32 << bits(83, 80);
        blocks * (block_len / SECTOR as u32)
    }
}

pub enum DiskError {
    Card(CardError),
    /// Offset not sector-aligned or beyond the card.
    OutOfRange(u64),
}

// Hand-written rather than derived: derived Debug pulls core's struct/tuple builders into
// the image, about 1 KiB of a 32 KiB budget.
impl core::fmt::Debug for CardError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        card_error(&mut Text::new(f), *self).end()
    }
}

fn card_error<'t, 'o>(t: &'t mut Text<'o>, e: CardError) -> &'t mut Text<'o> {
    match e {
        CardError::NoResponse(cmd) => t.s(packed!("no answer to CMD")).n(cmd),
        CardError::Rejected { cmd, r1 } => t.s("CMD").n(cmd).s(packed!(" refused, R1 ")).hex(r1.into()),
        CardError::InitTimeout => t.s(packed!("card never left idle")),
        CardError::ReadToken(tok) => t.s(packed!("read token ")).hex(tok.into()),
        CardError::WriteRefused(r) => t.s(packed!("write refused, response ")).hex(r.into()),
        CardError::Busy => t.s(packed!("card stuck busy")),
    }
}

// Display is what the console shows (`rearguard_firmware::report`); Debug, which the board
// traits ask for, says the same.
impl rearguard_shared::text::Say for DiskError {
    fn say(&self, t: &mut Text<'_>) {
        match self {
            DiskError::Card(e) => card_error(t.s(packed!("sd card: ")), *e),
            DiskError::OutOfRange(o) => t.s(packed!("offset ")).n((o / 1024) as u32).s(packed!(" KiB beyond the card")),
        };
    }
}

// The board traits ask for `Debug` too (tests print errors with it); never called here.
impl core::fmt::Debug for DiskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&rearguard_shared::text::Said(self), f)
    }
}

/// A handle on the card: the shared disk and the config store are both on it.
pub struct SdDisk<'a> {
    pub card: &'a core::cell::RefCell<Card>,
    pub sectors: u32,
}

impl SdDisk<'_> {
    fn first_sector(&self, offset: u64, len: usize) -> Result<u32, DiskError> {
        let first = offset / SECTOR as u64;
        let n = len.div_ceil(SECTOR) as u64;
        if !offset.is_multiple_of(SECTOR as u64) || first + n > self.sectors as u64 {
            return Err(DiskError::OutOfRange(offset));
        }
        Ok(first as u32)
    }

    pub fn read_sector(&mut self, idx: u32, out: &mut [u8]) -> Result<(), DiskError> {
        self.card.borrow_mut().read_sector(idx, out).map_err(DiskError::Card)
    }

    fn write_sector(&mut self, idx: u32, data: &[u8]) -> Result<(), DiskError> {
        self.card.borrow_mut().write_sector(idx, data).map_err(DiskError::Card)
    }
}

impl SharedDisk for SdDisk<'_> {
    type Error = DiskError;
    // One SD sector is exactly a block's record sector: a single-sector command each way.
    fn read_record(&mut self, offset: u64, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        let s = self.first_sector(offset, BLOCK)?;
        self.read_sector(s, buf)
    }
    fn write_record(&mut self, offset: u64, buf: &[u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        let s = self.first_sector(offset, BLOCK)?;
        self.write_sector(s, buf)
    }
}

impl NvStore for SdDisk<'_> {
    type Error = DiskError;
    fn read_copy(&mut self, copy: NvCopy, buf: &mut [u8; RECORD_LEN]) -> Result<(), DiskError> {
        let s = self.first_sector(nv_offset(copy), RECORD_LEN)?;
        self.read_sector(s, buf)
    }
    fn write_copy(&mut self, copy: NvCopy, buf: &[u8; RECORD_LEN]) -> Result<(), DiskError> {
        // One sector write: the card either takes the whole sector or, torn, fails the CRC.
        let s = self.first_sector(nv_offset(copy), RECORD_LEN)?;
        self.write_sector(s, buf)
    }
}

fn nv_offset(copy: NvCopy) -> u64 {
    match copy {
        NvCopy::A => NV_OFFSET,
        NvCopy::B => NV_OFFSET + BLOCK as u64,
    }
}

// A card too small for the sector fails the command: no range check of our own.
impl MarkStore for SdDisk<'_> {
    type Error = DiskError;
    fn read_marks(&mut self, buf: &mut [u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        self.read_sector((MARKS_OFFSET / SECTOR as u64) as u32, buf)
    }
    fn write_marks(&mut self, buf: &[u8; RECORD_SECTOR]) -> Result<(), DiskError> {
        self.write_sector((MARKS_OFFSET / SECTOR as u64) as u32, buf)
    }
}
