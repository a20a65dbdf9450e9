//! LMDB (through heed 0.23) as a comparison target, set as the notes ran it: the OS page
//! cache, a 16 GiB map, `MDB_NOSYNC` with one write transaction per 1,000 keys and an
//! `mdb_env_sync` (`Env::force_sync`) at the end of a load.
//!
//! heed marks opening an environment and setting `MDB_NOSYNC` `unsafe`: the map must not
//! be changed under LMDB by anything else (this process is the only user of its fresh
//! directory, and nothing else opens the file), and `MDB_NOSYNC` gives up durability until
//! the next sync, which `finish_load` makes. fillsync opens the environment with LMDB's
//! default flags instead (`open_synced`): each commit syncs (an fdatasync of the data and a
//! synchronous meta page write), as the notes ran it. Listed in benches/UNSAFE.md.

use std::ops::Bound;
use std::path::Path;

use anyhow::{Context, Result};
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};
use serde_json::{Value, json};

use super::target::{Reader, Target};

/// The map: 16 GiB, as in the notes (address space, not memory).
const MAP_SIZE: usize = 16 << 30;

pub fn settings() -> Value {
    json!({
        "engine": "LMDB 0.9 through heed 0.23",
        "cache": "the OS page cache",
        "map_size": MAP_SIZE,
        "max_dbs": 1,
        "env_flags": "MDB_NOSYNC",
        "writes": "one write transaction per 1,000 keys, MDB_NOSYNC",
        "end_of_load": "Env::force_sync (mdb_env_sync, force)",
        "sync_write": "opened with default flags (no MDB_NOSYNC): one write transaction \
            per key, the commit syncs; LMDB has no group commit (one writer at a time)",
        "reads": "one read transaction per read workload; Database::get, Database::range",
    })
}

/// An LMDB environment with its unnamed database.
pub struct LmdbTarget {
    env: Env,
    db: Database<'static, Bytes, Bytes>,
    /// Opened without `MDB_NOSYNC`: each commit syncs on its own.
    sync_commits: bool,
}

impl LmdbTarget {
    pub fn open(dir: &Path) -> Result<LmdbTarget> {
        LmdbTarget::open_with(dir, false)
    }

    /// Opens with LMDB's default flags: every commit syncs.
    pub fn open_synced(dir: &Path) -> Result<LmdbTarget> {
        LmdbTarget::open_with(dir, true)
    }

    #[expect(
        unsafe_code,
        reason = "heed marks these two calls unsafe; see the module docs"
    )]
    fn open_with(dir: &Path, sync_commits: bool) -> Result<LmdbTarget> {
        let mut options = EnvOpenOptions::new();
        options.map_size(MAP_SIZE).max_dbs(1);
        if !sync_commits {
            // SAFETY: MDB_NOSYNC only delays durability to the explicit sync this adapter
            // makes at the end of every load.
            unsafe {
                options.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: `dir` is a fresh directory this process alone uses; nothing else maps or
        // writes the file while the environment is open.
        let env = unsafe { options.open(dir) }.context("open LMDB")?;
        let wtxn = env.write_txn()?;
        let db: Database<'static, Bytes, Bytes> = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener
                    .create_database(wtxn, None)
                    .map(CommitOrAbort::<_, ()>::Commit)
            })?
            .unwrap_commit();
        Ok(LmdbTarget {
            env,
            db,
            sync_commits,
        })
    }
}

impl Target for LmdbTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        for (k, v) in batch {
            self.db.put(&mut wtxn, k, v)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        self.env.force_sync()?;
        Ok(())
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.db.put(&mut wtxn, key, value)?;
        wtxn.commit()?;
        if !self.sync_commits {
            self.env.force_sync()?;
        }
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(LmdbReader {
            txn: self.env.read_txn()?,
            db: self.db,
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        let LmdbTarget { env, .. } = *self;
        env.prepare_for_closing().wait();
        Ok(())
    }
}

struct LmdbReader<'e> {
    txn: heed::RoTxn<'e, heed::WithTls>,
    db: Database<'static, Bytes, Bytes>,
}

impl Reader for LmdbReader<'_> {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.db.get(&self.txn, key)? {
            Some(found) => {
                value.clear();
                value.extend_from_slice(found);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize> {
        let range = (Bound::Included(key), Bound::Unbounded);
        let mut rows = 0;
        for entry in self.db.range(&self.txn, &range)?.take(count) {
            std::hint::black_box(entry?);
            rows += 1;
        }
        Ok(rows)
    }
}
