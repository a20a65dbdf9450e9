//! sled 0.34 as a comparison target, set as the notes ran it: a 256 MiB cache, its defaults
//! otherwise, one insert per key, and `flush()` at the end of a load. (sled's flush syncs
//! with `sync_file_range`, weaker than an fdatasync: the notes say so too.)

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::target::{Reader, Target};

const CACHE_BYTES: u64 = 256 << 20;
/// sled releases its file lock from a background thread some time after the last handle is
/// dropped, so a reopen just after a close can find the lock still held: it retries this
/// many times, 10 ms apart.
const LOCKED_RETRIES_MAX: u32 = 500;

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
        let mut retries = 0;
        loop {
            let config = sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_BYTES)
                .mode(sled::Mode::LowSpace)
                .use_compression(false)
                .flush_every_ms(Some(500));
            match config.open() {
                Ok(db) => return Ok(SledTarget { db }),
                // sled reports a held lock as an `ErrorKind::Other` with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && retries < LOCKED_RETRIES_MAX =>
                {
                    retries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e).context("open sled"),
            }
        }
    }
}

impl Target for SledTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        for (k, v) in batch {
            self.db.insert(k.as_slice(), v.as_slice())?;
        }
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
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
