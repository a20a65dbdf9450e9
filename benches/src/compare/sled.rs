//! sled 0.34 as a comparison target, set as the notes ran it: a 256 MiB cache, its defaults
//! otherwise, one insert per key, and `flush()` at the end of a load. (sled's flush syncs
//! with `sync_file_range`, weaker than an fdatasync: the notes say so too.)

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::target::{Reader, Target};

const CACHE_BYTES: u64 = 256 << 20;

pub fn settings() -> Value {
    json!({
        "engine": "sled 0.34",
        "cache_capacity": CACHE_BYTES,
        "mode": "Mode::LowSpace (sled's default)",
        "use_compression": false,
        "flush_every_ms": "Some(500) (sled's default)",
        "writes": "Db::insert per key",
        "end_of_load": "Db::flush",
        "sync_write": "Db::insert, then Db::flush",
        "reads": "Db::get and Db::range on the latest data",
    })
}

pub struct SledTarget {
    db: sled::Db,
}

impl SledTarget {
    pub fn open(dir: &Path) -> Result<SledTarget> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::LowSpace)
            .use_compression(false)
            .flush_every_ms(Some(500))
            .open()
            .context("open sled")?;
        Ok(SledTarget { db })
    }
}

impl Target for SledTarget {
    fn write(&mut self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        for (k, v) in batch {
            self.db.insert(k.as_slice(), v.as_slice())?;
        }
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn write_sync(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(SledReader { db: &self.db }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

struct SledReader<'a> {
    db: &'a sled::Db,
}

impl Reader for SledReader<'_> {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.db.get(key)? {
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
        for entry in self.db.range(key..).take(count) {
            std::hint::black_box(entry?);
            rows += 1;
        }
        Ok(rows)
    }
}
