//! The leaf page's codec against a model (a `Vec` of entries in key order): builders
//! filled until full round-trip through the reader, both ways and by binary search; every
//! byte flip, re-sealed flip, truncation and random page is refused or (re-sealed flips
//! only) decodes to a page that re-encodes to exactly its bytes; builder asserts fire.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod format_common;

use format_common::{
    Entry, Value, assert_corruption, build_leaf, entries, flipped, flipped_resealed, leaf_entries,
    page_size,
};
use popdb_btree::{
    LeafBuilder, LeafEntry, LeafPage, LeafValue, OverflowRef, PageId, PageRef, PageSize, TxnId,
    VALUE_SIZE_MAX,
};
use popdb_testkit::Rng;
use proptest::prelude::*;

/// A value before the page size decides how it is stored.
#[derive(Clone, Debug)]
enum RawValue {
    Bytes(Vec<u8>),
    Large(u32),
    Tombstone,
}

fn raw_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xff)], 0..12),
        1 => proptest::collection::vec(any::<u8>(), 0..1200),
    ]
}

fn raw_value() -> impl Strategy<Value = RawValue> {
    prop_oneof![
        1 => Just(RawValue::Tombstone),
        5 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(RawValue::Bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..1100).prop_map(RawValue::Bytes),
        1 => (1..=VALUE_SIZE_MAX).prop_map(RawValue::Large),
    ]
}

fn raw_entries() -> impl Strategy<Value = (u32, Vec<(Vec<u8>, u64, RawValue)>)> {
    let entry = (
        raw_key(),
        prop_oneof![1..1000u64, Just(u64::MAX)],
        raw_value(),
    );
    (
        prop_oneof![Just(512u32), Just(1024), Just(4096), Just(65536)],
        proptest::collection::vec(entry, 0..300),
    )
}

/// The model entries of raw ones at `size`: keys cut to the limit, each value inline or an
/// overflow reference as the page size requires, sorted by key, one entry per key.
fn normalize(size: PageSize, raw: Vec<(Vec<u8>, u64, RawValue)>) -> Vec<Entry> {
    let overflow = |key_len: usize, value_size: u32| {
        let min = (size.leaf_payload_max() - key_len + 1) as u32;
        Value::Overflow(OverflowRef {
            first: PageRef {
                id: PageId(1000 + u64::from(value_size)),
                checksum: value_size.wrapping_mul(0x9e37_79b9),
            },
            value_size: value_size.max(min),
        })
    };
    let mut out: Vec<Entry> = raw
        .into_iter()
        .map(|(mut key, version, raw)| {
            key.truncate(size.key_size_max());
            let value = match raw {
                RawValue::Tombstone => Value::Tombstone,
                RawValue::Bytes(v) if size.stores_inline(key.len(), v.len()) => Value::Inline(v),
                RawValue::Bytes(v) => overflow(key.len(), v.len() as u32),
                RawValue::Large(n) => overflow(key.len(), n),
            };
            Entry {
                key,
                version,
                value,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out
}

/// The page a builder makes of a decoded leaf's entries: must be the leaf's own bytes.
fn rebuild(size: PageSize, leaf: &LeafPage<'_>) -> Vec<u8> {
    let mut builder = LeafBuilder::new(size);
    for entry in leaf.entries() {
        builder.push(&entry.unwrap());
    }
    builder.finish(leaf.page_id(), leaf.txn_id()).to_vec()
}

/// Every accessor of a page opened without the full check; must not panic, whatever the
/// bytes.
fn poke_verified(page: &[u8], size: PageSize, id: PageId) {
    let Ok(leaf) = LeafPage::decode_verified(page, size, id) else {
        return;
    };
    let _ = leaf.used_bytes();
    for i in 0..leaf.len() {
        let _ = leaf.key(i);
        let _ = leaf.entry(i);
    }
    for probe in [&b""[..], b"a", b"b\xff", &[0xff; 20]] {
        let _ = leaf.lower_bound(probe);
        let _ = leaf.find(probe);
    }
    let _ = leaf.entries().rev().count();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn leaf_filled_until_full_reads_back_like_the_model(
        (bytes, raw) in raw_entries(),
        probes in proptest::collection::vec(raw_key(), 0..20),
        id in 2..1000u64,
        txn in any::<u64>(),
    ) {
        let size = PageSize::new(bytes).unwrap();
        let model = normalize(size, raw);
        let (page, n) = build_leaf(size, &model, id, txn);
        let model = &model[..n];
        let leaf = LeafPage::decode(&page, size, PageId(id)).unwrap();
        prop_assert_eq!((leaf.len(), leaf.txn_id()), (n, TxnId(txn)));
        prop_assert_eq!(&leaf_entries(&leaf), model);
        let backward: Vec<Entry> = leaf
            .entries()
            .rev()
            .map(|e| Entry::from_leaf(&e.unwrap()))
            .collect();
        prop_assert!(backward.iter().rev().eq(model.iter()));
        for (i, e) in model.iter().enumerate() {
            prop_assert_eq!(leaf.lower_bound(&e.key).unwrap(), i);
            prop_assert_eq!(leaf.find(&e.key).unwrap(), Some(e.as_leaf()));
        }
        for probe in &probes {
            let want = model.partition_point(|e| e.key < *probe);
            prop_assert_eq!(leaf.lower_bound(probe).unwrap(), want);
            let found = leaf.find(probe).unwrap().map(|e| e.key.to_vec());
            prop_assert_eq!(found.as_ref(), model.get(want).map(|e| &e.key).filter(|k| *k == probe));
        }
        let verified = LeafPage::decode_verified(&page, size, PageId(id)).unwrap();
        prop_assert_eq!(&leaf_entries(&verified), model);
        prop_assert_eq!(rebuild(size, &leaf), page);
    }
}

#[test]
fn leaf_builder_fills_until_the_next_entry_does_not_fit() {
    let mut rng = Rng(0x1eaf_f111);
    for _ in 0..300 {
        let size = page_size(&mut rng);
        let model = entries(&mut rng, size, 400);
        let mut builder = LeafBuilder::new(size);
        let mut pushed = 0;
        for e in &model {
            if !builder.fits(&e.as_leaf()) {
                assert!(e.as_leaf().encoded_size() > builder.free_space());
                break;
            }
            builder.push(&e.as_leaf());
            builder.check_invariants();
            pushed += 1;
        }
        let free = builder.free_space();
        let page = builder.finish(PageId(7), TxnId(1)).to_vec();
        let leaf = LeafPage::decode(&page, size, PageId(7)).unwrap();
        assert_eq!(leaf_entries(&leaf), model[..pushed]);
        assert_eq!(leaf.used_bytes().unwrap(), size.bytes() - free);
        builder.reset();
        assert!(builder.is_empty());
        assert_eq!(builder.free_space(), size.bytes() - 24);
    }
}

#[test]
fn leaf_holds_at_least_four_entries_of_the_largest_size() {
    for size in PageSize::all() {
        let key_max = size.key_size_max();
        let payload = size.leaf_payload_max();
        let mut builder = LeafBuilder::new(size);
        for i in 0..4u8 {
            let mut key = vec![b'k'; key_max];
            key[0] = i;
            let value = vec![i; payload - key_max];
            let entry = LeafEntry {
                key: &key,
                version: 1,
                value: LeafValue::Inline(&value),
            };
            builder.push(&entry);
        }
        let page = builder.finish(PageId(2), TxnId(0)).to_vec();
        assert_eq!(LeafPage::decode(&page, size, PageId(2)).unwrap().len(), 4);
    }
}

#[test]
fn leaf_empty_page_round_trips() {
    let size = PageSize::new(512).unwrap();
    let (page, n) = build_leaf(size, &[], 2, 0);
    assert_eq!(n, 0);
    let leaf = LeafPage::decode(&page, size, PageId(2)).unwrap();
    assert!(leaf.is_empty());
    assert_eq!(leaf.lower_bound(b"x").unwrap(), 0);
    assert_eq!(leaf.find(b"").unwrap(), None);
    assert!(page[24..].iter().all(|&b| b == 0));
}

/// A few pages of every shape: empty, small, full, with overflow references and
/// tombstones, at 512 bytes and 4 KiB.
fn sample_pages() -> Vec<(PageSize, Vec<u8>)> {
    let mut rng = Rng(0xf1_1b5);
    let mut out = Vec::new();
    for (bytes, count) in [(512, 0), (512, 3), (512, 400), (4096, 6), (4096, 2000)] {
        let size = PageSize::new(bytes).unwrap();
        let model = entries(&mut rng, size, count);
        out.push((size, build_leaf(size, &model, 9, 4).0));
    }
    out
}

#[test]
fn leaf_every_byte_flip_is_refused() {
    for (size, page) in sample_pages() {
        for at in 0..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped(&page, at, mask);
                assert_corruption(
                    LeafPage::decode(&bad, size, PageId(9)),
                    &format!("flip {at}"),
                );
                poke_verified(&bad, size, PageId(9));
            }
        }
    }
}

#[test]
fn leaf_resealed_flips_are_refused_or_reencode_to_their_bytes() {
    let mut accepted = 0;
    for (size, page) in sample_pages() {
        for at in 4..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped_resealed(&page, at, mask);
                poke_verified(&bad, size, PageId(9));
                match LeafPage::decode(&bad, size, PageId(9)) {
                    Err(e) => assert!(e.as_corruption().is_some(), "{e}"),
                    Ok(leaf) => {
                        accepted += 1;
                        assert_eq!(rebuild(size, &leaf), bad, "flip {at} mask {mask:#x}");
                    }
                }
            }
        }
    }
    // Flips in versions, values and overflow references are valid pages, just other ones.
    assert!(accepted > 0);
}

#[test]
fn leaf_truncated_or_extended_pages_are_refused() {
    for (size, page) in sample_pages() {
        for len in 0..page.len() {
            assert_corruption(LeafPage::decode(&page[..len], size, PageId(9)), "truncated");
            assert_corruption(
                LeafPage::decode_verified(&page[..len], size, PageId(9)),
                "cut",
            );
        }
        let mut long = page.clone();
        long.push(0);
        assert_corruption(LeafPage::decode(&long, size, PageId(9)), "extended");
    }
}

#[test]
fn leaf_random_bytes_never_panic() {
    let mut rng = Rng(0x6a7b);
    for _ in 0..2000 {
        let size = page_size(&mut rng);
        let mut page: Vec<u8> = (0..size.bytes()).map(|_| rng.next() as u8).collect();
        // A plausible header, so that the accessors get past it.
        page[4] = 3;
        page[5] = 0;
        page[6] = rng.next() as u8;
        page[7] = (rng.next() as u8) & 1;
        page[8..16].copy_from_slice(&5u64.to_le_bytes());
        poke_verified(&page, size, PageId(5));
        popdb_btree::seal(&mut page);
        let _ = LeafPage::decode(&page, size, PageId(5));
    }
}

fn push_one(size: u32, key: &[u8], version: u64, value: LeafValue<'_>) {
    let mut builder = LeafBuilder::new(PageSize::new(size).unwrap());
    builder.push(&LeafEntry {
        key: b"m",
        version: 1,
        value: LeafValue::Tombstone,
    });
    builder.push(&LeafEntry {
        key,
        version,
        value,
    });
}

#[test]
#[should_panic(expected = "out of order")]
fn leaf_builder_refuses_keys_out_of_order() {
    push_one(512, b"a", 1, LeafValue::Tombstone);
}

#[test]
#[should_panic(expected = "out of order")]
fn leaf_builder_refuses_a_repeated_key() {
    push_one(512, b"m", 1, LeafValue::Tombstone);
}

#[test]
#[should_panic(expected = "exceeds")]
fn leaf_builder_refuses_a_key_past_the_limit() {
    push_one(512, &[b'z'; 94], 1, LeafValue::Tombstone);
}

#[test]
#[should_panic(expected = "version 0")]
fn leaf_builder_refuses_version_zero() {
    push_one(512, b"z", 0, LeafValue::Tombstone);
}

#[test]
#[should_panic(expected = "belongs in overflow pages")]
fn leaf_builder_refuses_an_inline_value_past_the_payload() {
    push_one(512, b"z", 1, LeafValue::Inline(&[0; 105]));
}

#[test]
#[should_panic(expected = "belongs inline")]
fn leaf_builder_refuses_an_overflow_reference_for_a_small_value() {
    let r = OverflowRef {
        first: PageRef {
            id: PageId(3),
            checksum: 0,
        },
        value_size: 104,
    };
    push_one(512, b"z", 1, LeafValue::Overflow(r));
}

#[test]
#[should_panic(expected = "does not fit")]
fn leaf_builder_refuses_an_entry_that_does_not_fit() {
    let mut builder = LeafBuilder::new(PageSize::new(512).unwrap());
    for i in 0..=255u8 {
        let value = [i; 104];
        builder.push(&LeafEntry {
            key: &[i],
            version: 1,
            value: LeafValue::Inline(&value),
        });
    }
}

#[test]
#[should_panic(expected = "leaf page id")]
fn leaf_builder_refuses_a_meta_page_id() {
    LeafBuilder::new(PageSize::DEFAULT).finish(PageId(1), TxnId(1));
}

#[test]
#[should_panic(expected = "names its own leaf")]
fn leaf_builder_refuses_an_overflow_reference_to_itself() {
    let mut builder = LeafBuilder::new(PageSize::new(512).unwrap());
    let r = OverflowRef {
        first: PageRef {
            id: PageId(3),
            checksum: 0,
        },
        value_size: 500,
    };
    builder.push(&LeafEntry {
        key: b"k",
        version: 1,
        value: LeafValue::Overflow(r),
    });
    builder.finish(PageId(3), TxnId(1));
}
