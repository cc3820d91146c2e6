//! `rearguard firmware pack|verify`: the flashable image of the controller firmware.
//!
//! `pack` takes the firmware ELF (as `cargo build` leaves it) or a raw binary, flattens the
//! ELF's loadable segments into the bytes that go to flash, and prepends the header from
//! `rearguard_shared::image` (magic, format version, length, CRC-32C). `verify` checks an
//! image and refuses a corrupt one with the reason and exit status 1.

use anyhow::{bail, Context};
use clap::Subcommand;
use rearguard_shared::image;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum FirmwareCmd {
    /// Build a flashable image from the firmware ELF (or a raw .bin).
    ///
    /// Example: rearguard firmware pack
    ///   boards/qemu-lm3s6965/target/thumbv7m-none-eabi/release/rearguard-fw -o rearguard-fw.rgfw
    Pack {
        /// The firmware: an ELF from `cargo build --release`, or a raw flash binary.
        input: PathBuf,
        /// Where to write the image.
        #[arg(long, short)]
        output: PathBuf,
        /// Load address of a raw binary (an ELF carries its own).
        #[arg(long, default_value_t = 0, value_parser = parse_u32)]
        load_addr: u32,
    },
    /// Check an image's header, length and CRC; exit status 1 if it is corrupt.
    Verify { image: PathBuf },
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a 32-bit address (decimal or 0x-hex)"))
}

pub fn run(cmd: FirmwareCmd) -> anyhow::Result<u8> {
    match cmd {
        FirmwareCmd::Pack { input, output, load_addr } => {
            let bytes = std::fs::read(&input).with_context(|| format!("{}: cannot read", input.display()))?;
            let (payload, addr) = if bytes.starts_with(b"\x7fELF") {
                flatten_elf(&bytes).with_context(|| format!("{}: not a usable firmware ELF", input.display()))?
            } else {
                (bytes, load_addr)
            };
            let header = image::header(&payload, addr)?;
            let mut out = header.to_vec();
            out.extend_from_slice(&payload);
            std::fs::write(&output, &out).with_context(|| format!("{}: cannot write", output.display()))?;
            println!(
                "packed {}: {} payload bytes at {addr:#010x}, CRC-32C {:#010x}",
                output.display(),
                payload.len(),
                rearguard_shared::integrity::crc32c(&payload)
            );
            Ok(0)
        }
        FirmwareCmd::Verify { image: path } => verify(&path),
    }
}

fn verify(path: &Path) -> anyhow::Result<u8> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    match image::verify(&bytes) {
        Ok((h, _)) => {
            println!(
                "{}: ok, format {}, {} payload bytes at {:#010x}, CRC-32C {:#010x}",
                path.display(),
                image::FORMAT_VERSION,
                h.payload_len,
                h.load_addr,
                h.payload_crc
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {}: refused: {e}", path.display());
            Ok(1)
        }
    }
}

/// The bytes a flash programmer writes for a 32-bit little-endian ELF: every PT_LOAD segment
/// with file contents, placed at its physical (load) address, gaps filled with 0xFF (erased
/// flash). Returns them with the lowest load address.
fn flatten_elf(elf: &[u8]) -> anyhow::Result<(Vec<u8>, u32)> {
    let u16_at = |o: usize| -> anyhow::Result<u16> {
        Ok(u16::from_le_bytes(elf.get(o..o + 2).context("truncated ELF")?.try_into().unwrap()))
    };
    let u32_at = |o: usize| -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(elf.get(o..o + 4).context("truncated ELF")?.try_into().unwrap()))
    };
    if elf.get(4) != Some(&1) || elf.get(5) != Some(&1) {
        bail!("only 32-bit little-endian ELF files are supported (Cortex-M firmware)");
    }
    let (phoff, phentsize, phnum) = (u32_at(28)? as usize, u16_at(42)? as usize, u16_at(44)? as usize);
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        let (kind, offset, paddr, filesz) =
            (u32_at(p)?, u32_at(p + 4)? as usize, u32_at(p + 12)?, u32_at(p + 16)? as usize);
        if kind == 1 && filesz > 0 {
            let data = elf.get(offset..offset + filesz).context("segment beyond the end of the file")?;
            segs.push((paddr, data));
        }
    }
    let lo = segs.iter().map(|s| s.0).min().context("no loadable segment with contents")?;
    let hi = segs.iter().map(|s| s.0 as u64 + s.1.len() as u64).max().unwrap();
    if hi - lo as u64 > 16 << 20 {
        bail!("loadable segments span more than 16 MiB ({lo:#x}..{hi:#x}): not a flash image");
    }
    let mut flat = vec![0xFF; (hi - lo as u64) as usize];
    for (addr, data) in segs {
        let at = (addr - lo) as usize;
        flat[at..at + data.len()].copy_from_slice(data);
    }
    Ok((flat, lo))
}
