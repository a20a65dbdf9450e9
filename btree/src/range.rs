//! A cursor over a range of one pinned tree, in either direction.
//!
//! The cursor holds the path from the root to its leaf: a stack of (branch, level, child
//! index) no deeper than the tree (bounded by [`crate::TREE_HEIGHT_MAX`]), then the leaf
//! and an entry index; each is an in-memory node or a page of the map. Stepping past a leaf's
//! end pops to the nearest branch with a next (or
//! previous) child and descends its leftmost (or rightmost) path. Keys and values are
//! slices of the leaf's page (values in overflow chains of the file are read into a buffer
//! when the cursor lands on them). The cursor pins its root, so no page it can reach is
//! reused while it lives. Tombstones are stepped over; the cursor becomes
//! invalid past the range's far bound.
//!
//! Invariant: when valid, the cursor is on a live entry within the bounds, and every
//! (branch, index) on the stack names the child below it.

use std::ops::{Bound, Range};
use std::sync::Arc;

use crate::branch_page::{BranchFound, BranchPage};
use crate::error::Result;
use crate::leaf_page::{LeafPage, LeafValue};
use crate::node::{BranchRef, Child, is_side};
use crate::page_format::{PageId, TxnId};
use crate::pages::Bounds;
use crate::pages::Pages;
use crate::pins::Pin;
use crate::tree::Root;

/// The order of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending keys.
    Forward,
    /// Descending keys.
    Backward,
}

/// One side of where a parent places a node: unbounded (`None`), or separator `index` of
/// the branch of the stack's frame `depth`, read only when a page below is not verified
/// yet. A verified page needs no bounds, so a cursor on a verified tree copies no key.
type Side = Option<(usize, usize)>;

/// A branch on the cursor's path: the node, its level, the child the cursor is in, and
/// where its parent places it (checked when a page below is first read).
#[derive(Debug)]
struct Frame {
    node: Child,
    level: u8,
    index: usize,
    /// The branch's number of children, so that stepping to the next leaf need not read
    /// the branch again to know whether it has one.
    count: usize,
    low: Side,
    high: Side,
    /// For a page of the file: where it starts in the map and what its decode found, so
    /// that stepping to its next child reopens it without decoding its header again.
    page: Option<(usize, BranchFound)>,
}

/// The sides of child `index` of a branch of `count` children at stack depth `depth`,
/// whose own sides are `low` and `high`.
fn child_sides(
    depth: usize,
    index: usize,
    count: usize,
    (low, high): (Side, Side),
) -> (Side, Side) {
    let low = index.checked_sub(1).map_or(low, |i| Some((depth, i)));
    let high = if index + 1 < count {
        Some((depth, index))
    } else {
        high
    };
    (low, high)
}

/// The entry the cursor rests on, decoded once when it landed: where its key and value lie
/// in the leaf's bytes, or the value itself when it lives elsewhere.
#[derive(Debug)]
struct Current {
    key: Range<usize>,
    value: CurrentValue,
    version: u64,
}

#[derive(Debug)]
enum CurrentValue {
    InLeaf(Range<usize>),
    Side(Arc<[u8]>),
    Chain(Vec<u8>),
}

/// A cursor over the live entries of a range, in one direction.
#[derive(Debug)]
pub struct RangeIter {
    pages: Arc<Pages>,
    /// Keeps every page the cursor can reach from being reused.
    _pin: Arc<Pin>,
    /// Branches from the root down, each with the index of the child the cursor is in.
    stack: Vec<Frame>,
    /// The current leaf and entry; `None` once the cursor is exhausted.
    leaf: Option<(Child, usize)>,
    /// The number of entries in the current leaf, and its page id and transaction, as
    /// decoded when the cursor landed on it.
    count: usize,
    leaf_id: PageId,
    leaf_txn: TxnId,
    /// Where the current leaf, if a page of the file, starts in the map: found once when
    /// the cursor landed on it, so that reading its bytes again for each entry is one
    /// bounds check.
    leaf_at: usize,
    /// The current entry, once `settle` landed on a live one.
    current: Option<Current>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    direction: Direction,
    /// Whether the scan has a far bound (its upper one forward, its lower one backward):
    /// without one, a step within a leaf compares no key.
    bounded_far: bool,
}

impl RangeIter {
    pub(crate) fn new(
        root: &Root,
        (lower, upper): (Bound<Vec<u8>>, Bound<Vec<u8>>),
        direction: Direction,
    ) -> Result<Self> {
        let mut iter = Self {
            pages: Arc::clone(&root.pages),
            _pin: Arc::clone(&root.pin),
            // One frame per branch level: allocated once.
            stack: Vec::with_capacity(usize::from(root.level)),
            leaf: None,
            count: 0,
            leaf_id: PageId(0),
            leaf_txn: TxnId(0),
            leaf_at: 0,
            current: None,
            bounded_far: !matches!(
                (direction, &lower, &upper),
                (Direction::Forward, _, Bound::Unbounded)
                    | (Direction::Backward, Bound::Unbounded, _)
            ),
            lower,
            upper,
            direction,
        };
        iter.seek(root.node.clone(), root.level)?;
        iter.settle()?;
        Ok(iter)
    }

    /// Whether the cursor is on an entry.
    #[inline]
    pub fn valid(&self) -> bool {
        self.leaf.is_some()
    }

    /// The current key.
    ///
    /// # Panics
    /// If the cursor is not [`RangeIter::valid`].
    pub fn key(&self) -> &[u8] {
        let current = self.current();
        self.leaf_bytes()
            .get(current.key.clone())
            .expect("decoded when landed")
    }

    /// The current key and value, as [`RangeIter::key`] and [`RangeIter::value`] with one
    /// look-up of the leaf.
    ///
    /// # Panics
    /// If the cursor is not [`RangeIter::valid`].
    #[inline]
    pub fn key_value(&self) -> (&[u8], &[u8]) {
        let current = self.current();
        let bytes = self.leaf_bytes();
        let key = bytes.get(current.key.clone()).expect("decoded when landed");
        let value = match &current.value {
            CurrentValue::InLeaf(range) => bytes.get(range.clone()).expect("decoded when landed"),
            CurrentValue::Side(value) => value,
            CurrentValue::Chain(value) => value,
        };
        (key, value)
    }

    /// The current value.
    ///
    /// # Panics
    /// If the cursor is not [`RangeIter::valid`].
    pub fn value(&self) -> &[u8] {
        match &self.current().value {
            CurrentValue::InLeaf(range) => self
                .leaf_bytes()
                .get(range.clone())
                .expect("decoded when landed"),
            CurrentValue::Side(value) => value,
            CurrentValue::Chain(value) => value,
        }
    }

    /// The current entry's version (the LSN that wrote it).
    ///
    /// # Panics
    /// If the cursor is not [`RangeIter::valid`].
    pub fn version(&self) -> u64 {
        self.current().version
    }

    #[inline]
    fn current(&self) -> &Current {
        self.current.as_ref().expect("the cursor is valid")
    }

    /// The bytes of the current leaf: its image, or its page in the map.
    #[inline]
    fn leaf_bytes(&self) -> &[u8] {
        let leaf = &self.leaf.as_ref().expect("the cursor is valid").0;
        self.bytes_of(leaf).expect("read when landed")
    }

    /// The bytes of `leaf`, the current leaf: its image, or its page in the map at
    /// `leaf_at`. `None` only if the map no longer holds the page, which `land` read.
    #[inline]
    fn bytes_of<'a>(&'a self, leaf: &'a Child) -> Option<&'a [u8]> {
        match leaf {
            Child::Mem(node) => Some(node.as_leaf().bytes()),
            Child::Disk(_) => self.pages.page_at(self.leaf_at),
        }
    }

    /// Moves to the next entry in the scan's direction.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] naming the page, for a damaged page on the way; the
    /// cursor is then exhausted.
    #[expect(
        clippy::should_implement_trait,
        reason = "a cursor, as popdb-lsm's: next returns a Result and the entry is read in place"
    )]
    #[inline]
    pub fn next(&mut self) -> Result<()> {
        if self.next_in_leaf() {
            return Ok(());
        }
        self.next_general()
    }

    /// [`RangeIter::next`] by `step` and `settle`: out of line, so that the common step
    /// inlines into the caller's loop.
    #[inline(never)]
    fn next_general(&mut self) -> Result<()> {
        let moved = self.step().and_then(|()| self.settle());
        if moved.is_err() {
            self.end();
        }
        moved
    }

    /// The common step, taken without `step` and `settle`: from an inline value to the
    /// next entry of the same leaf, also an inline value, within the far bound. Returns
    /// `false`, the cursor unchanged, for anything else (a leaf's end, a tombstone, a value
    /// elsewhere, the bound, or bytes `probe_inline` refuses), which the general path then
    /// takes, with the same checks as `settle`'s and the same result.
    #[inline]
    fn next_in_leaf(&mut self) -> bool {
        let (Some((leaf, index)), Some(current)) = (&self.leaf, &self.current) else {
            return false;
        };
        if !matches!(current.value, CurrentValue::InLeaf(_)) {
            return false;
        }
        let next = match self.direction {
            // An index is below a page's slot count: no overflow.
            Direction::Forward => index.wrapping_add(1),
            Direction::Backward => match index.checked_sub(1) {
                Some(next) => next,
                None => return false,
            },
        };
        let Some(bytes) = self.bytes_of(leaf) else {
            return false;
        };
        let page = LeafPage::reopen(
            bytes,
            self.pages.page_size(),
            self.leaf_id,
            self.leaf_txn,
            self.count,
        );
        // `probe_inline` refuses an index at or past the count (the leaf's end).
        let Some((key, value, version)) = page.probe_inline(next) else {
            return false;
        };
        if self.bounded_far {
            match bytes.get(key.clone()) {
                Some(key_bytes) if !self.beyond(key_bytes) => {}
                _ => return false,
            }
        }
        if let Some((_, at)) = self.leaf.as_mut() {
            *at = next;
        }
        // In place: the value was in the leaf and stays there, so nothing is dropped.
        if let Some(Current {
            key: current_key,
            value: CurrentValue::InLeaf(current_value),
            version: current_version,
        }) = &mut self.current
        {
            (*current_key, *current_value, *current_version) = (key, value, version);
        }
        true
    }

    fn end(&mut self) {
        self.leaf = None;
        self.current = None;
        self.stack.clear();
    }

    /// Makes `node`, which lies within `sides`, the current leaf, at `index`.
    fn land(&mut self, node: Child, sides: (Side, Side), index: usize) -> Result<()> {
        let found = LeafFound::of(&self.leaf_page(&node, sides)?);
        self.land_found(node, found, index);
        Ok(())
    }

    /// Makes `node`, read as `found`, the current leaf, at `index`.
    fn land_found(&mut self, node: Child, found: LeafFound, index: usize) {
        (self.count, self.leaf_id, self.leaf_txn) = (found.count, found.id, found.txn);
        if let Child::Disk(page) = &node {
            self.leaf_at = self.pages.page_start(page.id);
        }
        self.leaf = Some((node, index));
    }

    /// The key a side names.
    fn side_key(&self, side: Side) -> Result<Option<&[u8]>> {
        let Some((depth, index)) = side else {
            return Ok(None);
        };
        let frame = self.stack.get(depth).expect("a side names a frame below");
        // The frame's branch was read (and verified) when it was pushed.
        let branch = frame.node.branch_ref(&self.pages, frame.level, None)?;
        branch.separator(index).map(Some)
    }

    /// The bounds `sides` name.
    fn bounds(&self, (low, high): (Side, Side)) -> Result<Bounds<'_>> {
        Ok(Bounds {
            low: self.side_key(low)?,
            high: self.side_key(high)?,
        })
    }

    /// `node`, a branch at `level` within `sides`, to read.
    fn branch<'a>(
        &'a self,
        node: &'a Child,
        level: u8,
        sides: (Side, Side),
    ) -> Result<BranchRef<'a>> {
        match node {
            Child::Disk(page) => self
                .pages
                .branch_lazy(*page, level, || self.bounds(sides))
                .map(BranchRef::Page),
            Child::Mem(_) => node.branch_ref(&self.pages, level, None),
        }
    }

    /// `node`, a leaf within `sides`, to read.
    fn leaf_page<'a>(&'a self, node: &'a Child, sides: (Side, Side)) -> Result<LeafPage<'a>> {
        match node {
            Child::Disk(page) => self.pages.leaf_lazy(*page, || self.bounds(sides)),
            Child::Mem(_) => node.leaf_page(&self.pages, None),
        }
    }

    /// Descends from `root` to the first entry in the scan's direction at or past its near
    /// bound (possibly past the leaf's last entry, or before its first).
    fn seek(&mut self, root: Child, root_level: u8) -> Result<()> {
        let target = match self.direction {
            Direction::Forward => bound_key(&self.lower),
            Direction::Backward => bound_key(&self.upper),
        }
        .map(<[u8]>::to_vec);
        let (node, leaf_sides) = self.down_to_leaf(
            (root, root_level, (None, None)),
            target.as_deref(),
            self.direction,
        )?;
        let (found, at) = {
            let page = self.leaf_page(&node, leaf_sides)?;
            let len = page.len();
            let at = match target.as_deref() {
                None => None,
                Some(key) => {
                    let at = page.lower_bound(key)?;
                    let hit = at < len && page.key(at)? == key;
                    Some((at, hit))
                }
            };
            (LeafFound::of(&page), at)
        };
        let len = found.count;
        let excluded = matches!(
            (self.direction, &self.lower, &self.upper),
            (Direction::Forward, Bound::Excluded(_), _)
                | (Direction::Backward, _, Bound::Excluded(_))
        );
        match (self.direction, at) {
            (Direction::Forward, None) => self.land_found(node, found, 0),
            (Direction::Forward, Some((at, hit))) => {
                let at = if hit && excluded { at + 1 } else { at };
                self.land_found(node, found, at);
            }
            (Direction::Backward, None) => self.land_backward(node, leaf_sides, len)?,
            (Direction::Backward, Some((at, hit))) => {
                let end = if hit && !excluded { at + 1 } else { at };
                self.land_backward(node, leaf_sides, end)?;
            }
        }
        if let Some((_, index)) = &self.leaf
            && *index >= self.count
        {
            self.next_leaf()?;
        }
        Ok(())
    }

    /// Descends from `node` (at its level, within its bounds) to a leaf, pushing a frame
    /// per branch: towards `target` if given, else to the first or last child `towards`
    /// says. Returns the leaf and its bounds.
    fn down_to_leaf(
        &mut self,
        (mut node, mut level, mut sides): (Child, u8, (Side, Side)),
        target: Option<&[u8]>,
        towards: Direction,
    ) -> Result<(Child, (Side, Side))> {
        while level > 0 {
            assert!(self.stack.len() < crate::TREE_HEIGHT_MAX, "tree too tall");
            let depth = self.stack.len();
            let (index, count, child, page) = {
                let branch = self.branch(&node, level, sides)?;
                let count = branch.child_count();
                let index = match (target, towards) {
                    (Some(key), _) => branch.child_index(key)?,
                    (None, Direction::Forward) => 0,
                    (None, Direction::Backward) => count - 1,
                };
                let page = match &branch {
                    BranchRef::Page(p) => Some((self.pages.page_start(p.page_id()), p.found())),
                    BranchRef::Mem(_) => None,
                };
                (index, count, branch.child(index)?, page)
            };
            let child_sides = child_sides(depth, index, count, sides);
            self.stack.push(Frame {
                node,
                level,
                index,
                count,
                low: sides.0,
                high: sides.1,
                page,
            });
            (node, sides) = (child, child_sides);
            level -= 1;
        }
        Ok((node, sides))
    }

    /// Positions a backward cursor on the entry before `end` in `node`, or the previous
    /// leaf's last if `end` is 0.
    fn land_backward(&mut self, node: Child, sides: (Side, Side), end: usize) -> Result<()> {
        if let Some(index) = end.checked_sub(1) {
            self.land(node, sides, index)
        } else {
            self.land(node, sides, 0)?;
            self.prev_leaf()
        }
    }

    /// One entry on, in the scan's direction.
    fn step(&mut self) -> Result<()> {
        let Some((_, index)) = self.leaf.as_ref() else {
            return Ok(());
        };
        let index = *index;
        match self.direction {
            Direction::Forward => {
                if index + 1 >= self.count {
                    return self.next_leaf();
                }
                if let Some((_, at)) = self.leaf.as_mut() {
                    *at = index + 1;
                }
            }
            Direction::Backward => {
                if index == 0 {
                    return self.prev_leaf();
                }
                if let Some((_, at)) = self.leaf.as_mut() {
                    *at = index - 1;
                }
            }
        }
        Ok(())
    }

    /// Moves to the first entry of the next leaf, or ends the cursor.
    fn next_leaf(&mut self) -> Result<()> {
        self.leaf = None;
        while let Some(mut frame) = self.stack.pop() {
            if frame.index + 1 < frame.count {
                frame.index += 1;
                self.stack.push(frame);
                return self.descend(Direction::Forward);
            }
        }
        Ok(())
    }

    /// Moves to the last entry of the previous leaf, or ends the cursor.
    fn prev_leaf(&mut self) -> Result<()> {
        self.leaf = None;
        while let Some(mut frame) = self.stack.pop() {
            if frame.index > 0 {
                frame.index -= 1;
                self.stack.push(frame);
                return self.descend(Direction::Backward);
            }
        }
        Ok(())
    }

    /// From the child named by the stack's top, descends the leftmost (forward) or
    /// rightmost (backward) path to a leaf and lands on its first or last entry.
    fn descend(&mut self, towards: Direction) -> Result<()> {
        let (node, level, sides) = {
            let depth = self.stack.len() - 1;
            let top = self.stack.last().expect("descend starts from a branch");
            // A page of the file was decoded (and verified) when its frame was pushed.
            let reopened = top.page.and_then(|(at, found)| {
                let bytes = self.pages.page_at(at)?;
                Some(BranchRef::Page(BranchPage::reopen(
                    bytes,
                    self.pages.page_size(),
                    found,
                )))
            });
            let branch = match reopened {
                Some(branch) => branch,
                None => self.branch(&top.node, top.level, (top.low, top.high))?,
            };
            let sides = child_sides(depth, top.index, top.count, (top.low, top.high));
            (branch.child(top.index)?, top.level - 1, sides)
        };
        let (node, sides) = self.down_to_leaf((node, level, sides), None, towards)?;
        let found = LeafFound::of(&self.leaf_page(&node, sides)?);
        let len = found.count;
        if len == 0 {
            let id = node.page().map_or(0, |p| p.id.0);
            return Err(crate::Error::corruption(
                crate::PageId(id),
                crate::page_format::COUNT_AT,
                "leaf count (an empty leaf below the root)",
                crate::CorruptionKind::InvalidValue { found: 0 },
            ));
        }
        let index = match towards {
            Direction::Forward => 0,
            Direction::Backward => len - 1,
        };
        self.land_found(node, found, index);
        Ok(())
    }

    /// Steps over tombstones, ends the cursor past the far bound, and decodes the entry it
    /// rests on (reading the value of an overflow chain of the file).
    fn settle(&mut self) -> Result<()> {
        self.current = None;
        while let Some((leaf, index)) = &self.leaf {
            let bytes = match leaf {
                Child::Mem(node) => node.as_leaf().bytes(),
                Child::Disk(page) => self.pages.bytes(page.id)?,
            };
            let page = LeafPage::reopen(
                bytes,
                self.pages.page_size(),
                self.leaf_id,
                self.leaf_txn,
                self.count,
            );
            // The common case, an inline value, without decoding a whole entry.
            if let Some((key, value, version)) = page.probe_inline(*index) {
                let key_bytes = bytes.get(key.clone()).expect("probed within the page");
                if self.beyond(key_bytes) {
                    self.end();
                } else {
                    self.current = Some(Current {
                        key,
                        value: CurrentValue::InLeaf(value),
                        version,
                    });
                }
                return Ok(());
            }
            let entry = page.entry(*index)?;
            if self.beyond(entry.key) {
                self.end();
                return Ok(());
            }
            let value = match entry.value {
                LeafValue::Tombstone => None,
                LeafValue::Inline(v) => Some(CurrentValue::InLeaf(within(bytes, v))),
                LeafValue::Overflow(r) => Some(match leaf {
                    Child::Mem(node) if is_side(r) => {
                        CurrentValue::Side(Arc::clone(node.as_leaf().side_value(r)))
                    }
                    _ => {
                        let mut value = Vec::new();
                        self.pages.read_value(r, &mut value)?;
                        CurrentValue::Chain(value)
                    }
                }),
            };
            if let Some(value) = value {
                self.current = Some(Current {
                    key: within(bytes, entry.key),
                    value,
                    version: entry.version,
                });
                return Ok(());
            }
            self.step()?;
        }
        Ok(())
    }

    /// Whether `key` lies past the scan's far bound.
    fn beyond(&self, key: &[u8]) -> bool {
        match self.direction {
            Direction::Forward => match &self.upper {
                Bound::Included(k) => key > k.as_slice(),
                Bound::Excluded(k) => key >= k.as_slice(),
                Bound::Unbounded => false,
            },
            Direction::Backward => match &self.lower {
                Bound::Included(k) => key < k.as_slice(),
                Bound::Excluded(k) => key <= k.as_slice(),
                Bound::Unbounded => false,
            },
        }
    }
}

/// What a cursor keeps of a leaf it read: its entry count, page id and transaction.
#[derive(Clone, Copy)]
struct LeafFound {
    count: usize,
    id: PageId,
    txn: TxnId,
}

impl LeafFound {
    fn of(page: &LeafPage<'_>) -> Self {
        Self {
            count: page.len(),
            id: page.page_id(),
            txn: page.txn_id(),
        }
    }
}

/// Where `part`, a slice of `whole`, lies in it.
fn within(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr().addr() - whole.as_ptr().addr();
    start..start + part.len()
}

fn bound_key(bound: &Bound<Vec<u8>>) -> Option<&[u8]> {
    match bound {
        Bound::Included(k) | Bound::Excluded(k) => Some(k),
        Bound::Unbounded => None,
    }
}
