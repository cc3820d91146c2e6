#![no_main]
//! The serial console: every byte through the line editor (echo, editing, escape
//! sequences) and every completed line through the command parser, against a draft config
//! and a RAM NV store. A config the menu reports as saved must load back from NV as saved.
use libfuzzer_sys::fuzz_target;
use rearguard_firmware::board::{NvCopy, NvStore};
use rearguard_firmware::menu::{Menu, Request, Status};
use rearguard_firmware::nv::{self, Persist};
use rearguard_shared::config::{ListenerConfig, RECORD_LEN};
use rearguard_shared::listener::ListenerState;
use rearguard_shared::Duration;

#[derive(Default)]
struct RamNv {
    a: Option<[u8; RECORD_LEN]>,
    b: Option<[u8; RECORD_LEN]>,
}

impl NvStore for RamNv {
    type Error = core::convert::Infallible;
    fn read_copy(&mut self, copy: NvCopy, buf: &mut [u8; RECORD_LEN]) -> Result<(), Self::Error> {
        *buf = match copy {
            NvCopy::A => self.a,
            NvCopy::B => self.b,
        }
        .unwrap_or([0xFF; RECORD_LEN]);
        Ok(())
    }
    fn write_copy(&mut self, copy: NvCopy, buf: &[u8; RECORD_LEN]) -> Result<(), Self::Error> {
        *match copy {
            NvCopy::A => &mut self.a,
            NvCopy::B => &mut self.b,
        } = Some(*buf);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let status = Status {
        state: Some(ListenerState::Holding),
        timeout: Duration::from_secs(10),
        last_progress_age: None,
        media: heapless::Vec::new(),
        framing: [("bad-cobs", 0), ("overlong", 0)],
        gate_open: false,
        stack_peak: None,
        budget: None,
        disk_timeout: Duration::ZERO,
    };
    let mut m = Menu::new(ListenerConfig::factory(), Persist::NONE);
    let mut store = RamNv::default();
    let mut out = String::new();
    for &b in data {
        if m.feed(b, &mut out) {
            if let Request::Apply(c) = m.run_line(&status, Some(&mut store), &mut out) {
                assert!(c.validate().is_ok(), "the menu applied an invalid config: {c:?}");
                let (loaded, _, _) = nv::load(&mut store);
                assert_eq!(loaded, c, "saved config does not load back");
            }
        }
        // The echo is bounded per byte; keep the buffer from growing without bound.
        out.clear();
    }
});
