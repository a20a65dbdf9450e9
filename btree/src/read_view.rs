//! A read view: one published root, pinned. Writes applied after it was taken build new
//! nodes and leave every node and page it reaches unchanged (the free list does not hand
//! out a page while a pin can reach it), so it reads one consistent tree for as long as it
//! lives, and holding it never blocks the writer.
//!
//! Gets descend from the root in a loop bounded by the tree height, through in-memory
//! nodes and then pages of the map, binary-searching the separators of each branch and the
//! slots of the leaf; tombstones read as absent.

use std::ops::Bound;

use crate::branch_page::BranchPage;
use crate::error::Result;
use crate::node::{BranchRef, Child, Node};
use crate::page_size::PageSize;
use crate::pages::{Bounds, Pages};
use crate::range::{Direction, RangeIter};
use crate::tree::Root;

/// A consistent view of a tree at one LSN.
#[derive(Clone, Debug)]
pub struct ReadView {
    root: Root,
    /// The LSN the view reads at: the root's, or the one `read_view_at` was asked for.
    lsn: Option<u64>,
}

/// A value and its version (the LSN that wrote it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The LSN of the write that produced it.
    pub version: u64,
}

impl ReadView {
    /// A view of `root` at `lsn`, which is the root's LSN or above it (below the next
    /// root's).
    pub(crate) fn new(root: Root, lsn: Option<u64>) -> Self {
        assert!(
            lsn >= root.lsn,
            "view at {lsn:?} below its root's {:?}",
            root.lsn
        );
        Self { root, lsn }
    }

    /// The LSN the view reads at: every batch at or below it is visible, none above;
    /// `None` for the tree before any batch.
    pub fn lsn(&self) -> Option<u64> {
        self.lsn
    }

    /// The value of `key` and its version; `None` if absent or deleted.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] naming the page, for a damaged page on the way.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let mut value = Vec::new();
        let version = self.get_into(key, &mut value)?;
        Ok(version.map(|version| Versioned { value, version }))
    }

    /// As [`ReadView::get`], with the value written into `value` (cleared first, left empty
    /// when absent); returns the version.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn get_into(&self, key: &[u8], value: &mut Vec<u8>) -> Result<Option<u64>> {
        value.clear();
        let pages = &*self.root.pages;
        let mut level = self.root.level;
        // Where the parent places the node: checked when a page is first read.
        let mut bounds = Bounds::default();
        // In-memory nodes first (borrowed, no reference counting), then pages of the map.
        let mut child = &self.root.node;
        let mut page = loop {
            match child {
                Child::Disk(page) => break *page,
                Child::Mem(node) => match &**node {
                    Node::Branch(b) => {
                        let index = b.child_index(key);
                        bounds = BranchRef::Mem(b).child_bounds(index, bounds)?;
                        child = b
                            .children
                            .get(index)
                            .expect("a branch has a child per separator and one more");
                        level -= 1;
                    }
                    Node::Leaf(leaf) => {
                        let Some(entry) = leaf.page().find(key)? else {
                            return Ok(None);
                        };
                        let live = child.value_into(pages, &entry, value)?;
                        return Ok(live.then_some(entry.version));
                    }
                },
            }
        };
        // A page's bounds are read only if it is not verified yet: most gets need none.
        let (mut low, mut high) = (Side::Known(bounds.low), Side::Known(bounds.high));
        for _ in 0..crate::TREE_HEIGHT_MAX {
            let bounds = || {
                Ok(Bounds {
                    low: low.resolve()?,
                    high: high.resolve()?,
                })
            };
            if level == 0 {
                let Some(entry) = pages.leaf_lazy(page, bounds)?.find(key)? else {
                    return Ok(None);
                };
                let live = Child::Disk(page).value_into(pages, &entry, value)?;
                return Ok(live.then_some(entry.version));
            }
            let branch = pages.branch_lazy(page, level, bounds)?;
            let index = branch.child_index(key)?;
            page = branch.child(index)?;
            if let Some(before) = index.checked_sub(1) {
                low = Side::Separator(branch, before);
            }
            if index < branch.len() {
                high = Side::Separator(branch, index);
            }
            level -= 1;
        }
        unreachable!("levels are at most LEVEL_MAX")
    }

    /// An ascending or descending scan of the keys within `bounds` (lower, upper).
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn scan(
        &self,
        bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        direction: Direction,
    ) -> Result<RangeIter> {
        RangeIter::new(&self.root, bounds, direction)
    }

    /// A scan of the keys starting with `prefix`, in `direction`.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn prefix(&self, prefix: &[u8], direction: Direction) -> Result<RangeIter> {
        self.scan(prefix_bounds(prefix), direction)
    }

    /// The root, for the invariant checks and statistics.
    pub(crate) fn root(&self) -> &Root {
        &self.root
    }

    /// The root node.
    pub(crate) fn root_node(&self) -> &Child {
        &self.root.node
    }

    /// The pages the view reads.
    pub(crate) fn pages(&self) -> &Pages {
        &self.root.pages
    }

    /// The page size nodes fit.
    pub(crate) fn page_size(&self) -> PageSize {
        self.root.pages.page_size()
    }
}

/// One side of where a parent places a page, read only when needed: a key known already
/// (or none), or a separator of a branch page on the way down.
#[derive(Clone, Copy)]
enum Side<'a> {
    Known(Option<&'a [u8]>),
    Separator(BranchPage<'a>, usize),
}

impl<'a> Side<'a> {
    fn resolve(self) -> Result<Option<&'a [u8]>> {
        match self {
            Side::Known(key) => Ok(key),
            Side::Separator(branch, index) => branch.separator(index).map(Some),
        }
    }
}

/// The bounds of the keys that start with `prefix`: from the prefix, up to the next key
/// after every extension of it (none if the prefix is all `0xff` bytes).
pub fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(upper));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}
