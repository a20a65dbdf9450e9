//! The tree: the engine's API. Writes stamped with an LSN go to the memtable; full memtables
//! freeze and are flushed to L0 SSTs; compaction merges SSTs down the levels; read views see
//! one LSN of it all; `checkpoint(c)` makes everything through `c` durable in the tree's own
//! files and records `c` as the watermark in the manifest.
//!
//! Concurrency: one writer at a time (the writer lock, held by `apply` and by the freezing
//! part of `checkpoint`); readers take a view by cloning the current state under a brief
//! read lock and never wait for the writer. Flushes and checkpoints serialize on the flush
//! lock, compactions on the compaction lock, so a flush never waits for a long compaction;
//! both log their edit and install the new version under the manifest lock, held only for
//! that. File ids come from one atomic counter. Lock order: flush lock, then writer lock,
//! then manifest lock, then the state lock; the compaction lock before the manifest lock.
//! The writer takes the flush or compaction lock only when it stalls, after releasing the
//! writer lock.
//!
//! Recovery contract (DESIGN.md, "Checkpoints and recovery"). SSTs may hold writes above
//! the watermark (memtables flushed to free memory between checkpoints); flushes go oldest
//! first and in whole batches, so the SSTs always hold a prefix of the applied batches.
//! A log-backed tree ([`TreeOptions::log_backed`], the Db) reads after a reopen exactly the
//! state at its watermark; its owner replays the log from there with the same LSNs, so the
//! copies are identical and the newer source wins where they meet. A tree alone reads
//! everything its SSTs hold, through the highest LSN in them, and never takes those LSNs
//! again. [`Tree::recovery`] says which LSN it reopened at.
//!
//! Compaction keeps every version above the watermark and the newest at or below it, so a
//! read view at any LSN from the watermark up is exact; views taken earlier keep the files
//! they started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use popdb_io::{DirLock, FsRef};

use crate::error::{Error, Result};
use crate::internal_key::LSN_MAX;
use crate::manifest::{Manifest, ManifestOptions, ManifestState, TornTail};
use crate::memtable::Memtable;
use crate::options::{
    BATCH_SIZE_MAX, BATCH_WRITES_MAX, KEY_SIZE_MAX, LEVELS_COUNT, TreeOptions, VALUE_SIZE_MAX,
};
use crate::read_view::{Frozen, ReadView, TreeState};
use crate::scheduler;
use crate::stats::{Counters, LevelStats, TreeStats};
use crate::version::{SstHandle, Version, parse_sst_file_name};

/// What [`Tree::open`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeRecovery {
    /// Bytes at the end of the manifest dropped as a torn last edit: an edit whose sync did
    /// not complete, so never acknowledged; or an acknowledged one damaged since, which the
    /// manifest cannot tell apart. A log-backed owner checks the watermark against the last
    /// checkpoint it completed.
    pub manifest_torn_tail: Option<TornTail>,
    /// Files of an interrupted flush or compaction (or old manifests) deleted.
    pub orphans_removed: usize,
    /// The LSN the reopened tree reads at ([`Tree::last_applied`]): the watermark for a
    /// log-backed tree ([`TreeOptions::log_backed`]), else the highest LSN its SSTs hold
    /// (or the watermark, if higher).
    pub read_from: u64,
}

/// What one maintenance step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Flushed a frozen memtable to L0.
    Flushed,
    /// Ran one compaction (or moved a file down a level).
    Compacted,
    /// Nothing needed doing (or nothing could be done: see [`Tree::set_durable_lsn`]).
    Idle,
}

/// A log-structured merge tree in one directory.
#[derive(Clone, Debug)]
pub struct Tree {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) fs: FsRef,
    pub(crate) dir: PathBuf,
    pub(crate) options: TreeOptions,
    pub(crate) state: RwLock<Arc<TreeState>>,
    writer: Mutex<Writer>,
    /// Held by flushes and checkpoints: frozen memtables flush one at a time, oldest first.
    pub(crate) flush_lock: Mutex<()>,
    /// Held by a compaction for its whole run; holds the compaction cursors.
    pub(crate) compaction: Mutex<CompactionState>,
    /// What the open found.
    recovery: TreeRecovery,
    /// Held while an edit is logged and the version it makes is installed.
    pub(crate) manifest: Mutex<Manifest>,
    /// The next SST id to hand out (every id below it is used or was abandoned).
    pub(crate) next_file_id: AtomicU64,
    /// The LSN read views are taken at: the last applied, or the watermark after open.
    applied: AtomicU64,
    /// The watermark; 0 while there is none.
    pub(crate) watermark: AtomicU64,
    /// Frozen memtables flush only once the log is durable through their LSNs.
    durable: AtomicU64,
    /// Memtables frozen by `apply` because they were full (not by checkpoints).
    full_freezes: AtomicU64,
    poisoned: AtomicBool,
    /// The failure that poisoned the tree, for the owner's report.
    poison_cause: Mutex<Option<Error>>,
    pub(crate) counters: Arc<Counters>,
    /// The scheduler doing this tree's background work, if one was given it.
    scheduler: Mutex<Option<Weak<scheduler::Inner>>>,
    /// Keeps every other instance off the directory for as long as this one lives, which
    /// may be past the owner's last handle: the scheduler holds the tree while it runs a
    /// step. Two instances would delete each other's new SSTs as orphans and append to one
    /// manifest at the same offset.
    _lock: DirLock,
}

#[derive(Debug)]
struct Writer {
    /// Applies must be above this: the last applied LSN, or the watermark.
    floor: u64,
    /// The smallest LSN in the mutable memtable, if it holds any version.
    mem_min_lsn: Option<u64>,
}

/// State only compaction touches.
#[derive(Debug, Default)]
pub(crate) struct CompactionState {
    /// Per level, the largest key of the last file compacted out of it: the next compaction
    /// of the level starts after it (round robin over the key space).
    pub(crate) compact_cursor: [Vec<u8>; LEVELS_COUNT],
}

impl Tree {
    /// Opens the tree in `dir`, creating it (and the directory) if no tree is there. Deletes
    /// files an interrupted flush or compaction left behind. The tree holds the directory's
    /// lock until its last handle, and the scheduler's hold on it, is gone.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`]; [`Error::Io`]; [`Error::Corruption`] if the manifest or an
    /// SST it names is damaged. [`Error::Io`] of kind `WouldBlock` if another instance holds
    /// the directory, which includes one whose last handle was dropped while a scheduler
    /// finishes a step for it: retry once the step is done.
    pub fn open(fs: FsRef, dir: &Path, options: TreeOptions) -> Result<Self> {
        options.validate().map_err(Error::InvalidOptions)?;
        popdb_io::create_dir_durably(fs.as_ref(), dir)
            .map_err(|e| Error::io("tree create dir", e))?;
        let lock = fs
            .lock_dir(dir)
            .map_err(|e| Error::io("tree lock dir", e))?;
        let manifest_options = ManifestOptions {
            rotate_size: options.manifest_rotate_size,
            ..ManifestOptions::default()
        };
        let (manifest, state, torn) = if Manifest::exists(&fs, dir)? {
            let (manifest, state, recovery) =
                Manifest::open_with(fs.clone(), dir, manifest_options)?;
            (manifest, state, recovery.torn_tail)
        } else {
            let manifest = Manifest::create_with(fs.clone(), dir, manifest_options)?;
            let state = manifest.state().clone();
            (manifest, state, None)
        };
        let orphans_removed = remove_orphans(&fs, dir, &manifest, &state)?;
        let version = open_version(&fs, dir, &state, &options)?;
        let watermark = state.watermark.unwrap_or(0);
        let flushed = state.levels.iter().flatten().map(|f| f.largest_lsn).max();
        // A log-backed owner replays its log from the watermark: the tree reads there and
        // takes the same records again. Alone, the SSTs are the record: flushes go oldest
        // first in whole batches, so they hold every batch through the highest LSN in them.
        let floor = if options.log_backed {
            watermark
        } else {
            watermark.max(flushed.unwrap_or(0))
        };
        let recovery = TreeRecovery {
            manifest_torn_tail: torn,
            orphans_removed,
            read_from: floor,
        };
        let mem = Memtable::with_budget(options.memtable_size_max);
        let shared = Shared {
            fs,
            dir: dir.to_path_buf(),
            options,
            state: RwLock::new(Arc::new(TreeState {
                mem: Arc::new(mem),
                frozen: Vec::new(),
                version: Arc::new(version),
            })),
            writer: Mutex::new(Writer {
                floor,
                mem_min_lsn: None,
            }),
            flush_lock: Mutex::new(()),
            compaction: Mutex::new(CompactionState::default()),
            next_file_id: AtomicU64::new(state.next_file_id),
            manifest: Mutex::new(manifest),
            applied: AtomicU64::new(floor),
            watermark: AtomicU64::new(watermark),
            durable: AtomicU64::new(0),
            full_freezes: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            counters: Arc::default(),
            scheduler: Mutex::new(None),
            recovery,
            _lock: lock,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Applies an atomic batch at `lsn`: each `(key, Some(value))` is a put, each `(key,
    /// None)` a delete; within the batch the last write to a key wins. Visible to read views
    /// taken after it returns.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] for an oversized key, value or batch;
    /// [`Error::LsnNotIncreasing`] unless `lsn` is above every LSN applied and the watermark;
    /// [`Error::Poisoned`]. An error means the batch was not applied. A flush or compaction
    /// the write stalled on runs after the batch is applied; if it fails, the tree is
    /// poisoned and the next call says so, but this one returns `Ok`.
    pub fn apply<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        lsn: u64,
        batch: &[(K, Option<V>)],
    ) -> Result<()> {
        let bytes = check_batch(batch)?;
        let shared = &*self.shared;
        shared.check_not_poisoned()?;
        let (froze, calm) = {
            let mut writer = shared.writer.lock();
            if lsn <= writer.floor || lsn > LSN_MAX {
                return Err(Error::LsnNotIncreasing {
                    lsn,
                    floor: writer.floor,
                });
            }
            let state = shared.current();
            state.mem.apply(lsn, batch);
            writer.floor = lsn;
            if !batch.is_empty() {
                writer.mem_min_lsn.get_or_insert(lsn);
            }
            shared.applied.store(lsn, Ordering::Release);
            Counters::add(&shared.counters.bytes_applied, bytes);
            let full = state.mem.approximate_bytes() >= shared.options.memtable_size_max;
            if full {
                shared.freeze_whole(&mut writer, lsn);
                shared.full_freezes.fetch_add(1, Ordering::Release);
            }
            (full, shared.calm(&state))
        };
        if froze {
            shared.notify_scheduler();
        }
        if froze || !calm {
            // The batch is applied: a failure here poisons the tree (the step did that),
            // which every later call reports; returning it here would say the batch was not
            // applied.
            let _ = shared.backpressure();
        }
        Ok(())
    }

    /// A read view of everything applied so far.
    pub fn read_view(&self) -> ReadView {
        let shared = &*self.shared;
        let lsn = shared.applied.load(Ordering::Acquire);
        shared.view_at(lsn)
    }

    /// A read view at `lsn`, which must lie between the watermark and the last applied LSN:
    /// below the watermark, compaction may have dropped versions the view would need.
    ///
    /// # Errors
    /// [`Error::ViewOutOfRange`].
    pub fn read_view_at(&self, lsn: u64) -> Result<ReadView> {
        let shared = &*self.shared;
        let view = shared.view_at(shared.applied.load(Ordering::Acquire));
        let from = shared.watermark.load(Ordering::Acquire);
        if lsn < from || lsn > view.lsn {
            return Err(Error::ViewOutOfRange {
                lsn,
                from,
                through: view.lsn,
            });
        }
        Ok(ReadView { lsn, ..view })
    }

    /// What the open that made this tree found.
    pub fn recovery(&self) -> TreeRecovery {
        self.shared.recovery
    }

    /// The watermark: every write at or below it is in the tree's own files (durably, as
    /// recorded in the manifest). Set by checkpoints and, in a tree that is not log-backed,
    /// by every flush too (its freeze point). `None` before the first of them.
    pub fn watermark(&self) -> Option<u64> {
        let w = self.shared.watermark.load(Ordering::Acquire);
        (w > 0).then_some(w)
    }

    /// The last LSN applied (or the watermark after an open); `None` if neither.
    pub fn last_applied(&self) -> Option<u64> {
        let a = self.shared.applied.load(Ordering::Acquire);
        (a > 0).then_some(a)
    }

    /// How many times [`Tree::apply`] froze the memtable because it was full: a count that
    /// changes across an apply says that apply's LSN ends a frozen memtable, where a
    /// checkpoint needs no freeze of its own (a log-backed owner checkpoints there rather
    /// than split a memtable at an arbitrary LSN, which would shift every later freeze).
    pub fn full_freezes(&self) -> u64 {
        self.shared.full_freezes.load(Ordering::Acquire)
    }

    /// Tells the tree that the owner's log is durable through `lsn`. Only needed when
    /// [`TreeOptions::flush_needs_durable_lsn`] is set: frozen memtables then flush only
    /// once the log holds every write they contain, so SSTs never hold a write a crash
    /// could take from the log.
    pub fn set_durable_lsn(&self, lsn: u64) {
        let shared = &*self.shared;
        // The Db reports the durable LSN after every apply, and it moves once per group
        // commit (or sync): a call that moves nothing changes nothing, and skips the
        // read-modify-write and the state's reference count.
        if lsn <= shared.durable.load(Ordering::Acquire) {
            return;
        }
        let before = shared.durable.fetch_max(lsn, Ordering::AcqRel);
        // A scheduler that found the oldest frozen memtable waiting for the log went to
        // sleep; wake it when this call is what lets that memtable flush (only then, so that
        // a log reporting every group commit does not wake it for nothing).
        let unblocked = shared.current().frozen.first().is_some_and(|f| {
            shared.options.flush_needs_durable_lsn && before < f.freeze_lsn && f.freeze_lsn <= lsn
        });
        if unblocked {
            shared.notify_scheduler();
        }
    }

    /// Makes every write at or below `lsn` durable in the tree's files and sets the watermark
    /// to `lsn`: freezes the memtable at `lsn` (writes above it stay in memory), flushes
    /// every frozen memtable holding writes at or below it, and records the watermark in the
    /// manifest. A checkpoint at or below the current watermark does nothing. `lsn` may be
    /// above the last applied LSN (an idle table); later applies must then be above it.
    ///
    /// # Errors
    /// [`Error::NotDurable`] if a frozen memtable to flush holds writes above the durable LSN
    /// (nothing is written); [`Error::Io`] (the tree is then poisoned);
    /// [`Error::Poisoned`].
    pub fn checkpoint(&self, lsn: u64) -> Result<()> {
        let shared = &*self.shared;
        shared.check_not_poisoned()?;
        if lsn > LSN_MAX {
            return Err(Error::LsnNotIncreasing {
                lsn,
                floor: LSN_MAX,
            });
        }
        let _flushing = shared.flush_lock.lock();
        if lsn <= shared.watermark.load(Ordering::Acquire) {
            return Ok(());
        }
        {
            let mut writer = shared.writer.lock();
            shared.check_checkpoint_durable(&writer, lsn)?;
            shared.freeze_at(&mut writer, lsn);
            writer.floor = writer.floor.max(lsn);
            shared.applied.fetch_max(lsn, Ordering::AcqRel);
        }
        let result = shared.checkpoint_flush(lsn);
        shared.poison_on_io(result)
    }

    /// Runs one step of background work: a flush if a frozen memtable can be flushed, else a
    /// compaction if a level is over its target, else nothing. A scheduler (a thread in
    /// production, a test step by step) calls it until it returns [`Progress::Idle`].
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corruption`] from the files (the tree is then poisoned);
    /// [`Error::Poisoned`].
    pub fn maintenance_step(&self) -> Result<Progress> {
        self.shared.maintenance_step()
    }

    /// Whether a maintenance step would find work.
    pub fn needs_maintenance(&self) -> bool {
        let shared = &*self.shared;
        let state = shared.current();
        shared.flushable(&state) || shared.pick_compaction(&state.version, None).is_some()
    }

    /// Whether an I/O failure has poisoned the tree.
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }

    /// The failure that poisoned the tree (the first, if several), or `None`.
    pub fn poison_cause(&self) -> Option<Error> {
        self.shared.poison_cause.lock().clone()
    }

    /// A snapshot of the tree's shape and counters.
    pub fn stats(&self) -> TreeStats {
        let shared = &*self.shared;
        let state = shared.current();
        let c = &shared.counters;
        let mut levels = [LevelStats::default(); LEVELS_COUNT];
        for (level, files) in state.version.levels.iter().enumerate() {
            levels[level] = LevelStats {
                files: files.len(),
                bytes: state.version.level_bytes(level),
            };
        }
        let (memtable_bytes, memtable_allocated_bytes) = std::iter::once(&state.mem)
            .chain(state.frozen.iter().map(|f| &f.mem))
            .fold((0, 0), |(bytes, allocated), mem| {
                (
                    bytes + mem.approximate_bytes(),
                    allocated + mem.allocated_bytes(),
                )
            });
        TreeStats {
            levels,
            frozen_memtables: state.frozen.len(),
            memtable_bytes,
            memtable_allocated_bytes,
            watermark: self.watermark(),
            bytes_applied: Counters::get(&c.bytes_applied),
            bytes_flushed: Counters::get(&c.bytes_flushed),
            bytes_compacted_read: Counters::get(&c.bytes_compacted_read),
            bytes_compacted_written: Counters::get(&c.bytes_compacted_written),
            flushes: Counters::get(&c.flushes),
            compactions: Counters::get(&c.compactions),
            trivial_moves: Counters::get(&c.trivial_moves),
            stalls: Counters::get(&c.stalls),
            slowdowns: Counters::get(&c.slowdowns),
            gets: Counters::get(&c.gets),
            sst_probes: Counters::get(&c.sst_probes),
            scans: Counters::get(&c.scans),
            cache_hits: shared.options.block_cache.hits(),
            cache_misses: shared.options.block_cache.misses(),
        }
    }

    /// Checks the invariants of the memtables and the level structure, and that the
    /// manifest's state names exactly the files of the current version. O(data in
    /// memtables): for tests.
    ///
    /// # Panics
    /// If an invariant is broken.
    pub fn check_invariants(&self) {
        let shared = &*self.shared;
        let manifest = shared.manifest.lock();
        let state = shared.current();
        state.version.check_invariants();
        let manifest = manifest.state();
        manifest.check_invariants();
        for (level, files) in state.version.levels.iter().enumerate() {
            let ids: Vec<u64> = files.iter().map(|f| f.meta.id).collect();
            let mut named: Vec<u64> = manifest.levels[level].iter().map(|f| f.id).collect();
            let mut sorted_ids = ids.clone();
            sorted_ids.sort_unstable();
            named.sort_unstable();
            assert_eq!(sorted_ids, named, "L{level} differs from the manifest");
        }
        let watermark = shared.watermark.load(Ordering::Acquire);
        assert_eq!(
            manifest.watermark.unwrap_or(0),
            watermark,
            "watermark drifted"
        );
        for frozen in &state.frozen {
            frozen.mem.check_invariants();
            assert!(
                frozen.min_lsn > watermark,
                "a frozen memtable below the watermark was not flushed"
            );
        }
    }
}

impl Shared {
    pub(crate) fn current(&self) -> Arc<TreeState> {
        self.state.read().clone()
    }

    fn view_at(&self, lsn: u64) -> ReadView {
        ReadView {
            state: self.current(),
            lsn,
            counters: self.counters.clone(),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn set_scheduler(&self, scheduler: Weak<scheduler::Inner>) {
        *self.scheduler.lock() = Some(scheduler);
    }

    fn notify_scheduler(&self) {
        let scheduler = self.scheduler.lock().as_ref().and_then(Weak::upgrade);
        if let Some(scheduler) = scheduler {
            scheduler.notify();
        }
    }

    pub(crate) fn check_not_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Poisons the tree if `result` is a failure of the files.
    pub(crate) fn poison_on_io<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e @ (Error::Io { .. } | Error::Corruption(_))) = &result {
            self.poison_cause.lock().get_or_insert_with(|| e.clone());
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    /// Freezes the whole mutable memtable (the writer lock is held).
    fn freeze_whole(&self, writer: &mut Writer, freeze_lsn: u64) {
        let Some(min_lsn) = writer.mem_min_lsn.take() else {
            return;
        };
        let mut guard = self.state.write();
        let old = guard.clone();
        let mut frozen = old.frozen.clone();
        frozen.push(Arc::new(Frozen {
            mem: old.mem.clone(),
            freeze_lsn,
            min_lsn,
        }));
        *guard = Arc::new(TreeState {
            mem: Arc::new(Memtable::with_budget(self.options.memtable_size_max)),
            frozen,
            version: old.version.clone(),
        });
    }

    /// Freezes the mutable memtable for a checkpoint at `lsn` (the writer lock is held):
    /// whole if the log is durable through its last write, else split at `lsn` (versions
    /// above it are copied into a fresh memtable, which stays mutable).
    fn freeze_at(&self, writer: &mut Writer, lsn: u64) {
        let Some(min_lsn) = writer.mem_min_lsn else {
            return;
        };
        if min_lsn > lsn {
            return;
        }
        // Whole when the log holds every write in it (always, for a tree alone): versions
        // above `lsn` then go to the SST too, which the watermark allows. Only a memtable
        // holding writes the log has not made durable is split, at the cost of a scan.
        if writer.floor <= lsn || writer.floor <= self.durable_lsn() {
            self.freeze_whole(writer, writer.floor);
            return;
        }
        let state = self.current();
        let above = versions_above(&state.mem, lsn);
        if above.is_empty() {
            self.freeze_whole(writer, writer.floor.min(lsn));
            return;
        }
        let fresh = Memtable::with_budget(self.options.memtable_size_max);
        for (at, batch) in &above {
            fresh.apply(*at, batch);
        }
        writer.mem_min_lsn = above.keys().next().copied();
        let mut guard = self.state.write();
        let old = guard.clone();
        let mut frozen = old.frozen.clone();
        frozen.push(Arc::new(Frozen {
            mem: old.mem.clone(),
            freeze_lsn: lsn,
            min_lsn,
        }));
        *guard = Arc::new(TreeState {
            mem: Arc::new(fresh),
            frozen,
            version: old.version.clone(),
        });
    }

    /// Refuses, before anything changes, a checkpoint at `lsn` that would flush writes the
    /// log has not made durable: the frozen memtables holding versions at or below `lsn`
    /// flush whole, and the mutable one is frozen at `lsn` (the writer lock is held).
    fn check_checkpoint_durable(&self, writer: &Writer, lsn: u64) -> Result<()> {
        let state = self.current();
        let frozen = state
            .frozen
            .iter()
            .filter(|f| f.min_lsn <= lsn)
            .map(|f| f.freeze_lsn);
        let mutable = writer
            .mem_min_lsn
            .filter(|min| *min <= lsn)
            .map(|_| lsn.min(writer.floor));
        let durable = self.durable_lsn();
        match frozen.chain(mutable).max() {
            Some(needed) if needed > durable => Err(Error::NotDurable { needed, durable }),
            _ => Ok(()),
        }
    }

    /// The durable LSN frozen memtables may be flushed up to.
    pub(crate) fn durable_lsn(&self) -> u64 {
        if self.options.flush_needs_durable_lsn {
            self.durable.load(Ordering::Acquire)
        } else {
            LSN_MAX
        }
    }

    /// Whether the oldest frozen memtable may be flushed now.
    pub(crate) fn flushable(&self, state: &TreeState) -> bool {
        state
            .frozen
            .first()
            .is_some_and(|f| f.freeze_lsn <= self.durable_lsn())
    }

    pub(crate) fn maintenance_step(&self) -> Result<Progress> {
        self.step(true)
    }

    /// One maintenance step; with `wait_for_compaction` false it skips compaction if another
    /// thread is compacting (a slowed writer helps, it does not queue).
    fn step(&self, wait_for_compaction: bool) -> Result<Progress> {
        self.check_not_poisoned()?;
        let result = self.step_inner(wait_for_compaction);
        self.poison_on_io(result)
    }

    fn step_inner(&self, wait_for_compaction: bool) -> Result<Progress> {
        // Quiet (see `pick_space_compaction`): every write applied is in an SST, as a
        // checkpoint leaves a tree whose writer stopped. Read before this step's flush, if
        // any: the step after the last flush sees the drained state.
        let quiet = {
            let state = self.current();
            state.mem.is_empty() && state.frozen.is_empty()
        };
        if self.flushable(&self.current()) {
            let _flushing = self.flush_lock.lock();
            // Another thread may have flushed it meanwhile.
            if self.flushable(&self.current()) {
                self.flush_oldest()?;
                return Ok(Progress::Flushed);
            }
        }
        let mut compaction = if wait_for_compaction {
            self.compaction.lock()
        } else {
            let Some(guard) = self.compaction.try_lock() else {
                return Ok(Progress::Idle);
            };
            guard
        };
        let version = self.current().version.clone();
        let pick = self
            .pick_compaction(&version, Some(&compaction.compact_cursor))
            .or_else(|| {
                quiet
                    .then(|| self.pick_space_compaction(&version))
                    .flatten()
            });
        if let Some(pick) = pick {
            self.compact(&mut compaction, &pick)?;
            return Ok(Progress::Compacted);
        }
        Ok(Progress::Idle)
    }

    /// Whether `state` asks for no backpressure: few frozen memtables and level 0 below
    /// its slowdown trigger. An apply checks the state it applied to, and takes the state
    /// afresh ([`Shared::backpressure`]) only past these bounds or after a freeze: the
    /// check then lags a flush or compaction by one apply at most.
    fn calm(&self, state: &TreeState) -> bool {
        let options = &self.options;
        state.frozen.len() <= options.frozen_count_max
            && state.version.levels[0].len()
                < options.l0_slowdown_trigger.min(options.l0_stop_trigger)
    }

    /// Makes the writer pay for a backlog: flushes while too many memtables are frozen,
    /// compacts while L0 is at its stop trigger (waiting for a running compaction first),
    /// and past the slowdown trigger does one compaction step unless one is running. Called
    /// without the writer lock and waits only on the flush and compaction locks, whose
    /// holders never wait on the writer, so it cannot deadlock; if no step is possible
    /// (flushes waiting for the log) it returns.
    fn backpressure(&self) -> Result<()> {
        // Returns the step's error for tests of this function; `apply` drops it (see there).
        let options = &self.options;
        let mut stalled = false;
        loop {
            let state = self.current();
            let l0 = state.version.levels[0].len();
            let too_many_frozen = state.frozen.len() > options.frozen_count_max;
            if !too_many_frozen && l0 < options.l0_stop_trigger {
                if l0 >= options.l0_slowdown_trigger {
                    Counters::add(&self.counters.slowdowns, 1);
                    self.step(false)?;
                }
                return Ok(());
            }
            if !stalled {
                stalled = true;
                Counters::add(&self.counters.stalls, 1);
            }
            if self.maintenance_step()? == Progress::Idle {
                return Ok(());
            }
        }
    }
}

/// A batch as the memtable takes it: (key, value or delete).
type OwnedBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The versions of `mem` above `lsn`, grouped into batches by LSN, oldest first.
fn versions_above(mem: &Memtable, lsn: u64) -> BTreeMap<u64, OwnedBatch> {
    let mut out: BTreeMap<u64, OwnedBatch> = BTreeMap::new();
    for entry in mem.versions() {
        if entry.lsn() > lsn {
            let value = entry.value().map(<[u8]>::to_vec);
            out.entry(entry.lsn())
                .or_default()
                .push((entry.user_key().to_vec(), value));
        }
    }
    out
}

/// Checks a batch against the limits; returns its bytes of keys and values.
fn check_batch<K: AsRef<[u8]>, V: AsRef<[u8]>>(batch: &[(K, Option<V>)]) -> Result<u64> {
    let exceeded = |limit, found: usize, max: usize| Error::LimitExceeded {
        limit,
        found: found as u64,
        max: max as u64,
    };
    if batch.len() > BATCH_WRITES_MAX {
        return Err(exceeded("batch writes", batch.len(), BATCH_WRITES_MAX));
    }
    let mut total = 0usize;
    for (key, value) in batch {
        let key = key.as_ref();
        if key.len() > KEY_SIZE_MAX {
            return Err(exceeded("key size", key.len(), KEY_SIZE_MAX));
        }
        let value_len = value.as_ref().map_or(0, |v| v.as_ref().len());
        if value_len > VALUE_SIZE_MAX {
            return Err(exceeded("value size", value_len, VALUE_SIZE_MAX));
        }
        total += key.len() + value_len;
    }
    if total > BATCH_SIZE_MAX {
        return Err(exceeded("batch size", total, BATCH_SIZE_MAX));
    }
    Ok(total as u64)
}

/// Opens every SST the manifest names.
fn open_version(
    fs: &FsRef,
    dir: &Path,
    state: &ManifestState,
    options: &TreeOptions,
) -> Result<Version> {
    let mut version = Version::default();
    for (level, files) in state.levels.iter().enumerate() {
        for meta in files {
            let handle = SstHandle::open(fs, dir, meta.clone(), &options.block_cache)?;
            version.levels[level].push(Arc::new(handle));
        }
    }
    version.check_invariants();
    Ok(version)
}

/// Deletes files of this tree's kinds that the manifest does not name: SSTs of an
/// interrupted flush or compaction, old manifests, temporary files. Leaves other files.
fn remove_orphans(
    fs: &FsRef,
    dir: &Path,
    manifest: &Manifest,
    state: &ManifestState,
) -> Result<usize> {
    let live_ssts: std::collections::HashSet<u64> =
        state.levels.iter().flatten().map(|f| f.id).collect();
    let live_manifest = manifest.live_file_names();
    let names = fs
        .read_dir(dir)
        .map_err(|e| Error::io("tree read dir", e))?;
    let mut removed = 0;
    for name in names {
        let Some(name) = name.to_str() else { continue };
        let orphan = match parse_sst_file_name(name) {
            Some(id) => !live_ssts.contains(&id),
            None => Manifest::is_own_file(name) && !live_manifest.iter().any(|n| n == name),
        };
        if orphan {
            fs.remove_file(&dir.join(name))
                .map_err(|e| Error::io("tree remove orphan", e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fs.sync_dir(dir)
            .map_err(|e| Error::io("tree sync dir", e))?;
    }
    Ok(removed)
}
