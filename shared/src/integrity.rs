//! Integrity (CRC-32C) and authenticity (truncated HMAC-SHA256) for every record Rearguard
//! writes to a disk, a link or the network.

use crc::{Crc, NoTable, CRC_32_ISCSI};

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
        let hex = hex.trim_ascii().as_bytes();
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
        let full = hmac_sha256(&self.bytes, msg);
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// Checks a truncated tag in constant time (every byte is compared, whatever differs).
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        let full = hmac_sha256(&self.bytes, msg);
        tag.len() == TAG_LEN && full.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

/// HMAC-SHA256 (RFC 2104) by hand over sha2's block function. The `hmac` and `digest`
/// crates' generic buffering and key handling cost the 32 KiB controller 1.6 KiB of flash;
/// this is what they compute for keys up to one block (every [`Key`] is at most 32 bytes),
/// and the tests check it against the `hmac` crate and RFC 4231's vectors.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut pad = [0u8; 64];
    pad[..key.len()].copy_from_slice(key);
    let inner = sha256(&pad.map(|b| b ^ 0x36), msg);
    sha256(&pad.map(|b| b ^ 0x5c), &inner)
}

/// SHA-256 of `first` (one whole block) followed by `rest`.
fn sha256(first: &[u8; 64], rest: &[u8]) -> [u8; 32] {
    let mut state: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let compress = |state: &mut [u32; 8], block: &[u8; 64]| {
        sha2::compress256(state, core::slice::from_ref(sha2::digest::generic_array::GenericArray::from_slice(block)))
    };
    compress(&mut state, first);
    let mut chunks = rest.chunks_exact(64);
    for block in &mut chunks {
        compress(&mut state, block.try_into().expect("64-byte chunk"));
    }
    // The tail, 0x80, zeros, and the message length in bits: one or two blocks.
    let tail = chunks.remainder();
    let mut block = [0u8; 64];
    block[..tail.len()].copy_from_slice(tail);
    block[tail.len()] = 0x80;
    if tail.len() >= 56 {
        compress(&mut state, &block);
        block = [0u8; 64];
    }
    let bits = (64 + rest.len() as u64) * 8;
    block[56..].copy_from_slice(&bits.to_be_bytes());
    compress(&mut state, &block);
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
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

    /// RFC 4231 test cases 1 and 2 (keys up to one block, full-length output).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let unhex = |h: &str| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect::<std::vec::Vec<u8>>()
        };
        assert_eq!(
            hmac_sha256(&[0x0b; 20], b"Hi There").to_vec(),
            unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?").to_vec(),
            unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    proptest::proptest! {
        /// The same MAC as the `hmac` crate for every key length a [`Key`] takes and messages
        /// across the one- and two-block padding boundaries.
        #[test]
        fn hmac_sha256_matches_the_hmac_crate(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), MIN_KEY_LEN..=MAX_KEY_LEN),
            msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            use hmac::Mac;
            let mut reference = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
            reference.update(&msg);
            proptest::prop_assert_eq!(hmac_sha256(&key, &msg).to_vec(), reference.finalize().into_bytes().to_vec());
        }
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
