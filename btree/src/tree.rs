//! The tree: a file of pages behind a read-only map, and the in-memory nodes applied since
//! the last checkpoint. Applies publish each result as an immutable root that read views
//! pin; checkpoints write the tree under one root to free pages and commit it with a meta
//! page. Spec: docs/format/btree.md (section 11).
//!
//! Concurrency: one writer at a time (the `writer` lock) builds the next tree from the
//! latest root without holding the `ring` lock, then publishes it by pushing it onto the
//! ring under that lock. Readers only take `ring` to clone a root, so they never wait for
//! a write or a checkpoint in progress. One checkpoint at a time (`checkpointing`): it
//! plans and writes without the writer lock, so applies go on, and takes it only at the
//! end to swap the nodes it wrote for their pages in the published roots. Lock order:
//! `checkpointing`, `durable`, `writer`, `ring`.
//!
//! Invariants: published LSNs strictly increase; the ring holds between 1 and
//! `roots_retained` roots, the latest last, none below the last checkpoint's root; every
//! root holds a pin on its LSN, so the pages it reaches stay out of the allocator's hands.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use popdb_io::{DirLock, FileRef, FsRef, OpenOptions, WriteOp};

use crate::apply::{Apply, Write};
use crate::checkpoint::{self, Durable, FreeSlot, Target};
use crate::error::{CorruptionKind, Error, Result};
use crate::free_list::FreeListPage;
use crate::invariants::TreeStats;
use crate::meta::{META_READ_SIZE, Meta, recover_meta};
use crate::node::{Branch, Child, Node};
use crate::page_format::{
    FIRST_TREE_PAGE, META_FREE_PAGE_COUNT_AT, PageId, TxnId, invalid, verify_parent_checksum,
};
use crate::page_size::PageSize;
use crate::pages::Pages;
use crate::pins::{Pin, Pins};
use crate::read_view::ReadView;
use crate::search::compare;
use crate::spare_pages::SparePages;

/// How many recent roots a tree keeps for [`Tree::read_view_at`] by default.
pub const ROOTS_RETAINED_DEFAULT: usize = 8;

/// The largest LSN a batch may carry.
pub const LSN_MAX: u64 = u64::MAX >> 1;

/// The most writes one batch may hold.
pub const BATCH_WRITES_MAX: usize = 1 << 20;

/// The most bytes of keys and values one batch may hold.
pub const BATCH_SIZE_MAX: usize = 64 * 1024 * 1024;

/// The name of the tree's file in its directory.
pub const FILE_NAME: &str = "tree.btree";

/// Options of a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeOptions {
    /// The page size of a new file. A file keeps the page size it was created with; this
    /// is ignored when one is reopened.
    pub page_size: PageSize,
    /// How many of the latest roots are kept for [`Tree::read_view_at`]; at least 1.
    pub roots_retained: usize,
}

impl Default for TreeOptions {
    fn default() -> Self {
        Self {
            page_size: PageSize::DEFAULT,
            roots_retained: ROOTS_RETAINED_DEFAULT,
        }
    }
}

/// A published root: the LSN of the batch that made it (`None` for the empty tree before
/// any batch), its node or page and level, its entry count (tombstones included), how many
/// of its nodes are in memory only, the pages it reads, and its pin.
#[derive(Clone, Debug)]
pub(crate) struct Root {
    pub(crate) lsn: Option<u64>,
    pub(crate) node: Child,
    pub(crate) level: u8,
    pub(crate) entries: u64,
    /// In-memory nodes no checkpoint wrote yet.
    pub(crate) dirty: u64,
    pub(crate) pages: Arc<Pages>,
    pub(crate) pin: Arc<Pin>,
}

/// The published roots, and the LSN the next batch must exceed.
#[derive(Debug)]
struct Ring {
    roots: VecDeque<Root>,
    /// The last applied LSN, or the last checkpoint's if above it.
    floor: u64,
}

/// What opening the tree found.
#[derive(Clone, Debug)]
pub struct TreeRecovery {
    /// Whether the file was created by this open.
    pub created: bool,
    /// The checkpoint transaction of the meta chosen.
    pub txn_id: u64,
    /// Why the other meta page was not chosen, if it was not valid: after a crash, the
    /// meta torn while a checkpoint was committing it, whose checkpoint never completed.
    pub damaged_meta: Option<Error>,
    /// The LSN the tree reads at: its watermark (0 if it has none).
    pub read_from: u64,
}

/// What the last checkpoint did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Pages written, the meta page included.
    pub pages_written: u64,
    /// Bytes written, the meta page included.
    pub bytes_written: u64,
    /// Pages the new tree no longer reaches, now listed free.
    pub pages_freed: u64,
    /// Free pages it wrote over.
    pub pages_reused: u64,
}

/// Cheap statistics of a tree, from counters (no walk; see [`ReadView::stats`] for one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The file's page size.
    pub page_size: PageSize,
    /// The durable high-water mark: the file's pages in use or listed free.
    pub file_pages: u64,
    /// Pages the durable free list holds.
    pub free_pages: u64,
    /// Levels of the latest tree: 1 for a tree that is one leaf.
    pub depth: usize,
    /// Leaf entries of the latest tree, tombstones included.
    pub entries: u64,
    /// Nodes of the latest tree held in memory until a checkpoint writes them: each takes
    /// about a page (the owner's memory budget triggers checkpoints on it).
    pub dirty_pages: u64,
    /// Page buffers of in-memory leaves a checkpoint dropped, kept for the leaves applies
    /// build next: at most as many as the nodes the last checkpoint wrote (or 1,024), each
    /// about a page. Not counted in `dirty_pages`, which triggers checkpoints: these are
    /// the memory those pages already took, handed back out as new pages are dirtied.
    pub spare_pages: u64,
    /// Checkpoints completed since open.
    pub checkpoints: u64,
    /// Bytes written by checkpoints since open.
    pub checkpoint_bytes: u64,
    /// What the last checkpoint did.
    pub last_checkpoint: CheckpointStats,
}

/// A copy-on-write B+tree in one file.
#[derive(Debug)]
pub struct Tree {
    options: TreeOptions,
    page_size: PageSize,
    file: FileRef,
    path: PathBuf,
    /// Held for a whole apply: there is one writer at a time.
    writer: Mutex<()>,
    /// The latest roots, oldest first; taken briefly to publish or to pin one.
    ring: Mutex<Ring>,
    /// Held for a whole checkpoint.
    checkpointing: Mutex<()>,
    /// The durable state; changed only by a checkpoint.
    durable: Mutex<Durable>,
    /// The LSN of the root the last checkpoint wrote (the durable tree's).
    durable_root_lsn: AtomicU64,
    /// The durable watermark, [`NO_WATERMARK`] if none.
    watermark: AtomicU64,
    pins: Arc<Pins>,
    /// The buffers of dropped in-memory leaves, for the next ones applies build.
    spares: Arc<SparePages>,
    poisoned: Mutex<Option<String>>,
    counters: Mutex<Stats>,
    recovery: TreeRecovery,
    _lock: DirLock,
}

const NO_WATERMARK: u64 = u64::MAX;

impl Tree {
    /// Opens the tree in directory `dir`, creating the directory and an empty tree if
    /// there is none (or only an empty file, as a create that a crash interrupted leaves),
    /// and taking the directory's lock. A reopened tree reads at its
    /// watermark: the owner replays its log from there.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`]; [`Error::Io`] (kind `WouldBlock` if another instance
    /// holds the directory); [`Error::Corruption`] naming the page if neither meta page is
    /// valid, the file is shorter than its meta says, or the free list is damaged.
    pub fn open(fs: FsRef, dir: &Path, options: TreeOptions) -> Result<Self> {
        Self::open_with(fs, dir, options, false)
    }

    /// As [`Tree::open`], for a tree its owner knows was created: a missing or empty file
    /// is not a tree to create but one that was lost.
    ///
    /// # Errors
    /// As [`Tree::open`]; [`Error::Corruption`] (`Truncated`, page 0) for a missing or
    /// empty file.
    pub fn open_existing(fs: FsRef, dir: &Path, options: TreeOptions) -> Result<Self> {
        Self::open_with(fs, dir, options, true)
    }

    fn open_with(fs: FsRef, dir: &Path, options: TreeOptions, must_exist: bool) -> Result<Self> {
        if options.roots_retained == 0 {
            return Err(Error::InvalidOptions("roots_retained must be at least 1"));
        }
        popdb_io::create_dir_durably(fs.as_ref(), dir)
            .map_err(|e| Error::io("tree create dir", e))?;
        let lock = fs
            .lock_dir(dir)
            .map_err(|e| Error::io("tree lock dir", e))?;
        let path = dir.join(FILE_NAME);
        let lost = || {
            let kind = CorruptionKind::Truncated {
                needed: 2 * options.page_size.bytes() as u64,
                available: 0,
            };
            let what = "file length (missing or empty: the tree's file was lost)";
            Error::corruption(PageId(0), 0, what, kind)
        };
        let how = if must_exist {
            OpenOptions::read_write()
        } else {
            OpenOptions::create()
        };
        let file = fs.open(&path, how).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound if must_exist => lost(),
            _ => Error::io("tree open file", e),
        })?;
        let len = file.len().map_err(|e| Error::io("tree file length", e))?;
        let created = len == 0;
        if created && must_exist {
            return Err(lost());
        }
        let (meta, damaged_meta) = if created {
            create_file(&fs, dir, &file, options.page_size)?
        } else {
            read_meta(&file, len)?
        };
        let page_size = meta.page_size;
        let map_len = usize::try_from(meta.page_count * page_size.bytes() as u64)
            .map_err(|_| Error::InvalidOptions("the file is too large to map here"))?;
        let map = file
            .map(0, map_len)
            .map_err(|e| Error::io("tree map file", e))?;
        let pages = Arc::new(Pages::new(map, page_size, meta.page_count, None));
        let (free, free_list_pages) = load_free_list(&meta, &pages)?;
        let watermark = meta.watermark;
        let pins = Arc::new(Pins::default());
        let spares = Arc::new(SparePages::new(page_size.bytes()));
        let root = Root {
            lsn: watermark,
            node: match meta.root {
                Some(root) => Child::Disk(root.page),
                None => Child::Mem(Arc::new(Node::empty(page_size, &spares))),
            },
            level: meta.root.map_or(0, |r| r.level),
            entries: meta.entry_count,
            dirty: u64::from(meta.root.is_none()),
            pages: Arc::clone(&pages),
            pin: pins.pin(watermark.unwrap_or(0)),
        };
        let recovery = TreeRecovery {
            created,
            txn_id: meta.txn_id.0,
            damaged_meta,
            read_from: watermark.unwrap_or(0),
        };
        let counters = Stats {
            page_size,
            file_pages: meta.page_count,
            free_pages: meta.free_page_count,
            depth: usize::from(root.level) + 1,
            entries: meta.entry_count,
            dirty_pages: u64::from(meta.root.is_none()),
            spare_pages: 0,
            checkpoints: 0,
            checkpoint_bytes: 0,
            last_checkpoint: CheckpointStats::default(),
        };
        Ok(Self {
            options,
            page_size,
            file,
            path,
            writer: Mutex::new(()),
            ring: Mutex::new(Ring {
                roots: VecDeque::from([root]),
                floor: watermark.unwrap_or(0),
            }),
            checkpointing: Mutex::new(()),
            durable: Mutex::new(Durable {
                meta,
                pages,
                free,
                free_list_pages,
            }),
            durable_root_lsn: AtomicU64::new(watermark.unwrap_or(0)),
            watermark: AtomicU64::new(watermark.unwrap_or(NO_WATERMARK)),
            pins,
            spares,
            poisoned: Mutex::new(None),
            counters: Mutex::new(counters),
            recovery,
            _lock: lock,
        })
    }

    /// The tree's options (its page size is the file's: see [`Tree::page_size`]).
    pub fn options(&self) -> TreeOptions {
        self.options
    }

    /// The file's page size.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// The path of the tree's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening the tree found.
    pub fn recovery(&self) -> &TreeRecovery {
        &self.recovery
    }

    /// Applies `batch` atomically at `lsn`: each `(key, Some(value))` stores the value and
    /// each `(key, None)` deletes the key (a tombstone with version `lsn` is kept until a
    /// later rebuild of its leaf finds it at or below the watermark); the last write to a
    /// key in the batch wins. Read views taken after it returns see it.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] for a key above [`PageSize::key_size_max`], a value above
    /// [`crate::VALUE_SIZE_MAX`], or a batch above [`BATCH_WRITES_MAX`] writes or
    /// [`BATCH_SIZE_MAX`] bytes; [`Error::LsnNotIncreasing`] unless `lsn` is above every
    /// LSN applied and the watermark (and at most [`LSN_MAX`]); [`Error::Corruption`]
    /// reading a page on the way; [`Error::Poisoned`]. An error means nothing was applied.
    pub fn apply<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        lsn: u64,
        batch: &[(K, Option<V>)],
    ) -> Result<()> {
        self.check_poisoned()?;
        let writes = self.check_batch(batch)?;
        let _writer = lock(&self.writer);
        let (latest, floor) = {
            let ring = self.lock_ring();
            (ring.roots.back().expect("never empty").clone(), ring.floor)
        };
        if lsn <= floor || lsn > LSN_MAX {
            return Err(Error::LsnNotIncreasing { lsn, floor });
        }
        let horizon = self.watermark().unwrap_or(0);
        let applied = Apply::new(&latest.pages, &self.spares, lsn, horizon).run(
            &latest.node,
            latest.level,
            latest.entries,
            latest.dirty,
            &writes,
        )?;
        let root = Root {
            lsn: Some(lsn),
            node: applied.root,
            level: applied.level,
            entries: applied.entries,
            dirty: applied.dirty,
            pages: Arc::clone(&latest.pages),
            pin: self.pins.pin(lsn),
        };
        drop(latest);
        let mut ring = self.lock_ring();
        let evicted = if ring.roots.len() == self.options.roots_retained {
            ring.roots.pop_front()
        } else {
            None
        };
        ring.roots.push_back(root);
        ring.floor = lsn;
        drop(ring);
        // Freeing the nodes only the evicted root held takes a while: not under the lock
        // that readers take to pin a root.
        drop(evicted);
        Ok(())
    }

    /// The batch's writes sorted by key, the last write to each key kept, after checking
    /// each against the limits.
    fn check_batch<'b, K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        batch: &'b [(K, Option<V>)],
    ) -> Result<Vec<Write<'b>>> {
        if batch.len() > BATCH_WRITES_MAX {
            return Err(Error::LimitExceeded {
                limit: "batch writes",
                found: batch.len() as u64,
                max: BATCH_WRITES_MAX as u64,
            });
        }
        let mut writes: Vec<Write<'b>> = Vec::with_capacity(batch.len());
        let mut size = 0usize;
        for (key, value) in batch {
            let (key, value) = (key.as_ref(), value.as_ref().map(AsRef::as_ref));
            let value_len = value.map_or(0, <[u8]>::len);
            self.page_size.check_entry(key.len(), value_len)?;
            size += key.len() + value_len;
            writes.push((key, value));
        }
        if size > BATCH_SIZE_MAX {
            return Err(Error::LimitExceeded {
                limit: "batch size",
                found: size as u64,
                max: BATCH_SIZE_MAX as u64,
            });
        }
        // A stable sort keeps a key's writes in batch order; the last of each run wins.
        // `compare` orders as the bytes do, in a handful of instructions per comparison
        // for short keys (a call to memcmp each cost a tenth of a random fill).
        writes.sort_by(|a, b| compare(a.0, b.0));
        writes.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
        Ok(writes)
    }

    /// A read view of everything applied so far.
    pub fn read_view(&self) -> ReadView {
        let root = self.latest();
        let lsn = root.lsn;
        ReadView::new(root, lsn)
    }

    /// A read view at `lsn`: every batch at or below `lsn` is visible, none above. `lsn`
    /// must lie between the LSN of the oldest retained root (at least the last
    /// checkpoint's) and the last applied.
    ///
    /// # Errors
    /// [`Error::ViewOutOfRange`] otherwise.
    pub fn read_view_at(&self, lsn: u64) -> Result<ReadView> {
        let ring = self.lock_ring();
        let from = ring.roots.front().and_then(|r| r.lsn).unwrap_or(0);
        let through = ring.roots.back().and_then(|r| r.lsn).unwrap_or(0);
        if lsn < from || lsn > through {
            return Err(Error::ViewOutOfRange { lsn, from, through });
        }
        let root = ring
            .roots
            .iter()
            .rev()
            .find(|r| r.lsn.unwrap_or(0) <= lsn)
            .expect("the oldest root is at or below lsn")
            .clone();
        drop(ring);
        let lsn = (lsn > 0).then_some(lsn);
        Ok(ReadView::new(root, lsn))
    }

    /// The LSN of the last batch applied, `None` before the first (since the file was
    /// created; a reopened tree starts at its watermark).
    pub fn last_applied(&self) -> Option<u64> {
        self.latest().lsn
    }

    /// The LSN through which the file durably holds every write: the last completed
    /// checkpoint's. `None` before the first.
    pub fn watermark(&self) -> Option<u64> {
        let watermark = self.watermark.load(Ordering::Acquire);
        (watermark != NO_WATERMARK).then_some(watermark)
    }

    /// Writes the tree exactly as of LSN `c` to the file and makes it durable; then
    /// [`Tree::watermark`] is `c`. `c` may be above the last applied batch (the tree at
    /// `c` is then the latest, and no later batch may take an LSN through `c`); below it,
    /// a root at or below `c` must still be retained ([`Tree::read_view_at`]). Applies and
    /// reads go on meanwhile. A checkpoint at the watermark does nothing.
    ///
    /// # Errors
    /// [`Error::CheckpointBehind`] below the watermark; [`Error::ViewOutOfRange`];
    /// [`Error::Corruption`] reading the durable tree (nothing written);
    /// [`Error::LimitExceeded`] if the file would pass its page limit; [`Error::Io`] from a
    /// write, sync or map, which poisons the tree; [`Error::Poisoned`].
    pub fn checkpoint(&self, c: u64) -> Result<()> {
        self.check_poisoned()?;
        let _checkpointing = lock(&self.checkpointing);
        if let Some(watermark) = self.watermark() {
            if c < watermark {
                return Err(Error::CheckpointBehind { lsn: c, watermark });
            }
            if c == watermark {
                return Ok(());
            }
        }
        let root = {
            let _writer = lock(&self.writer);
            let mut ring = self.lock_ring();
            let latest = ring.roots.back().expect("never empty");
            if c >= latest.lsn.unwrap_or(0) {
                // The tree at `c` is the latest; no batch may come in at or below `c`.
                let root = latest.clone();
                ring.floor = ring.floor.max(c);
                root
            } else {
                drop(ring);
                self.read_view_at(c)?.root().clone()
            }
        };
        self.checkpoint_root(root, c)
    }

    /// Like [`Tree::checkpoint`], with the tree at `c` given by `view`, a read view taken
    /// at `c` (or, for a tree idle since, at its last batch): the owner pins it when it
    /// picks `c`, so the checkpoint does not depend on `c`'s root still being among the
    /// retained ones however many batches come in meanwhile.
    ///
    /// # Errors
    /// As [`Tree::checkpoint`]; [`Error::ViewOutOfRange`] if `view` is not the tree at
    /// `c` (a batch at or below `c` is newer than the view).
    pub fn checkpoint_view(&self, view: &ReadView, c: u64) -> Result<()> {
        self.check_poisoned()?;
        let _checkpointing = lock(&self.checkpointing);
        if let Some(watermark) = self.watermark() {
            if c < watermark {
                return Err(Error::CheckpointBehind { lsn: c, watermark });
            }
            if c == watermark {
                return Ok(());
            }
        }
        let root = view.root().clone();
        let root_lsn = root.lsn.unwrap_or(0);
        {
            let _writer = lock(&self.writer);
            let mut ring = self.lock_ring();
            let newer_at_or_below_c = ring
                .roots
                .iter()
                .any(|r| r.lsn.is_some_and(|lsn| lsn > root_lsn && lsn <= c));
            if root_lsn > c || newer_at_or_below_c {
                let from = ring.roots.front().and_then(|r| r.lsn).unwrap_or(0);
                let through = ring.roots.back().and_then(|r| r.lsn).unwrap_or(0);
                return Err(Error::ViewOutOfRange {
                    lsn: c,
                    from,
                    through,
                });
            }
            if c >= ring.roots.back().expect("never empty").lsn.unwrap_or(0) {
                // The tree at `c` is the latest; no batch may come in at or below `c`.
                ring.floor = ring.floor.max(c);
            }
        }
        self.checkpoint_root(root, c)
    }

    /// Writes `root`, the tree at `c`, and installs it as the durable tree with watermark
    /// `c`. The caller holds `checkpointing` and has checked `c` against the watermark.
    fn checkpoint_root(&self, root: Root, c: u64) -> Result<()> {
        let root_lsn = root.lsn.unwrap_or(0);
        let durable_root_lsn = self.durable_root_lsn.load(Ordering::Acquire);
        assert!(
            root_lsn >= durable_root_lsn,
            "a retained root below the last checkpoint's"
        );
        let mut durable = lock(&self.durable);
        let target = Target {
            root: &root.node,
            level: root.level,
            entries: root.entries,
            root_lsn,
            watermark: c,
        };
        let oldest_pin = self.pins.oldest().unwrap_or(u64::MAX);
        let page_bytes = self.page_size.bytes();
        let offset = |id: PageId| id.0 * page_bytes as u64;
        let plan = {
            let durable: &Durable = &durable;
            // Each run goes out as the plan fills it, unsynced; the one sync below makes
            // them all durable before the meta that names them is written.
            let mut write_runs = |runs: &[(PageId, &[u8])]| {
                let writes: Vec<WriteOp<'_>> = runs
                    .iter()
                    .map(|&(first, bytes)| {
                        for id in first.0..first.0 + (bytes.len() / page_bytes) as u64 {
                            durable.pages.unverify(PageId(id));
                        }
                        WriteOp {
                            offset: offset(first),
                            bytes,
                        }
                    })
                    .collect();
                self.file
                    .write_batch(&writes, false)
                    .map_err(|e| self.poison("checkpoint page writes", e))
            };
            checkpoint::plan(durable, &target, oldest_pin, &mut write_runs)?
        };
        let pages_written = plan.pages_written + 1;
        if plan.pages_written > 0 {
            self.file
                .sync_data()
                .map_err(|e| self.poison("checkpoint page sync", e))?;
        }
        let mut meta_page = vec![0; page_bytes];
        plan.meta.encode(&mut meta_page);
        let meta_write = WriteOp {
            offset: offset(plan.meta.page_id()),
            bytes: &meta_page,
        };
        self.file
            .write_batch(&[meta_write], true)
            .map_err(|e| self.poison("checkpoint meta write", e))?;

        // Checkpoint `T` is durable. Install it.
        let pages = if plan.meta.page_count > durable.pages.page_count() {
            let len = usize::try_from(plan.meta.page_count * page_bytes as u64)
                .expect("the file fits the address space it was mapped in");
            let map = self
                .file
                .map(0, len)
                .map_err(|e| self.poison("checkpoint map file", e))?;
            Arc::new(Pages::new(
                map,
                self.page_size,
                plan.meta.page_count,
                Some(&durable.pages),
            ))
        } else {
            Arc::clone(&durable.pages)
        };
        for (node, page) in &plan.written {
            node.set_written(*page);
            // The page holds what this checkpoint encoded from the node, whose builder
            // checked every rule a first read checks, in the place its parent gives it:
            // reading it back to verify would only check this process's own bytes. Pages
            // read from the file (opened, or written by another process) are still
            // verified on their first read.
            pages.mark_written(page.id);
        }
        let stats = CheckpointStats {
            pages_written,
            bytes_written: pages_written * page_bytes as u64,
            pages_freed: plan.freed,
            pages_reused: plan.reused,
        };
        *durable = Durable {
            meta: plan.meta,
            pages: Arc::clone(&pages),
            free: plan.free,
            free_list_pages: plan.free_list_pages,
        };
        self.durable_root_lsn.store(root_lsn, Ordering::Release);
        self.watermark.store(c, Ordering::Release);
        {
            let mut counters = lock(&self.counters);
            counters.file_pages = durable.meta.page_count;
            counters.free_pages = durable.meta.free_page_count;
            counters.checkpoints += 1;
            counters.checkpoint_bytes += stats.bytes_written;
            counters.last_checkpoint = stats;
        }
        drop(durable);
        // The leaves written are dropped next (most of them now, by the swizzle): the pool
        // keeps as many for the leaves the next applies build.
        self.spares.set_limit(root.dirty);
        drop(root);
        self.swizzle(root_lsn, &pages);
        Ok(())
    }

    /// Swaps every in-memory node a checkpoint wrote for its page in the published roots
    /// from `root_lsn` up (sharing what the roots share), drops the roots below, and points
    /// them at `pages`. Memory then holds only what was applied since.
    fn swizzle(&self, root_lsn: u64, pages: &Arc<Pages>) {
        let _writer = lock(&self.writer);
        let mut ring = self.lock_ring();
        ring.roots.retain(|r| r.lsn.unwrap_or(0) >= root_lsn);
        let mut memo = HashMap::new();
        for root in &mut ring.roots {
            root.node = swizzle(&root.node, &mut memo);
            root.dirty = count_mem(&root.node);
            root.pages = Arc::clone(pages);
        }
    }

    /// Statistics from counters, without a walk.
    pub fn stats(&self) -> Stats {
        let latest = self.latest();
        let mut stats = *lock(&self.counters);
        stats.depth = usize::from(latest.level) + 1;
        stats.entries = latest.entries;
        stats.dirty_pages = latest.dirty;
        stats.spare_pages = self.spares.len() as u64;
        stats
    }

    /// Why the tree is poisoned, if it is.
    pub fn poison_cause(&self) -> Option<String> {
        lock(&self.poisoned).clone()
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*lock(&self.poisoned) {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the tree after a failed write, sync or map; returns the error.
    fn poison(&self, op: &'static str, source: std::io::Error) -> Error {
        let error = Error::io(op, source);
        lock(&self.poisoned).get_or_insert_with(|| error.to_string());
        error
    }

    /// The latest published root.
    pub(crate) fn latest(&self) -> Root {
        self.lock_ring()
            .roots
            .back()
            .expect("the ring always holds a root")
            .clone()
    }

    /// The ring of roots. A panic while it is held cannot leave it half changed (it only
    /// pushes and pops whole roots), so a poisoned lock is taken as is.
    fn lock_ring(&self) -> MutexGuard<'_, Ring> {
        lock(&self.ring)
    }

    /// Checks the latest tree's invariants (see `ReadView::check_invariants`), the ring's
    /// (LSNs strictly increase, at most `roots_retained` roots), and the file's: every page
    /// in `[2, page_count)` is exactly one of a page of the durable tree (or of an overflow
    /// chain it references), a page of the free list, or a page the free list holds; and
    /// the meta's counts are right.
    ///
    /// # Panics
    /// If any does not hold, or a page cannot be read.
    pub fn check_invariants(&self) {
        let roots: Vec<Root> = self.lock_ring().roots.iter().cloned().collect();
        assert!(!roots.is_empty(), "no root");
        assert!(roots.len() <= self.options.roots_retained, "ring too long");
        let lsns: Vec<u64> = roots.iter().map(|r| r.lsn.unwrap_or(0)).collect();
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "root LSNs do not increase: {lsns:?}"
        );
        let view = self.read_view();
        view.check_invariants();
        let stats = view.stats().expect("the latest tree reads");
        assert_eq!(
            stats.entry_count + stats.tombstone_count,
            view.root().entries,
            "entry count"
        );
        assert_eq!(stats.mem_node_count, view.root().dirty, "dirty node count");
        let _checkpointing = lock(&self.checkpointing);
        let durable = lock(&self.durable);
        check_file(&durable).expect("every page of the durable tree reads");
    }

    /// An offline verifier's check: reads every page the latest tree and the durable tree
    /// reach (overflow chains included) and returns the first damaged one as an error, then
    /// checks the invariants of [`Tree::check_invariants`]. Returns the latest tree's
    /// statistics. O(file size).
    ///
    /// # Errors
    /// [`Error::Corruption`] naming a page that does not read.
    ///
    /// # Panics
    /// If an invariant does not hold although every page read: every page passed its
    /// checksums, so the tree wrote it that way, which is a bug.
    pub fn check(&self) -> Result<TreeStats> {
        let stats = self.read_view().stats()?;
        {
            let _checkpointing = lock(&self.checkpointing);
            let durable = lock(&self.durable);
            check_file(&durable)?;
        }
        self.check_invariants();
        Ok(stats)
    }
}

/// Creates the file's two metas and makes the file's name durable.
fn create_file(
    fs: &FsRef,
    dir: &Path,
    file: &FileRef,
    page_size: PageSize,
) -> Result<(Meta, Option<Error>)> {
    let bytes = page_size.bytes();
    let mut head = vec![0; 2 * bytes];
    let (first, second) = head.split_at_mut(bytes);
    Meta::empty(page_size, TxnId(0)).encode(first);
    let meta = Meta::empty(page_size, TxnId(1));
    meta.encode(second);
    file.write_batch(
        &[WriteOp {
            offset: 0,
            bytes: &head,
        }],
        true,
    )
    .map_err(|e| Error::io("tree create metas", e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("tree create sync dir", e))?;
    Ok((meta, None))
}

/// Reads the metas from the medium and chooses one; checks the file holds its pages.
fn read_meta(file: &FileRef, len: u64) -> Result<(Meta, Option<Error>)> {
    // After a failed sync the cache may hold bytes the medium lost. Only the metas need
    // reading from the medium: every page a durable meta reaches was synced before it, so
    // the cache holds what the medium does for those, and pages a failed checkpoint wrote
    // are free under the meta found here.
    let head_len = len.min(META_READ_SIZE as u64);
    file.evict_cache_range(0, head_len)
        .map_err(|e| Error::io("tree evict cache", e))?;
    // The length may shrink with the eviction (a failed sync lost an extension the cache
    // still showed), so it is read again: the medium's length is what the metas are read
    // from and checked against.
    let len = file.len().map_err(|e| Error::io("tree file length", e))?;
    let head_len = usize::try_from(len.min(head_len)).expect("small");
    let mut head = vec![0; head_len];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| Error::io("tree read metas", e))?;
    let choice = recover_meta(&head)?;
    if choice.damaged.is_some() {
        // Falling back to the older meta opens an older checkpoint: first make sure the
        // newer one is damaged on the medium, not in one misread (a bit flipped on the way
        // from the disk fails its checksum just as a torn write does). Two reads that
        // differ refuse the open; the next open reads again.
        let mut again = vec![0; head_len];
        file.read_exact_at(&mut again, 0)
            .map_err(|e| Error::io("tree read metas", e))?;
        if again != head {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "two reads of the meta pages differ: not falling back to the older meta",
            );
            return Err(Error::io("tree read metas", e));
        }
    }
    let meta = choice.current;
    let needed = meta.page_count * meta.page_size.bytes() as u64;
    if len < needed {
        let kind = CorruptionKind::Truncated {
            needed,
            available: len,
        };
        let first_missing = PageId(len / meta.page_size.bytes() as u64);
        return Err(Error::corruption(
            first_missing,
            0,
            "file length (past the end)",
            kind,
        ));
    }
    Ok((meta, choice.damaged))
}

/// Reads the free list from the meta's reference: every page checked in full and against
/// its reference, at most `free_page_count` pages (each lists at least one), no id twice,
/// every id below the high-water mark.
fn load_free_list(meta: &Meta, pages: &Pages) -> Result<(Vec<FreeSlot>, Vec<PageId>)> {
    let count_error = |found: u64| {
        let what = "free_page_count (not what the free list holds)";
        invalid(meta.page_id(), META_FREE_PAGE_COUNT_AT, what, found)
    };
    let mut free = Vec::new();
    let mut list_pages = Vec::new();
    let mut seen = HashSet::new();
    let mut next = meta.free_list;
    while let Some(reference) = next {
        if list_pages.len() as u64 >= meta.free_page_count {
            return Err(count_error(meta.free_page_count));
        }
        if !seen.insert(reference.id) {
            let what = "free-list next (a page already listed)";
            return Err(invalid(reference.id, 0, what, reference.id.0));
        }
        let bytes = pages.bytes(reference.id)?;
        let page = FreeListPage::decode(bytes, meta.page_size, reference.id)?;
        verify_parent_checksum(bytes, reference)?;
        for entry in page.entries() {
            let entry = entry?;
            let id = entry.page_id;
            if id.0 < FIRST_TREE_PAGE || id.0 >= meta.page_count || !seen.insert(id) {
                let what = "free-list entry (repeated or past the high-water mark)";
                return Err(invalid(reference.id, 0, what, id.0));
            }
            if entry.freed_txn > meta.txn_id {
                let what = "free-list entry freed_txn (after the meta's)";
                return Err(invalid(reference.id, 0, what, entry.freed_txn.0));
            }
            free.push(FreeSlot { entry, freed_at: 0 });
        }
        list_pages.push(reference.id);
        next = page.next();
    }
    if free.len() as u64 != meta.free_page_count {
        return Err(count_error(free.len() as u64));
    }
    Ok((free, list_pages))
}

/// Checks the allocator's invariant over the durable state (see
/// [`Tree::check_invariants`]).
/// Checks the file-level invariants of [`Tree::check_invariants`]; a page that does not
/// read is an error, an invariant that does not hold a panic.
fn check_file(durable: &Durable) -> Result<()> {
    let meta = &durable.meta;
    let pages = &durable.pages;
    let mut owner: HashMap<u64, &'static str> = HashMap::new();
    let mut claim = |id: PageId, what: &'static str| {
        assert!(
            (FIRST_TREE_PAGE..meta.page_count).contains(&id.0),
            "{what} page {} outside [2, {})",
            id.0,
            meta.page_count
        );
        if let Some(before) = owner.insert(id.0, what) {
            panic!("page {} is both {before} and {what}", id.0);
        }
    };
    let mut entries = 0;
    if let Some(root) = meta.root {
        let mut stack = vec![(root.page, root.level)];
        while let Some((page, level)) = stack.pop() {
            claim(page.id, "tree");
            if level > 0 {
                let branch = pages.branch(page, level, None)?;
                for i in 0..branch.child_count() {
                    stack.push((branch.child(i)?, level - 1));
                }
                continue;
            }
            for entry in pages.leaf(page, None)?.entries() {
                let entry = entry?;
                entries += 1;
                if let crate::LeafValue::Overflow(chain) = entry.value {
                    for id in pages.chain_ids(chain)? {
                        claim(id, "overflow");
                    }
                }
            }
        }
    }
    assert_eq!(entries, meta.entry_count, "meta entry_count");
    for &id in &durable.free_list_pages {
        claim(id, "free-list");
    }
    for slot in &durable.free {
        claim(slot.entry.page_id, "listed free");
    }
    assert_eq!(
        durable.free.len() as u64,
        meta.free_page_count,
        "meta free_page_count"
    );
    let claimed = owner.len() as u64;
    assert_eq!(
        claimed,
        meta.page_count - FIRST_TREE_PAGE,
        "pages neither reachable nor free"
    );
    Ok(())
}

/// `child` with every node a checkpoint wrote replaced by its page; nodes shared between
/// roots are swizzled once (`memo`, by address: the roots keep every node alive).
fn swizzle(child: &Child, memo: &mut HashMap<usize, Child>) -> Child {
    let Child::Mem(node) = child else {
        return child.clone();
    };
    if let Some(page) = node.written() {
        return Child::Disk(page);
    }
    let key = Arc::as_ptr(node).addr();
    if let Some(done) = memo.get(&key) {
        return done.clone();
    }
    let out = match &**node {
        Node::Leaf(_) => child.clone(),
        Node::Branch(b) => {
            let children: Vec<Child> = b.children.iter().map(|c| swizzle(c, memo)).collect();
            if children
                .iter()
                .zip(b.children.iter())
                .all(|(a, b)| a.same(b))
            {
                child.clone()
            } else {
                let branch = Branch::new(b.level, Arc::clone(&b.separators), children);
                Child::Mem(Arc::new(Node::Branch(branch)))
            }
        }
    };
    memo.insert(key, out.clone());
    out
}

/// The in-memory nodes under `child` (each once; a tree shares none within itself).
fn count_mem(child: &Child) -> u64 {
    let mut count = 0;
    let mut stack = vec![child];
    while let Some(Child::Mem(node)) = stack.pop() {
        count += 1;
        if let Node::Branch(b) = &**node {
            stack.extend(b.children.iter().filter(|c| matches!(c, Child::Mem(_))));
        }
    }
    count
}

/// Locks a mutex whose data a panic cannot leave half changed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
