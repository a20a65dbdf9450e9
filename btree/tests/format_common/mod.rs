//! What the page-format tests share: a model of leaf entries, builders over it, random
//! entries and pages for a seeded generator, and the damage helpers (byte flips, re-sealed
//! checksums) the corruption sweeps use.

#![allow(dead_code, reason = "each test file uses part of this module")]

use popdb_btree::{
    BranchBuilder, BranchPage, Error, LeafBuilder, LeafEntry, LeafPage, LeafValue, OverflowRef,
    PageId, PageRef, PageSize, TxnId, VALUE_SIZE_MAX, seal,
};
use popdb_testkit::Rng;

/// Where the pages that random references point at start: above every page id the tests
/// build at, so that a reference never names the page holding it (which builders refuse).
pub const OTHER_PAGES: u64 = 1 << 20;

/// A leaf entry the model owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub version: u64,
    pub value: Value,
}

/// What the model holds for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Inline(Vec<u8>),
    Overflow(OverflowRef),
    Tombstone,
}

impl Entry {
    pub fn as_leaf(&self) -> LeafEntry<'_> {
        let value = match &self.value {
            Value::Inline(v) => LeafValue::Inline(v),
            Value::Overflow(r) => LeafValue::Overflow(*r),
            Value::Tombstone => LeafValue::Tombstone,
        };
        LeafEntry {
            key: &self.key,
            version: self.version,
            value,
        }
    }

    pub fn from_leaf(e: &LeafEntry<'_>) -> Self {
        let value = match e.value {
            LeafValue::Inline(v) => Value::Inline(v.to_vec()),
            LeafValue::Overflow(r) => Value::Overflow(r),
            LeafValue::Tombstone => Value::Tombstone,
        };
        Self {
            key: e.key.to_vec(),
            version: e.version,
            value,
        }
    }
}

/// A page size the tests favour: mostly small pages (quick to fill), sometimes larger.
pub fn page_size(rng: &mut Rng) -> PageSize {
    let bytes = match rng.index(8) {
        0..=3 => 512,
        4 | 5 => 1024,
        6 => 4096,
        _ => 1 << (9 + rng.index(8)),
    };
    PageSize::new(bytes).unwrap()
}

/// A key from a small alphabet (so keys share prefixes), now and then near the size limit.
pub fn key(rng: &mut Rng, size: PageSize) -> Vec<u8> {
    let len_max = if rng.chance(16) {
        size.key_size_max() as u64
    } else {
        12
    };
    rng.bytes(len_max, b"ab\x00\xff")
}

/// A value for `key` stored the way the page size requires: inline when it fits the leaf
/// payload, else an overflow reference.
pub fn value(rng: &mut Rng, size: PageSize, key_len: usize) -> Value {
    match rng.index(6) {
        0 => Value::Tombstone,
        1 => {
            let min = size.leaf_payload_max() - key_len + 1;
            let value_size =
                min as u32 + rng.below(u64::from(VALUE_SIZE_MAX) - min as u64 + 1) as u32;
            Value::Overflow(OverflowRef {
                first: PageRef {
                    id: PageId(OTHER_PAGES + rng.below(1 << 20)),
                    checksum: rng.next() as u32,
                },
                value_size,
            })
        }
        _ => {
            let room = size.leaf_payload_max() - key_len;
            let len_max = if rng.chance(8) { room } else { room.min(40) };
            Value::Inline(rng.bytes(len_max as u64, b"xyz\x00"))
        }
    }
}

/// Up to `count` entries with distinct keys, in key order.
pub fn entries(rng: &mut Rng, size: PageSize, count: usize) -> Vec<Entry> {
    let mut out: Vec<Entry> = (0..count)
        .map(|_| {
            let key = key(rng, size);
            let value = value(rng, size, key.len());
            let version = if rng.chance(8) {
                u64::MAX
            } else {
                1 + rng.below(1000)
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

/// A leaf of as many of `entries` as fit, in order; returns the page and how many went in.
pub fn build_leaf(size: PageSize, entries: &[Entry], id: u64, txn: u64) -> (Vec<u8>, usize) {
    let mut builder = LeafBuilder::new(size);
    for e in entries {
        if !builder.fits(&e.as_leaf()) {
            break;
        }
        builder.push(&e.as_leaf());
    }
    builder.check_invariants();
    let n = builder.len();
    (builder.finish(PageId(id), TxnId(txn)).to_vec(), n)
}

/// Every entry of a decoded leaf, front to back.
pub fn leaf_entries(leaf: &LeafPage<'_>) -> Vec<Entry> {
    leaf.entries()
        .map(|e| Entry::from_leaf(&e.unwrap()))
        .collect()
}

/// A branch: its level, children and separators (one fewer than the children).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branch {
    pub level: u8,
    pub children: Vec<PageRef>,
    pub separators: Vec<Vec<u8>>,
}

/// A random child reference.
pub fn child(rng: &mut Rng) -> PageRef {
    PageRef {
        id: PageId(OTHER_PAGES + rng.below(1 << 30)),
        checksum: rng.next() as u32,
    }
}

/// A branch of as many of `separators` (sorted, distinct) as fit, with random children;
/// at least one separator must fit.
pub fn build_branch(
    rng: &mut Rng,
    size: PageSize,
    separators: &[Vec<u8>],
    id: u64,
) -> (Vec<u8>, Branch) {
    let level = 1 + rng.index(31) as u8;
    let mut model = Branch {
        level,
        children: vec![child(rng)],
        separators: Vec::new(),
    };
    let mut builder = BranchBuilder::new(size, level, model.children[0]);
    for sep in separators {
        if !builder.fits(sep.len()) {
            break;
        }
        let c = child(rng);
        builder.push(sep, c);
        model.children.push(c);
        model.separators.push(sep.clone());
    }
    builder.check_invariants();
    (builder.finish(PageId(id), TxnId(5)).to_vec(), model)
}

/// What a decoded branch holds.
pub fn branch_model(page: &BranchPage<'_>) -> Branch {
    Branch {
        level: page.level(),
        children: (0..page.child_count())
            .map(|i| page.child(i).unwrap())
            .collect(),
        separators: (0..page.len())
            .map(|i| page.separator(i).unwrap().to_vec())
            .collect(),
    }
}

/// The bytes with bit pattern `mask` flipped at `at`.
pub fn flipped(page: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut bad = page.to_vec();
    bad[at] ^= mask;
    bad
}

/// The bytes with `mask` flipped at `at`, and the page checksum re-sealed, so that the
/// damage reaches the structure checks behind it.
pub fn flipped_resealed(page: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut bad = flipped(page, at, mask);
    seal(&mut bad);
    bad
}

/// Asserts that `result` is a corruption.
pub fn assert_corruption<T: std::fmt::Debug>(result: Result<T, Error>, context: &str) {
    match result {
        Err(Error::Corruption(_)) => {}
        other => panic!("{context}: expected a corruption, got {other:?}"),
    }
}
