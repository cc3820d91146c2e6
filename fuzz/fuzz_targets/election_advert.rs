#![no_main]
//! Pair heartbeats (adverts) as received from the network.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::election::decode_advert;
use rearguard_shared::heartbeat::Verifier;
use rearguard_shared::integrity::Key;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(&[0x5A; 32]).unwrap();
    let _ = decode_advert(data, &Verifier { cluster_id: 7, key: None });
    let _ = decode_advert(data, &Verifier { cluster_id: 7, key: Some(&key) });
});
