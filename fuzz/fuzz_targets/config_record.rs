#![no_main]
//! The firmware's A/B config copies, as read back from NV storage.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::config::{load, RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let split = data.len().min(RECORD_LEN);
    let (a, b) = data.split_at(split);
    if let Ok(l) = load(a, b) {
        // Anything loaded passed validation.
        assert!(l.config.validate().is_ok());
    }
});
