//! One writer, several readers on one memtable: readers never block and never see a torn
//! batch at a view taken after the batch's LSN was published.
//!
//! The writer keeps two invariants, one per batch: each transfer moves one unit between two
//! accounts (the accounts always sum to `TOTAL`), and each stamp writes the same counter to
//! every key of a group, or deletes the whole group. Readers take a view at the LSN the
//! writer published after `apply` returned, and check both invariants through point reads and
//! scans in both directions, then recheck an old view to see versions are kept.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use popdb_lsm::Memtable;

const ACCOUNTS: u64 = 8;
const START: u64 = 100;
const TOTAL: u64 = ACCOUNTS * START;
const GROUP: u64 = 6;
const BATCHES: u64 = 20_000;
const READERS: usize = 4;

fn account(i: u64) -> Vec<u8> {
    format!("acct{i}").into_bytes()
}

fn group_key(i: u64) -> Vec<u8> {
    format!("grp{i}").into_bytes()
}

fn decode(v: &[u8]) -> u64 {
    u64::from_le_bytes(v.try_into().unwrap())
}

fn writer(mt: &Memtable, published: &AtomicU64, done: &AtomicBool) {
    let mut balances = [START; ACCOUNTS as usize];
    let initial: Vec<_> = (0..ACCOUNTS)
        .map(|i| (account(i), Some(START.to_le_bytes())))
        .collect();
    mt.apply(1, &initial);
    published.store(1, Ordering::Release);
    let mut rng = 0x1234_5678_u64;
    for lsn in 2..BATCHES {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = rng >> 33;
        if lsn % 3 == 0 {
            let counter = (!r.is_multiple_of(3)).then(|| lsn.to_le_bytes());
            let batch: Vec<_> = (0..GROUP).map(|i| (group_key(i), counter)).collect();
            mt.apply(lsn, &batch);
        } else {
            let from = r % ACCOUNTS;
            let to = (from + 1 + (r >> 8) % (ACCOUNTS - 1)) % ACCOUNTS;
            if balances[from as usize] == 0 {
                mt.apply::<Vec<u8>, [u8; 8]>(lsn, &[]);
            } else {
                balances[from as usize] -= 1;
                balances[to as usize] += 1;
                let batch = [
                    (account(from), Some(balances[from as usize].to_le_bytes())),
                    (account(to), Some(balances[to as usize].to_le_bytes())),
                ];
                mt.apply(lsn, &batch);
            }
        }
        published.store(lsn, Ordering::Release);
    }
    done.store(true, Ordering::Release);
}

/// Checks both invariants at `view` through point reads and scans in both directions.
fn check_view(mt: &Memtable, view: u64) {
    let sum: u64 = (0..ACCOUNTS)
        .map(|i| decode(mt.get(&account(i), view).unwrap().value().unwrap()))
        .sum();
    assert_eq!(sum, TOTAL, "point reads at view {view}");
    let accounts: &[u8] = b"acct";
    let end: &[u8] = b"acct\xff";
    let bounds = (
        std::ops::Bound::Included(accounts),
        std::ops::Bound::Excluded(end),
    );
    let forward: Vec<u64> = mt
        .range(bounds, view)
        .map(|e| decode(e.value().unwrap()))
        .collect();
    assert_eq!(
        forward.len() as u64,
        ACCOUNTS,
        "forward scan at view {view}"
    );
    assert_eq!(
        forward.iter().sum::<u64>(),
        TOTAL,
        "forward scan at view {view}"
    );
    let backward: Vec<u64> = mt
        .range_rev(bounds, view)
        .map(|e| decode(e.value().unwrap()))
        .collect();
    assert_eq!(
        backward.iter().rev().copied().collect::<Vec<_>>(),
        forward,
        "at view {view}"
    );

    let group: Vec<_> = (0..GROUP)
        .map(|i| mt.get(&group_key(i), view).map(|e| e.lsn()))
        .collect();
    assert!(
        group.windows(2).all(|w| w[0] == w[1]),
        "torn group at view {view}: {group:?}"
    );
    let scanned: Vec<(u64, Option<u64>)> = mt
        .range_rev(
            (
                std::ops::Bound::Included(&b"grp"[..]),
                std::ops::Bound::Unbounded,
            ),
            view,
        )
        .map(|e| (e.lsn(), e.value().map(decode)))
        .collect();
    assert!(
        scanned.windows(2).all(|w| w[0] == w[1]),
        "torn group scan at view {view}"
    );
    if let Some(&(lsn, value)) = scanned.first() {
        assert_eq!(scanned.len() as u64, GROUP, "group scan at view {view}");
        assert!(
            value.is_none_or(|v| v == lsn),
            "stamp {value:?} written at {lsn}"
        );
    }
}

fn reader(mt: &Memtable, published: &AtomicU64, done: &AtomicBool) -> u64 {
    let mut checks = 0;
    let mut oldest = None;
    while !done.load(Ordering::Acquire) || checks == 0 {
        let view = published.load(Ordering::Acquire);
        if view == 0 {
            std::hint::spin_loop();
            continue;
        }
        assert!(
            mt.max_lsn().unwrap() >= view,
            "memtable published below the writer's view"
        );
        check_view(mt, view);
        let old = *oldest.get_or_insert(view);
        check_view(mt, old);
        checks += 1;
    }
    checks
}

/// What one side of a race does: `(memtable, last published LSN, writer finished)`.
type Writer = fn(&Memtable, &AtomicU64, &AtomicBool);
/// A reader returns how many views it checked.
type Reader = fn(&Memtable, &AtomicU64, &AtomicBool) -> u64;

/// Runs `writer` on this thread against `READERS` threads of `reader` on one memtable, and
/// returns it once every reader has checked at least one view.
fn race(writer: Writer, reader: Reader) -> Arc<Memtable> {
    let mt = Arc::new(Memtable::new());
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (mt, published, done) = (mt.clone(), published.clone(), done.clone());
            thread::spawn(move || reader(&mt, &published, &done))
        })
        .collect();
    writer(&mt, &published, &done);
    for r in readers {
        assert!(
            r.join().unwrap() > 0,
            "every reader checked at least one view"
        );
    }
    mt.check_invariants();
    mt
}

#[test]
fn memtable_readers_see_whole_batches_while_the_writer_applies() {
    let mt = race(writer, reader);
    for view in (1..BATCHES).step_by(997) {
        check_view(&mt, view);
    }
}

const SPREAD_BATCHES: u64 = 3_000;
const SPREAD_KEYS: usize = 8;
const SPREAD_SUM: u64 = 1_000_000;

/// Each batch at LSN `lsn` puts `SPREAD_KEYS` fresh keys whose values sum to `SPREAD_SUM`.
/// A key is a random prefix made unique by the LSN and its index, so a batch's versions land
/// all over the list and every tower level changes under the readers.
fn spread_writer(mt: &Memtable, published: &AtomicU64, done: &AtomicBool) {
    let mut rng = 0x0dd_ba11_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for lsn in 1..=SPREAD_BATCHES {
        let mut left = SPREAD_SUM;
        let batch: Vec<(Vec<u8>, Option<[u8; 8]>)> = (0..SPREAD_KEYS)
            .map(|i| {
                let value = if i + 1 == SPREAD_KEYS {
                    left
                } else {
                    next() % (left + 1)
                };
                left -= value;
                let len = 1 + (next() % 8) as usize;
                let mut key: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                key.extend_from_slice(&lsn.to_le_bytes());
                key.push(i as u8);
                (key, Some(value.to_le_bytes()))
            })
            .collect();
        mt.apply(lsn, &batch);
        published.store(lsn, Ordering::Release);
    }
    done.store(true, Ordering::Release);
}

/// Checks, over `rows` (user key, lsn, value) from one scan at `view`, that every batch at or
/// below the view is whole and none above it shows.
fn check_spread(rows: &[(Vec<u8>, u64, u64)], view: u64, what: &str) {
    let mut per_lsn = std::collections::BTreeMap::<u64, (usize, u64)>::new();
    for (_, lsn, value) in rows {
        assert!(*lsn <= view, "{what}: version at {lsn} above view {view}");
        let slot = per_lsn.entry(*lsn).or_default();
        slot.0 += 1;
        slot.1 += value;
    }
    assert_eq!(
        per_lsn.len() as u64,
        view,
        "{what}: batches seen at view {view}"
    );
    for (lsn, (count, sum)) in per_lsn {
        assert_eq!(count, SPREAD_KEYS, "{what}: batch {lsn} at view {view}");
        assert_eq!(sum, SPREAD_SUM, "{what}: batch {lsn} at view {view}");
    }
}

fn spread_reader(mt: &Memtable, published: &AtomicU64, done: &AtomicBool) -> u64 {
    let mut checks = 0;
    while !done.load(Ordering::Acquire) || checks == 0 {
        let view = published.load(Ordering::Acquire);
        let forward: Vec<(Vec<u8>, u64, u64)> = mt
            .range(.., view)
            .map(|e| (e.user_key().to_vec(), e.lsn(), decode(e.value().unwrap())))
            .collect();
        assert!(
            forward.windows(2).all(|w| w[0].0 < w[1].0),
            "forward scan out of order at view {view}"
        );
        check_spread(&forward, view, "forward");
        let mut backward: Vec<(Vec<u8>, u64, u64)> = mt
            .range_rev(.., view)
            .map(|e| (e.user_key().to_vec(), e.lsn(), decode(e.value().unwrap())))
            .collect();
        backward.reverse();
        assert_eq!(backward, forward, "backward scan at view {view}");
        for (key, lsn, value) in forward.iter().step_by(97) {
            let got = mt.get(key, view).unwrap();
            assert_eq!((got.lsn(), decode(got.value().unwrap())), (*lsn, *value));
        }
        // A scan past the published LSN races the writer: it must still be strictly ordered
        // both ways, with no version seen twice.
        let racing: Vec<Vec<u8>> = mt
            .range(.., u64::MAX)
            .map(|e| e.user_key().to_vec())
            .collect();
        assert!(
            racing.windows(2).all(|w| w[0] < w[1]),
            "racing forward scan"
        );
        let racing_back: Vec<Vec<u8>> = mt
            .range_rev(.., u64::MAX)
            .map(|e| e.user_key().to_vec())
            .collect();
        assert!(
            racing_back.windows(2).all(|w| w[0] > w[1]),
            "racing backward scan"
        );
        checks += 1;
    }
    checks
}

#[test]
fn memtable_readers_see_whole_spread_batches_while_the_writer_applies() {
    let mt = race(spread_writer, spread_reader);
    assert_eq!(mt.len() as u64, SPREAD_BATCHES * SPREAD_KEYS as u64);
    for view in [1, SPREAD_BATCHES / 2, SPREAD_BATCHES] {
        let rows: Vec<(Vec<u8>, u64, u64)> = mt
            .range(.., view)
            .map(|e| (e.user_key().to_vec(), e.lsn(), decode(e.value().unwrap())))
            .collect();
        check_spread(&rows, view, "final");
    }
}
