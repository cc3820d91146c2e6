#![no_main]
//! The shared disk's header block and mailboxes.
use libfuzzer_sys::fuzz_target;
use rearguard_shared::disk::{DiskHeader, MailboxMessage, BLOCK};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = DiskHeader::decode(data) {
        let mut b = [0u8; BLOCK];
        h.encode(&mut b);
        assert_eq!(DiskHeader::decode(&b), Ok(h));
        for n in 0..=255u8 {
            let _ = (h.slot_offset(n), h.mailbox_offset(n));
        }
    }
    if let Ok(m) = MailboxMessage::decode(data) {
        let mut b = [0u8; BLOCK];
        m.encode(&mut b);
        assert_eq!(MailboxMessage::decode(&b), Ok(m));
    }
});
