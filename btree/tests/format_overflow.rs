//! Overflow pages and chains against a model (the value's bytes): random values of every
//! size up to the limit round-trip through chains at every page size; every byte flip,
//! re-sealed flip and truncation of a page is refused or (re-sealed flips only) re-encodes
//! to its bytes; a chain with a damaged, stale, missing or extra page is refused.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod format_common;

use std::collections::HashMap;

use format_common::{assert_corruption, flipped, flipped_resealed};
use popdb_btree::{
    OverflowPage, OverflowRef, PageId, PageSize, Result, TxnId, VALUE_SIZE_MAX,
    read_overflow_chain, write_overflow_chain,
};
use popdb_testkit::Rng;
use proptest::prelude::*;

type Pages = HashMap<PageId, Vec<u8>>;

fn write(size: PageSize, value: &[u8], first: u64, txn: u64) -> (OverflowRef, Pages, Vec<PageId>) {
    let count = size.overflow_page_count(value.len() as u32);
    // Scattered ids, as a free list would hand them out.
    let ids: Vec<PageId> = (0..count).map(|i| PageId(first + i * 3)).collect();
    let mut pages = Pages::new();
    let mut order = Vec::new();
    let mut buf = vec![0u8; size.bytes()];
    let r = write_overflow_chain(TxnId(txn), value, &ids, &mut buf, |id, page| {
        order.push(id);
        pages.insert(id, page.to_vec());
    });
    let mut last_first = ids.clone();
    last_first.reverse();
    assert_eq!(order, last_first, "chains are written last page first");
    (r, pages, ids)
}

fn read(size: PageSize, r: OverflowRef, pages: &Pages) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // A missing page reads as an empty one: a truncated file.
    let fetch = |id: PageId| Ok(pages.get(&id).map_or(&[][..], Vec::as_slice));
    read_overflow_chain(size, r, fetch, |d| out.extend_from_slice(d))?;
    Ok(out)
}

/// A value of `len` bytes that differs at every position of a page.
fn value_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn overflow_chains_round_trip_like_the_value(
        bytes in prop_oneof![Just(512u32), Just(1024), Just(4096), Just(65536)],
        len in prop_oneof![1..5000usize, 1..(VALUE_SIZE_MAX as usize + 1)],
        seed in any::<u8>(),
        first in 2..1000u64,
    ) {
        let size = PageSize::new(bytes).unwrap();
        let value = value_of(len, seed);
        let (r, pages, ids) = write(size, &value, first, 8);
        prop_assert_eq!(r.value_size as usize, len);
        prop_assert_eq!(r.first.id, ids[0]);
        prop_assert_eq!(pages.len() as u64, size.overflow_page_count(len as u32));
        prop_assert_eq!(read(size, r, &pages).unwrap(), value);
        for (i, id) in ids.iter().enumerate() {
            let page = OverflowPage::decode(&pages[id], size, *id).unwrap();
            prop_assert_eq!(page.next().map(|n| n.id), ids.get(i + 1).copied());
            prop_assert_eq!(page.txn_id(), TxnId(8));
        }
    }
}

fn sample_pages() -> Vec<(PageSize, PageId, Vec<u8>)> {
    let mut out = Vec::new();
    for (bytes, len) in [(512, 1), (512, 1000), (4096, 5000)] {
        let size = PageSize::new(bytes).unwrap();
        let (_, pages, ids) = write(size, &value_of(len, 7), 40, 2);
        for id in ids {
            out.push((size, id, pages[&id].clone()));
        }
    }
    out
}

#[test]
fn overflow_every_byte_flip_is_refused() {
    for (size, id, page) in sample_pages() {
        for at in 0..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped(&page, at, mask);
                assert_corruption(OverflowPage::decode(&bad, size, id), &format!("flip {at}"));
            }
        }
    }
}

#[test]
fn overflow_resealed_flips_are_refused_or_reencode_to_their_bytes() {
    for (size, id, page) in sample_pages() {
        for at in 4..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped_resealed(&page, at, mask);
                if let Ok(p) = OverflowPage::decode(&bad, size, id) {
                    let mut again = vec![0u8; size.bytes()];
                    OverflowPage::encode(&mut again, id, p.txn_id(), p.data(), p.next());
                    assert_eq!(again, bad, "flip {at} mask {mask:#x}");
                }
            }
        }
    }
}

#[test]
fn overflow_truncated_pages_are_refused() {
    for (size, id, page) in sample_pages() {
        for len in 0..page.len() {
            assert_corruption(OverflowPage::decode(&page[..len], size, id), "truncated");
        }
    }
}

#[test]
fn overflow_chain_with_damaged_stale_missing_or_extra_pages_is_refused() {
    let size = PageSize::new(512).unwrap();
    let mut rng = Rng(0x0f10);
    let value = value_of(3 * size.overflow_data_max() + 11, 3);
    let (r, pages, ids) = write(size, &value, 10, 5);
    for _ in 0..500 {
        let mut bad = pages.clone();
        let id = ids[rng.index(ids.len())];
        let at = rng.index(size.bytes());
        bad.get_mut(&id).unwrap()[at] ^= 1 << rng.index(8);
        assert_corruption(read(size, r, &bad), "damaged page");
    }
    // The same value rewritten by a later checkpoint on the same ids: every page is intact
    // but the first reference holds the old checksums.
    let (_, newer, _) = write(size, &value_of(value.len(), 4), 10, 6);
    assert_corruption(read(size, r, &newer), "stale chain");
    let mut missing = pages.clone();
    missing.remove(&ids[2]);
    assert_corruption(read(size, r, &missing), "missing page");
    let short = OverflowRef {
        value_size: r.value_size - 11 - 1,
        ..r
    };
    assert_corruption(read(size, short, &pages), "chain longer than the value");
    let long = OverflowRef {
        value_size: r.value_size + size.overflow_data_max() as u32,
        ..r
    };
    assert_corruption(read(size, long, &pages), "chain shorter than the value");
    for value_size in [0, VALUE_SIZE_MAX + 1] {
        assert_corruption(
            read(size, OverflowRef { value_size, ..r }, &pages),
            "bad size",
        );
    }
}

#[test]
#[should_panic(expected = "only the last overflow page is partial")]
fn overflow_encode_refuses_a_partial_page_with_a_successor() {
    let mut page = vec![0u8; 512];
    let next = popdb_btree::PageRef {
        id: PageId(3),
        checksum: 0,
    };
    OverflowPage::encode(&mut page, PageId(2), TxnId(1), &[1; 10], Some(next));
}

#[test]
#[should_panic(expected = "overflow chain page count")]
fn overflow_chain_refuses_the_wrong_number_of_pages() {
    let mut buf = vec![0u8; 512];
    write_overflow_chain(TxnId(1), &[1; 600], &[PageId(2)], &mut buf, |_, _| {});
}
