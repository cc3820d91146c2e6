//! The hand-written codec (`rearguard_shared::wire`) against postcard 1.x: for arbitrary
//! values of every record type the bytes are postcard's, and for arbitrary bytes (and valid
//! encodings with bytes changed, cut or added) both decoders accept the same value or both
//! refuse. A config's `watch` is compared against postcard's layout plus the trailing `u32`
//! (see `postcard_ref::postcard_config`).

mod postcard_ref;

use postcard_ref::*;
use proptest::prelude::*;
use rearguard_shared::config::ListenerConfig;
use rearguard_shared::election::advert::Advert;
use rearguard_shared::fencing::FencingBudget;
use rearguard_shared::heartbeat::{HealthFlags, Heartbeat, NodeState, Role};
use rearguard_shared::integrity::Key;
use rearguard_shared::listener::{NeverSeenPolicy, NodeSet};
use rearguard_shared::wire;
use rearguard_shared::Duration;

/// Integers spread over every varint length, not just the (mostly 10-byte) uniform ones.
fn wide() -> impl Strategy<Value = u64> {
    (any::<u64>(), 0u32..64).prop_map(|(v, bits)| v >> bits)
}

fn duration() -> impl Strategy<Value = Duration> {
    wide().prop_map(Duration::from_millis)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Primary), Just(Role::Secondary)]
}

fn node_state() -> impl Strategy<Value = NodeState> {
    prop_oneof![
        Just(NodeState::Starting),
        Just(NodeState::Active),
        Just(NodeState::Standby),
        Just(NodeState::Leaving),
        Just(NodeState::Fenced)
    ]
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        (wide(), any::<u8>(), role(), wide(), wide(), duration(), node_state()),
        (wide(), wide(), wide(), (duration(), duration(), duration()), wide(), wide()),
    )
        .prop_map(
            |(
                (cluster_id, node_id, role, boot_epoch, sequence, uptime, state),
                (health, config_digest, build_stamp, (interval, write_deadline, fence_time), test_acks, last_test),
            )| Heartbeat {
                cluster_id: cluster_id as u32,
                node_id,
                role,
                boot_epoch: boot_epoch as u32,
                sequence,
                uptime,
                state,
                health: HealthFlags(health as u16),
                config_digest: config_digest as u32,
                build_stamp: build_stamp as u32,
                budget: FencingBudget { interval, write_deadline, fence_time },
                test_acks: test_acks as u32,
                last_test: last_test as u32,
            },
        )
}

fn advert() -> impl Strategy<Value = Advert> {
    (heartbeat(), any::<u8>(), wide(), any::<u8>(), wide(), wide()).prop_map(
        |(hb, priority, term, flags, ack_epoch, ack_seq)| Advert {
            hb,
            priority,
            term: term as u32,
            flags,
            ack_epoch: ack_epoch as u32,
            ack_seq,
        },
    )
}

fn key() -> impl Strategy<Value = Key> {
    proptest::collection::vec(any::<u8>(), 16..=32).prop_map(|b| Key::new(&b).unwrap())
}

/// Any config the codec can be handed, valid or not (the codec does not validate).
fn config() -> impl Strategy<Value = ListenerConfig> {
    (
        (role(), wide(), any::<u8>(), any::<u8>(), duration(), duration()),
        (prop_oneof![Just(NeverSeenPolicy::WaitForever), duration().prop_map(NeverSeenPolicy::ReleaseAfter)]),
        proptest::option::of(key()),
        prop_oneof![Just(0u32), any::<u32>(), wide().prop_map(|w| w as u32)],
    )
        .prop_map(|((role, cluster_id, node_id, primary_node, timeout, poll_period), never_seen, key, watch)| {
            ListenerConfig {
                role,
                cluster_id: cluster_id as u32,
                node_id,
                primary_node,
                timeout,
                poll_period,
                never_seen,
                key,
                watch: NodeSet(watch),
            }
        })
}

/// A valid encoding with some bytes changed, some cut off the end and some appended.
fn mutated(valid: Vec<u8>, edits: Vec<(usize, u8)>, cut: usize, tail: Vec<u8>) -> Vec<u8> {
    let mut b = valid;
    if !b.is_empty() {
        for (at, x) in edits {
            let n = b.len();
            b[at % n] ^= x;
        }
    }
    b.truncate(b.len().saturating_sub(cut));
    b.extend(tail);
    b
}

fn edits() -> impl Strategy<Value = (Vec<(usize, u8)>, usize, Vec<u8>)> {
    (
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        prop_oneof![Just(0usize), 0usize..12],
        proptest::collection::vec(any::<u8>(), 0..6),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn heartbeats_encode_as_postcard_does(hb in heartbeat()) {
        same_encoding(&hb, &postcard_bytes(&hb));
        prop_assert_eq!(same_decoding::<Heartbeat>(&postcard_bytes(&hb)), Some(hb));
    }

    #[test]
    fn adverts_encode_as_postcard_does(a in advert()) {
        same_encoding(&a, &postcard_bytes(&a));
        prop_assert_eq!(same_decoding::<Advert>(&postcard_bytes(&a)), Some(a));
    }

    #[test]
    fn configs_encode_as_postcard_does(c in config()) {
        let reference = postcard_config_bytes(&c);
        same_encoding(&c, &reference);
        if c.watch == NodeSet(0) {
            // serde's layout is the record before `watch`: with it empty, exactly postcard's.
            prop_assert_eq!(&reference, &postcard_bytes(&c));
        }
        prop_assert_eq!(same_config_decoding(&reference), Some(c));
    }

    #[test]
    fn keys_and_small_types_encode_as_postcard_does(
        k in key(), v in wide(), b in any::<bool>(), o in proptest::option::of(wide()), ns in node_state(),
    ) {
        same_encoding(&k, &postcard_bytes(&k));
        same_encoding(&(v as u16), &postcard_bytes(&(v as u16)));
        same_encoding(&(v as u32), &postcard_bytes(&(v as u32)));
        same_encoding(&v, &postcard_bytes(&v));
        same_encoding(&b, &postcard_bytes(&b));
        same_encoding(&o, &postcard_bytes(&o));
        same_encoding(&ns, &postcard_bytes(&ns));
    }

    #[test]
    fn arbitrary_bytes_decode_alike(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        check_all(&bytes);
    }

    /// Mostly continuation bytes and small values: long, overlong and overflowing varints.
    #[test]
    fn varint_heavy_bytes_decode_alike(
        bytes in proptest::collection::vec(prop_oneof![Just(0x80u8), Just(0xFF), Just(0x00), Just(0x01), 0x00u8..0x20, 0x80u8..0xA0, any::<u8>()], 0..64)
    ) {
        check_all(&bytes);
    }

    #[test]
    fn mutated_heartbeats_decode_alike(hb in heartbeat(), (e, cut, tail) in edits()) {
        check_all(&mutated(postcard_bytes(&hb), e, cut, tail));
    }

    #[test]
    fn mutated_adverts_decode_alike(a in advert(), (e, cut, tail) in edits()) {
        check_all(&mutated(postcard_bytes(&a), e, cut, tail));
    }

    #[test]
    fn mutated_configs_decode_alike(c in config(), (e, cut, tail) in edits()) {
        check_all(&mutated(postcard_config_bytes(&c), e, cut, tail));
    }
}

/// Every one- and two-byte input, and every three-byte input that starts with a
/// continuation byte: all the shapes of a short varint, against postcard.
#[test]
fn every_short_input_decodes_alike() {
    for a in 0..=255u8 {
        check_all(&[a]);
        for b in 0..=255u8 {
            check_all(&[a, b]);
        }
    }
    for a in [0x80u8, 0xFF, 0x81] {
        for b in 0..=255u8 {
            for c in 0..=255u8 {
                same_decoding::<u16>(&[a, b, c]);
                same_decoding::<u32>(&[a, b, c]);
                same_decoding::<u64>(&[a, b, c]);
            }
        }
    }
}

/// The last byte of a maximal varint: postcard refuses bits past the type's width and a
/// continuation bit there; so must the hand decoder (checked against postcard, for every
/// value of that byte).
#[test]
fn the_last_byte_of_a_maximal_varint_decodes_alike() {
    for last in 0..=255u8 {
        for (len, prefix) in [(3, 0xFFu8), (3, 0x80), (5, 0xFF), (5, 0x80), (10, 0xFF), (10, 0x80)] {
            let mut b = vec![prefix; len - 1];
            b.push(last);
            same_decoding::<u16>(&b);
            same_decoding::<u32>(&b);
            same_decoding::<u64>(&b);
            b.push(0x00);
            same_decoding::<u16>(&b);
            same_decoding::<u32>(&b);
            same_decoding::<u64>(&b);
        }
    }
    // A key's length (a usize) by the 64-bit rules, as postcard reads it on this host.
    let mut overlong_len = vec![0x90u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    overlong_len.extend([7u8; 16]);
    assert!(same_decoding::<Key>(&overlong_len).is_some(), "an overlong length of 16 is accepted");
    let mut too_long = vec![33u8];
    too_long.extend([7u8; 33]);
    assert_eq!(same_decoding::<Key>(&too_long), None, "33 key bytes are refused");
}

/// The codec keeps what is already stored readable: a record's body encodes exactly as
/// postcard wrote it, through `encode_record` too.
#[test]
fn stored_config_records_are_byte_identical_to_postcards() {
    use rearguard_shared::config::{decode_record, encode_record, RECORD_LEN};
    let c = ListenerConfig {
        cluster_id: 0xC0FFEE,
        key: Some(Key::new(&[9u8; 32]).unwrap()),
        never_seen: NeverSeenPolicy::ReleaseAfter(Duration::from_secs(3600)),
        ..ListenerConfig::factory()
    };
    let mut rec = [0u8; RECORD_LEN];
    encode_record(&c, 3, &mut rec);
    let body = postcard_bytes(&c);
    assert_eq!(u16::from_le_bytes([rec[8], rec[9]]) as usize, body.len());
    assert_eq!(&rec[10..10 + body.len()], &body[..]);
    assert_eq!(decode_record(&rec), Ok((3, c)));
    assert_eq!(wire::from_bytes::<ListenerConfig>(&body).unwrap().watch, NodeSet(0));
}
