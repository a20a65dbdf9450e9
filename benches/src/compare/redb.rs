//! redb 4 as a comparison target, set as the notes ran it: a 256 MiB cache, one write
//! transaction per 1,000 keys with `Durability::None`, and the end of a load one empty
//! transaction with `Durability::Immediate` (which makes every earlier one durable).

use std::path::Path;

use anyhow::{Context, Result};
use redb::{
    ConcurrencyMode, Database, Durability, ReadOnlyTable, ReadableDatabase, TableDefinition,
};
use serde_json::{Value, json};

use super::target::{Reader, Target};

const CACHE_BYTES: usize = 256 << 20;
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");
/// The database file in the target's directory.
const FILE_NAME: &str = "bench.redb";

pub fn settings() -> Value {
    json!({
        "engine": "redb 4",
        "cache_size": CACHE_BYTES,
        "concurrency_mode": "ExclusiveWriter",
        "check_integrity_on_open": false,
        "page_size": "4 KiB (redb's fixed default)",
        "writes": "one write transaction per 1,000 keys, Durability::None",
        "end_of_load": "one empty write transaction with Durability::Immediate",
        "sync_write": "one write transaction per key, Durability::Immediate",
        "reads": "one read transaction and table per read workload; get, range",
    })
}

pub struct RedbTarget {
    db: Database,
}

impl RedbTarget {
    pub fn open(dir: &Path) -> Result<RedbTarget> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_concurrency_mode(ConcurrencyMode::ExclusiveWriter)
            .set_check_integrity_on_open(false)
            .create(dir.join(FILE_NAME))
            .context("open redb")?;
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(RedbTarget { db })
    }

    fn commit(&self, batch: &[(Vec<u8>, Vec<u8>)], durability: Durability) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (k, v) in batch {
                table.insert(k.as_slice(), v.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Target for RedbTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.commit(batch, Durability::None)
    }

    fn finish_load(&mut self) -> Result<()> {
        self.commit(&[], Durability::Immediate)
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.commit(&[(key.to_vec(), value.to_vec())], Durability::Immediate)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        let txn = self.db.begin_read()?;
        Ok(Box::new(RedbReader {
            table: txn.open_table(TABLE)?,
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        drop(self.db);
        Ok(())
    }
}

struct RedbReader {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Reader for RedbReader {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.table.get(key)? {
            Some(found) => {
                value.clear();
                value.extend_from_slice(found.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize> {
        let mut rows = 0;
        for entry in self.table.range::<&[u8]>(key..)?.take(count) {
            let (k, v) = entry?;
            std::hint::black_box((k.value(), v.value()));
            rows += 1;
        }
        Ok(rows)
    }
}
