//! PopDB embedded in a program: opens (or creates) the database in `./popdb-data`, makes
//! two tables on first use, writes an atomic batch across them, runs a transaction, reads
//! back, and prints what recovery did and the Db's positions. Run it twice: the second run
//! finds the first one's data.
//!
//! `cargo run --release -p popdb-db --example embedded [DIR]`

use popdb_db::{Db, DbOptions, EngineKind, Scan, TableOptions, WriteBatch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "popdb-data".to_string());
    let db = Db::open(&dir, DbOptions::default())?;
    let recovery = db.recovery();
    println!(
        "opened {dir}: {} records replayed in {:?}, visible LSN {}, torn tail {:?}",
        recovery.records_replayed,
        recovery.elapsed,
        recovery.visible_lsn,
        recovery.wal.torn_tail.as_ref().map(|t| t.lost)
    );
    for (name, engine) in [("routes", EngineKind::Btree), ("hits", EngineKind::Lsm)] {
        if db.describe(name).is_err() {
            let table = db.create_table(name, TableOptions::new(engine))?;
            println!("created table {name} ({engine:?}), id {}", table.id);
        }
    }

    // One atomic batch across both tables: one log record, one LSN, synced.
    let mut batch = WriteBatch::new();
    batch
        .put("routes", "/index.html", "origin-a")
        .put("hits", "/index.html", "0");
    let lsn = db.write(batch)?;
    println!("batch committed at LSN {lsn}");

    // A transaction: read, compute, write; retried on conflict.
    let (visits, lsn) = db.transaction(5, |txn| {
        let visits = txn
            .get("hits", b"total")?
            .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
        txn.put("hits", "total", (visits + 1).to_le_bytes());
        Ok(visits + 1)
    })?;
    println!("visit {visits} counted at LSN {lsn}");

    for entry in db.scan("routes", &Scan::prefix("/"))? {
        println!(
            "routes {} = {} (version {})",
            String::from_utf8_lossy(&entry.key),
            String::from_utf8_lossy(&entry.value),
            entry.version
        );
    }
    let checkpoint = db.checkpoint()?;
    let stats = db.stats();
    println!(
        "checkpoint at LSN {checkpoint}; visible {}, durable {}, log pinned by {}",
        stats.visible_lsn, stats.durable_lsn, stats.log_pinned_by
    );
    db.close()?;
    Ok(())
}
