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

#[test]
fn memtable_readers_see_whole_batches_while_the_writer_applies() {
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
    for view in (1..BATCHES).step_by(997) {
        check_view(&mt, view);
    }
}
