#![no_main]
//! Pair heartbeats (adverts) as received from the network; raw, and wrapped in a header with
//! a correct CRC so the body decoder is reached.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::election::advert::{decode_advert, ADVERT_MAGIC};
use rearguard_shared::heartbeat::Verifier;
use rearguard_shared::integrity::{crc32c, Key};
use rearguard_shared::PROTOCOL_VERSION;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(&[0x5A; 32]).unwrap();
    let mut wrapped = Vec::new();
    wrapped.extend_from_slice(&ADVERT_MAGIC);
    wrapped.extend_from_slice(&[PROTOCOL_VERSION, 0, data.len().min(255) as u8]);
    wrapped.extend_from_slice(data);
    let crc = crc32c(&wrapped);
    wrapped.extend_from_slice(&crc.to_le_bytes());
    for input in [data, &wrapped[..]] {
        let _ = decode_advert(input, &Verifier { cluster_id: 7, key: None });
        let _ = decode_advert(input, &Verifier { cluster_id: 7, key: Some(&key) });
    }
});
