//! RocksDB (crate rocksdb 0.25) as a comparison target, set as the notes ran it: a 256 MiB
//! LRU block cache, LZ4, a 10-bit bloom filter, the WAL on without a sync, one put per key,
//! and the WAL flushed and synced at the end of a load. Behind the `rocksdb` feature only:
//! its C++ build takes about 13 minutes here and needs clang and libclang-dev.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteOptions};
use serde_json::{Value, json};

use super::target::{Reader, Target};

const CACHE_BYTES: usize = 256 << 20;
const BLOOM_BITS_PER_KEY: f64 = 10.0;

pub fn settings() -> Value {
    json!({
        "engine": "RocksDB through the rocksdb crate 0.25",
        "block_cache": "LRU, 256 MiB",
        "block_cache_bytes": CACHE_BYTES,
        "compression": "LZ4",
        "bloom_bits_per_key": BLOOM_BITS_PER_KEY,
        "bloom_block_based": false,
        "options": "Options::default otherwise, create_if_missing",
        "writes": "DB::put_opt per key, WAL on, sync=false",
        "end_of_load": "DB::flush_wal(true)",
        "sync_write": "DB::put_opt with sync=true",
        "reads": "DB::get_pinned, DB::raw_iterator seek + next",
    })
}

pub struct RocksdbTarget {
    db: DB,
    no_sync: WriteOptions,
    sync: WriteOptions,
}

impl RocksdbTarget {
    pub fn open(dir: &Path) -> Result<RocksdbTarget> {
        let cache = Cache::new_lru_cache(CACHE_BYTES);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_block_based_table_factory(&table);
        let db = DB::open(&options, dir).context("open RocksDB")?;
        let mut no_sync = WriteOptions::default();
        no_sync.set_sync(false);
        no_sync.disable_wal(false);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        sync.disable_wal(false);
        Ok(RocksdbTarget { db, no_sync, sync })
    }
}

impl Target for RocksdbTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        for (k, v) in batch {
            self.db.put_opt(k, v, &self.no_sync)?;
        }
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.sync)?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(RocksdbReader { db: &self.db }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        drop(self.db);
        Ok(())
    }
}

struct RocksdbReader<'a> {
    db: &'a DB,
}

impl Reader for RocksdbReader<'_> {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.db.get_pinned(key)? {
            Some(found) => {
                value.clear();
                value.extend_from_slice(&found);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(key);
        let mut rows = 0;
        while rows < count && it.valid() {
            std::hint::black_box((it.key(), it.value()));
            rows += 1;
            it.next();
        }
        it.status()?;
        Ok(rows)
    }
}
