//! Puts memory.x where the cortex-m-rt linker script finds it, and adds defmt's linker script
//! when the `defmt` feature is on. memory.x declares the 32 KiB flash / 8 KiB RAM budget, so
//! the link fails if either build outgrows it.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).unwrap();
    // cortex-m-rt's `device` feature includes device.x for a device crate's handler names; the
    // board names its two handlers in its own table (main.rs `__INTERRUPTS`).
    fs::write(out.join("device.x"), "/* no device crate: see main.rs __INTERRUPTS */\n").unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
}
