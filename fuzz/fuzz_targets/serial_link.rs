#![no_main]
//! A serial byte stream: COBS deframing, then heartbeat decoding of every frame.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::heartbeat::{decode, Verifier};
use rearguard_shared::link::{Feed, FrameReader};

fuzz_target!(|data: &[u8]| {
    let mut r = FrameReader::new();
    let v = Verifier { cluster_id: 1, key: None };
    for &b in data {
        if let Feed::Frame(n) = r.feed(b) {
            let _ = decode(&r.frame()[..n], &v);
        }
    }
});
