//! The tree: applies batches stamped with an LSN, publishes each result as a new immutable
//! root, and hands out read views pinned to a root. In memory only so far; checkpoints,
//! the map and the allocator follow docs/format/btree.md, section 11.
//!
//! Concurrency: one writer at a time (the `writer` lock) builds the next tree from the
//! latest root without holding the `roots` lock, then publishes it by pushing it onto the
//! ring under that lock. Readers only take `roots` to clone an `Arc`, so they never wait
//! for a write in progress. Lock order: `writer`, then `roots`.
//!
//! Invariants: published LSNs strictly increase; the ring holds between 1 and
//! `roots_retained` roots, the latest last.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::apply::{Write, apply_root};
use crate::error::{Error, Result};
use crate::invariants::TreeStats;
use crate::node::Node;
use crate::page_size::PageSize;
use crate::read_view::ReadView;

/// How many recent roots a tree keeps for [`Tree::read_view_at`] by default.
pub const ROOTS_RETAINED_DEFAULT: usize = 8;

/// The largest LSN a batch may carry.
pub const LSN_MAX: u64 = u64::MAX >> 1;

/// Options of a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeOptions {
    /// The page size every node must fit.
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

/// A published root and the LSN of the batch that made it (`None` for the empty tree).
#[derive(Clone, Debug)]
pub(crate) struct Root {
    pub(crate) lsn: Option<u64>,
    pub(crate) node: Arc<Node>,
}

/// An in-memory copy-on-write B+tree.
#[derive(Debug)]
pub struct Tree {
    options: TreeOptions,
    /// Held for a whole apply: there is one writer at a time.
    writer: Mutex<()>,
    /// The latest roots, oldest first; taken briefly to publish or to pin one.
    roots: Mutex<VecDeque<Root>>,
}

impl Tree {
    /// An empty tree.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] if `roots_retained` is 0.
    pub fn new(options: TreeOptions) -> Result<Self> {
        if options.roots_retained == 0 {
            return Err(Error::InvalidOptions("roots_retained must be at least 1"));
        }
        let root = Root {
            lsn: None,
            node: Arc::new(Node::empty(options.page_size)),
        };
        Ok(Self {
            options,
            writer: Mutex::new(()),
            roots: Mutex::new(VecDeque::from([root])),
        })
    }

    /// The tree's options.
    pub fn options(&self) -> TreeOptions {
        self.options
    }

    /// Applies `batch` atomically at `lsn`: each `(key, Some(value))` stores the value and
    /// each `(key, None)` deletes the key (a tombstone with version `lsn` is kept); the
    /// last write to a key in the batch wins. Read views taken after it returns see it.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] for a key above [`PageSize::key_size_max`] or a value above
    /// [`crate::VALUE_SIZE_MAX`]; [`Error::LsnNotIncreasing`] unless `lsn` is above
    /// every LSN applied (and at most [`LSN_MAX`]). An error means nothing was applied.
    pub fn apply<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        lsn: u64,
        batch: &[(K, Option<V>)],
    ) -> Result<()> {
        let writes = self.check_batch(batch)?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = self.latest();
        let floor = latest.lsn.unwrap_or(0);
        if lsn <= floor || lsn > LSN_MAX {
            return Err(Error::LsnNotIncreasing { lsn, floor });
        }
        let node = apply_root(&latest.node, &writes, lsn, self.options.page_size);
        drop(latest);
        let mut roots = self.lock_roots();
        if roots.len() == self.options.roots_retained {
            roots.pop_front();
        }
        roots.push_back(Root {
            lsn: Some(lsn),
            node,
        });
        Ok(())
    }

    /// The batch's writes sorted by key, the last write to each key kept, after checking
    /// each against the limits.
    fn check_batch<'b, K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        batch: &'b [(K, Option<V>)],
    ) -> Result<Vec<Write<'b>>> {
        let page_size = self.options.page_size;
        let mut writes: Vec<Write<'b>> = Vec::with_capacity(batch.len());
        for (key, value) in batch {
            let (key, value) = (key.as_ref(), value.as_ref().map(AsRef::as_ref));
            let value_len = value.map_or(0, <[u8]>::len);
            page_size.check_entry(key.len(), value_len)?;
            writes.push((key, value));
        }
        // A stable sort keeps a key's writes in batch order; the last of each run wins.
        writes.sort_by(|a, b| a.0.cmp(b.0));
        let mut deduped: Vec<Write<'b>> = Vec::with_capacity(writes.len());
        for write in writes {
            match deduped.last_mut() {
                Some(last) if last.0 == write.0 => *last = write,
                _ => deduped.push(write),
            }
        }
        Ok(deduped)
    }

    /// A read view of everything applied so far.
    pub fn read_view(&self) -> ReadView {
        let root = self.latest();
        let lsn = root.lsn;
        ReadView::new(root, lsn, self.options.page_size)
    }

    /// A read view at `lsn`: every batch at or below `lsn` is visible, none above. `lsn`
    /// must lie between the LSN of the oldest retained root and the last applied.
    ///
    /// # Errors
    /// [`Error::ViewOutOfRange`] otherwise.
    pub fn read_view_at(&self, lsn: u64) -> Result<ReadView> {
        let roots = self.lock_roots();
        let from = roots.front().and_then(|r| r.lsn).unwrap_or(0);
        let through = roots.back().and_then(|r| r.lsn).unwrap_or(0);
        if lsn < from || lsn > through {
            return Err(Error::ViewOutOfRange { lsn, from, through });
        }
        let root = roots
            .iter()
            .rev()
            .find(|r| r.lsn.unwrap_or(0) <= lsn)
            .expect("the oldest root is at or below lsn")
            .clone();
        drop(roots);
        let lsn = (lsn > 0).then_some(lsn);
        Ok(ReadView::new(root, lsn, self.options.page_size))
    }

    /// The LSN of the last batch applied, `None` before the first.
    pub fn last_applied(&self) -> Option<u64> {
        self.latest().lsn
    }

    /// Statistics of the latest tree (see [`ReadView::stats`]), in O(node count).
    pub fn stats(&self) -> TreeStats {
        self.read_view().stats()
    }

    /// The latest published root.
    pub(crate) fn latest(&self) -> Root {
        self.lock_roots()
            .back()
            .expect("the ring always holds a root")
            .clone()
    }

    /// The ring of roots. A panic while it is held cannot leave it half changed (it only
    /// pushes and pops whole roots), so a poisoned lock is taken as is.
    fn lock_roots(&self) -> MutexGuard<'_, VecDeque<Root>> {
        self.roots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the latest tree's invariants (see `ReadView::check_invariants`) and the
    /// ring's: LSNs strictly increase, at most `roots_retained` roots.
    ///
    /// # Panics
    /// If any does not hold.
    pub fn check_invariants(&self) {
        let roots = self.lock_roots().clone();
        assert!(!roots.is_empty(), "no root");
        assert!(roots.len() <= self.options.roots_retained, "ring too long");
        let lsns: Vec<u64> = roots.iter().map(|r| r.lsn.unwrap_or(0)).collect();
        assert!(
            lsns.windows(2).all(|w| w[0] < w[1]),
            "root LSNs do not increase: {lsns:?}"
        );
        self.read_view().check_invariants();
    }
}
