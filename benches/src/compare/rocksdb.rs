//! RocksDB (crate rocksdb 0.25) as a comparison target, set as the notes ran it: a 256 MiB
//! LRU block cache, LZ4, a 10-bit bloom filter, one put per key. Two ways, one per kind of
//! comparison:
//! - `rocksdb` (the Db's peer: each system's log on, no sync): the WAL on without a sync,
//!   and the WAL flushed and synced at the end of a load (`flush_wal(true)`);
//! - `rocksdb_nowal` (the bare LSM's peer: engine-level runs have no log for anyone): the
//!   WAL off, and the memtable flushed to an SST at the end of a load (`flush`, which
//!   waits), as the bare LSM's checkpoint does.
//!
//! Synced commits (fillsync, `rocksdb` only) put with the WAL on and `sync=true`; every
//! `WriteOptions` field the comparison depends on is set explicitly. Behind the `rocksdb`
//! feature only: its C++ build takes about 13 minutes here and needs clang and
//! libclang-dev.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteOptions};
use serde_json::{Value, json};

use super::target::{Reader, Target};

const CACHE_BYTES: usize = 256 << 20;
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// The settings of the target with its WAL on (`wal`) or off.
pub fn settings(wal: bool) -> Value {
    let (writes, end_of_load) = if wal {
        (
            "DB::put_opt per key, WAL on, sync=false",
            "DB::flush_wal(true)",
        )
    } else {
        (
            "DB::put_opt per key, WAL off (disable_wal), sync=false",
            "DB::flush (waits for the memtable's SST)",
        )
    };
    json!({
        "engine": "RocksDB through the rocksdb crate 0.25",
        "block_cache": "LRU, 256 MiB",
        "block_cache_bytes": CACHE_BYTES,
        "compression": "LZ4",
        "bloom_bits_per_key": BLOOM_BITS_PER_KEY,
        "bloom_block_based": false,
        "options": "Options::default otherwise, create_if_missing",
        "wal": wal,
        "writes": writes,
        "end_of_load": end_of_load,
        "sync_write": "DB::put_opt with the WAL on and sync=true",
        "reads": "DB::get_pinned, DB::raw_iterator seek + next",
    })
}

pub struct RocksdbTarget {
    db: DB,
    /// Whether loads write the WAL (`rocksdb`) or not (`rocksdb_nowal`).
    wal: bool,
}

thread_local! {
    // `WriteOptions` is `Send` but not `Sync` in the crate, and writes come from many
    // threads at once (fillsync, readwhilewriting): each thread keeps its own, made once,
    // so no put allocates options.
    static WAL_NO_SYNC: WriteOptions = write_options(true, false);
    static NO_WAL: WriteOptions = write_options(false, false);
    static WAL_SYNC: WriteOptions = write_options(true, true);
}

/// Puts that write the WAL or not, and wait for its fdatasync or not.
fn write_options(wal: bool, sync: bool) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.disable_wal(!wal);
    options.set_sync(sync);
    options
}

impl RocksdbTarget {
    pub fn open(dir: &Path, wal: bool) -> Result<RocksdbTarget> {
        let cache = Cache::new_lru_cache(CACHE_BYTES);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_block_based_table_factory(&table);
        let db = DB::open(&options, dir).context("open RocksDB")?;
        Ok(RocksdbTarget { db, wal })
    }
}

impl Target for RocksdbTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let put_all = |options: &WriteOptions| -> Result<()> {
            for (k, v) in batch {
                self.db.put_opt(k, v, options)?;
            }
            Ok(())
        };
        if self.wal {
            WAL_NO_SYNC.with(put_all)
        } else {
            NO_WAL.with(put_all)
        }
    }

    fn finish_load(&mut self) -> Result<()> {
        if self.wal {
            self.db.flush_wal(true)?;
        } else {
            self.db.flush()?;
        }
        Ok(())
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        WAL_SYNC.with(|options| self.db.put_opt(key, value, options))?;
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
            // No step past the last row asked for, as LMDB's `take(count)` makes none.
            if rows == count {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(rows)
    }
}
