//! Integrity (CRC-32C) and authenticity (truncated HMAC-SHA256) for every record Rearguard
//! writes to a disk, a link or the network.

use crc::{Crc, NoTable, CRC_32_ISCSI};
use hmac::{Hmac, Mac};
use sha2::Sha256;

// Bit by bit, without the 1 KiB lookup table: the controller firmware's flash is 32 KiB, and
// records are under 200 bytes (a firmware image of 32 KiB still checks in well under 1 ms).
const CASTAGNOLI: Crc<u32, NoTable> = Crc::<u32, NoTable>::new(&CRC_32_ISCSI);

/// CRC-32C (Castagnoli, as used by iSCSI and ext4).
pub fn crc32c(bytes: &[u8]) -> u32 {
    CASTAGNOLI.checksum(bytes)
}

/// Length of the truncated MAC tag carried in frames. 128 bits is the usual truncation floor
/// (RFC 2104 §5 recommends not less than half the hash output).
pub const TAG_LEN: usize = 16;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 32;
/// Shortest key accepted: shorter keys are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// A shared MAC key, 16..=32 bytes.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    bytes: heapless::Vec<u8, MAX_KEY_LEN>,
}

impl core::fmt::Debug for Key {
    // Never print key material.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Key({} bytes)", self.bytes.len())
    }
}

// A sequence of raw bytes, as postcard encodes serde's `heapless::Vec<u8, 32>`. Like serde's
// derive, this takes 0..=32 bytes without `Key::new`'s minimum: the codec accepts exactly what
// postcard accepted (a stored record cannot hold a short key; only a hand-made one could).
impl crate::wire::Wire for Key {
    fn put(&self, w: &mut crate::wire::Writer<'_>) -> Result<(), crate::wire::Full> {
        w.varint(self.bytes.len() as u64)?;
        self.bytes.iter().try_for_each(|&b| w.byte(b))
    }
    fn get(r: &mut crate::wire::Reader<'_>) -> Result<Self, crate::wire::Malformed> {
        let n = r.len()?;
        if n > MAX_KEY_LEN as u64 {
            return Err(crate::wire::Malformed);
        }
        let bytes = heapless::Vec::from_slice(r.take(n as usize)?).map_err(|_| crate::wire::Malformed)?;
        Ok(Key { bytes })
    }
}

/// Why a key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    TooShort {
        len: usize,
    },
    TooLong {
        len: usize,
    },
    /// A hex string had an odd length or a non-hex character.
    NotHex,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyError::TooShort { len } => write!(
                f,
                "key is {len} bytes; use {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes ({} to {} hex digits)",
                MIN_KEY_LEN * 2,
                MAX_KEY_LEN * 2
            ),
            KeyError::TooLong { len } => {
                write!(f, "key is {len} bytes; use at most {MAX_KEY_LEN} bytes ({} hex digits)", MAX_KEY_LEN * 2)
            }
            KeyError::NotHex => f.write_str("key must be hex digits (0-9, a-f), an even number of them"),
        }
    }
}

impl Key {
    pub fn new(bytes: &[u8]) -> Result<Key, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len: bytes.len() });
        }
        let v = heapless::Vec::from_slice(bytes).map_err(|_| KeyError::TooLong { len: bytes.len() })?;
        Ok(Key { bytes: v })
    }

    /// Parses a key written as hex digits (the form used in configs and on the console).
    pub fn from_hex(hex: &str) -> Result<Key, KeyError> {
        let hex = hex.trim().as_bytes();
        if !hex.len().is_multiple_of(2) {
            return Err(KeyError::NotHex);
        }
        if hex.len() / 2 > MAX_KEY_LEN {
            return Err(KeyError::TooLong { len: hex.len() / 2 });
        }
        let mut out: heapless::Vec<u8, MAX_KEY_LEN> = heapless::Vec::new();
        for pair in hex.chunks(2) {
            let hi = nibble(pair[0]).ok_or(KeyError::NotHex)?;
            let lo = nibble(pair[1]).ok_or(KeyError::NotHex)?;
            let _ = out.push(hi << 4 | lo);
        }
        Key::new(&out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Truncated HMAC-SHA256 of `msg`.
    pub fn tag(&self, msg: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.hmac();
        mac.update(msg);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// Constant-time check of a truncated tag.
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.hmac();
        mac.update(msg);
        tag.len() == TAG_LEN && mac.verify_truncated_left(tag).is_ok()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes).expect("HMAC takes any key length")
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn hex_keys_parse_and_bad_ones_say_why() {
        let k = Key::from_hex("00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(k.as_bytes().len(), 16);
        assert_eq!(Key::from_hex("0011"), Err(KeyError::TooShort { len: 2 }));
        assert_eq!(Key::from_hex("zz112233445566778899aabbccddeeff"), Err(KeyError::NotHex));
        assert_eq!(Key::from_hex("abc"), Err(KeyError::NotHex));
    }

    #[test]
    fn tags_verify_only_with_the_same_key_and_message() {
        let k1 = Key::new(&[1u8; 32]).unwrap();
        let k2 = Key::new(&[2u8; 32]).unwrap();
        let t = k1.tag(b"hello");
        assert!(k1.verify(b"hello", &t));
        assert!(!k1.verify(b"hellp", &t));
        assert!(!k2.verify(b"hello", &t));
        assert!(!k1.verify(b"hello", &t[..8]));
    }
}
