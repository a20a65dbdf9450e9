//! Free-list pages against a model (a sorted `Vec` of entries): random lists round-trip at
//! every page size, full pages included; every byte flip, re-sealed flip and truncation is
//! refused or (re-sealed flips only) re-encodes to its bytes; an empty page and a page
//! linked to itself are refused; encoder asserts fire.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod format_common;

use format_common::{assert_corruption, flipped, flipped_resealed};
use popdb_btree::internals::{COUNT_AT, FREE_ENTRIES_AT, FREE_ENTRY_SIZE, NEXT_ID_AT};
use popdb_btree::{
    CorruptionKind, FreeEntry, FreeListPage, PageId, PageRef, PageSize, TxnId, seal,
};
use popdb_testkit::Rng;
use proptest::prelude::*;

fn encode(
    size: PageSize,
    id: u64,
    txn: u64,
    entries: &[FreeEntry],
    next: Option<PageRef>,
) -> Vec<u8> {
    let mut page = vec![0u8; size.bytes()];
    FreeListPage::encode(&mut page, PageId(id), TxnId(txn), entries, next);
    page
}

fn decoded(page: &FreeListPage<'_>) -> Vec<FreeEntry> {
    page.entries().map(Result::unwrap).collect()
}

fn entry_strategy() -> impl Strategy<Value = FreeEntry> {
    (2..1u64 << 40, 0..=100u64).prop_map(|(id, txn)| FreeEntry {
        page_id: PageId(id),
        freed_txn: TxnId(txn),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn free_list_round_trips_like_the_model(
        bytes in prop_oneof![Just(512u32), Just(1024), Just(4096), Just(65536)],
        entries in proptest::collection::vec(entry_strategy(), 0..5000),
        next in proptest::option::of((2..1u64 << 40, any::<u32>())),
        own in 2..1u64 << 40,
    ) {
        let size = PageSize::new(bytes).unwrap();
        let mut entries: Vec<FreeEntry> = entries.into_iter().filter(|e| e.page_id.0 != own).collect();
        entries.sort();
        entries.dedup();
        entries.truncate(size.free_list_capacity());
        // An empty free-list page is never written.
        prop_assume!(!entries.is_empty());
        let next = next
            .filter(|&(id, _)| id != own)
            .map(|(id, checksum)| PageRef { id: PageId(id), checksum });
        let page = encode(size, own, 100, &entries, next);
        let list = FreeListPage::decode(&page, size, PageId(own)).unwrap();
        prop_assert_eq!(decoded(&list), entries.clone());
        prop_assert_eq!(list.next(), next);
        prop_assert_eq!((list.len(), list.page_id()), (entries.len(), PageId(own)));
        let backward: Vec<FreeEntry> = list.entries().rev().map(Result::unwrap).collect();
        prop_assert!(backward.iter().rev().eq(entries.iter()));
    }
}

fn sample_pages() -> Vec<(PageSize, Vec<u8>)> {
    let mut rng = Rng(0xf7ee);
    let mut out = Vec::new();
    for (bytes, count) in [(512, 1), (512, 3), (512, 1000), (1024, 40)] {
        let size = PageSize::new(bytes).unwrap();
        let mut entries: Vec<FreeEntry> = (0..count)
            .map(|_| FreeEntry {
                page_id: PageId(10 + rng.below(500)),
                freed_txn: TxnId(rng.below(9)),
            })
            .collect();
        entries.sort();
        entries.dedup();
        entries.truncate(size.free_list_capacity());
        let next = (count % 2 == 1).then_some(PageRef {
            id: PageId(600),
            checksum: 0x1234_5678,
        });
        out.push((size, encode(size, 9, 9, &entries, next)));
    }
    out
}

#[test]
fn free_list_every_byte_flip_is_refused() {
    for (size, page) in sample_pages() {
        for at in 0..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped(&page, at, mask);
                assert_corruption(
                    FreeListPage::decode(&bad, size, PageId(9)),
                    &format!("flip {at}"),
                );
            }
        }
    }
}

#[test]
fn free_list_resealed_flips_are_refused_or_reencode_to_their_bytes() {
    let mut accepted = 0;
    for (size, page) in sample_pages() {
        for at in 4..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped_resealed(&page, at, mask);
                if let Ok(list) = FreeListPage::decode(&bad, size, PageId(9)) {
                    accepted += 1;
                    let again = encode(size, 9, list.txn_id().0, &decoded(&list), list.next());
                    assert_eq!(again, bad, "flip {at} mask {mask:#x}");
                }
            }
        }
    }
    assert!(accepted > 0);
}

#[test]
fn free_list_truncated_pages_are_refused() {
    for (size, page) in sample_pages() {
        for len in 0..page.len() {
            assert_corruption(
                FreeListPage::decode(&page[..len], size, PageId(9)),
                "truncated",
            );
        }
    }
}

fn free(id: u64, txn: u64) -> FreeEntry {
    FreeEntry {
        page_id: PageId(id),
        freed_txn: TxnId(txn),
    }
}

#[test]
#[should_panic(expected = "out of order")]
fn free_list_encode_refuses_entries_out_of_order() {
    encode(
        PageSize::new(512).unwrap(),
        9,
        5,
        &[free(3, 2), free(4, 1)],
        None,
    );
}

#[test]
#[should_panic(expected = "freed after")]
fn free_list_encode_refuses_a_page_freed_after_the_list() {
    encode(PageSize::new(512).unwrap(), 9, 5, &[free(3, 6)], None);
}

#[test]
#[should_panic(expected = "free-list entry")]
fn free_list_encode_refuses_to_list_itself() {
    encode(PageSize::new(512).unwrap(), 9, 5, &[free(9, 1)], None);
}

#[test]
#[should_panic(expected = "free-list entries in a page")]
fn free_list_encode_refuses_more_than_a_page_holds() {
    let entries: Vec<FreeEntry> = (0..30).map(|i| free(100 + i, 1)).collect();
    encode(PageSize::new(512).unwrap(), 9, 5, &entries, None);
}

#[test]
fn free_list_decode_refuses_an_empty_page() {
    // An empty free-list page is never written (a free list with nothing left in it is no
    // page at all), so a count of 0 is damage: forge one from a page of one entry.
    let size = PageSize::new(512).unwrap();
    let mut page = encode(size, 9, 5, &[free(3, 1)], None);
    page[COUNT_AT..COUNT_AT + 2].copy_from_slice(&0u16.to_le_bytes());
    page[FREE_ENTRIES_AT..FREE_ENTRIES_AT + FREE_ENTRY_SIZE].fill(0);
    seal(&mut page);
    let e = FreeListPage::decode(&page, size, PageId(9)).unwrap_err();
    let c = e.as_corruption().unwrap();
    assert_eq!(c.kind, CorruptionKind::InvalidValue { found: 0 });
    assert_eq!((c.what, c.offset), ("free-list count", COUNT_AT as u64));
}

#[test]
fn free_list_decode_refuses_a_page_linked_to_itself() {
    let size = PageSize::new(512).unwrap();
    let next = PageRef {
        id: PageId(10),
        checksum: 7,
    };
    let mut page = encode(size, 9, 5, &[free(3, 1)], Some(next));
    page[NEXT_ID_AT..NEXT_ID_AT + 8].copy_from_slice(&9u64.to_le_bytes());
    seal(&mut page);
    let e = FreeListPage::decode(&page, size, PageId(9)).unwrap_err();
    let c = e.as_corruption().unwrap();
    assert_eq!(c.kind, CorruptionKind::InvalidValue { found: 9 });
    assert_eq!((c.what, c.offset), ("next page id", NEXT_ID_AT as u64));
}

#[test]
#[should_panic(expected = "empty free-list page")]
fn free_list_encode_refuses_an_empty_page() {
    encode(PageSize::new(512).unwrap(), 9, 5, &[], None);
}
