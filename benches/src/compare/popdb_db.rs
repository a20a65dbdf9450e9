//! PopDB's Db (popdb-db) as a comparison target, with one table of the chosen engine:
//! `db_lsm` and `db_btree`. Writes go through the shared log without a sync (1,000 keys per
//! `Db::write_with`, as `popdb-bench db` drives it), and the end of a load is a
//! `Db::checkpoint`, which puts the data in the table's files: the engine-level comparison
//! with the bare engines (`db_lsm` against `lsm`). Reads go through one `Db::read_view`
//! per read workload.

use std::ops::Bound;
use std::path::Path;

use anyhow::{Context, Result};
use popdb_db::{
    Db, DbOptions, Direction, Durability, EngineKind, ReadView, Scan, TableOptions, WriteBatch,
    WriteOptions,
};
use serde_json::{Value, json};

use super::target::{Reader, Target};

/// The one table every run writes.
const TABLE: &str = "bench";
/// The Db's block cache: 256 MiB, as the peers' caches in the notes.
const BLOCK_CACHE_BYTES: usize = 256 << 20;
/// Bound on the untimed drain of background work.
const SETTLE_STEPS_MAX: usize = 100_000;
const NO_SYNC: WriteOptions = WriteOptions {
    durability: Some(Durability::NoSync),
};
const SYNC: WriteOptions = WriteOptions {
    durability: Some(Durability::Sync),
};

fn options() -> DbOptions {
    DbOptions {
        block_cache_bytes: BLOCK_CACHE_BYTES,
        background: true,
        ..DbOptions::default()
    }
}

pub fn settings() -> Value {
    let o = options();
    json!({
        "engine": "popdb-db, one table (LSM for db_lsm, B+tree for db_btree)",
        "block_cache_bytes": o.block_cache_bytes,
        "wal": format!("{:?}", o.wal),
        "durability_default": format!("{:?}", o.durability),
        "lsm": format!("{:?}", o.lsm),
        "btree_roots_retained": o.btree_roots_retained,
        "checkpoint_log_bytes": o.checkpoint_log_bytes,
        "checkpoint_interval_seconds": o.checkpoint_interval.as_secs_f64(),
        "memory_budget": o.memory_budget,
        "background": o.background,
        "background_interval_ms": o.background_interval.as_secs_f64() * 1e3,
        "reserve_bytes": o.reserve_bytes,
        "purge_log": o.purge_log,
        "writes": "1,000 keys per Db::write_with, Durability::NoSync (log on, no sync)",
        "end_of_load": "Db::checkpoint (timed); background work drained (untimed)",
        "sync_write": "one key per Db::write_with with Durability::Sync",
        "reads": "one Db::read_view per read workload; ReadView::get_into and ReadView::cursor \
            (entries read in place, as the engines' and peers' iterators)",
    })
}

/// A Db with one table.
pub struct DbTarget {
    db: Db,
}

impl DbTarget {
    pub fn open(dir: &Path, engine: EngineKind) -> Result<DbTarget> {
        let db = Db::open(dir, options()).context("open the Db")?;
        if !db.tables().iter().any(|t| t.name == TABLE) {
            db.create_table(TABLE, TableOptions::new(engine))
                .context("create the table")?;
        }
        Ok(DbTarget { db })
    }
}

impl Target for DbTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let bytes: usize = batch.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut write = WriteBatch::with_capacity(batch.len(), bytes);
        for (k, v) in batch {
            write.put(TABLE, k, v);
        }
        self.db.write_with(write, NO_SYNC)?;
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        self.db.checkpoint()?;
        Ok(())
    }

    fn settle(&mut self) -> Result<()> {
        for _ in 0..SETTLE_STEPS_MAX {
            if !self.db.maintenance_step()? {
                return Ok(());
            }
        }
        anyhow::bail!("the Db's background work did not drain in {SETTLE_STEPS_MAX} steps")
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut write = WriteBatch::new();
        write.put(TABLE, key, value);
        self.db.write_with(write, SYNC)?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(DbReader {
            view: self.db.read_view()?,
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.close().context("close the Db")
    }
}

struct DbReader {
    view: ReadView,
}

impl Reader for DbReader {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        Ok(self.view.get_into(TABLE, key, value)?.is_some())
    }

    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize> {
        let scan = Scan {
            lower: Bound::Included(key.to_vec()),
            upper: Bound::Unbounded,
            prefix: None,
            direction: Direction::Forward,
            limit: count,
        };
        let mut cursor = self.view.cursor(TABLE, &scan)?;
        let mut rows = 0;
        while cursor.valid() {
            std::hint::black_box((cursor.key(), cursor.value(), cursor.version()));
            rows += 1;
            // No step past the last row asked for, as LMDB's `take(count)` makes none.
            if rows == count {
                break;
            }
            cursor.next()?;
        }
        Ok(rows)
    }
}
