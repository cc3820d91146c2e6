pub fn run(_: u64, _: u64, _: u64) -> anyhow::Result<u8> { Ok(0) }
