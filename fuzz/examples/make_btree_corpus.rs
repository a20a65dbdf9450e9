//! Writes the seed corpus of fuzz target `btree_page_decode` with the real page builders,
//! never by hand: single pages of every type (empty and full leaves, leaves with overflow
//! references and tombstones, branches, overflow pages, free-list pages, metas) and small
//! whole files (two metas, a tree, an overflow chain, a free list), at 512 bytes and larger
//! page sizes, plus the golden fixture btree/tests/fixtures/v1/tiny.btree. Each file is
//! prefixed with the control bytes fuzz/checks/btree_page_decode.rs reads: `c0` (bit 0:
//! re-seal every page's checksum) and `c1` (page size `512 << (c1 & 7)`).
//!
//! Run from fuzz/: `cargo run --example make_btree_corpus -- corpus/btree_page_decode`.

// A developer's tool that writes a scratch folder.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use popdb_btree::{
    BranchBuilder, FreeEntry, FreeListPage, LeafBuilder, LeafEntry, LeafValue, Meta, OverflowRef,
    PageId, PageRef, PageSize, RootRef, TxnId, page_checksum, write_overflow_chain,
};

const TINY: &[u8] = include_bytes!("../../btree/tests/fixtures/v1/tiny.btree");

/// splitmix64, so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Leaf `id` of up to `count` entries with keys `k000`, `k001`...: inline values, tombstones
/// and overflow references, as many as fit.
fn leaf(rng: &mut Rng, size: PageSize, id: u64, count: u64) -> Vec<u8> {
    let mut builder = LeafBuilder::new(size);
    for i in 0..count {
        let key = format!("k{i:03}").into_bytes();
        let inline = vec![b'v'; rng.below(20) as usize];
        let value = match rng.below(5) {
            0 => LeafValue::Tombstone,
            1 => LeafValue::Overflow(OverflowRef {
                first: PageRef {
                    id: PageId(id + 1 + rng.below(6)),
                    checksum: rng.next() as u32,
                },
                value_size: size.leaf_payload_max() as u32 + rng.below(3000) as u32,
            }),
            _ => LeafValue::Inline(&inline),
        };
        let entry = LeafEntry {
            key: &key,
            version: 1 + rng.below(100),
            value,
        };
        if !builder.fits(&entry) {
            break;
        }
        builder.push(&entry);
    }
    builder.finish(PageId(id), TxnId(3)).to_vec()
}

fn branch(size: PageSize, id: u64, count: u64) -> Vec<u8> {
    let child = |i: u64| PageRef {
        id: PageId(100 + i),
        checksum: (i as u32).wrapping_mul(0x0101_0101),
    };
    let mut builder = BranchBuilder::new(size, 1 + (count % 3) as u8, child(0));
    for i in 1..=count {
        let key = format!("s{i:04}").into_bytes();
        if !builder.fits(key.len()) {
            break;
        }
        builder.push(&key, child(i));
    }
    builder.finish(PageId(id), TxnId(4)).to_vec()
}

fn free_list(size: PageSize, id: u64, count: u64, next: Option<PageRef>) -> Vec<u8> {
    let count = count.min(size.free_list_capacity() as u64);
    let entries: Vec<FreeEntry> = (0..count)
        .map(|i| FreeEntry {
            freed_txn: TxnId(1 + i / 4),
            page_id: PageId(200 + i),
        })
        .collect();
    let mut page = vec![0u8; size.bytes()];
    FreeListPage::encode(&mut page, PageId(id), TxnId(9), &entries, next);
    page
}

fn meta_page(meta: &Meta) -> Vec<u8> {
    let mut page = vec![0u8; meta.page_size.bytes()];
    meta.encode(&mut page);
    page
}

/// A whole small file: metas 0 and 1, a leaf root with an overflow value, its chain, a
/// free-list page.
fn file(rng: &mut Rng, size: PageSize) -> Vec<u8> {
    let mut pages = vec![Vec::new(), Vec::new()];
    let value: Vec<u8> = (0..size.overflow_data_max() + 40)
        .map(|i| i as u8)
        .collect();
    let mut buf = vec![0u8; size.bytes()];
    let mut chain = Vec::new();
    let ids = [PageId(3), PageId(4)];
    let r = write_overflow_chain(TxnId(2), &value, &ids, &mut buf, |_, page| {
        chain.push(page.to_vec());
    });
    chain.reverse();
    let mut builder = LeafBuilder::new(size);
    let small = [7u8; 5];
    builder.push(&LeafEntry {
        key: b"a",
        version: 4,
        value: LeafValue::Inline(&small),
    });
    builder.push(&LeafEntry {
        key: b"b",
        version: 5,
        value: LeafValue::Overflow(r),
    });
    builder.push(&LeafEntry {
        key: b"c",
        version: 6,
        value: LeafValue::Tombstone,
    });
    pages.push(builder.finish(PageId(2), TxnId(2)).to_vec());
    pages.extend(chain);
    pages.push(free_list(size, 5, 2, None));
    let root = RootRef {
        page: PageRef {
            id: PageId(2),
            checksum: page_checksum(&pages[2]),
        },
        level: 0,
    };
    let free = PageRef {
        id: PageId(5),
        checksum: page_checksum(&pages[5]),
    };
    let txn = 1 + rng.below(1000);
    let older = Meta {
        watermark: Some(3),
        ..Meta::empty(size, TxnId(txn))
    };
    let newer = Meta {
        page_count: 6,
        entry_count: 3,
        free_page_count: 2,
        watermark: Some(6),
        root: Some(root),
        free_list: Some(free),
        ..Meta::empty(size, TxnId(txn + 1))
    };
    pages[older.page_id().0 as usize] = meta_page(&older);
    pages[newer.page_id().0 as usize] = meta_page(&newer);
    pages.concat()
}

/// An image whose page 2 is `page`, after two empty pages (where the metas would be).
fn at_page_2(page: &[u8]) -> Vec<u8> {
    [vec![0u8; 2 * page.len()], page.to_vec()].concat()
}

fn write(dir: &Path, name: &str, c0: u8, size: PageSize, image: &[u8]) {
    let mut data = vec![c0, size.get().trailing_zeros() as u8 - 9];
    data.extend_from_slice(image);
    std::fs::write(dir.join(name), data).expect("write a corpus file");
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: make_btree_corpus DIR");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("create the corpus folder");
    let mut rng = Rng(0x5eed_b7ee);
    let small = PageSize::new(512).expect("a page size");
    write(dir, "tiny-fixture", 0, small, TINY);
    write(dir, "tiny-fixture-resealed", 1, small, TINY);
    for (i, count) in [0u64, 1, 3, 12, 200].into_iter().enumerate() {
        let page = leaf(&mut rng, small, 2, count);
        write(dir, &format!("leaf-{i}"), 1, small, &at_page_2(&page));
        let page = branch(small, 2, count + 1);
        write(dir, &format!("branch-{i}"), 1, small, &at_page_2(&page));
        let next = (i % 2 == 1).then_some(PageRef {
            id: PageId(9),
            checksum: 1,
        });
        // An empty free-list page is never written (the encoder refuses it).
        let page = free_list(small, 2, count.max(1), next);
        write(dir, &format!("free-list-{i}"), 1, small, &at_page_2(&page));
    }
    let mut buf = vec![0u8; 512];
    let mut chain = Vec::new();
    let value = vec![0x5a; 1000];
    write_overflow_chain(
        TxnId(1),
        &value,
        &[PageId(2), PageId(3), PageId(4)],
        &mut buf,
        |_, p| {
            chain.push(p.to_vec());
        },
    );
    chain.reverse();
    write(
        dir,
        "overflow-chain",
        0,
        small,
        &[vec![0u8; 1024], chain.concat()].concat(),
    );
    write(
        dir,
        "meta-empty",
        0,
        small,
        &meta_page(&Meta::empty(small, TxnId(0))),
    );
    for bytes in [512, 1024, 4096] {
        let size = PageSize::new(bytes).expect("a page size");
        let image = file(&mut rng, size);
        write(dir, &format!("file-{bytes}"), 0, size, &image);
        write(dir, &format!("file-{bytes}-resealed"), 1, size, &image);
    }
    let big = PageSize::new(1024).expect("a page size");
    write(
        dir,
        "leaf-1024-full",
        1,
        big,
        &at_page_2(&leaf(&mut rng, big, 2, 400)),
    );
}
