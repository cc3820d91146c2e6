//! Puts memory.x where the cortex-m-rt linker script finds it, and adds defmt's linker script
//! when the `defmt` feature is on. memory.x declares the 32 KiB flash / 8 KiB RAM budget, so
//! the link fails if either build outgrows it.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
}
