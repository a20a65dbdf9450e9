//! fjall 3 as a comparison target, set as the notes ran it: a 256 MiB cache, otherwise its
//! defaults (the journal written to the OS buffers, LZ4 blocks, its own background
//! flushes and compactions), one insert per key, and `persist(SyncAll)` at the end of a
//! load.

use std::path::Path;

use anyhow::{Context, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde_json::{Value, json};

use super::target::{Reader, Target};

const CACHE_BYTES: u64 = 256 << 20;
const KEYSPACE: &str = "bench";

pub fn settings() -> Value {
    json!({
        "engine": "fjall 3",
        "cache_size": CACHE_BYTES,
        "keyspace": "KeyspaceCreateOptions::default (LZ4 data blocks, leveled compaction)",
        "database": "Database::builder defaults otherwise (journal to OS buffers, \
            background workers)",
        "writes": "Keyspace::insert per key",
        "end_of_load": "Database::persist(PersistMode::SyncAll)",
        "sync_write": "Keyspace::insert, then Database::persist(PersistMode::SyncData)",
        "reads": "Keyspace::get and Keyspace::range on the latest data",
    })
}

pub struct FjallTarget {
    db: Database,
    keyspace: Keyspace,
}

impl FjallTarget {
    pub fn open(dir: &Path) -> Result<FjallTarget> {
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .open()
            .context("open fjall")?;
        let keyspace = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        Ok(FjallTarget { db, keyspace })
    }
}

impl Target for FjallTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        for (k, v) in batch {
            self.keyspace.insert(k.as_slice(), v.as_slice())?;
        }
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.keyspace.insert(key, value)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(FjallReader {
            keyspace: &self.keyspace,
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

struct FjallReader<'a> {
    keyspace: &'a Keyspace,
}

impl Reader for FjallReader<'_> {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.keyspace.get(key)? {
            Some(found) => {
                value.clear();
                value.extend_from_slice(&found);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize> {
        let mut rows = 0;
        for guard in self.keyspace.range(key..).take(count) {
            std::hint::black_box(guard.into_inner()?);
            rows += 1;
        }
        Ok(rows)
    }
}
