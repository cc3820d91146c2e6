#![no_main]
//! Heartbeat frames as read from a disk slot, a serial link or the network.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::heartbeat::{decode, encode, Verifier, MAX_FRAME};
use rearguard_shared::integrity::Key;

fuzz_target!(|data: &[u8]| {
    let key = Key::new(&[0x5A; 32]).unwrap();
    for v in [Verifier { cluster_id: 0xC0FFEE, key: None }, Verifier { cluster_id: 0xC0FFEE, key: Some(&key) }] {
        if let Ok(hb) = decode(data, &v) {
            // Whatever decodes must re-encode to a frame that decodes to the same record.
            let mut buf = [0u8; MAX_FRAME];
            let n = encode(&hb, v.key, &mut buf);
            assert_eq!(decode(&buf[..n], &v), Ok(hb));
        }
    }
});
