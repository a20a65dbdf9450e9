//! Overflow pages and chains against a model (the value's bytes): random values of every
//! size up to the limit round-trip through chains at every page size; every byte flip,
//! re-sealed flip and truncation of a page is refused or (re-sealed flips only) re-encodes
//! to its bytes; a chain with a damaged, stale, missing or extra page is refused, and so is
//! one that names a meta page or comes back to a page it has already visited.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod format_common;

use std::collections::HashMap;

use format_common::{assert_corruption, flipped, flipped_resealed};
use popdb_btree::internals::{NEXT_ID_AT, OVERFLOW_DATA_AT};
use popdb_btree::{
    OverflowPage, OverflowRef, PageId, PageRef, PageSize, Result, TxnId, VALUE_SIZE_MAX,
    page_checksum, read_overflow_chain, seal, write_overflow_chain,
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

/// Sets the 4 bytes of `page` at `at` so that the page's checksum becomes `target`, and
/// stores it. crc32 is affine over GF(2), so flipping a set of bits changes the checksum by
/// the xor of what each flip alone changes it by; 32 consecutive bits span every change.
fn forge_checksum(page: &mut [u8], at: usize, target: u32) {
    let base = page_checksum(page);
    // basis[c]: a set of bit flips (`.1`) whose checksum change (`.0`) has highest bit c.
    let mut basis: [Option<(u32, u32)>; 32] = [None; 32];
    for bit in 0..32 {
        page[at + bit / 8] ^= 1 << (bit % 8);
        let mut row = (page_checksum(page) ^ base, 1u32 << bit);
        page[at + bit / 8] ^= 1 << (bit % 8);
        while row.0 != 0 {
            let high = 31 - row.0.leading_zeros() as usize;
            if let Some((delta, flips)) = basis[high] {
                row = (row.0 ^ delta, row.1 ^ flips);
            } else {
                basis[high] = Some(row);
                break;
            }
        }
    }
    let mut want = base ^ target;
    let mut flips = 0u32;
    while want != 0 {
        let high = 31 - want.leading_zeros() as usize;
        let (delta, f) = basis[high].expect("32 consecutive bits span every crc32 change");
        want ^= delta;
        flips ^= f;
    }
    for bit in 0..32 {
        if flips >> bit & 1 == 1 {
            page[at + bit / 8] ^= 1 << (bit % 8);
        }
    }
    assert_eq!(seal(page), target, "forged checksum");
}

#[test]
fn overflow_chain_that_comes_back_to_an_earlier_page_is_refused() {
    // Pages 10 -> 11 -> 10: each page holds the other's checksum, which takes a forged
    // checksum (a crc fixed point no writer makes). Every page and every reference is then
    // valid, and only the walk's bound (exactly `overflow_page_count` pages, the last with no
    // successor) refuses the chain, however many pages the value claims.
    let size = PageSize::new(512).unwrap();
    let cap = size.overflow_data_max();
    let a_sum = 0x1234_5678;
    let mut page_b = vec![0u8; 512];
    let to_a = PageRef {
        id: PageId(10),
        checksum: a_sum,
    };
    let b_sum = OverflowPage::encode(
        &mut page_b,
        PageId(11),
        TxnId(3),
        &vec![0xbb; cap],
        Some(to_a),
    );
    let mut page_a = vec![0u8; 512];
    let to_b = PageRef {
        id: PageId(11),
        checksum: b_sum,
    };
    OverflowPage::encode(
        &mut page_a,
        PageId(10),
        TxnId(3),
        &vec![0xaa; cap],
        Some(to_b),
    );
    forge_checksum(&mut page_a, OVERFLOW_DATA_AT + cap - 4, a_sum);
    let pages = Pages::from([(PageId(10), page_a), (PageId(11), page_b)]);
    for id in [10, 11] {
        OverflowPage::decode(&pages[&PageId(id)], size, PageId(id)).unwrap();
    }
    for count in 2..8u32 {
        let r = OverflowRef {
            first: to_a,
            value_size: count * cap as u32,
        };
        let mut fetches = 0u64;
        let fetch = |id: PageId| {
            fetches += 1;
            Ok(pages.get(&id).map_or(&[][..], Vec::as_slice))
        };
        let e = read_overflow_chain(size, r, fetch, |_| {}).unwrap_err();
        let c = e.as_corruption().unwrap();
        assert_eq!(c.what, "overflow chain length", "{count} pages");
        assert_eq!(
            fetches,
            u64::from(count),
            "the walk stops at the value's page count"
        );
    }
}

#[test]
fn overflow_chain_naming_a_meta_page_is_refused_without_reading_it() {
    // Review finding: a reference naming page 0 or 1 made `read_overflow_chain` fetch the
    // meta page and refuse it only as a page of the wrong type or length; the reference is
    // refused before anything is read.
    let size = PageSize::new(512).unwrap();
    let value = value_of(2 * size.overflow_data_max() + 1, 5);
    let (r, pages, ids) = write(size, &value, 10, 5);
    for meta in [0, 1] {
        let first = PageRef {
            id: PageId(meta),
            ..r.first
        };
        let mut fetched = Vec::new();
        let fetch = |id: PageId| {
            fetched.push(id);
            Ok(pages.get(&id).map_or(&[][..], Vec::as_slice))
        };
        let e = read_overflow_chain(size, OverflowRef { first, ..r }, fetch, |_| {});
        assert_eq!(
            e.unwrap_err().as_corruption().unwrap().what,
            "overflow first page id"
        );
        assert!(fetched.is_empty(), "fetched {fetched:?}");
        // A page whose link names a meta page is refused by the page's own decoder.
        let mut bad = pages.clone();
        let page = bad.get_mut(&ids[1]).unwrap();
        page[NEXT_ID_AT..NEXT_ID_AT + 8].copy_from_slice(&meta.to_le_bytes());
        seal(page);
        let e = OverflowPage::decode(&bad[&ids[1]], size, ids[1]).unwrap_err();
        assert_eq!(e.as_corruption().unwrap().what, "next page id");
        assert_corruption(read(size, r, &bad), "next page is a meta");
    }
}
