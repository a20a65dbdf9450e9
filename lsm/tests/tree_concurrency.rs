//! Readers and read views during heavy writes, flushes, compactions and checkpoints see
//! consistent data: a writer moves amounts between accounts in atomic batches (the total
//! never changes) while a scheduler thread flushes and compacts, and reader threads check
//! the total through scans both ways and through point reads, in fresh views and in views
//! held across many writes.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod tree_common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use popdb_io::{FsRef, SimFs};
use popdb_lsm::{Direction, ReadView, Scheduler, Tree};
use popdb_testkit::Rng;

const ACCOUNTS: u64 = 200;
const INITIAL: u64 = 1_000;
const TRANSFERS: u64 = 20_000;

fn account(i: u64) -> Vec<u8> {
    format!("account-{i:05}").into_bytes()
}

fn balance(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// Balances carry padding so memtables fill and flush often.
fn encode(amount: u64) -> Vec<u8> {
    let mut v = amount.to_le_bytes().to_vec();
    v.resize(64, 0xab);
    v
}

fn total_by_scan(view: &ReadView, direction: Direction) -> (u64, u64) {
    let bounds = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    let mut it = view.scan(bounds, direction).unwrap();
    let (mut sum, mut count) = (0, 0);
    while it.valid() {
        sum += balance(it.value());
        count += 1;
        it.next().unwrap();
    }
    (sum, count)
}

fn total_by_gets(view: &ReadView) -> u64 {
    (0..ACCOUNTS)
        .map(|i| balance(&view.get(&account(i)).unwrap().unwrap().value))
        .sum()
}

fn check(view: &ReadView) {
    let expected = ACCOUNTS * INITIAL;
    for direction in [Direction::Forward, Direction::Backward] {
        assert_eq!(
            total_by_scan(view, direction),
            (expected, ACCOUNTS),
            "scan {direction:?} at {}",
            view.lsn()
        );
    }
    assert_eq!(total_by_gets(view), expected, "gets at {}", view.lsn());
}

#[test]
fn tree_readers_see_constant_total_during_writes_and_compactions() {
    let fs: FsRef = Arc::new(SimFs::new(7));
    let tree = Tree::open(fs, Path::new("/bank"), tree_common::tiny_options()).unwrap();
    let scheduler = Scheduler::start();
    scheduler.register(&tree);
    let initial: Vec<_> = (0..ACCOUNTS)
        .map(|i| (account(i), Some(encode(INITIAL))))
        .collect();
    tree.apply(1, &initial).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for reader in 0..2 {
            let (tree, done) = (&tree, &done);
            s.spawn(move || {
                let mut held: Option<ReadView> = None;
                let mut checks = 0;
                while !done.load(Ordering::Acquire) || checks < 10 {
                    let view = tree.read_view();
                    check(&view);
                    if let Some(old) = &held {
                        check(old);
                    }
                    if checks % 7 == reader {
                        held = Some(view);
                    }
                    checks += 1;
                }
            });
        }
        let mut rng = Rng(11);
        let mut balances = vec![INITIAL; ACCOUNTS as usize];
        for lsn in 2..2 + TRANSFERS {
            let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
            if from == to {
                tree.apply::<Vec<u8>, Vec<u8>>(lsn, &[]).unwrap();
                continue;
            }
            let amount = rng.below(balances[from as usize] + 1);
            balances[from as usize] -= amount;
            balances[to as usize] += amount;
            let batch = [
                (account(from), Some(encode(balances[from as usize]))),
                (account(to), Some(encode(balances[to as usize]))),
            ];
            tree.apply(lsn, &batch).unwrap();
            if lsn % 2_000 == 0 {
                tree.checkpoint(lsn - rng.below(10)).unwrap();
            }
        }
        done.store(true, Ordering::Release);
    });
    scheduler.shutdown();
    check(&tree.read_view());
    tree.check_invariants();
    let stats = tree.stats();
    assert!(
        stats.flushes > 10,
        "too few flushes to mean much: {stats:?}"
    );
    assert!(stats.compactions > 5, "too few compactions: {stats:?}");
}

/// Regression. Symptom: with `flush_needs_durable_lsn`, frozen memtables stayed in memory
/// after the owner reported the log durable, until some later write froze another memtable.
/// Cause: `Tree::set_durable_lsn` made flushes possible but did not wake the scheduler, which
/// had gone to sleep finding nothing it could flush.
#[test]
fn tree_scheduler_flushes_once_the_log_becomes_durable() {
    let fs: FsRef = Arc::new(SimFs::new(5));
    let options = popdb_lsm::TreeOptions {
        log_backed: true,
        flush_needs_durable_lsn: true,
        frozen_count_max: 8,
        ..tree_common::tiny_options()
    };
    let tree = Tree::open(fs, Path::new("/durable"), options).unwrap();
    let scheduler = Scheduler::start();
    scheduler.register(&tree);
    let mut lsn = 0;
    while tree.stats().frozen_memtables < 2 {
        lsn += 1;
        tree.apply(lsn, &[(account(lsn), Some(encode(lsn)))])
            .unwrap();
    }
    // Nothing can flush before the log is durable: a step finds no work, whoever runs it.
    assert_eq!(tree.maintenance_step().unwrap(), popdb_lsm::Progress::Idle);
    assert!(tree.stats().frozen_memtables >= 2, "flushed before durable");
    tree.set_durable_lsn(lsn);
    // Bounded: 2,000 polls 5 ms apart, 10 s in all; a flush takes well under a millisecond.
    let mut polls = 0;
    while tree.stats().frozen_memtables > 0 {
        polls += 1;
        assert!(
            polls < 2_000,
            "frozen memtables still waiting 10 s after the log became durable: {:?}",
            tree.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    scheduler.shutdown();
    tree.check_invariants();
}

/// Opens the tree, waiting (boundedly) while an earlier instance still holds it; counts the
/// refusals in `refused`.
fn open_when_free(fs: &FsRef, options: &popdb_lsm::TreeOptions, refused: &mut u64) -> Tree {
    for _ in 0..2_000 {
        match Tree::open(fs.clone(), Path::new("/reopen"), options.clone()) {
            Ok(tree) => return tree,
            Err(popdb_lsm::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::WouldBlock =>
            {
                *refused += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => panic!("reopen failed: {e:?}"),
        }
    }
    panic!("the tree stayed locked for 2 s after it was dropped");
}

/// Regression. Symptom: dropping a tree and opening it again at once, while the scheduler
/// was in the middle of a flush for it, could delete the SST that flush was writing, or have
/// the old and the new instance append to the same manifest at the same offset; a later
/// open then failed (an SST the manifest names is missing, or the manifest is corrupt) or
/// lost checkpointed data. Cause: the scheduler holds the tree while it runs a step, so the
/// old instance outlived the owner's last handle, and nothing kept a second instance off the
/// directory.
#[test]
fn tree_reopen_while_the_scheduler_finishes_a_step_is_safe() {
    let fs: FsRef = Arc::new(SimFs::new(9));
    let options = tree_common::tiny_options();
    let scheduler = Scheduler::start();
    let mut log: Vec<(u64, tree_common::Batch)> = Vec::new();
    let mut rng = Rng(3);
    let mut refused = 0;
    for round in 0..60 {
        let tree = open_when_free(&fs, &options, &mut refused);
        let watermark = tree.watermark().unwrap_or(0);
        for (lsn, batch) in log.iter().filter(|(l, _)| *l > watermark) {
            tree.apply(*lsn, batch).unwrap();
        }
        check_log(&tree.read_view(), &log, round);
        scheduler.register(&tree);
        for i in 0..80 {
            let lsn = log.last().map_or(1, |(l, _)| l + 1);
            let batch = vec![(account(rng.below(ACCOUNTS)), Some(encode(lsn)))];
            tree.apply(lsn, &batch).unwrap();
            log.push((lsn, batch));
            if i == 40 {
                tree.checkpoint(lsn).unwrap();
            }
        }
        // Frozen memtables are being flushed by the scheduler as the tree goes.
        drop(tree);
    }
    scheduler.shutdown();
    println!("reopens refused while the scheduler held the tree: {refused}");
    let tree = open_when_free(&fs, &options, &mut refused);
    let watermark = tree.watermark().unwrap_or(0);
    for (lsn, batch) in log.iter().filter(|(l, _)| *l > watermark) {
        tree.apply(*lsn, batch).unwrap();
    }
    check_log(&tree.read_view(), &log, 60);
    tree.check_invariants();
}

/// Checks that `view` holds, for every account, the last value the log wrote to it.
fn check_log(view: &ReadView, log: &[(u64, tree_common::Batch)], round: usize) {
    let mut last = std::collections::BTreeMap::new();
    for (lsn, batch) in log.iter().filter(|(l, _)| *l <= view.lsn()) {
        for (key, value) in batch {
            last.insert(key.clone(), (value.clone(), *lsn));
        }
    }
    for (key, (value, lsn)) in &last {
        let found = view.get(key).unwrap();
        assert_eq!(
            found.map(|v| (v.value, v.version)),
            value.clone().map(|v| (v, *lsn)),
            "round {round}: {key:?} at view {}",
            view.lsn()
        );
    }
}
