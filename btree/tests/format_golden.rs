//! The B+tree file format pinned by a golden fixture (never regenerated, STYLE section 8):
//! `fixtures/v1/tiny.btree`, a whole file of 512-byte pages holding every page type, made
//! directly by the page builders in the order the tree writes pages (children before
//! parents, metas last). The builders must still produce it byte
//! for byte, and it must keep decoding to the same tree. Its leaf page 3 and meta page 0
//! are the worked examples of docs/format/btree.md; `POPDB_PRINT_BTREE=1` prints the file
//! as hex, 8 bytes a row, runs of zero rows as `*`
//! (`POPDB_PRINT_BTREE=full`: every row).
//!
//! The story of the file: transaction 1 (watermark 3) wrote a tree of one leaf, page 2,
//! holding `apple` = `red` at version 3. Transaction 2 (watermark 9) wrote a new tree after
//! `apply` was deleted at LSN 8 and `pear` got a 600-byte value at LSN 9: leaves 3 and 6,
//! the overflow chain 4 -> 5 of `pear`'s value, branch 7 over the leaves, and the free list
//! page 8, which lists page 2 (freed by transaction 2). Meta 1 holds transaction 1, meta 0
//! transaction 2. These ids are the fixture's own: a file the tree creates starts with empty
//! metas at transactions 0 and 1 and checkpoints from transaction 2 (docs/format/btree.md
//! sections 11 and 14); two consecutive metas are all the page layer requires.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use popdb_btree::{
    BranchBuilder, BranchPage, FreeEntry, FreeListPage, LeafBuilder, LeafEntry, LeafPage,
    LeafValue, Meta, PageId, PageRef, PageSize, RootRef, TxnId, page_checksum, read_overflow_chain,
    recover_meta, write_overflow_chain,
};

const TINY: &[u8] = include_bytes!("fixtures/v1/tiny.btree");
const PAGE: usize = 512;

fn size() -> PageSize {
    PageSize::new(512).unwrap()
}

fn pear_value() -> Vec<u8> {
    (0..600u32).map(|i| b'a' + (i % 26) as u8).collect()
}

fn put(file: &mut [u8], id: u64, page: &[u8]) -> PageRef {
    let at = id as usize * PAGE;
    file[at..at + PAGE].copy_from_slice(page);
    PageRef {
        id: PageId(id),
        checksum: page_checksum(page),
    }
}

fn leaf(file: &mut [u8], id: u64, txn: u64, entries: &[LeafEntry<'_>]) -> PageRef {
    let mut builder = LeafBuilder::new(size());
    for e in entries {
        builder.push(e);
    }
    let page = builder.finish(PageId(id), TxnId(txn)).to_vec();
    put(file, id, &page)
}

/// The file, built the way the tree builds one: children before parents, metas last.
fn build() -> Vec<u8> {
    let mut file = vec![0u8; 9 * PAGE];
    let red = LeafValue::Inline(b"red");
    let apple = LeafEntry {
        key: b"apple",
        version: 3,
        value: red,
    };
    let old_root = leaf(&mut file, 2, 1, &[apple]);

    let apply = LeafEntry {
        key: b"apply",
        version: 8,
        value: LeafValue::Tombstone,
    };
    let left = leaf(&mut file, 3, 2, &[apple, apply]);
    let mut buf = vec![0u8; PAGE];
    let mut chain = Vec::new();
    let ids = [PageId(4), PageId(5)];
    let value = write_overflow_chain(TxnId(2), &pear_value(), &ids, &mut buf, |id, page| {
        chain.push((id, page.to_vec()));
    });
    for (id, page) in chain {
        put(&mut file, id.0, &page);
    }
    let pear = LeafEntry {
        key: b"pear",
        version: 9,
        value: LeafValue::Overflow(value),
    };
    let right = leaf(&mut file, 6, 2, &[pear]);
    let mut branch = BranchBuilder::new(size(), 1, left);
    branch.push(b"pear", right);
    let root_page = branch.finish(PageId(7), TxnId(2)).to_vec();
    let root = put(&mut file, 7, &root_page);
    let freed = [FreeEntry {
        freed_txn: TxnId(2),
        page_id: PageId(2),
    }];
    FreeListPage::encode(&mut buf, PageId(8), TxnId(2), &freed, None);
    let free_list = put(&mut file, 8, &buf);

    let meta_1 = Meta {
        page_count: 3,
        entry_count: 1,
        watermark: Some(3),
        root: Some(RootRef {
            page: old_root,
            level: 0,
        }),
        ..Meta::empty(size(), TxnId(1))
    };
    let meta_0 = Meta {
        page_count: 9,
        entry_count: 3,
        free_page_count: 1,
        watermark: Some(9),
        root: Some(RootRef {
            page: root,
            level: 1,
        }),
        free_list: Some(free_list),
        ..Meta::empty(size(), TxnId(2))
    };
    for meta in [meta_1, meta_0] {
        meta.encode(&mut buf);
        put(&mut file, meta.page_id().0, &buf);
    }
    file
}

fn print_dump(bytes: &[u8]) {
    let Some(mode) = std::env::var_os("POPDB_PRINT_BTREE") else {
        return;
    };
    let rows: Vec<&[u8]> = bytes.chunks(8).collect();
    let zero = |i: usize| rows[i].iter().all(|&b| b == 0);
    let line = |i: usize| {
        let hex: Vec<String> = rows[i].iter().map(|b| format!("{b:02x}")).collect();
        println!("{:04x}: {}", i * 8, hex.join(" "));
    };
    let mut i = 0;
    while i < rows.len() {
        let run = (i..rows.len()).take_while(|&j| zero(j)).count();
        if run >= 3 && mode != "full" {
            line(i);
            println!("*");
            line(i + run - 1);
            i += run;
        } else {
            line(i);
            i += 1;
        }
    }
}

#[test]
fn format_golden_builders_still_produce_the_v1_file() {
    let file = build();
    print_dump(&file);
    assert_eq!(file.len(), TINY.len());
    for (i, (made, fixture)) in file.chunks(PAGE).zip(TINY.chunks(PAGE)).enumerate() {
        assert_eq!(made, fixture, "page {i} differs from the fixture");
    }
}

#[test]
fn format_golden_v1_file_still_decodes_to_the_same_tree() {
    let choice = recover_meta(TINY).unwrap();
    let meta = choice.current;
    assert_eq!(
        (meta.txn_id, meta.watermark, meta.page_count),
        (TxnId(2), Some(9), 9)
    );
    let previous = choice.previous.unwrap();
    assert_eq!((previous.txn_id, previous.watermark), (TxnId(1), Some(3)));
    let page = |id: PageId| &TINY[id.0 as usize * PAGE..(id.0 as usize + 1) * PAGE];

    let root = meta.root.unwrap();
    assert_eq!(root.level, 1);
    let branch = BranchPage::decode(page(root.page.id), size(), root.page.id).unwrap();
    assert_eq!(page_checksum(page(root.page.id)), root.page.checksum);
    assert_eq!(branch.separator(0).unwrap(), b"pear");
    let mut entries = Vec::new();
    for i in 0..branch.child_count() {
        let child = branch.child(i).unwrap();
        assert_eq!(page_checksum(page(child.id)), child.checksum);
        let leaf = LeafPage::decode(page(child.id), size(), child.id).unwrap();
        for e in leaf.entries() {
            let e = e.unwrap();
            let value = match e.value {
                LeafValue::Inline(v) => Some(v.to_vec()),
                LeafValue::Tombstone => None,
                LeafValue::Overflow(r) => {
                    let mut out = Vec::new();
                    let fetch = |id: PageId| Ok(page(id));
                    read_overflow_chain(size(), r, fetch, |d| out.extend_from_slice(d)).unwrap();
                    Some(out)
                }
            };
            entries.push((e.key.to_vec(), e.version, value));
        }
    }
    let expected = vec![
        (b"apple".to_vec(), 3, Some(b"red".to_vec())),
        (b"apply".to_vec(), 8, None),
        (b"pear".to_vec(), 9, Some(pear_value())),
    ];
    assert_eq!(entries, expected);
    assert_eq!(meta.entry_count, 3);

    let free = meta.free_list.unwrap();
    let list = FreeListPage::decode(page(free.id), size(), free.id).unwrap();
    let listed: Vec<FreeEntry> = list.entries().map(Result::unwrap).collect();
    assert_eq!(
        listed,
        [FreeEntry {
            freed_txn: TxnId(2),
            page_id: PageId(2)
        }]
    );

    let old = previous.root.unwrap().page.id;
    let old_leaf = LeafPage::decode(page(old), size(), old).unwrap();
    assert_eq!(old_leaf.find(b"apple").unwrap().unwrap().version, 3);
}
