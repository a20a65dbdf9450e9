//! The one adapter trait every engine the comparison measures sits behind (STYLE.md section
//! 11), and the list of targets: PopDB's bare engines (`lsm`, `btree`), PopDB's Db with a
//! table of each engine (`db_lsm`, `db_btree`), and the peers, each compiled only with its
//! cargo feature (`lmdb`, `redb`, `fjall`, `sled`, `rocksdb`). RocksDB runs twice: `rocksdb`
//! with its WAL on (the Db's peer: log on, no sync) and `rocksdb_nowal` with it off (the bare
//! LSM's peer: engine-level runs have no log for anyone).
//!
//! Invariants: a target is opened on a directory that only it uses; `finish_load` leaves
//! everything written in the target's own files on disk (synced), so that a close and reopen
//! finds it; a reader sees everything written before it was made.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::Value;

/// The shape of the data every target loads: key and value sizes in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub key_size: usize,
    pub value_size: usize,
}

/// An engine open on its directory. Shared between threads by the concurrent workloads
/// (readwhilewriting, fillsync with many writers), so every write takes `&self`: each
/// adapter serializes what its engine needs serialized (PopDB's LSN order; the peers
/// their own write locks).
pub trait Target: Sync {
    /// Writes `batch` (keys in any order, each once) as one write without a sync: one
    /// transaction, batch or apply, as `TargetKind::batch_keys` says the loads group them.
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;

    /// Ends a load (timed with it): makes every write so far durable in the target's own
    /// files, the way the notes ran each engine (a checkpoint, a flush, a sync).
    fn finish_load(&mut self) -> Result<()>;

    /// Untimed work after a load, before its bytes on disk are counted (PopDB's LSM drains
    /// its flushes and compactions; the Db its background work). Default: nothing.
    fn settle(&mut self) -> Result<()> {
        Ok(())
    }

    /// One key written and made durable before returning (an fdatasync or the engine's
    /// equivalent), callable from many threads at once: where the engine has group commit,
    /// concurrent calls share syncs. Used by fillsync on a target opened with
    /// `TargetKind::open_synced`.
    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// A reader over everything written so far (one snapshot or read transaction). The
    /// db_bench reads hold one for a whole workload; YCSB and readwhilewriting make a new
    /// one often, so that reads see recent writes.
    fn reader(&self) -> Result<Box<dyn Reader + '_>>;

    /// Bytes the engine wrote to its files per byte of keys and values written to it, since
    /// it was opened, where the engine counts them (`None` where it does not).
    fn write_amplification(&self) -> Option<f64> {
        None
    }

    /// Closes the target, waiting for what it does on close.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Point and range reads on one snapshot.
pub trait Reader {
    /// Copies the value of `key` into `value`; false if absent.
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool>;

    /// Seeks to the first key at or after `key` and reads up to `count` entries (key and
    /// value touched); returns how many it read.
    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize>;
}

/// Every target the driver knows, compiled in or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    Lsm,
    Btree,
    DbLsm,
    DbBtree,
    Rocksdb,
    RocksdbNoWal,
    Lmdb,
    Redb,
    Fjall,
    Sled,
}

impl TargetKind {
    pub const ALL: [TargetKind; 10] = [
        TargetKind::Lsm,
        TargetKind::Btree,
        TargetKind::DbLsm,
        TargetKind::DbBtree,
        TargetKind::Rocksdb,
        TargetKind::RocksdbNoWal,
        TargetKind::Lmdb,
        TargetKind::Redb,
        TargetKind::Fjall,
        TargetKind::Sled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Lsm => "lsm",
            TargetKind::Btree => "btree",
            TargetKind::DbLsm => "db_lsm",
            TargetKind::DbBtree => "db_btree",
            TargetKind::Rocksdb => "rocksdb",
            TargetKind::RocksdbNoWal => "rocksdb_nowal",
            TargetKind::Lmdb => "lmdb",
            TargetKind::Redb => "redb",
            TargetKind::Fjall => "fjall",
            TargetKind::Sled => "sled",
        }
    }

    pub fn parse(name: &str) -> Result<TargetKind> {
        match TargetKind::ALL.into_iter().find(|t| t.name() == name) {
            Some(t) => Ok(t),
            None => bail!("unknown target {name:?}"),
        }
    }

    /// Whether this build has the target: PopDB's always; a peer with its cargo feature.
    pub fn compiled(self) -> bool {
        match self {
            TargetKind::Lsm | TargetKind::Btree | TargetKind::DbLsm | TargetKind::DbBtree => true,
            TargetKind::Rocksdb | TargetKind::RocksdbNoWal => cfg!(feature = "rocksdb"),
            TargetKind::Lmdb => cfg!(feature = "lmdb"),
            TargetKind::Redb => cfg!(feature = "redb"),
            TargetKind::Fjall => cfg!(feature = "fjall"),
            TargetKind::Sled => cfg!(feature = "sled"),
        }
    }

    /// The cargo feature that compiles a peer in (`None` for PopDB's targets).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            TargetKind::Lsm | TargetKind::Btree | TargetKind::DbLsm | TargetKind::DbBtree => None,
            TargetKind::Rocksdb | TargetKind::RocksdbNoWal => Some("rocksdb"),
            TargetKind::Lmdb => Some("lmdb"),
            TargetKind::Redb => Some("redb"),
            TargetKind::Fjall => Some("fjall"),
            TargetKind::Sled => Some("sled"),
        }
    }

    /// Keys per write in the loads, as the notes ran each peer: one transaction per 1,000
    /// keys for redb and LMDB (and PopDB's B+tree, whose apply is its transaction; and the
    /// Db, as `popdb-bench db` drives it), one put per key for the LSMs and sled.
    pub fn batch_keys(self) -> usize {
        match self {
            TargetKind::Btree
            | TargetKind::DbLsm
            | TargetKind::DbBtree
            | TargetKind::Lmdb
            | TargetKind::Redb => 1_000,
            TargetKind::Lsm
            | TargetKind::Rocksdb
            | TargetKind::RocksdbNoWal
            | TargetKind::Fjall
            | TargetKind::Sled => 1,
        }
    }

    /// Whether fillsync means something for the target: not for PopDB's bare engines,
    /// which have no log (a durable write would be a checkpoint per key), nor for RocksDB
    /// with its WAL off.
    pub fn has_synced_commits(self) -> bool {
        !matches!(
            self,
            TargetKind::Lsm | TargetKind::Btree | TargetKind::RocksdbNoWal
        )
    }

    /// Opens the target for synced commits (fillsync): as `open`, except that LMDB keeps
    /// its default flags (the commit itself syncs) instead of `MDB_NOSYNC`.
    pub fn open_synced(self, dir: &Path) -> Result<Box<dyn Target>> {
        match self {
            TargetKind::Lmdb => super::peers::open_synced(self, dir),
            _ => self.open(dir),
        }
    }

    /// Opens the target on `dir` (creating it if empty), every option set explicitly.
    pub fn open(self, dir: &Path) -> Result<Box<dyn Target>> {
        match self {
            TargetKind::Lsm => Ok(Box::new(super::popdb::LsmTarget::open(dir)?)),
            TargetKind::Btree => Ok(Box::new(super::popdb::BtreeTarget::open(dir)?)),
            TargetKind::DbLsm => Ok(Box::new(super::popdb_db::DbTarget::open(
                dir,
                popdb_db::EngineKind::Lsm,
            )?)),
            TargetKind::DbBtree => Ok(Box::new(super::popdb_db::DbTarget::open(
                dir,
                popdb_db::EngineKind::Btree,
            )?)),
            peer => super::peers::open(peer, dir),
        }
    }

    /// Every setting of the target, for the JSON and the README.
    pub fn settings(self) -> Value {
        let settings = match self {
            TargetKind::Lsm => super::popdb::lsm_settings(),
            TargetKind::Btree => super::popdb::btree_settings(),
            TargetKind::DbLsm | TargetKind::DbBtree => super::popdb_db::settings(),
            peer => super::peers::settings(peer),
        };
        serde_json::json!({
            "target": self.name(),
            "batch_keys": self.batch_keys(),
            "settings": settings,
        })
    }
}
