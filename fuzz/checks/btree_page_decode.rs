//! The body of fuzz target `btree_page_decode`: arbitrary bytes, cut into pages, must never
//! make a B+tree page decoder or accessor panic; every page a decoder accepts must be read
//! in full (every entry, both ways, by search) and re-encode to exactly its bytes.
//!
//! Like fuzz/checks/wal_segment_decode.rs (which says why), this file is included with
//! `#[path = ...] mod check;` by both fuzz/fuzz_targets/btree_page_decode.rs and
//! btree/tests/format_fuzz_replay.rs, and needs nothing but `popdb_btree`.
//!
//! Input layout: `[c0, c1, image...]`. `c1 & 7` picks the page size (512 bytes shifted
//! left by it); `image` is a file of such pages, page `i` at byte `i * page_size`, the last
//! one possibly cut short. If bit 0 of `c0` is set, every page's checksum is re-sealed
//! first so that the fuzzer explores the structure behind it. Inputs under 2 bytes are
//! ignored.
//!
//! Each page is decoded as every page type, in full and (leaf, branch) header-only with
//! every accessor poked; an accepted leaf's overflow references are followed through the
//! image; the image's head is given to `recover_meta`.

use popdb_btree::{
    BranchBuilder, BranchPage, FreeListPage, LeafBuilder, LeafPage, LeafValue, Meta, OverflowPage,
    PageId, PageSize, read_overflow_chain, recover_meta, seal,
};

/// Probe keys for searches, beside the page's own keys.
const PROBES: [&[u8]; 5] = [b"", b"\x00", b"a", b"m\xff", b"\xff\xff\xff\xff"];

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    let [c0, c1, rest @ ..] = data else {
        return;
    };
    let size = PageSize::new(512 << (c1 & 7)).expect("512 << 0..=7 is a page size");
    let mut image = rest.to_vec();
    if c0 & 1 == 1 {
        for page in image.chunks_mut(size.bytes()) {
            if page.len() >= 4 {
                seal(page);
            }
        }
    }
    for (index, page) in image.chunks(size.bytes()).enumerate() {
        let id = PageId(index as u64);
        check_leaf(&image, size, page, id);
        check_branch(size, page, id);
        check_overflow(size, page, id);
        check_free_list(size, page, id);
        check_meta(page, PageId(id.0 % 2));
    }
    check_recover(&image);
}

fn check_leaf(image: &[u8], size: PageSize, page: &[u8], id: PageId) {
    if let Ok(leaf) = LeafPage::decode_verified(page, size, id) {
        let _ = leaf.used_bytes();
        for i in 0..leaf.len() {
            let _ = leaf.key(i);
            let _ = leaf.entry(i);
        }
        for probe in PROBES {
            let _ = leaf.lower_bound(probe);
            let _ = leaf.find(probe);
        }
    }
    let Ok(leaf) = LeafPage::decode(page, size, id) else {
        return;
    };
    let forward: Vec<_> = leaf
        .entries()
        .map(|e| e.expect("a decoded leaf reads"))
        .collect();
    let mut backward: Vec<_> = leaf.entries().rev().map(|e| e.expect("reads")).collect();
    backward.reverse();
    assert_eq!(forward, backward, "leaf entries differ by direction");
    let mut builder = LeafBuilder::new(size);
    for (i, entry) in forward.iter().enumerate() {
        assert_eq!(leaf.lower_bound(entry.key).expect("search"), i);
        assert_eq!(leaf.find(entry.key).expect("search"), Some(*entry));
        builder.push(entry);
        if let LeafValue::Overflow(r) = entry.value {
            check_chain(image, size, r);
        }
    }
    for probe in PROBES {
        let want = forward.partition_point(|e| e.key < probe);
        assert_eq!(leaf.lower_bound(probe).expect("search"), want);
    }
    let again = builder.finish(id, leaf.txn_id());
    assert_eq!(again, page, "an accepted leaf must re-encode to its bytes");
}

/// Follows an overflow chain through the image; a page past its end reads as empty.
fn check_chain(image: &[u8], size: PageSize, r: popdb_btree::OverflowRef) {
    let fetch = |id: PageId| {
        let start = usize::try_from(id.0)
            .ok()
            .and_then(|i| i.checked_mul(size.bytes()));
        let page = start.and_then(|s| image.get(s..)).unwrap_or_default();
        Ok(page.get(..size.bytes()).unwrap_or(page))
    };
    let mut read = 0u64;
    if read_overflow_chain(size, r, fetch, |d| read += d.len() as u64).is_ok() {
        assert_eq!(
            read,
            u64::from(r.value_size),
            "a chain read whole has the value's size"
        );
    }
}

fn check_branch(size: PageSize, page: &[u8], id: PageId) {
    if let Ok(branch) = BranchPage::decode_verified(page, size, id) {
        let _ = branch.used_bytes();
        for i in 0..branch.len() {
            let _ = branch.separator(i);
        }
        for i in 0..branch.child_count() {
            let _ = branch.child(i);
        }
        for probe in PROBES {
            let _ = branch.child_for(probe);
        }
    }
    let Ok(branch) = BranchPage::decode(page, size, id) else {
        return;
    };
    let leftmost = branch.child(0).expect("a decoded branch reads");
    let mut builder = BranchBuilder::new(size, branch.level(), leftmost);
    let mut separators = Vec::new();
    for i in 0..branch.len() {
        let separator = branch.separator(i).expect("reads");
        assert_eq!(branch.child_index(separator).expect("search"), i + 1);
        builder.push(separator, branch.child(i + 1).expect("reads"));
        separators.push(separator);
    }
    for probe in PROBES {
        let want = separators.partition_point(|s| *s <= probe);
        assert_eq!(branch.child_index(probe).expect("search"), want);
    }
    let again = builder.finish(id, branch.txn_id());
    assert_eq!(
        again, page,
        "an accepted branch must re-encode to its bytes"
    );
}

fn check_overflow(size: PageSize, page: &[u8], id: PageId) {
    let Ok(overflow) = OverflowPage::decode(page, size, id) else {
        return;
    };
    let mut again = vec![0u8; size.bytes()];
    OverflowPage::encode(
        &mut again,
        id,
        overflow.txn_id(),
        overflow.data(),
        overflow.next(),
    );
    assert_eq!(
        again, page,
        "an accepted overflow page must re-encode to its bytes"
    );
}

fn check_free_list(size: PageSize, page: &[u8], id: PageId) {
    let Ok(list) = FreeListPage::decode(page, size, id) else {
        return;
    };
    let entries: Vec<_> = list
        .entries()
        .map(|e| e.expect("a decoded list reads"))
        .collect();
    let mut again = vec![0u8; size.bytes()];
    FreeListPage::encode(&mut again, id, list.txn_id(), &entries, list.next());
    assert_eq!(
        again, page,
        "an accepted free-list page must re-encode to its bytes"
    );
}

fn check_meta(page: &[u8], id: PageId) {
    let _ = Meta::peek_page_size(page, id);
    let Ok(meta) = Meta::decode(page, id) else {
        return;
    };
    assert_eq!(meta.page_id(), id);
    let mut again = vec![0u8; meta.page_size.bytes()];
    meta.encode(&mut again);
    assert_eq!(
        again, page,
        "an accepted meta page must re-encode to its bytes"
    );
}

fn check_recover(image: &[u8]) {
    let Ok(choice) = recover_meta(image) else {
        return;
    };
    let current = choice.current;
    if let Some(previous) = choice.previous {
        assert_eq!(previous.txn_id.0 + 1, current.txn_id.0);
        assert_eq!(previous.page_size, current.page_size);
    }
    let at = usize::from(current.page_id().0 == 1) * current.page_size.bytes();
    let page = &image[at..at + current.page_size.bytes()];
    assert_eq!(
        Meta::decode(page, current.page_id()).expect("recovered"),
        current
    );
}
