//! The engine trait: what the Db asks of a table's engine, and nothing more. Both engines
//! implement it through thin adapters (`engine_lsm.rs`, `engine_btree.rs`); the
//! conformance suite (`db/tests/engine_conformance.rs`) runs the same randomized
//! operations against both and a model.
//!
//! The contract, which both engines document in their own terms:
//! - `apply(lsn, batch)` applies a batch atomically at `lsn`, strictly above every LSN
//!   applied and the watermark; within a batch the last write to a key wins; an error
//!   means nothing was applied.
//! - Reads return the value and its version (the LSN that wrote it). A read view is
//!   consistent and pinned; views at an older LSN are available from the watermark up,
//!   as far back as the engine retains (the B+tree keeps a ring of recent roots).
//! - `checkpoint(c)` makes the engine's own files hold exactly the writes through `c`;
//!   then `watermark()` is `c`. A reopened engine reads at its watermark: the owner
//!   replays its log from there with the same LSNs.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use popdb_io::FsRef;

use crate::engine_btree::BtreeEngine;
use crate::engine_lsm::LsmEngine;
use crate::error::Result;

/// One write of a batch: `(key, Some(value))` stores, `(key, None)` deletes.
pub type Write<'a> = (&'a [u8], Option<&'a [u8]>);

/// The order of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending keys.
    Forward,
    /// Descending keys.
    Backward,
}

/// Which engine a table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// The write-optimized LSM tree (`popdb-lsm`).
    Lsm,
    /// The read-optimized copy-on-write B+tree (`popdb-btree`).
    Btree,
}

/// How to open an engine: its kind and that engine's options.
#[derive(Clone, Debug)]
pub enum EngineOptions {
    /// An LSM tree. The Db opens it log-backed: it reopens at its watermark.
    Lsm(popdb_lsm::TreeOptions),
    /// A B+tree.
    Btree(popdb_btree::TreeOptions),
}

impl EngineOptions {
    /// The engine these options open.
    pub fn kind(&self) -> EngineKind {
        match self {
            EngineOptions::Lsm(_) => EngineKind::Lsm,
            EngineOptions::Btree(_) => EngineKind::Btree,
        }
    }
}

/// What an engine's background work and checkpoints have written since it opened: the
/// tests that inject faults assert on it, so that a workload which stops reaching a path
/// (a flush, a compaction, a B+tree checkpoint) fails loudly instead of covering less.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineWork {
    /// LSM memtable flushes (an LSM checkpoint is a flush and counts here).
    pub flushes: u64,
    /// LSM compactions, trivial moves included.
    pub compactions: u64,
    /// B+tree checkpoints.
    pub checkpoints: u64,
    /// Bytes of LSM SSTs written by flushes (checkpoints included).
    pub bytes_flushed: u64,
    /// Bytes of LSM SSTs written by compactions.
    pub bytes_compacted: u64,
}

/// A table's engine.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Applies `batch` atomically at `lsn` (see the module header).
    ///
    /// # Errors
    /// The engine's: a limit, an LSN not increasing, a poisoned engine, an i/o failure.
    fn apply(&self, lsn: u64, batch: &[Write<'_>]) -> Result<()>;

    /// A read view of everything applied.
    fn read_view(&self) -> Box<dyn EngineView>;

    /// A read view at `lsn`: every batch at or below it visible, none above.
    ///
    /// # Errors
    /// The engine's `ViewOutOfRange` outside what it retains.
    fn read_view_at(&self, lsn: u64) -> Result<Box<dyn EngineView>>;

    /// The value of `key` into `value` (cleared first) and its version, as a view at `lsn`
    /// reads them (`lsn` at or below the last applied, as the Db publishes it), without
    /// building a boxed view: a point read pays for no allocation. `Ok(None)` if `lsn` is no
    /// longer retained; `Ok(Some(None))` if the key is absent.
    ///
    /// # Errors
    /// As [`EngineView::get_into`].
    fn get_at(&self, lsn: u64, key: &[u8], value: &mut Vec<u8>) -> Result<Option<Option<u64>>>;

    /// Makes the engine's files hold exactly the writes through `lsn`.
    ///
    /// # Errors
    /// The engine's (an i/o failure poisons it).
    fn checkpoint(&self, lsn: u64) -> Result<()>;

    /// Like [`Engine::checkpoint`], with the engine's state at `lsn` given by `view`, a view
    /// of this engine taken when `lsn` was its latest state (the Db pins one per table when
    /// it picks a checkpoint LSN), so the checkpoint holds however many batches come in
    /// meanwhile.
    ///
    /// # Errors
    /// As [`Engine::checkpoint`].
    fn checkpoint_view(&self, view: &dyn EngineView, lsn: u64) -> Result<()>;

    /// Whether the batches applied since the last call froze a full memtable (an LSM's): the
    /// LSN of the one that did ends that memtable, and a checkpoint there flushes it as it
    /// is, where one at any other LSN would freeze a partial memtable and shift every later
    /// freeze. The apply stage asks after each batch it applies to the engine. `false` by
    /// default.
    fn take_full_freeze(&self) -> bool {
        false
    }

    /// Whether the engine checkpoints at an LSN below its last applied batch from its own
    /// state (an LSM keeps every version above its watermark in its memtables), so the Db
    /// needs to pin no view of it to checkpoint there later. `false` by default.
    fn checkpoints_without_view(&self) -> bool {
        false
    }

    /// Tells the engine the log is durable through `lsn`: an LSM flushes no write above it,
    /// so its files never hold a write a crash could take from a lazily synced log.
    fn set_durable_lsn(&self, lsn: u64);

    /// The LSN through which the engine's files hold every write; `None` before the first
    /// checkpoint.
    fn watermark(&self) -> Option<u64>;

    /// The LSN of the last batch applied (the watermark right after open).
    fn last_applied(&self) -> Option<u64>;

    /// Bytes of memory the engine holds that only a checkpoint (or an LSM flush) releases:
    /// memtables, or the B+tree's in-memory pages. The Db's memory budget counts them.
    fn memory_bytes(&self) -> u64;

    /// Runs one step of background work (an LSM flush or compaction); `false` when there
    /// was nothing to do. The Db's scheduler calls it; the B+tree has none (its work is
    /// the checkpoint).
    ///
    /// # Errors
    /// The engine's (an i/o failure poisons it).
    fn maintenance_step(&self) -> Result<bool>;

    /// The work done since open (see [`EngineWork`]). None by default, for engines that
    /// do not count it.
    fn work(&self) -> EngineWork {
        EngineWork::default()
    }

    /// Runs the engine's own invariant checks, for the offline verifier (`check`), and
    /// returns a one-line summary of its shape: pages, depth and fill factor of a B+tree;
    /// files and bytes per level of an LSM tree. O(data): the B+tree reads every page.
    ///
    /// # Errors
    /// The engine's `Corruption`, naming the page (B+tree) or file (LSM) that does not read.
    ///
    /// # Panics
    /// If an invariant of data that read clean does not hold: a bug, not damage.
    fn check(&self) -> Result<String>;
}

/// A consistent, pinned view of an engine at one LSN.
pub trait EngineView: Send + Sync {
    /// The LSN the view reads at; `None` before any write.
    fn lsn(&self) -> Option<u64>;

    /// The view as `Any`, for its own engine's [`Engine::checkpoint_view`].
    fn as_any(&self) -> &dyn std::any::Any;

    /// The value of `key` into `value` (cleared first) and its version; `None` if absent.
    ///
    /// # Errors
    /// The engine's (corruption, i/o).
    fn get_into(&self, key: &[u8], value: &mut Vec<u8>) -> Result<Option<u64>>;

    /// A cursor over the keys within (`lower`, `upper`) in `direction`.
    ///
    /// # Errors
    /// As [`EngineView::get_into`].
    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<Box<dyn Cursor + '_>>;
}

/// A cursor over the live entries of a range, in one direction.
pub trait Cursor {
    /// Whether the cursor is on an entry.
    fn valid(&self) -> bool;
    /// The current key. Panics if not [`Cursor::valid`].
    fn key(&self) -> &[u8];
    /// The current value. Panics if not [`Cursor::valid`].
    fn value(&self) -> &[u8];
    /// The current version. Panics if not [`Cursor::valid`].
    fn version(&self) -> u64;
    /// Moves to the next entry.
    ///
    /// # Errors
    /// As [`EngineView::get_into`].
    fn next(&mut self) -> Result<()>;
}

/// Opens (or creates) an engine in directory `dir`.
///
/// # Errors
/// The engine's open errors.
pub fn open_engine(fs: FsRef, dir: &Path, options: EngineOptions) -> Result<Arc<dyn Engine>> {
    Ok(match options {
        EngineOptions::Lsm(options) => Arc::new(LsmEngine::open(fs, dir, options)?),
        EngineOptions::Btree(options) => Arc::new(BtreeEngine::open(fs, dir, options)?),
    })
}

/// Owned bounds, as the engines take them.
pub(crate) fn owned(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (lower.map(<[u8]>::to_vec), upper.map(<[u8]>::to_vec))
}
