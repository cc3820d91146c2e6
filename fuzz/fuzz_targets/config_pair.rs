#![no_main]
//! The pair config parser (host-agent/src/config): any text is read, refused with a
//! file:line:column error or accepted; an accepted file parses the same the second time.
use libfuzzer_sys::fuzz_target;
use rearguard_host_agent::config::pair::PairConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("fuzz.toml");
    match PairConfig::parse(file, text) {
        Ok(_) => assert!(PairConfig::parse(file, text).is_ok()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.toml"), "error does not name the file: {msg}");
        }
    }
});
