//! Serial-link framing: COBS with a 0x00 delimiter.
//!
//! A heartbeat frame ([`crate::heartbeat::encode`]) is COBS-encoded and followed by one 0x00
//! byte, so a receiver that joins mid-stream (or sees line noise) resynchronises at the next
//! delimiter. Senders also send a lone 0x00 when they (re)connect, which ends any partial
//! frame the receiver holds. The sender side ([`encode_frame`]) is used by the Linux agent,
//! the receiver side ([`FrameReader`]) by the firmware; both are allocation-free. The pair's
//! serial side link carries its (longer) adverts the same way, in a reader sized for them
//! with [`encoded_len`].

use crate::heartbeat::MAX_FRAME;

/// The wire length of a frame of `frame_len` bytes at most, delimiter included.
pub const fn encoded_len(frame_len: usize) -> usize {
    cobs::max_encoding_length(frame_len) + 1
}

/// Longest encoded heartbeat frame on the wire, delimiter included.
pub const MAX_ENCODED: usize = encoded_len(MAX_FRAME);

/// Encodes `frame` into `out` as COBS + 0x00 and returns the bytes written.
///
/// # Panics
/// If `out` is shorter than [`encoded_len`]`(frame.len())` (a heartbeat always fits
/// [`MAX_ENCODED`]).
pub fn encode_frame(frame: &[u8], out: &mut [u8]) -> usize {
    assert!(out.len() >= encoded_len(frame.len()), "frame or buffer size");
    let n = cobs::encode(frame, out);
    out[n] = 0;
    n + 1
}

/// What a byte fed to a [`FrameReader`] completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Nothing yet.
    Pending,
    /// A frame of this many bytes is in the reader's output buffer.
    Frame(usize),
    /// A delimited chunk was not a frame (it is dropped and counted by the caller).
    Bad(FramingError),
}

/// Why bytes between two delimiters were not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// More bytes than any encoded frame can have: noise, or a sender with another format.
    Overlong,
    /// Not valid COBS.
    BadCobs,
}

impl FramingError {
    pub fn name(self) -> &'static str {
        match self {
            FramingError::Overlong => "overlong",
            FramingError::BadCobs => "bad-cobs",
        }
    }
}

/// Reassembles frames from a byte stream. Never panics, whatever the input. `N` is the
/// longest chunk on the wire it takes ([`encoded_len`] of the longest frame): heartbeats by
/// default.
pub struct FrameReader<const N: usize = MAX_ENCODED> {
    buf: [u8; N],
    len: usize,
    /// Set once the current chunk exceeded the buffer; cleared at the next delimiter.
    overlong: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub const fn new() -> Self {
        Self::sized()
    }
}

impl<const N: usize> FrameReader<N> {
    /// A reader for chunks of up to `N` bytes on the wire.
    pub const fn sized() -> Self {
        FrameReader { buf: [0; N], len: 0, overlong: false }
    }

    /// Feeds one received byte. On [`Feed::Frame`], the decoded frame is `frame()[..n]`.
    pub fn feed(&mut self, byte: u8) -> Feed {
        if byte != 0 {
            if self.len < self.buf.len() {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overlong = true;
            }
            return Feed::Pending;
        }
        let (len, overlong) = (self.len, self.overlong);
        self.len = 0;
        self.overlong = false;
        if overlong {
            return Feed::Bad(FramingError::Overlong);
        }
        if len == 0 {
            return Feed::Pending; // back-to-back delimiters are idle line, not an error
        }
        match cobs::decode_in_place(&mut self.buf[..len]) {
            Ok(n) if encoded_len(n) <= N => Feed::Frame(n),
            Ok(_) => Feed::Bad(FramingError::Overlong),
            Err(_) => Feed::Bad(FramingError::BadCobs),
        }
    }

    /// The last decoded frame's bytes (valid right after [`Feed::Frame`]).
    pub fn frame(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::{self, tests::sample, Verifier};
    use proptest::prelude::*;

    fn feed_all(r: &mut FrameReader, bytes: &[u8]) -> std::vec::Vec<Feed> {
        bytes.iter().map(|&b| r.feed(b)).filter(|f| *f != Feed::Pending).collect()
    }

    #[test]
    fn a_heartbeat_survives_the_link_after_noise() {
        let mut frame = [0u8; MAX_FRAME];
        let n = heartbeat::encode(&sample(5), None, &mut frame);
        let mut wire = [0u8; MAX_ENCODED];
        let m = encode_frame(&frame[..n], &mut wire);
        assert!(!wire[..m - 1].contains(&0));
        let mut r = FrameReader::new();
        // Noise first, then a delimiter, then the frame.
        let got = feed_all(&mut r, &[0x13, 0x37, 0x00]);
        assert_eq!(got.len(), 1);
        let got = feed_all(&mut r, &wire[..m]);
        assert_eq!(got, [Feed::Frame(n)]);
        let v = Verifier { cluster_id: 0xC0FFEE, key: None };
        assert_eq!(heartbeat::decode(&r.frame()[..n], &v), Ok(sample(5)));
    }

    #[test]
    fn overlong_chunks_are_refused_and_the_reader_recovers() {
        let mut r = FrameReader::new();
        let junk = [0x55u8; 3 * MAX_ENCODED];
        assert_eq!(feed_all(&mut r, &junk), []);
        assert_eq!(r.feed(0), Feed::Bad(FramingError::Overlong));
        let mut wire = [0u8; MAX_ENCODED];
        let m = encode_frame(b"RGok", &mut wire);
        assert_eq!(feed_all(&mut r, &wire[..m]), [Feed::Frame(4)]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut r = FrameReader::new();
            for b in bytes {
                if let Feed::Frame(n) = r.feed(b) {
                    prop_assert!(n <= MAX_FRAME);
                }
            }
        }

        #[test]
        fn any_frame_round_trips(frame in proptest::collection::vec(any::<u8>(), 1..MAX_FRAME)) {
            let mut wire = [0u8; MAX_ENCODED];
            let m = encode_frame(&frame, &mut wire);
            let mut r = FrameReader::new();
            let got = feed_all(&mut r, &wire[..m]);
            prop_assert_eq!(got, std::vec![Feed::Frame(frame.len())]);
            prop_assert_eq!(&r.frame()[..frame.len()], &frame[..]);
        }
    }
}
