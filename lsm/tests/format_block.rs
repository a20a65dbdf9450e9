//! The SST data block's codec against a `BTreeMap` model: round trips with random keys
//! (empty user keys and shared prefixes included) and restart intervals, seeks to every key
//! and between keys, forward and backward iteration; and damage: every single-byte flip and
//! every truncation of an encoded block must be refused.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;

use popdb_lsm::{
    Block, BlockBuilder, BlockIter, BloomBuilder, Error, InternalKey, LSN_MAX, ValueKind,
};
use proptest::prelude::*;

type Model = BTreeMap<InternalKey, Vec<u8>>;

fn build(model: &Model, restart_interval: usize) -> Vec<u8> {
    let mut builder = BlockBuilder::new(restart_interval);
    for (key, value) in model {
        builder.add(key.encoded(), value);
    }
    let estimate = builder.size_estimate();
    let bytes = builder.finish();
    assert_eq!(bytes.len(), estimate, "size estimate is exact");
    bytes
}

fn entry(it: &BlockIter<'_>) -> (Vec<u8>, Vec<u8>) {
    (it.key().to_vec(), it.value().to_vec())
}

fn model_entries(model: &Model) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .map(|(k, v)| (k.encoded().to_vec(), v.clone()))
        .collect()
}

/// User keys from a small alphabet so that prefixes are shared and keys collide.
fn user_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..12),
        proptest::collection::vec(Just(0xffu8), 0..3),
    ]
}

fn internal_key() -> impl Strategy<Value = InternalKey> {
    (
        user_key(),
        prop_oneof![Just(0u64), Just(LSN_MAX), 0..50u64],
        any::<bool>(),
    )
        .prop_map(|(user, lsn, put)| {
            let kind = if put {
                ValueKind::Put
            } else {
                ValueKind::Delete
            };
            InternalKey::new(&user, lsn, kind)
        })
}

fn model() -> impl Strategy<Value = Model> {
    proptest::collection::btree_map(
        internal_key(),
        proptest::collection::vec(any::<u8>(), 0..20),
        0..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn block_iterates_like_the_model(model in model(), restart_interval in 1usize..20) {
        let bytes = build(&model, restart_interval);
        let block = Block::decode(&bytes).unwrap();
        let expected = model_entries(&model);
        prop_assert_eq!(block.restart_count(), expected.len().div_ceil(restart_interval));

        let mut it = block.iter();
        let mut forward = Vec::new();
        it.seek_to_first().unwrap();
        while it.valid() {
            forward.push(entry(&it));
            it.next().unwrap();
        }
        prop_assert_eq!(&forward, &expected);

        let mut backward = Vec::new();
        it.seek_to_last().unwrap();
        while it.valid() {
            backward.push(entry(&it));
            it.prev().unwrap();
        }
        backward.reverse();
        prop_assert_eq!(&backward, &expected);
    }

    #[test]
    fn seek_finds_the_first_entry_at_or_after(
        model in model(),
        probes in proptest::collection::vec(internal_key(), 0..30),
        restart_interval in 1usize..20,
    ) {
        let bytes = build(&model, restart_interval);
        let block = Block::decode(&bytes).unwrap();
        let mut it = block.iter();
        let targets = model.keys().cloned().chain(probes);
        for target in targets {
            it.seek(target.encoded()).unwrap();
            let want = model.range(target.clone()..).next();
            match want {
                None => prop_assert!(!it.valid(), "seek past the end is invalid"),
                Some((k, v)) => {
                    prop_assert!(it.valid());
                    prop_assert_eq!(it.key(), k.encoded());
                    prop_assert_eq!(it.value(), &v[..]);
                    // One step each way from a seek agrees with the model too.
                    let after = model.range(k.clone()..).nth(1);
                    let before = model.range(..k.clone()).next_back();
                    it.prev().unwrap();
                    prop_assert_eq!(it.valid(), before.is_some());
                    if let Some((bk, _)) = before {
                        prop_assert_eq!(it.key(), bk.encoded());
                    }
                    it.seek(k.encoded()).unwrap();
                    it.next().unwrap();
                    prop_assert_eq!(it.valid(), after.is_some());
                    if let Some((ak, _)) = after {
                        prop_assert_eq!(it.key(), ak.encoded());
                    }
                }
            }
        }
    }

    #[test]
    fn every_byte_flip_and_truncation_is_refused(
        model in proptest::collection::btree_map(internal_key(), proptest::collection::vec(any::<u8>(), 0..6), 0..12),
        restart_interval in 1usize..5,
        flip in 1u8..=255,
    ) {
        let bytes = build(&model, restart_interval);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            let result = Block::decode(&bad);
            prop_assert!(matches!(result, Err(Error::Corruption(_))), "flip {:#x} at {} accepted", flip, at);
        }
        for len in 0..bytes.len() {
            let result = Block::decode(&bytes[..len]);
            prop_assert!(matches!(result, Err(Error::Corruption(_))), "truncation to {} accepted", len);
        }
    }
}

#[test]
fn a_lone_empty_key_round_trips() {
    let mut builder = BlockBuilder::default();
    builder.add(b"", b"value");
    let bytes = builder.finish();
    let block = Block::decode(&bytes).unwrap();
    let mut it = block.iter();
    it.seek(b"").unwrap();
    assert_eq!((it.key(), it.value()), (&b""[..], &b"value"[..]));
    it.next().unwrap();
    assert!(!it.valid());
}

#[test]
fn corruption_names_the_checksum() {
    let mut builder = BlockBuilder::default();
    builder.add(InternalKey::new(b"k", 1, ValueKind::Put).encoded(), b"v");
    let mut bytes = builder.finish();
    bytes[0] ^= 1;
    let Err(Error::Corruption(c)) = Block::decode(&bytes) else {
        panic!("flip accepted");
    };
    assert_eq!(c.what, "block crc32");
    assert_eq!(c.offset, (bytes.len() - 4) as u64);
}

/// The worked examples of docs/format/sstable.md: if these bytes change, so must the spec.
#[test]
fn the_specs_worked_examples_hold() {
    let mut builder = BlockBuilder::new(2);
    builder.add(
        InternalKey::new(b"apple", 7, ValueKind::Put).encoded(),
        b"red",
    );
    builder.add(
        InternalKey::new(b"apply", 9, ValueKind::Delete).encoded(),
        b"",
    );
    builder.add(
        InternalKey::new(b"pear", 3, ValueKind::Put).encoded(),
        b"green",
    );
    let block = builder.finish();
    let expected: [u8; 68] = [
        0x00, 0x0d, 0x03, 0x61, 0x70, 0x70, 0x6c, 0x65, //
        0x01, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x72, 0x65, 0x64, 0x04, 0x09, 0x00, 0x79, 0x00, //
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x0c, 0x05, 0x70, 0x65, 0x61, 0x72, 0x01, 0x03, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x67, 0x72, //
        0x65, 0x65, 0x6e, 0x00, 0x00, 0x00, 0x00, 0x1f, //
        0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, //
        0x78, 0xb0, 0x8e, 0xa4,
    ];
    assert_eq!(block, expected);

    let mut filter = BloomBuilder::new(10);
    filter.add_key(b"apple");
    filter.add_key(b"pear");
    assert_eq!(
        filter.finish(),
        [0x43, 0xb0, 0x04, 0x49, 0x90, 0x02, 0x20, 0x00, 0x07]
    );
}
