//! A cursor over a range of one pinned tree, in either direction.
//!
//! The cursor holds the path from the root to its leaf: a stack of (branch, child index)
//! no deeper than the tree (bounded by [`crate::TREE_HEIGHT_MAX`]), then the leaf and an
//! entry index. Stepping past a leaf's end pops to the nearest branch with a next (or
//! previous) child and descends its leftmost (or rightmost) path. Keys and values are
//! slices of the leaf's page image. Tombstones are stepped over; the cursor becomes
//! invalid past the range's far bound.
//!
//! Invariant: when valid, the cursor is on a live entry within the bounds, and every
//! (branch, index) on the stack names the child below it.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;
use crate::leaf_page::{LeafEntry, LeafValue};
use crate::node::{Leaf, Node};

/// The order of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending keys.
    Forward,
    /// Descending keys.
    Backward,
}

/// A cursor over the live entries of a range, in one direction.
#[derive(Debug)]
pub struct RangeIter {
    /// Branches from the root down, each with the index of the child the cursor is in.
    stack: Vec<(Arc<Node>, usize)>,
    /// The current leaf and entry; `None` once the cursor is exhausted.
    leaf: Option<(Arc<Node>, usize)>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    direction: Direction,
}

impl RangeIter {
    pub(crate) fn new(
        root: Arc<Node>,
        (lower, upper): (Bound<Vec<u8>>, Bound<Vec<u8>>),
        direction: Direction,
    ) -> Self {
        let mut iter = Self {
            stack: Vec::new(),
            leaf: None,
            lower,
            upper,
            direction,
        };
        iter.seek(root);
        iter.settle();
        iter
    }

    /// Whether the cursor is on an entry.
    pub fn valid(&self) -> bool {
        self.leaf.is_some()
    }

    /// The current key.
    ///
    /// # Panics
    /// If the cursor is not [`RangeIter::valid`].
    pub fn key(&self) -> &[u8] {
        self.entry().key
    }

    /// The current value.
    ///
    /// # Panics
    /// If the cursor is not [`RangeIter::valid`].
    pub fn value(&self) -> &[u8] {
        let (node, index) = self.leaf.as_ref().expect("the cursor is valid");
        let leaf = as_leaf(node);
        leaf.value(&leaf.entry(*index))
            .expect("the cursor rests on live entries only")
    }

    /// The current entry's version (the LSN that wrote it).
    ///
    /// # Panics
    /// If the cursor is not [`RangeIter::valid`].
    pub fn version(&self) -> u64 {
        self.entry().version
    }

    /// Moves to the next entry in the scan's direction.
    ///
    /// # Errors
    /// None yet: the tree is in memory. Reads through the file will return
    /// [`crate::Error::Corruption`].
    #[expect(
        clippy::should_implement_trait,
        reason = "a cursor, as popdb-lsm's: next returns a Result and the entry is read in place"
    )]
    pub fn next(&mut self) -> Result<()> {
        self.step();
        self.settle();
        Ok(())
    }

    fn entry(&self) -> LeafEntry<'_> {
        let (node, index) = self.leaf.as_ref().expect("the cursor is valid");
        as_leaf(node).entry(*index)
    }

    /// Descends from `root` to the first entry in the scan's direction at or past its near
    /// bound (possibly past the leaf's last entry, or before its first).
    fn seek(&mut self, root: Arc<Node>) {
        let target = match self.direction {
            Direction::Forward => bound_key(&self.lower),
            Direction::Backward => bound_key(&self.upper),
        }
        .map(<[u8]>::to_vec);
        let mut node = root;
        while let Node::Branch(b) = &*node {
            assert!(self.stack.len() < crate::TREE_HEIGHT_MAX, "tree too tall");
            let index = match (&target, self.direction) {
                (Some(key), _) => b.child_index(key),
                (None, Direction::Forward) => 0,
                (None, Direction::Backward) => b.children.len() - 1,
            };
            let child = Arc::clone(b.children.get(index).expect("index within children"));
            self.stack.push((node, index));
            node = child;
        }
        let page = as_leaf(&node).page();
        let len = page.len();
        let at = target.as_deref().map(|key| {
            let at = page
                .lower_bound(key)
                .expect("in-memory leaves are well formed");
            let hit = at < len && page.key(at).expect("index within the leaf") == key;
            (at, hit)
        });
        let excluded = matches!(
            (self.direction, &self.lower, &self.upper),
            (Direction::Forward, Bound::Excluded(_), _)
                | (Direction::Backward, _, Bound::Excluded(_))
        );
        match (self.direction, at) {
            (Direction::Forward, None) => self.leaf = Some((node, 0)),
            (Direction::Forward, Some((at, hit))) => {
                let at = if hit && excluded { at + 1 } else { at };
                self.leaf = Some((node, at));
            }
            (Direction::Backward, None) => self.land_backward(node, len),
            (Direction::Backward, Some((at, hit))) => {
                let end = if hit && !excluded { at + 1 } else { at };
                self.land_backward(node, end);
            }
        }
        if let Some((node, index)) = &self.leaf
            && *index >= as_leaf(node).len()
        {
            self.next_leaf();
        }
    }

    /// Positions a backward cursor on the entry before `end` in `node`, or the previous
    /// leaf's last if `end` is 0.
    fn land_backward(&mut self, node: Arc<Node>, end: usize) {
        if let Some(index) = end.checked_sub(1) {
            self.leaf = Some((node, index));
        } else {
            self.leaf = Some((node, 0));
            self.prev_leaf();
        }
    }

    /// One entry on, in the scan's direction.
    fn step(&mut self) {
        let Some((node, index)) = self.leaf.as_mut() else {
            return;
        };
        match self.direction {
            Direction::Forward => {
                *index += 1;
                if *index >= as_leaf(node).len() {
                    self.next_leaf();
                }
            }
            Direction::Backward => {
                if *index == 0 {
                    self.prev_leaf();
                } else {
                    *index -= 1;
                }
            }
        }
    }

    /// Moves to the first entry of the next leaf, or ends the cursor.
    fn next_leaf(&mut self) {
        self.leaf = None;
        while let Some((branch, index)) = self.stack.pop() {
            let Node::Branch(b) = &*branch else {
                unreachable!("the stack holds branches")
            };
            if index + 1 < b.children.len() {
                self.stack.push((Arc::clone(&branch), index + 1));
                self.descend(Direction::Forward);
                return;
            }
        }
    }

    /// Moves to the last entry of the previous leaf, or ends the cursor.
    fn prev_leaf(&mut self) {
        self.leaf = None;
        while let Some((branch, index)) = self.stack.pop() {
            if index > 0 {
                self.stack.push((branch, index - 1));
                self.descend(Direction::Backward);
                return;
            }
        }
    }

    /// From the child named by the stack's top, descends the leftmost (forward) or
    /// rightmost (backward) path to a leaf and lands on its first or last entry.
    fn descend(&mut self, towards: Direction) {
        let (top, index) = self.stack.last().expect("descend starts from a branch");
        let mut node = Arc::clone(child(top, *index));
        while let Node::Branch(b) = &*node {
            let index = match towards {
                Direction::Forward => 0,
                Direction::Backward => b.children.len() - 1,
            };
            let next = Arc::clone(child(&node, index));
            self.stack.push((node, index));
            node = next;
        }
        let len = as_leaf(&node).len();
        assert!(len > 0, "only an empty tree's root leaf is empty");
        let index = match towards {
            Direction::Forward => 0,
            Direction::Backward => len - 1,
        };
        self.leaf = Some((node, index));
    }

    /// Steps over tombstones, and ends the cursor past the far bound.
    fn settle(&mut self) {
        while self.leaf.is_some() {
            let entry = self.entry();
            let beyond = match self.direction {
                Direction::Forward => match &self.upper {
                    Bound::Included(k) => entry.key > k.as_slice(),
                    Bound::Excluded(k) => entry.key >= k.as_slice(),
                    Bound::Unbounded => false,
                },
                Direction::Backward => match &self.lower {
                    Bound::Included(k) => entry.key < k.as_slice(),
                    Bound::Excluded(k) => entry.key <= k.as_slice(),
                    Bound::Unbounded => false,
                },
            };
            if beyond {
                self.leaf = None;
                self.stack.clear();
                return;
            }
            if !matches!(entry.value, LeafValue::Tombstone) {
                return;
            }
            self.step();
        }
    }
}

fn bound_key(bound: &Bound<Vec<u8>>) -> Option<&[u8]> {
    match bound {
        Bound::Included(k) | Bound::Excluded(k) => Some(k),
        Bound::Unbounded => None,
    }
}

fn as_leaf(node: &Node) -> &Leaf {
    match node {
        Node::Leaf(l) => l,
        Node::Branch(_) => unreachable!("the cursor's node is a leaf"),
    }
}

fn child(node: &Node, index: usize) -> &Arc<Node> {
    match node {
        Node::Branch(b) => b.children.get(index).expect("index within children"),
        Node::Leaf(_) => unreachable!("the stack holds branches"),
    }
}
