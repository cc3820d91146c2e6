//! The differential check of the hand-written codec (`rearguard_shared::wire`) against
//! postcard 1.x, the format it must reproduce. Shared by `shared/tests/wire_postcard.rs`
//! (proptests) and `fuzz/fuzz_targets/wire_postcard.rs` (libFuzzer), which includes this
//! file by path.
#![allow(dead_code)]

use rearguard_shared::config::ListenerConfig;
use rearguard_shared::election::advert::Advert;
use rearguard_shared::fencing::FencingBudget;
use rearguard_shared::heartbeat::{HealthFlags, Heartbeat, NodeState, Role};
use rearguard_shared::integrity::Key;
use rearguard_shared::listener::{NeverSeenPolicy, NodeSet};
use rearguard_shared::wire::{self, Wire};
use rearguard_shared::Duration;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// Larger than any record (the widest advert body is under 140 bytes).
const BUF: usize = 256;

/// postcard's bytes for `v`.
pub fn postcard_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut buf = [0u8; BUF];
    postcard::to_slice(v, &mut buf).expect("fits").to_vec()
}

/// postcard's bytes for a config: serde skips `watch` (its layout is the record before the
/// field existed), so the reference appends it, as a postcard `u32`, when it is non-empty.
pub fn postcard_config_bytes(c: &ListenerConfig) -> Vec<u8> {
    let mut out = postcard_bytes(c);
    if c.watch != NodeSet(0) {
        out.extend(postcard_bytes(&c.watch.0));
    }
    out
}

/// postcard's reading of a config body: the fields before `watch`, then, if any bytes are
/// left, `watch` as a postcard `u32` (bytes after it ignored, as postcard ignores them).
pub fn postcard_config(bytes: &[u8]) -> Option<ListenerConfig> {
    let (mut c, rest) = postcard::take_from_bytes::<ListenerConfig>(bytes).ok()?;
    if !rest.is_empty() {
        c.watch = NodeSet(postcard::from_bytes::<u32>(rest).ok()?);
    }
    Some(c)
}

/// Panics unless the hand encoding of `v` is postcard's, byte for byte, and both refuse the
/// same too-small buffers.
pub fn same_encoding<T: Wire + Debug>(v: &T, reference: &[u8]) {
    let mut buf = [0u8; BUF];
    let n = wire::to_slice(v, &mut buf).expect("fits");
    assert_eq!(&buf[..n], reference, "hand encoding of {v:?} differs from postcard's");
    for short in [0, n / 2, n.saturating_sub(1)] {
        if short < n {
            assert!(wire::to_slice(v, &mut buf[..short]).is_err(), "{v:?} fit in {short} of {n} bytes");
        }
    }
}

/// Panics unless the hand decoder and postcard agree on `bytes` as a `T` (both refuse it, or
/// both read the same value); an accepted value must then re-encode as postcard encodes it.
pub fn same_decoding<T>(bytes: &[u8]) -> Option<T>
where
    T: Wire + Serialize + DeserializeOwned + PartialEq + Debug,
{
    let hand = wire::from_bytes::<T>(bytes).ok();
    let reference = postcard::from_bytes::<T>(bytes).ok();
    assert_eq!(hand, reference, "{} from {bytes:02x?}: hand decoder vs postcard", std::any::type_name::<T>());
    if let Some(v) = &hand {
        same_encoding(v, &postcard_bytes(v));
    }
    hand
}

/// The config's variant of [`same_decoding`], against [`postcard_config`].
pub fn same_config_decoding(bytes: &[u8]) -> Option<ListenerConfig> {
    let hand = wire::from_bytes::<ListenerConfig>(bytes).ok();
    assert_eq!(hand, postcard_config(bytes), "ListenerConfig from {bytes:02x?}: hand decoder vs postcard");
    if let Some(c) = &hand {
        same_encoding(c, &postcard_config_bytes(c));
    }
    hand
}

/// Every type the codec covers, read from the same bytes.
pub fn check_all(bytes: &[u8]) {
    same_decoding::<u8>(bytes);
    same_decoding::<u16>(bytes);
    same_decoding::<u32>(bytes);
    same_decoding::<u64>(bytes);
    same_decoding::<bool>(bytes);
    same_decoding::<Option<u32>>(bytes);
    same_decoding::<Duration>(bytes);
    same_decoding::<Key>(bytes);
    same_decoding::<Option<Key>>(bytes);
    same_decoding::<Role>(bytes);
    same_decoding::<NodeState>(bytes);
    same_decoding::<HealthFlags>(bytes);
    same_decoding::<FencingBudget>(bytes);
    same_decoding::<NeverSeenPolicy>(bytes);
    same_decoding::<Heartbeat>(bytes);
    same_decoding::<Advert>(bytes);
    same_config_decoding(bytes);
}
