//! The flashable firmware image: a 32-byte header, then the flat binary that goes to flash.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "RGFW"
//!      4     2  format version (1)
//!      6     2  header length (32)
//!      8     4  payload length in bytes
//!     12     4  payload CRC-32C
//!     16     4  load address (where the payload's first byte goes in flash)
//!     20     8  reserved, zero
//!     28     4  header CRC-32C over bytes 0..28
//! ```
//!
//! All little-endian. A loader (or `rearguard firmware verify`) checks the header CRC, then
//! the length, then the payload CRC, and refuses the image at the first mismatch, so a
//! truncated download or a flipped bit never reaches flash.

use crate::integrity::crc32c;

pub const MAGIC: [u8; 4] = *b"RGFW";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub payload_len: u32,
    pub payload_crc: u32,
    pub load_addr: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than a header.
    TooShort {
        len: usize,
    },
    BadMagic,
    UnsupportedVersion {
        found: u16,
    },
    BadHeaderCrc,
    /// The header's length and the bytes present disagree (truncated or padded).
    LengthMismatch {
        header: u32,
        actual: usize,
    },
    BadPayloadCrc {
        header: u32,
        actual: u32,
    },
    /// The payload is larger than a u32 length can say.
    TooLarge,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ImageError::TooShort { len } => write!(f, "{len} bytes is shorter than the {HEADER_LEN}-byte image header: not a firmware image"),
            ImageError::BadMagic => f.write_str("no RGFW magic: not a Rearguard firmware image (pack an ELF or .bin with `rearguard firmware pack`)"),
            ImageError::UnsupportedVersion { found } => {
                write!(f, "image format version {found}, this build reads {FORMAT_VERSION}: use a matching rearguard")
            }
            ImageError::BadHeaderCrc => f.write_str("header CRC mismatch: the image header is corrupt; re-pack or re-download it"),
            ImageError::LengthMismatch { header, actual } => write!(
                f,
                "the header says {header} payload bytes but {actual} follow: the image is truncated or padded; re-download it"
            ),
            ImageError::BadPayloadCrc { header, actual } => write!(
                f,
                "payload CRC mismatch (header {header:#010x}, payload {actual:#010x}): the image is corrupt; re-download it"
            ),
            ImageError::TooLarge => f.write_str("payload larger than 4 GiB"),
        }
    }
}

impl core::error::Error for ImageError {}

/// Builds the header for `payload`.
pub fn header(payload: &[u8], load_addr: u32) -> Result<[u8; HEADER_LEN], ImageError> {
    let len = u32::try_from(payload.len()).map_err(|_| ImageError::TooLarge)?;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&crc32c(payload).to_le_bytes());
    h[16..20].copy_from_slice(&load_addr.to_le_bytes());
    let crc = crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    Ok(h)
}

/// Checks a whole image; returns its header and payload.
pub fn verify(image: &[u8]) -> Result<(ImageHeader, &[u8]), ImageError> {
    if image.len() < HEADER_LEN {
        return Err(ImageError::TooShort { len: image.len() });
    }
    let le32 = |at: usize| u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]);
    if image[0..4] != MAGIC {
        return Err(ImageError::BadMagic);
    }
    if le32(28) != crc32c(&image[..28]) {
        return Err(ImageError::BadHeaderCrc);
    }
    let version = u16::from_le_bytes([image[4], image[5]]);
    if version != FORMAT_VERSION {
        return Err(ImageError::UnsupportedVersion { found: version });
    }
    let hdr = ImageHeader { payload_len: le32(8), payload_crc: le32(12), load_addr: le32(16) };
    let payload = &image[HEADER_LEN..];
    if payload.len() != hdr.payload_len as usize {
        return Err(ImageError::LengthMismatch { header: hdr.payload_len, actual: payload.len() });
    }
    let actual = crc32c(payload);
    if actual != hdr.payload_crc {
        return Err(ImageError::BadPayloadCrc { header: hdr.payload_crc, actual });
    }
    Ok((hdr, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn image(payload: &[u8]) -> Vec<u8> {
        let mut v = header(payload, 0).unwrap().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused_by_name() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let img = image(&payload);
        let (h, p) = verify(&img).unwrap();
        assert_eq!((h.payload_len, p), (3000, &payload[..]));
        assert_eq!(verify(&img[..10]), Err(ImageError::TooShort { len: 10 }));
        assert!(matches!(
            verify(&img[..img.len() - 1]),
            Err(ImageError::LengthMismatch { header: 3000, actual: 2999 })
        ));
        let mut bad = img.clone();
        bad[100] ^= 1;
        assert!(matches!(verify(&bad), Err(ImageError::BadPayloadCrc { .. })));
        let mut bad = img.clone();
        bad[9] ^= 1;
        assert_eq!(verify(&bad), Err(ImageError::BadHeaderCrc));
        let mut bad = img;
        bad[0] = b'X';
        assert_eq!(verify(&bad), Err(ImageError::BadMagic));
    }

    #[test]
    fn any_single_bit_flip_is_caught() {
        let img = image(b"a small firmware payload for the bit-flip sweep");
        for bit in 0..img.len() * 8 {
            let mut bad = img.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(verify(&bad).is_err(), "bit {bit}");
        }
    }
}
