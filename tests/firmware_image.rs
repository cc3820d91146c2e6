//! `rearguard firmware pack|verify` on the real controller firmware ELF.

mod support;
use std::process::Command;

fn rearguard(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rearguard")).args(args).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn the_firmware_packs_verifies_and_a_corrupt_image_is_refused() {
    let elf = support::qemu::firmware_elf();
    let dir = support::tempdir();
    let img = dir.path().join("fw.rgfw");
    let (ok, out) = rearguard(&["firmware", "pack", elf.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = rearguard(&["firmware", "verify", img.to_str().unwrap()]);
    assert!(ok && out.contains(": ok, format 1"), "{out}");
    let bytes = std::fs::read(&img).unwrap();
    // The payload is the flash contents: it starts with the vector table (initial SP in RAM).
    assert_eq!(&bytes[32..36], &0x2000_2000u32.to_le_bytes(), "initial stack pointer at the top of the 8 KiB RAM");
    println!("image: {} bytes (payload {} bytes, flash budget 32768)", bytes.len(), bytes.len() - 32);
    assert!(bytes.len() - 32 <= 32 * 1024, "payload over the 32 KiB flash budget");

    for (name, mutate, expect) in [
        ("flipped", Box::new(|b: &mut Vec<u8>| b[1000] ^= 0x04) as Box<dyn Fn(&mut Vec<u8>)>, "payload CRC mismatch"),
        ("truncated", Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 7)), "truncated or padded"),
        ("header", Box::new(|b: &mut Vec<u8>| b[8] ^= 1), "header CRC mismatch"),
        (
            "not-an-image",
            Box::new(|b: &mut Vec<u8>| b[..4].copy_from_slice(b"\x7fELF")),
            "not a Rearguard firmware image",
        ),
    ] {
        let mut b = bytes.clone();
        mutate(&mut b);
        let p = dir.path().join(format!("{name}.rgfw"));
        std::fs::write(&p, &b).unwrap();
        let (ok, out) = rearguard(&["firmware", "verify", p.to_str().unwrap()]);
        assert!(!ok, "{name}: a corrupt image was accepted: {out}");
        assert!(out.contains("refused") && out.contains(expect), "{name}: {out}");
    }
}
