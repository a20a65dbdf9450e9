//! The branch page's codec against a model (level, children, separators): builders filled
//! until full round-trip through the reader, and a key's child is the model's; every byte
//! flip, re-sealed flip, truncation and random page is refused or (re-sealed flips only)
//! re-encodes to exactly its bytes; builder asserts fire.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod format_common;

use format_common::{
    assert_corruption, branch_model, build_branch, child, flipped, flipped_resealed, key, page_size,
};
use popdb_btree::{BranchBuilder, BranchPage, PageId, PageRef, PageSize, TxnId};
use popdb_testkit::Rng;
use proptest::prelude::*;

fn sorted_keys(mut keys: Vec<Vec<u8>>, size: PageSize) -> Vec<Vec<u8>> {
    for k in &mut keys {
        k.truncate(size.key_size_max());
    }
    keys.sort();
    keys.dedup();
    keys
}

fn rebuild(size: PageSize, page: &BranchPage<'_>) -> Vec<u8> {
    let mut builder = BranchBuilder::new(size, page.level(), page.child(0).unwrap());
    for i in 0..page.len() {
        builder.push(page.separator(i).unwrap(), page.child(i + 1).unwrap());
    }
    builder.finish(page.page_id(), page.txn_id()).to_vec()
}

fn poke_verified(page: &[u8], size: PageSize, id: PageId) {
    let Ok(branch) = BranchPage::decode_verified(page, size, id) else {
        return;
    };
    let _ = branch.used_bytes();
    for i in 0..branch.len() {
        let _ = branch.separator(i);
    }
    for i in 0..branch.child_count() {
        let _ = branch.child(i);
    }
    for probe in [&b""[..], b"a", b"b\xff", &[0xff; 20]] {
        let _ = branch.child_index(probe);
        let _ = branch.child_for(probe);
    }
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xff)], 0..12),
        1 => proptest::collection::vec(any::<u8>(), 0..1200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn branch_filled_until_full_reads_back_like_the_model(
        bytes in prop_oneof![Just(512u32), Just(1024), Just(4096), Just(65536)],
        keys in proptest::collection::vec(key_strategy(), 1..400),
        probes in proptest::collection::vec(key_strategy(), 0..20),
        seed in any::<u64>(),
    ) {
        let size = PageSize::new(bytes).unwrap();
        let keys = sorted_keys(keys, size);
        let mut rng = Rng(seed);
        let (page, model) = build_branch(&mut rng, size, &keys, 77);
        let branch = BranchPage::decode(&page, size, PageId(77)).unwrap();
        prop_assert_eq!(&branch_model(&branch), &model);
        prop_assert_eq!(branch.child_count(), model.children.len());
        let probes = probes.iter().chain(&model.separators);
        for probe in probes {
            let want = model.separators.partition_point(|s| s <= probe);
            prop_assert_eq!(branch.child_index(probe).unwrap(), want);
            prop_assert_eq!(branch.child_for(probe).unwrap(), model.children[want]);
        }
        let verified = BranchPage::decode_verified(&page, size, PageId(77)).unwrap();
        prop_assert_eq!(&branch_model(&verified), &model);
        prop_assert_eq!(rebuild(size, &branch), page);
    }
}

#[test]
fn branch_builder_fills_until_the_next_separator_does_not_fit() {
    let mut rng = Rng(0xb4a_4c11);
    for _ in 0..300 {
        let size = page_size(&mut rng);
        let keys = sorted_keys((0..500).map(|_| key(&mut rng, size)).collect(), size);
        let mut builder = BranchBuilder::new(size, 1, child(&mut rng));
        let mut pushed = 0;
        for k in &keys {
            if !builder.fits(k.len()) {
                assert!(BranchBuilder::encoded_size(k.len()) > builder.free_space());
                break;
            }
            builder.push(k, child(&mut rng));
            builder.check_invariants();
            pushed += 1;
        }
        let free = builder.free_space();
        let page = builder.finish(PageId(3), TxnId(2)).to_vec();
        let branch = BranchPage::decode(&page, size, PageId(3)).unwrap();
        assert_eq!(branch.len(), pushed);
        assert_eq!(branch.used_bytes().unwrap(), size.bytes() - free);
    }
}

#[test]
fn branch_holds_at_least_four_separators_of_the_largest_size() {
    for size in PageSize::all() {
        let leftmost = PageRef {
            id: PageId(2),
            checksum: 1,
        };
        let mut builder = BranchBuilder::new(size, 1, leftmost);
        for i in 0..4u8 {
            let mut key = vec![b'k'; size.key_size_max()];
            key[0] = i;
            builder.push(
                &key,
                PageRef {
                    id: PageId(3 + u64::from(i)),
                    checksum: 2,
                },
            );
        }
        let page = builder.finish(PageId(20), TxnId(0)).to_vec();
        assert_eq!(
            BranchPage::decode(&page, size, PageId(20)).unwrap().len(),
            4
        );
    }
}

fn sample_pages() -> Vec<(PageSize, Vec<u8>)> {
    let mut rng = Rng(0xb1_f11b);
    let mut out = Vec::new();
    for (bytes, count) in [(512, 1), (512, 3), (512, 400), (4096, 6), (4096, 2000)] {
        let size = PageSize::new(bytes).unwrap();
        let keys = sorted_keys((0..count).map(|_| key(&mut rng, size)).collect(), size);
        out.push((size, build_branch(&mut rng, size, &keys, 9).0));
    }
    out
}

#[test]
fn branch_every_byte_flip_is_refused() {
    for (size, page) in sample_pages() {
        for at in 0..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped(&page, at, mask);
                assert_corruption(
                    BranchPage::decode(&bad, size, PageId(9)),
                    &format!("flip {at}"),
                );
                poke_verified(&bad, size, PageId(9));
            }
        }
    }
}

#[test]
fn branch_resealed_flips_are_refused_or_reencode_to_their_bytes() {
    let mut accepted = 0;
    for (size, page) in sample_pages() {
        for at in 4..page.len() {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flipped_resealed(&page, at, mask);
                poke_verified(&bad, size, PageId(9));
                match BranchPage::decode(&bad, size, PageId(9)) {
                    Err(e) => assert!(e.as_corruption().is_some(), "{e}"),
                    Ok(branch) => {
                        accepted += 1;
                        assert_eq!(rebuild(size, &branch), bad, "flip {at} mask {mask:#x}");
                    }
                }
            }
        }
    }
    assert!(accepted > 0);
}

#[test]
fn branch_truncated_or_extended_pages_are_refused() {
    for (size, page) in sample_pages() {
        for len in 0..page.len() {
            assert_corruption(
                BranchPage::decode(&page[..len], size, PageId(9)),
                "truncated",
            );
            assert_corruption(
                BranchPage::decode_verified(&page[..len], size, PageId(9)),
                "cut",
            );
        }
        let mut long = page.clone();
        long.push(0);
        assert_corruption(BranchPage::decode(&long, size, PageId(9)), "extended");
    }
}

#[test]
fn branch_random_bytes_never_panic() {
    let mut rng = Rng(0xb7b7);
    for _ in 0..2000 {
        let size = page_size(&mut rng);
        let mut page: Vec<u8> = (0..size.bytes()).map(|_| rng.next() as u8).collect();
        page[4] = 2;
        page[5] = 1 + rng.index(31) as u8;
        page[7] = (rng.next() as u8) & 1;
        page[8..16].copy_from_slice(&5u64.to_le_bytes());
        poke_verified(&page, size, PageId(5));
        popdb_btree::seal(&mut page);
        let _ = BranchPage::decode(&page, size, PageId(5));
    }
}

fn child_ref(id: u64) -> PageRef {
    PageRef {
        id: PageId(id),
        checksum: 0,
    }
}

#[test]
#[should_panic(expected = "branch level")]
fn branch_builder_refuses_level_zero() {
    BranchBuilder::new(PageSize::DEFAULT, 0, child_ref(2));
}

#[test]
#[should_panic(expected = "branch level")]
fn branch_builder_refuses_a_level_past_the_maximum() {
    BranchBuilder::new(PageSize::DEFAULT, 32, child_ref(2));
}

#[test]
#[should_panic(expected = "out of order")]
fn branch_builder_refuses_separators_out_of_order() {
    let mut builder = BranchBuilder::new(PageSize::DEFAULT, 1, child_ref(2));
    builder.push(b"b", child_ref(3));
    builder.push(b"a", child_ref(4));
}

#[test]
#[should_panic(expected = "at least two children")]
fn branch_builder_refuses_a_single_child() {
    BranchBuilder::new(PageSize::DEFAULT, 1, child_ref(2)).finish(PageId(3), TxnId(1));
}

#[test]
#[should_panic(expected = "cannot be a child")]
fn branch_builder_refuses_a_meta_page_child() {
    let mut builder = BranchBuilder::new(PageSize::DEFAULT, 1, child_ref(2));
    builder.push(b"b", child_ref(1));
}

#[test]
#[should_panic(expected = "names itself")]
fn branch_builder_refuses_itself_as_a_child() {
    let mut builder = BranchBuilder::new(PageSize::DEFAULT, 1, child_ref(2));
    builder.push(b"b", child_ref(3));
    builder.finish(PageId(3), TxnId(1));
}
