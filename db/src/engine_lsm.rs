//! The LSM engine behind the [`Engine`] trait. The tree is opened log-backed: it reopens
//! at its watermark, and the Db replays its log from there.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use popdb_io::FsRef;
use popdb_lsm::{ReadView, Tree, TreeOptions};

use crate::engine::{Cursor, Direction, Engine, EngineKind, EngineView, EngineWork, Write, owned};
use crate::error::Result;

/// An LSM tree as a table's engine.
#[derive(Debug)]
pub(crate) struct LsmEngine {
    tree: Tree,
    /// [`Tree::full_freezes`] as [`Engine::take_full_freeze`] last saw it.
    full_freezes_seen: AtomicU64,
}

impl LsmEngine {
    pub(crate) fn open(fs: FsRef, dir: &Path, options: TreeOptions) -> Result<Self> {
        let options = TreeOptions {
            log_backed: true,
            ..options
        };
        Ok(Self {
            tree: Tree::open(fs, dir, options)?,
            full_freezes_seen: AtomicU64::new(0),
        })
    }
}

impl LsmEngine {
    /// The error to report: a refusal because the tree is poisoned becomes the failure
    /// that poisoned it (say, a flush that met a full disk), which the tree keeps.
    fn with_cause(&self, error: popdb_lsm::Error) -> crate::error::Error {
        match (&error, self.tree.poison_cause()) {
            (popdb_lsm::Error::Poisoned, Some(cause)) => cause.into(),
            _ => error.into(),
        }
    }
}

impl Engine for LsmEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Lsm
    }

    fn apply(&self, lsn: u64, batch: &[Write<'_>]) -> Result<()> {
        self.tree.apply(lsn, batch).map_err(|e| self.with_cause(e))
    }

    fn read_view(&self) -> Box<dyn EngineView> {
        Box::new(LsmView(self.tree.read_view()))
    }

    fn read_view_at(&self, lsn: u64) -> Result<Box<dyn EngineView>> {
        Ok(Box::new(LsmView(self.tree.read_view_at(lsn)?)))
    }

    fn get_at(&self, lsn: u64, key: &[u8], value: &mut Vec<u8>) -> Result<Option<Option<u64>>> {
        // As `engine_view_at`: the latest view unless the tree has applied past `lsn`.
        let mut view = self.tree.read_view();
        if view.lsn() > lsn {
            view = match self.tree.read_view_at(lsn) {
                Ok(view) => view,
                Err(popdb_lsm::Error::ViewOutOfRange { .. }) => return Ok(None),
                Err(error) => return Err(error.into()),
            };
        }
        Ok(Some(view.get_into(key, value)?))
    }

    fn checkpoint(&self, lsn: u64) -> Result<()> {
        self.tree.checkpoint(lsn).map_err(|e| self.with_cause(e))
    }

    fn checkpoint_view(&self, _view: &dyn EngineView, lsn: u64) -> Result<()> {
        // The memtable keeps every version above the watermark: freezing it at `lsn` needs
        // no pinned view.
        self.tree.checkpoint(lsn).map_err(|e| self.with_cause(e))
    }

    fn take_full_freeze(&self) -> bool {
        // Only the apply stage calls this, one batch at a time: no race between the load
        // and the store.
        let now = self.tree.full_freezes();
        self.full_freezes_seen.swap(now, Ordering::AcqRel) != now
    }

    fn checkpoints_without_view(&self) -> bool {
        true
    }

    fn set_durable_lsn(&self, lsn: u64) {
        self.tree.set_durable_lsn(lsn);
    }

    fn watermark(&self) -> Option<u64> {
        self.tree.watermark()
    }

    fn last_applied(&self) -> Option<u64> {
        self.tree.last_applied()
    }

    fn memory_bytes(&self) -> u64 {
        // The arena's blocks, tails and the block ahead included: what the memtables hold.
        self.tree.stats().memtable_allocated_bytes as u64
    }

    fn maintenance_step(&self) -> Result<bool> {
        let progress = self
            .tree
            .maintenance_step()
            .map_err(|e| self.with_cause(e))?;
        Ok(progress != popdb_lsm::Progress::Idle)
    }

    fn work(&self) -> EngineWork {
        let stats = self.tree.stats();
        EngineWork {
            flushes: stats.flushes,
            compactions: stats.compactions,
            checkpoints: 0,
            bytes_flushed: stats.bytes_flushed,
            bytes_compacted: stats.bytes_compacted_written,
        }
    }

    fn check(&self) -> Result<String> {
        // The tree's checks cover its memtables, its levels and its manifest, all in memory
        // (the manifest was validated as it was read at open); the SSTs' blocks are read by
        // the verifier's scans, which return their corruption as an error.
        self.tree.check_invariants();
        let stats = self.tree.stats();
        let files: usize = stats.levels.iter().map(|l| l.files).sum();
        let bytes: u64 = stats.levels.iter().map(|l| l.bytes).sum();
        let per_level: Vec<String> = stats
            .levels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.files > 0)
            .map(|(level, l)| format!("L{level} {} ({} B)", l.files, l.bytes))
            .collect();
        Ok(format!(
            "lsm: {files} SSTs, {bytes} B [{}], {} frozen memtables, {} B in memtables, \
             watermark {}",
            per_level.join(", "),
            stats.frozen_memtables,
            stats.memtable_bytes,
            stats
                .watermark
                .map_or_else(|| "none".to_string(), |w| w.to_string()),
        ))
    }
}

struct LsmView(ReadView);

impl EngineView for LsmView {
    fn lsn(&self) -> Option<u64> {
        // LSNs start at 1: the LSM's 0 is "before any write".
        Some(self.0.lsn()).filter(|&lsn| lsn > 0)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn get_into(&self, key: &[u8], value: &mut Vec<u8>) -> Result<Option<u64>> {
        Ok(self.0.get_into(key, value)?)
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<Box<dyn Cursor + '_>> {
        let direction = match direction {
            Direction::Forward => popdb_lsm::Direction::Forward,
            Direction::Backward => popdb_lsm::Direction::Backward,
        };
        Ok(Box::new(LsmCursor(
            self.0.scan(owned(lower, upper), direction)?,
        )))
    }
}

struct LsmCursor<'v>(popdb_lsm::RangeIter<'v>);

impl Cursor for LsmCursor<'_> {
    fn valid(&self) -> bool {
        self.0.valid()
    }

    fn key(&self) -> &[u8] {
        self.0.key()
    }

    fn value(&self) -> &[u8] {
        self.0.value()
    }

    fn version(&self) -> u64 {
        self.0.version()
    }

    fn next(&mut self) -> Result<()> {
        Ok(self.0.next()?)
    }
}
