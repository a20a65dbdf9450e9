//! The child: opens the Db and runs the workload from several threads until it is killed,
//! printing `S <thread> <seq> <kind> [<key>]` before each operation and `A <thread> <seq>
//! <lsn>` (acknowledged), `F <thread> <seq>` (certainly not applied: a conflict after the
//! retries) or `E <thread> <seq> <error>` (then it exits) after it. Lines are flushed one
//! by one, so the parent holds every answer the child had when it died.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use popdb_db::{
    Db, DbOptions, Durability, EngineKind, Error, TableOptions, WriteBatch, WriteOptions,
};
use popdb_testkit::Rng;

/// The tables, one per engine; every write goes to both.
pub(crate) const TABLES: [(&str, EngineKind); 2] =
    [("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)];
/// Keys per writer thread.
pub(crate) const KEYS_PER_THREAD: u64 = 16;
/// Sequence numbers of cycle `c` start at `c * SEQ_PER_CYCLE`.
pub(crate) const SEQ_PER_CYCLE: u64 = 1 << 32;

/// The key of thread `t`'s `j`th slot.
pub(crate) fn key(thread: u64, j: u64) -> String {
    format!("t{thread}-k{j}")
}

/// The value operation `seq` of thread `t` puts, padded so that flushes happen.
pub(crate) fn value(thread: u64, seq: u64) -> String {
    format!(
        "t{thread}:{seq}:{}",
        "x".repeat(64 + (seq % 5) as usize * 40)
    )
}

pub(crate) fn options() -> DbOptions {
    DbOptions {
        reserve_bytes: 1 << 20,
        ..DbOptions::default()
    }
}

pub(crate) fn run(dir: &Path, seed: u64, writers: u64, cycle: u64) -> Result<(), String> {
    let db = Arc::new(Db::open(dir, options()).map_err(|e| format!("open: {e}"))?);
    for (name, engine) in TABLES {
        if db.describe(name).is_err() {
            match db.create_table(name, TableOptions::new(engine)) {
                Ok(_) | Err(Error::TableExists(_)) => {}
                Err(e) => return Err(format!("create table {name}: {e}")),
            }
        }
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    say(&out, "ready");
    let threads: Vec<_> = (0..writers)
        .map(|thread| {
            let (db, out) = (Arc::clone(&db), Arc::clone(&out));
            std::thread::spawn(move || writer(&db, &out, seed, thread, cycle))
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| "a writer thread panicked".to_string())??;
    }
    Ok(())
}

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    let mut out = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A parent that went away ends the child at the next line; nothing to report to.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

fn writer(
    db: &Db,
    out: &Mutex<std::io::Stdout>,
    seed: u64,
    thread: u64,
    cycle: u64,
) -> Result<(), String> {
    let mut rng = Rng(seed ^ (thread + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for i in 0.. {
        let seq = cycle * SEQ_PER_CYCLE + i;
        let durability = if rng.chance(3) {
            Durability::NoSync
        } else {
            Durability::Sync
        };
        let choice = rng.below(20);
        let result = if choice < 15 {
            let j = rng.below(KEYS_PER_THREAD);
            let put = choice < 12;
            let key = key(thread, j);
            let mut batch = WriteBatch::new();
            if put {
                say(out, &format!("S {thread} {seq} P {j}"));
                let value = value(thread, seq);
                for (table, _) in TABLES {
                    batch.put(table, key.clone(), value.clone());
                }
            } else {
                say(out, &format!("S {thread} {seq} D {j}"));
                for (table, _) in TABLES {
                    batch.delete(table, key.clone());
                }
            }
            db.write_with(
                batch,
                WriteOptions {
                    durability: Some(durability),
                },
            )
        } else {
            say(out, &format!("S {thread} {seq} C"));
            db.transaction(8, |txn| {
                let n = txn.get("lsm", b"counter")?.map_or(0, |v| parse_count(&v));
                for (table, _) in TABLES {
                    txn.put(table, "counter", (n + 1).to_string());
                }
                Ok(())
            })
            .map(|((), lsn)| lsn)
        };
        match result {
            Ok(lsn) => say(out, &format!("A {thread} {seq} {lsn}")),
            Err(Error::Conflict { .. }) => say(out, &format!("F {thread} {seq}")),
            Err(error) => {
                say(out, &format!("E {thread} {seq} {error}"));
                return Err(format!("thread {thread}: {error}"));
            }
        }
    }
    Ok(())
}

/// The counter's value (0 for anything that is not a number, which the check reports).
pub(crate) fn parse_count(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
