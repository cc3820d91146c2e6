#![no_main]
//! Flashable firmware images handed to `rearguard firmware verify`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rearguard_shared::image::verify(data);
});
