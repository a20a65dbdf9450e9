//! PopDB's bare engines as comparison targets: the LSM tree (`lsm`) and the B+tree
//! (`btree`), with no log and no sync but the one their checkpoint makes (an engine-level
//! run, as the notes ran the peers: no write-ahead log waited for).
//!
//! - `lsm`: one apply (one LSN) per key, a `Scheduler` doing flushes and compactions in the
//!   background; the end of a load is a checkpoint (the memtable flushed to an SST and the
//!   manifest synced). The drain of the remaining compactions after it is untimed.
//! - `btree`: one apply per 1,000 keys, a checkpoint (page writes, a sync, the meta, a
//!   sync) every 100,000 keys and at the end of a load, as `popdb-bench btree` runs it.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, ensure};
use popdb_io::{FsRef, RealFs};
use serde_json::{Value, json};

use super::target::{Reader, Target};

/// The block cache of the LSM: 256 MiB, as RocksDB's and fjall's in the notes.
const LSM_BLOCK_CACHE_BYTES: usize = 256 << 20;
/// Keys between the B+tree's checkpoints inside a load (there is one at its end too).
const BTREE_CHECKPOINT_KEYS: u64 = 100_000;
/// Bound on the untimed drain of the LSM's flushes and compactions.
const DRAIN_STEPS_MAX: usize = 1_000_000;

fn lsm_options() -> popdb_lsm::TreeOptions {
    popdb_lsm::TreeOptions {
        block_cache: popdb_lsm::BlockCache::new(LSM_BLOCK_CACHE_BYTES),
        log_backed: false,
        flush_needs_durable_lsn: false,
        ..popdb_lsm::TreeOptions::default()
    }
}

fn btree_options() -> popdb_btree::TreeOptions {
    popdb_btree::TreeOptions {
        page_size: popdb_btree::PageSize::DEFAULT,
        roots_retained: popdb_btree::ROOTS_RETAINED_DEFAULT,
    }
}

pub fn lsm_settings() -> Value {
    json!({
        "engine": "popdb-lsm (bare engine, no log)",
        "tree_options": format!("{:?}", lsm_options()),
        "block_cache_bytes": LSM_BLOCK_CACHE_BYTES,
        "writes": "one Tree::apply (one LSN) per key; a Scheduler thread flushes and compacts",
        "end_of_load": "Tree::checkpoint at the last LSN (timed); then compactions drained \
            with maintenance_step (untimed)",
        "sync_write": "Tree::apply then Tree::checkpoint",
        "reads": "one ReadView per read workload",
    })
}

pub fn btree_settings() -> Value {
    json!({
        "engine": "popdb-btree (bare engine, no log)",
        "tree_options": format!("{:?}", btree_options()),
        "writes": "one Tree::apply per 1,000 keys; a checkpoint every 100,000 keys",
        "checkpoint_keys": BTREE_CHECKPOINT_KEYS,
        "end_of_load": "Tree::checkpoint at the last LSN (timed)",
        "sync_write": "Tree::apply then Tree::checkpoint",
        "reads": "one ReadView per read workload (the read-only map of the file after a reopen)",
    })
}

fn real_fs() -> FsRef {
    Arc::new(RealFs::new())
}

/// The bare LSM tree.
pub struct LsmTarget {
    tree: popdb_lsm::Tree,
    scheduler: Option<popdb_lsm::Scheduler>,
    /// The last LSN applied. Held across `Tree::apply`, so that concurrent writers apply
    /// in LSN order (the tree refuses an LSN at or below one it has).
    lsn: Mutex<u64>,
}

/// Locks the LSN (a panicked writer leaves a valid number behind).
fn lock(lsn: &Mutex<u64>) -> std::sync::MutexGuard<'_, u64> {
    lsn.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LsmTarget {
    pub fn open(dir: &Path) -> Result<LsmTarget> {
        let tree = popdb_lsm::Tree::open(real_fs(), dir, lsm_options()).context("open LSM")?;
        let lsn = tree.last_applied().unwrap_or(0);
        let scheduler = popdb_lsm::Scheduler::start();
        scheduler.register(&tree);
        Ok(LsmTarget {
            tree,
            scheduler: Some(scheduler),
            lsn: Mutex::new(lsn),
        })
    }
}

impl Target for LsmTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let entries: Vec<(&[u8], Option<&[u8]>)> = batch
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        let mut lsn = lock(&self.lsn);
        self.tree.apply(*lsn + 1, &entries)?;
        *lsn += 1;
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        let lsn = *lock(&self.lsn);
        if lsn > 0 {
            self.tree.checkpoint(lsn)?;
        }
        Ok(())
    }

    fn settle(&mut self) -> Result<()> {
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.shutdown();
        }
        for _ in 0..DRAIN_STEPS_MAX {
            if self.tree.maintenance_step()? == popdb_lsm::Progress::Idle {
                let scheduler = popdb_lsm::Scheduler::start();
                scheduler.register(&self.tree);
                self.scheduler = Some(scheduler);
                return Ok(());
            }
        }
        anyhow::bail!("the LSM's compactions did not drain in {DRAIN_STEPS_MAX} steps")
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut lsn = lock(&self.lsn);
        self.tree.apply(*lsn + 1, &[(key, Some(value))])?;
        *lsn += 1;
        self.tree.checkpoint(*lsn)?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(LsmReader {
            view: self.tree.read_view(),
        }))
    }

    fn write_amplification(&self) -> Option<f64> {
        self.tree.stats().write_amplification()
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.shutdown();
        }
        Ok(())
    }
}

struct LsmReader {
    view: popdb_lsm::ReadView,
}

impl Reader for LsmReader {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        Ok(self.view.get_into(key, value)?.is_some())
    }

    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize> {
        let bounds = (Bound::Included(key.to_vec()), Bound::Unbounded);
        let mut it = self.view.scan(bounds, popdb_lsm::Direction::Forward)?;
        let mut rows = 0;
        while rows < count && it.valid() {
            std::hint::black_box((it.key(), it.value()));
            rows += 1;
            // No step past the last row asked for, as LMDB's `take(count)` makes none.
            if rows == count {
                break;
            }
            it.next()?;
        }
        Ok(rows)
    }
}

/// The bare B+tree.
pub struct BtreeTarget {
    tree: popdb_btree::Tree,
    /// Held across `Tree::apply` and the checkpoints, so that concurrent writers apply in
    /// LSN order.
    writer: Mutex<BtreeWriter>,
}

#[derive(Debug)]
struct BtreeWriter {
    lsn: u64,
    keys_since_checkpoint: u64,
    /// Key and value bytes applied since open (the tree counts only what it writes).
    bytes_applied: u64,
}

impl BtreeTarget {
    pub fn open(dir: &Path) -> Result<BtreeTarget> {
        let tree =
            popdb_btree::Tree::open(real_fs(), dir, btree_options()).context("open B+tree")?;
        let lsn = tree.watermark().unwrap_or(0);
        Ok(BtreeTarget {
            tree,
            writer: Mutex::new(BtreeWriter {
                lsn,
                keys_since_checkpoint: 0,
                bytes_applied: 0,
            }),
        })
    }
}

impl BtreeTarget {
    fn writer(&self) -> std::sync::MutexGuard<'_, BtreeWriter> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Target for BtreeTarget {
    fn write(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let entries: Vec<(&[u8], Option<&[u8]>)> = batch
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        let mut writer = self.writer();
        self.tree.apply(writer.lsn + 1, &entries)?;
        writer.lsn += 1;
        writer.keys_since_checkpoint += batch.len() as u64;
        writer.bytes_applied += batch
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum::<u64>();
        if writer.keys_since_checkpoint >= BTREE_CHECKPOINT_KEYS {
            self.tree.checkpoint(writer.lsn)?;
            writer.keys_since_checkpoint = 0;
        }
        Ok(())
    }

    fn finish_load(&mut self) -> Result<()> {
        let mut writer = self.writer();
        ensure!(writer.lsn > 0, "a load of no keys");
        self.tree.checkpoint(writer.lsn)?;
        writer.keys_since_checkpoint = 0;
        Ok(())
    }

    fn write_sync(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut writer = self.writer();
        self.tree.apply(writer.lsn + 1, &[(key, Some(value))])?;
        writer.lsn += 1;
        writer.bytes_applied += (key.len() + value.len()) as u64;
        self.tree.checkpoint(writer.lsn)?;
        Ok(())
    }

    /// Checkpoint bytes (pages and meta) per key and value byte applied.
    fn write_amplification(&self) -> Option<f64> {
        let applied = self.writer().bytes_applied;
        (applied > 0).then(|| self.tree.stats().checkpoint_bytes as f64 / applied as f64)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(BtreeReader {
            view: self.tree.read_view(),
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

struct BtreeReader {
    view: popdb_btree::ReadView,
}

impl Reader for BtreeReader {
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        Ok(self.view.get_into(key, value)?.is_some())
    }

    fn seek_next(&mut self, key: &[u8], count: usize) -> Result<usize> {
        let bounds = (Bound::Included(key.to_vec()), Bound::Unbounded);
        let mut it = self.view.scan(bounds, popdb_btree::Direction::Forward)?;
        let mut rows = 0;
        while rows < count && it.valid() {
            std::hint::black_box(it.key_value());
            rows += 1;
            // No step past the last row asked for, as LMDB's `take(count)` makes none.
            if rows == count {
                break;
            }
            it.next()?;
        }
        Ok(rows)
    }
}
