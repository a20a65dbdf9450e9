//! A read view: one published root, pinned. Writes applied after it was taken build new
//! nodes and leave every node it reaches unchanged, so it reads one consistent tree for as
//! long as it lives, and holding it never blocks the writer.
//!
//! Gets descend from the root in a loop bounded by the tree height, binary-searching the
//! separators of each branch and the slots of the leaf; tombstones read as absent.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;
use crate::node::Node;
use crate::page_size::PageSize;
use crate::range::{Direction, RangeIter};
use crate::tree::Root;

/// A consistent view of a tree at one LSN.
#[derive(Clone, Debug)]
pub struct ReadView {
    root: Root,
    /// The LSN the view reads at: the root's, or the one `read_view_at` was asked for.
    lsn: Option<u64>,
    page_size: PageSize,
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
    pub(crate) fn new(root: Root, lsn: Option<u64>, page_size: PageSize) -> Self {
        assert!(
            lsn >= root.lsn,
            "view at {lsn:?} below its root's {:?}",
            root.lsn
        );
        Self {
            root,
            lsn,
            page_size,
        }
    }

    /// The LSN the view reads at: every batch at or below it is visible, none above;
    /// `None` for the tree before any batch.
    pub fn lsn(&self) -> Option<u64> {
        self.lsn
    }

    /// The value of `key` and its version; `None` if absent or deleted.
    ///
    /// # Errors
    /// None yet: the tree is in memory. Reads through the file will return
    /// [`crate::Error::Corruption`].
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
        let mut node = &self.root.node;
        for _ in 0..crate::TREE_HEIGHT_MAX {
            match &**node {
                Node::Branch(b) => {
                    node = b
                        .children
                        .get(b.child_index(key))
                        .expect("a branch has a child per separator and one more");
                }
                Node::Leaf(leaf) => {
                    let found = leaf
                        .page()
                        .find(key)
                        .expect("in-memory leaves are well formed");
                    return Ok(found.and_then(|entry| {
                        value.extend_from_slice(leaf.value(&entry)?);
                        Some(entry.version)
                    }));
                }
            }
        }
        unreachable!("tree taller than TREE_HEIGHT_MAX")
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
        Ok(RangeIter::new(
            Arc::clone(&self.root.node),
            bounds,
            direction,
        ))
    }

    /// A scan of the keys starting with `prefix`, in `direction`.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn prefix(&self, prefix: &[u8], direction: Direction) -> Result<RangeIter> {
        self.scan(prefix_bounds(prefix), direction)
    }

    /// The root node, for the invariant checks and statistics.
    pub(crate) fn root_node(&self) -> &Arc<Node> {
        &self.root.node
    }

    /// The page size nodes fit.
    pub(crate) fn page_size(&self) -> PageSize {
        self.page_size
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
