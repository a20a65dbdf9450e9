//! Splits and merges at every level on the smallest page, tombstones purged below the
//! watermark, the limits an apply enforces, and a concurrency check: readers and held
//! views see a constant sum while a writer moves amounts between keys and checkpoints.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::path::Path;

use popdb_btree::{Direction, Error, PageSize, ReadView, Tree, TreeOptions};
use popdb_io::{FsRef, SimFs};
use popdb_testkit::Rng;

fn small_tree() -> Tree {
    let options = TreeOptions {
        page_size: PageSize::new(512).unwrap(),
        roots_retained: 2,
    };
    let fs: FsRef = Arc::new(SimFs::new(1));
    Tree::open(fs, Path::new("/t"), options).unwrap()
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

fn count_live(view: &ReadView) -> usize {
    let mut iter = view
        .scan((Bound::Unbounded, Bound::Unbounded), Direction::Forward)
        .unwrap();
    let mut n = 0;
    while iter.valid() {
        n += 1;
        iter.next().unwrap();
    }
    n
}

#[test]
fn tree_grows_and_shrinks_through_every_level() {
    let tree = small_tree();
    let value_len = tree.options().page_size.leaf_payload_max() - key(0).len();
    let keys = 3000;
    let mut rng = Rng(7);
    let mut order: Vec<u64> = (0..keys).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.index(i + 1));
    }
    let mut lsn = 0;
    for chunk in order.chunks(7) {
        lsn += 1;
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| (key(i), Some(vec![b'v'; value_len])))
            .collect();
        tree.apply(lsn, &batch).unwrap();
        tree.check_invariants();
    }
    let full = tree.read_view().stats().unwrap();
    assert!(full.depth >= 4, "{full:?}");
    assert_eq!(full.entry_count, keys);
    // Deleting every value leaves small tombstones: leaves and branches merge level by
    // level.
    for chunk in order.chunks(11) {
        lsn += 1;
        let batch: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            chunk.iter().map(|&i| (key(i), None)).collect();
        tree.apply(lsn, &batch).unwrap();
        tree.check_invariants();
    }
    let emptied = tree.read_view().stats().unwrap();
    assert_eq!(emptied.entry_count, 0);
    assert_eq!(emptied.tombstone_count, keys);
    let branches = |s: &popdb_btree::TreeStats| s.node_count - s.leaf_count;
    assert!(emptied.depth <= full.depth, "{emptied:?} vs {full:?}");
    assert!(
        emptied.leaf_count * 2 < full.leaf_count,
        "{emptied:?} vs {full:?}"
    );
    assert!(
        branches(&emptied) * 2 < branches(&full),
        "{emptied:?} vs {full:?}"
    );
    assert_eq!(count_live(&tree.read_view()), 0);
    // Writing them again splits the small tombstone leaves back.
    lsn += 1;
    let batch: Vec<_> = (0..keys)
        .map(|i| (key(i), Some(vec![b'w'; value_len])))
        .collect();
    tree.apply(lsn, &batch).unwrap();
    tree.check_invariants();
    assert!(tree.read_view().stats().unwrap().node_count > emptied.node_count);
    assert_eq!(count_live(&tree.read_view()), 3000);
}

#[test]
fn tombstones_below_the_watermark_go_and_empty_pages_with_them() {
    let tree = small_tree();
    let keys = 3000;
    let batch: Vec<_> = (0..keys)
        .map(|i| (key(i), Some(b"value".to_vec())))
        .collect();
    tree.apply(1, &batch).unwrap();
    tree.checkpoint(1).unwrap();
    let full = tree.read_view().stats().unwrap();
    let deletes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..keys).map(|i| (key(i), None)).collect();
    tree.apply(2, &deletes).unwrap();
    tree.checkpoint(2).unwrap();
    tree.check_invariants();
    let deleted = tree.read_view().stats().unwrap();
    assert_eq!(
        deleted.tombstone_count, keys,
        "tombstones above the watermark stay"
    );
    // One delete per 10 keys rebuilds every leaf: the tombstones at or below the
    // watermark go, leaves empty and merge, and the tree shrinks.
    let sparse: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        (0..keys).step_by(10).map(|i| (key(i), None)).collect();
    tree.apply(3, &sparse).unwrap();
    tree.check_invariants();
    let shrunk = tree.read_view().stats().unwrap();
    assert_eq!(shrunk.tombstone_count, keys / 10, "{shrunk:?}");
    assert!(shrunk.bytes * 5 < full.bytes, "{shrunk:?} vs {full:?}");
    assert!(
        shrunk.leaf_count * 2 < full.leaf_count,
        "{shrunk:?} vs {full:?}"
    );
    tree.checkpoint(3).unwrap();
    tree.check_invariants();
    let stats = tree.stats();
    assert!(stats.free_pages > full.node_count / 2, "{stats:?}");
    assert_eq!(count_live(&tree.read_view()), 0);
}

#[test]
fn root_collapses_when_its_children_merge() {
    let tree = small_tree();
    let value_len = tree.options().page_size.leaf_payload_max() - key(0).len();
    let batch: Vec<_> = (0..10)
        .map(|i| (key(i), Some(vec![b'v'; value_len])))
        .collect();
    tree.apply(1, &batch).unwrap();
    tree.check_invariants();
    assert_eq!(tree.read_view().stats().unwrap().depth, 2);
    let deletes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..10).map(|i| (key(i), None)).collect();
    tree.apply(2, &deletes).unwrap();
    tree.check_invariants();
    let stats = tree.read_view().stats().unwrap();
    assert_eq!(
        (stats.depth, stats.node_count, stats.tombstone_count),
        (1, 1, 10)
    );
    assert_eq!(count_live(&tree.read_view()), 0);
    assert_eq!(count_live(&tree.read_view_at(1).unwrap()), 10);
}

#[test]
fn apply_over_a_limit_is_refused_and_applies_nothing() {
    let tree = small_tree();
    let size = tree.options().page_size;
    let long_key = vec![b'k'; size.key_size_max() + 1];
    let err = tree
        .apply(1, &[(long_key, Some(b"v".to_vec()))])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "key size",
                ..
            }
        ),
        "{err}"
    );
    let too_big = vec![b'v'; popdb_btree::VALUE_SIZE_MAX as usize + 1];
    let batch = [
        (b"a".to_vec(), Some(b"ok".to_vec())),
        (b"b".to_vec(), Some(too_big)),
    ];
    let err = tree.apply(1, &batch).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: "value size",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(tree.last_applied(), None);
    assert_eq!(tree.read_view().get(b"a").unwrap(), None);
    let largest = vec![b'w'; popdb_btree::VALUE_SIZE_MAX as usize];
    tree.apply(2, &[(b"big".as_slice(), Some(largest.as_slice()))])
        .unwrap();
    assert_eq!(
        tree.read_view().get(b"big").unwrap().unwrap().value,
        largest
    );
    assert_eq!(
        tree.read_view().stats().unwrap().overflow_value_bytes,
        u64::from(popdb_btree::VALUE_SIZE_MAX)
    );
    tree.check_invariants();
    let max_key = vec![b'k'; size.key_size_max()];
    let value = vec![b'v'; size.leaf_payload_max() - max_key.len()];
    tree.apply(5, &[(max_key.clone(), Some(value.clone()))])
        .unwrap();
    assert_eq!(
        tree.read_view().get(&max_key).unwrap().unwrap().value,
        value
    );
    let err = tree.apply(5, &[(b"x", Some(b"y"))]).unwrap_err();
    assert!(
        matches!(err, Error::LsnNotIncreasing { lsn: 5, floor: 5 }),
        "{err}"
    );
    tree.apply(6, &[(b"k".as_slice(), None::<&[u8]>)]).unwrap();
    let options = TreeOptions {
        roots_retained: 0,
        ..TreeOptions::default()
    };
    let fs: FsRef = Arc::new(SimFs::new(2));
    let err = Tree::open(fs, Path::new("/t"), options).unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
}

#[test]
fn last_write_to_a_key_in_a_batch_wins() {
    let tree = small_tree();
    let batch = [
        (b"a".as_slice(), Some(b"1".as_slice())),
        (b"a", None),
        (b"b", None),
        (b"b", Some(b"2")),
        (b"a", Some(b"3")),
    ];
    tree.apply(1, &batch).unwrap();
    let view = tree.read_view();
    assert_eq!(view.get(b"a").unwrap().unwrap().value, b"3");
    assert_eq!(view.get(b"b").unwrap().unwrap().value, b"2");
    assert_eq!(view.stats().unwrap().entry_count, 2);
}

const ACCOUNTS: u64 = 200;
const BALANCE: u64 = 1000;

fn sum(view: &ReadView) -> u64 {
    let mut iter = view.prefix(b"acct", Direction::Forward).unwrap();
    let mut total = 0;
    let mut count = 0;
    while iter.valid() {
        total += u64::from_le_bytes(iter.value().try_into().unwrap());
        count += 1;
        iter.next().unwrap();
    }
    assert_eq!(count, ACCOUNTS);
    total
}

#[test]
fn readers_and_held_views_see_a_constant_sum_under_writes_and_checkpoints() {
    let tree = Arc::new(small_tree());
    let acct = |i: u64| format!("acct{i:05}").into_bytes();
    let init: Vec<_> = (0..ACCOUNTS)
        .map(|i| (acct(i), Some(BALANCE.to_le_bytes().to_vec())))
        .collect();
    tree.apply(1, &init).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (tree, done) = (Arc::clone(&tree), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut checks = 0;
                while !done.load(Ordering::Acquire) {
                    let view = tree.read_view();
                    assert_eq!(sum(&view), ACCOUNTS * BALANCE, "reader {r}");
                    if checks % 16 == 0 {
                        held.push(view);
                    }
                    checks += 1;
                }
                for view in &held {
                    assert_eq!(sum(view), ACCOUNTS * BALANCE, "held view of reader {r}");
                    view.check_invariants();
                }
                checks
            })
        })
        .collect();
    let mut rng = Rng(99);
    let view = tree.read_view();
    let mut balances = vec![BALANCE; usize::try_from(ACCOUNTS).unwrap()];
    for lsn in 2..2000 {
        let (from, to) = (rng.index(balances.len()), rng.index(balances.len()));
        let amount = rng.below(balances[from] + 1);
        balances[from] -= amount;
        balances[to] += amount;
        let batch = [
            (acct(from as u64), Some(balances[from].to_le_bytes())),
            (acct(to as u64), Some(balances[to].to_le_bytes())),
        ];
        tree.apply(lsn, &batch).unwrap();
        // Checkpoints go on under the readers: their views and cursors keep the pages
        // they reach from being reused.
        if lsn % 97 == 0 {
            tree.checkpoint(lsn - rng.below(2)).unwrap();
        }
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert_eq!(sum(&view), ACCOUNTS * BALANCE);
    assert_eq!(sum(&tree.read_view()), ACCOUNTS * BALANCE);
    tree.check_invariants();
}
