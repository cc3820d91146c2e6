#![no_main]
//! Heartbeat frames as read from a disk slot, a serial link or the network.
//!
//! Raw input rarely passes the CRC, so each input is also wrapped in a well-formed header
//! with a correct CRC: that drives the body decoder (postcard) and the checks after it.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::heartbeat::{decode, encode, Verifier, MAGIC, MAX_FRAME};
use rearguard_shared::integrity::{crc32c, Key};
use rearguard_shared::PROTOCOL_VERSION;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(&[0x5A; 32]).unwrap();
    let mut wrapped = Vec::with_capacity(data.len() + 9);
    wrapped.extend_from_slice(&MAGIC);
    wrapped.extend_from_slice(&[PROTOCOL_VERSION, 0, data.len().min(255) as u8]);
    wrapped.extend_from_slice(data);
    let crc = crc32c(&wrapped);
    wrapped.extend_from_slice(&crc.to_le_bytes());
    for input in [data, &wrapped[..]] {
        for v in [Verifier { cluster_id: 0xC0FFEE, key: None }, Verifier { cluster_id: 0xC0FFEE, key: Some(&key) }] {
            if let Ok(hb) = decode(input, &v) {
                // Whatever decodes must re-encode to a frame that decodes to the same record.
                let mut buf = [0u8; MAX_FRAME];
                let n = encode(&hb, v.key, &mut buf);
                assert_eq!(decode(&buf[..n], &v), Ok(hb));
            }
        }
    }
});
