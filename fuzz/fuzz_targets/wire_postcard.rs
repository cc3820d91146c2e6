#![no_main]
//! The hand-written codec (`rearguard_shared::wire`) against postcard: every record type and
//! every part of one is decoded from the input by both; they must refuse it alike or read the
//! same value, which must then encode to postcard's bytes. The check is the one the proptests
//! in shared/tests/wire_postcard.rs run.
use libfuzzer_sys::fuzz_target;

#[path = "../../shared/tests/postcard_ref/mod.rs"]
mod postcard_ref;

fuzz_target!(|data: &[u8]| {
    postcard_ref::check_all(data);
});
