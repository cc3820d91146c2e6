//! The pair advert: the wire format of the election, several times a second on every medium.

use crate::frame;
use crate::heartbeat::{Heartbeat, Verifier};
use crate::integrity::Key;
use crate::reject::Reject;
use serde::{Deserialize, Serialize};

/// Magic of a pair advert frame ("Rearguard Pair"), in the common envelope
/// ([`crate::frame`]): magic, version, flags, body length, body, optional
/// truncated HMAC-SHA256, CRC-32C.
pub const ADVERT_MAGIC: [u8; 2] = *b"RP";
/// Largest body of an [`Advert`] (heartbeat ≤ 100, priority 1, term ≤ 5, flags 1,
/// ack ≤ 15).
pub const MAX_ADVERT_BODY: usize = 136;
/// Largest advert frame.
pub const MAX_ADVERT_FRAME: usize = frame::max_frame(MAX_ADVERT_BODY);

/// What a pair node says about itself, several times a second, on every medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    /// The common heartbeat record (identity, epoch/sequence, state, health, digests).
    pub hb: Heartbeat,
    /// Effective priority: the configured one, or 0 when the sender will not hold the VIPs
    /// (unhealthy, maintenance, leaving).
    pub priority: u8,
    /// Highest takeover term the sender knows (its own tenure's term when active).
    pub term: u32,
    /// `Advert::REQUEST` | `YIELD` | `MAINTENANCE` | `REFUSES_PEER`.
    pub flags: u8,
    /// The newest advert the sender has taken from its peer: (boot epoch, sequence). Lets
    /// the peer know this advert was written with its latest state in view.
    pub ack_epoch: u32,
    pub ack_seq: u64,
}

crate::wire::wire_struct!(Advert { hb, priority, term, flags, ack_epoch, ack_seq });

impl Advert {
    /// "Hand the VIPs to me": preempt after its delay, or a switchover issued on the standby.
    pub const REQUEST: u8 = 1 << 0;
    /// "I resigned in your favour; take them."
    pub const YIELD: u8 = 1 << 1;
    pub const MAINTENANCE: u8 = 1 << 2;
    /// "Your build or config does not match mine."
    pub const REFUSES_PEER: u8 = 1 << 3;

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Encodes an advert into `buf` (at least [`MAX_ADVERT_FRAME`] bytes); returns its length.
pub fn encode_advert(a: &Advert, key: Option<&Key>, buf: &mut [u8]) -> usize {
    frame::seal(ADVERT_MAGIC, MAX_ADVERT_BODY, a, key, buf)
}

/// Decodes and verifies one advert frame (CRC, version, MAC when keyed, body, cluster).
pub fn decode_advert(bytes: &[u8], v: &Verifier<'_>) -> Result<Advert, Reject> {
    v.open(ADVERT_MAGIC, MAX_ADVERT_BODY, bytes, |a: &Advert| &a.hb)
}
