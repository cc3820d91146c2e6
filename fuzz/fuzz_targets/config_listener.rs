#![no_main]
//! The Linux listener's TOML parser (boards/linux/src/config.rs): any text is refused with an
//! error naming the file or accepted as a config the firmware's own validation accepts.
use libfuzzer_sys::fuzz_target;
use rearguard_board_linux::config::LinuxListenerConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("fuzz.toml");
    match LinuxListenerConfig::parse(file, text) {
        Ok(c) => assert!(c.listener.validate().is_ok(), "accepted an invalid listener config: {:?}", c.listener),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.toml"), "error does not name the file: {msg}");
        }
    }
});
