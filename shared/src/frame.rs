//! The envelope every Rearguard record travels in, on disk, serial link or network.
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic (says which record follows) |
//! | 1 | protocol version |
//! | 1 | flags (bit 0: a MAC tag follows the body) |
//! | 1 | body length *n* |
//! | *n* | the record in postcard's format ([`crate::wire`]) |
//! | 16 | truncated HMAC-SHA256 over everything before it (only if flagged) |
//! | 4 | CRC-32C over everything before it |
//!
//! The CRC is checked first (cheap, catches torn sectors and line noise), then the version,
//! then the MAC, then the body. A block of zeros is "never written", not corruption.

use crate::integrity::{crc32c, Key, TAG_LEN};
use crate::reject::Reject;
use crate::wire::{self, Wire};
use crate::PROTOCOL_VERSION;

pub const HEADER_LEN: usize = 5;
const FLAG_MAC: u8 = 0x01;

/// Bytes a frame with a body of at most `max_body` bytes can take.
pub const fn max_frame(max_body: usize) -> usize {
    HEADER_LEN + max_body + TAG_LEN + 4
}

/// Seals `value` into `buf`; returns the frame length.
///
/// # Panics
/// If `buf` is shorter than `max_frame(max_body)`, or the value does not fit `max_body`
/// (both are fixed by the record type, so a panic is a bug in this crate, not bad input).
pub fn seal<T: Wire>(magic: [u8; 2], max_body: usize, value: &T, key: Option<&Key>, buf: &mut [u8]) -> usize {
    assert!(max_body <= u8::MAX as usize && buf.len() >= max_frame(max_body), "frame buffer too small");
    buf[0..2].copy_from_slice(&magic);
    buf[2] = PROTOCOL_VERSION;
    buf[3] = if key.is_some() { FLAG_MAC } else { 0 };
    let body_len = wire::to_slice(value, &mut buf[HEADER_LEN..HEADER_LEN + max_body])
        .expect("record fits its declared maximum body");
    buf[4] = body_len as u8;
    let mut end = HEADER_LEN + body_len;
    if let Some(key) = key {
        let tag = key.tag(&buf[..end]);
        buf[end..end + TAG_LEN].copy_from_slice(&tag);
        end += TAG_LEN;
    }
    let crc = crc32c(&buf[..end]);
    buf[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    end + 4
}

/// Opens a frame sealed with `magic`: checks integrity, version and (when `key` is set)
/// authenticity, then decodes the body. Trailing bytes after the frame are ignored (a disk
/// slot is a whole block with the frame at its start).
pub fn open<T: Wire>(magic: [u8; 2], max_body: usize, bytes: &[u8], key: Option<&Key>) -> Result<T, Reject> {
    if bytes.iter().take(max_frame(max_body)).all(|&b| b == 0) {
        return Err(Reject::NeverWritten);
    }
    if bytes.len() < HEADER_LEN {
        return Err(Reject::Truncated);
    }
    if bytes[0..2] != magic {
        return Err(Reject::BadMagic);
    }
    let has_mac = bytes[3] & FLAG_MAC != 0;
    let body_len = bytes[4] as usize;
    if body_len == 0 || body_len > max_body {
        return Err(Reject::Truncated);
    }
    let signed_end = HEADER_LEN + body_len;
    let crc_at = signed_end + if has_mac { TAG_LEN } else { 0 };
    if bytes.len() < crc_at + 4 {
        return Err(Reject::Truncated);
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[crc_at..crc_at + 4]);
    if crc32c(&bytes[..crc_at]) != u32::from_le_bytes(crc) {
        return Err(Reject::BadCrc);
    }
    if bytes[2] != PROTOCOL_VERSION {
        return Err(Reject::UnsupportedVersion { found: bytes[2] });
    }
    match (key, has_mac) {
        (Some(_), false) => return Err(Reject::MissingMac),
        (Some(key), true) if !key.verify(&bytes[..signed_end], &bytes[signed_end..crc_at]) => {
            return Err(Reject::BadMac)
        }
        // No key configured: a tag, if present, cannot be checked and is ignored.
        _ => {}
    }
    wire::from_bytes(&bytes[HEADER_LEN..signed_end]).map_err(|_| Reject::Malformed)
}

/// Whether a frame carries a MAC tag (for status displays; says nothing about validity).
pub fn has_mac(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[3] & FLAG_MAC != 0
}
