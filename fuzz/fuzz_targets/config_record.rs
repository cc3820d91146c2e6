#![no_main]
//! The firmware's A/B config copies, as read back from NV storage. Inputs are tried raw and
//! wrapped as a record with a correct CRC, so the postcard body and validation are reached.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::config::{load, RECORD_LEN, RECORD_MAGIC};
use rearguard_shared::integrity::crc32c;

fuzz_target!(|data: &[u8]| {
    let split = data.len().min(RECORD_LEN);
    let (a, b) = data.split_at(split);
    if let Ok(l) = load(a, b) {
        assert!(l.config.validate().is_ok());
    }
    let body = &data[..data.len().min(RECORD_LEN - 14)];
    let mut rec = Vec::new();
    rec.extend_from_slice(&RECORD_MAGIC);
    rec.extend_from_slice(&1u32.to_le_bytes());
    rec.extend_from_slice(&(body.len() as u16).to_le_bytes());
    rec.extend_from_slice(body);
    let crc = crc32c(&rec);
    rec.extend_from_slice(&crc.to_le_bytes());
    if let Ok(l) = load(&rec, &[]) {
        assert!(l.config.validate().is_ok());
    }
});
