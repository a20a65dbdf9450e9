//! Applying a sorted batch of writes to a tree, copy-on-write: every node on a path to a
//! changed leaf is rebuilt into a new node, and every other node is shared with the tree
//! the batch started from. Spec: docs/format/btree.md (section 11, "Between
//! checkpoints").
//!
//! A changed leaf (in memory, or a page read through the map) is rebuilt in one pass,
//! merging its entries with the batch's writes for it. When the result fits one page and
//! no side value is involved (the common case), the entries it keeps are not decoded: the
//! runs between the writes are copied byte for byte into the new page image
//! (`LeafBuilder::push_run`), which costs about one page copy. Otherwise the entries are
//! decoded and packed into as many leaves as the page rules need (a split). A parent then
//! merges each underfull child with a sibling and repacks the pair, and packs its own
//! children into as many branches as they need; the root grows a level while more than one
//! node is left and collapses while it is a branch of one child. Deletes write tombstones,
//! kept with their version until a rebuild of their leaf finds them at or below the
//! horizon (the watermark); a leaf left with no entries disappears, and a branch left with
//! no children with it.
//!
//! The descent recurses, once per level: the tree is in memory and its height is bounded
//! by [`crate::TREE_HEIGHT_MAX`] (asserted by `pack_branches`).

use std::cmp::Ordering;
use std::sync::Arc;

use crate::branch_builder::BranchBuilder;
use crate::error::{CorruptionKind, Error, Result};
use crate::leaf_builder::LeafBuilder;
use crate::leaf_page::{EntryKinds, LeafEntry, LeafPage, LeafValue};
use crate::node::{
    Branch, Child, Item, Key, Leaf, Node, Piece, Separators, Stored, pack_branches, pack_leaves,
    unpack_branch,
};
use crate::page_format::{BRANCH_SLOTS_AT, PageId};
use crate::page_size::PageSize;
use crate::pages::Bounds;
use crate::pages::Pages;
use crate::search::compare;
use crate::spare_pages::SparePages;

/// One write of a batch: a value, or `None` for a delete.
pub(crate) type Write<'b> = (&'b [u8], Option<&'b [u8]>);

/// A tree after an apply: its root, the root's level, and its entry count.
pub(crate) struct Applied {
    pub(crate) root: Child,
    pub(crate) level: u8,
    pub(crate) entries: u64,
    /// In-memory nodes no checkpoint wrote yet.
    pub(crate) dirty: u64,
}

/// What replaces a node after an apply: one node within the same bounds (the common
/// case, which needs no key of its own), or pieces, each with its low bound, possibly none.
pub(crate) enum Replaced {
    One(Child),
    Pieces(Vec<Piece>),
}

impl Replaced {
    /// The replacement as pieces, the first at `low` (the replaced node's low bound).
    fn into_pieces(self, low: &[u8]) -> Vec<Piece> {
        match self {
            Replaced::One(child) => vec![(Key::from(low), child)],
            Replaced::Pieces(pieces) => pieces,
        }
    }
}

/// One batch being applied.
pub(crate) struct Apply<'p> {
    pub(crate) pages: &'p Pages,
    pub(crate) page_size: PageSize,
    pub(crate) lsn: u64,
    /// Tombstones at or below it are dropped when their leaf is rebuilt: the tree's
    /// watermark, below which no read view or condition looks.
    pub(crate) horizon: u64,
    /// Reused for every leaf the batch builds.
    builder: LeafBuilder,
    /// Entries added and removed so far.
    added: u64,
    removed: u64,
    /// Unwritten in-memory nodes made and dropped so far.
    made: u64,
    dropped: u64,
}

impl<'p> Apply<'p> {
    /// A batch at `lsn` over the tree whose pages are `pages`.
    /// Its leaves' images are built in buffers from `spares`.
    pub(crate) fn new(pages: &'p Pages, spares: &Arc<SparePages>, lsn: u64, horizon: u64) -> Self {
        Self {
            pages,
            page_size: pages.page_size(),
            builder: LeafBuilder::with_spares(pages.page_size(), spares),
            lsn,
            horizon,
            added: 0,
            removed: 0,
            made: 0,
            dropped: 0,
        }
    }

    /// The tree after applying `writes` (strictly increasing keys) to `root`, at `level`,
    /// holding `entries` entries and `dirty` unwritten in-memory nodes.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] reading a page; nothing is applied.
    pub(crate) fn run(
        mut self,
        root: &Child,
        level: u8,
        entries: u64,
        dirty: u64,
        writes: &[Write<'_>],
    ) -> Result<Applied> {
        if writes.is_empty() {
            return Ok(Applied {
                root: root.clone(),
                level,
                entries,
                dirty,
            });
        }
        let mut pieces = self
            .apply_node(root, level, &[], None, writes)?
            .into_pieces(&[]);
        let mut level = level;
        while pieces.len() > 1 {
            level += 1;
            pieces = self.branches(level, pieces);
        }
        // Counts are statistics: a file whose meta miscounts must not stop a write.
        let entries = entries
            .saturating_add(self.added)
            .saturating_sub(self.removed);
        let mut node = if let Some((_, node)) = pieces.pop() {
            node
        } else {
            self.made += 1;
            let spares = self
                .builder
                .spares()
                .expect("an apply's builder has spares");
            Child::Mem(Arc::new(Node::empty(self.page_size, spares)))
        };
        // An in-memory branch of one child collapses into it; a page never has one child.
        while let Child::Mem(mem) = &node
            && let Node::Branch(b) = &**mem
            && b.children.len() == 1
        {
            self.drop_node(&node);
            node = b.children.get(0).expect("one child").clone();
            level -= 1;
        }
        let dirty = dirty.saturating_add(self.made).saturating_sub(self.dropped);
        Ok(Applied {
            root: node,
            level,
            entries,
            dirty,
        })
    }

    /// Counts `node` out, if it is an unwritten in-memory node: the batch replaces it.
    fn drop_node(&mut self, node: &Child) {
        if matches!(node, Child::Mem(n) if n.written().is_none()) {
            self.dropped += 1;
        }
    }

    /// `items` packed into new leaves, counted in.
    fn leaves(&mut self, low: Key, items: &[Item<'_>]) -> Vec<Piece> {
        let pieces = pack_leaves(low, items, &mut self.builder);
        self.made += pieces.len() as u64;
        pieces
    }

    /// `children` packed into new branches at `level`, counted in.
    fn branches(&mut self, level: u8, children: Vec<Piece>) -> Vec<Piece> {
        let pieces = pack_branches(level, children, self.page_size);
        self.made += pieces.len() as u64;
        pieces
    }

    /// What replaces `node` (at `level`, within `low` and `high`) after applying `writes`,
    /// all of which belong to its subtree.
    fn apply_node(
        &mut self,
        node: &Child,
        level: u8,
        low: &[u8],
        high: Option<&[u8]>,
        writes: &[Write<'_>],
    ) -> Result<Replaced> {
        self.drop_node(node);
        let bounds = Some(Bounds {
            low: Some(low),
            high,
        });
        if level == 0 {
            if let Some(replaced) = self.patch_leaf(node, low, bounds, writes)? {
                return Ok(replaced);
            }
            let old = node.items(self.pages, bounds)?;
            check_order(node, low, &old)?;
            let old_len = old.len();
            let merged = self.merge_leaf(old, writes);
            self.added += merged.len() as u64;
            self.removed += old_len as u64;
            return Ok(one_or_pieces(self.leaves(Key::from(low), &merged)));
        }
        let branch = node.branch(self.pages, level, bounds)?;
        let touched = self.apply_children(&branch, level, (low, high), writes)?;
        // The common case: every touched child became one node that needs no merge. The
        // separators are the same, so the copy shares them and swaps those children.
        let in_place = touched.iter().all(|(_, replaced)| match replaced {
            Replaced::One(child) => !child.is_underfull(self.page_size),
            Replaced::Pieces(_) => false,
        });
        if in_place {
            let replaced = touched
                .into_iter()
                .map(|(index, replaced)| match replaced {
                    Replaced::One(child) => (index, child),
                    Replaced::Pieces(_) => unreachable!("checked above"),
                })
                .collect();
            let children = branch.children.replaced(replaced);
            self.made += 1;
            let copy = Branch::with_children(level, Arc::clone(&branch.separators), children);
            return Ok(Replaced::One(Child::Mem(Arc::new(Node::Branch(copy)))));
        }
        if let Some(spliced) = self.splice(&branch, level, low, &touched) {
            return Ok(Replaced::One(spliced));
        }
        let mut children = Vec::with_capacity(branch.children.len() + touched.len());
        let mut touched = touched.into_iter().peekable();
        for (index, child) in branch.children.iter().enumerate() {
            let child_low = match index.checked_sub(1) {
                Some(i) => branch.separators.get(i).expect("a separator per child"),
                None => low,
            };
            if let Some((_, replaced)) = touched.next_if(|(i, _)| *i == index) {
                children.extend(replaced.into_pieces(child_low));
            } else {
                children.push((Key::from(child_low), child.clone()));
            }
        }
        let children = self.rebalance(children, level - 1)?;
        if children.is_empty() {
            return Ok(Replaced::Pieces(children));
        }
        Ok(one_or_pieces(self.branches(level, children)))
    }

    /// The one branch that replaces `branch` (at `level`, its low bound `low`) with the
    /// `touched` children replaced, when the general path would make exactly that branch:
    /// no child is underfull (so no merge) and the children fit one branch page as
    /// `pack_branches` estimates it. Built from the separators as they are, without
    /// unpacking every child into a piece with a key of its own (a leaf split costs its
    /// parent that, once per child). `None` otherwise.
    fn splice(
        &mut self,
        branch: &Branch,
        level: u8,
        low: &[u8],
        touched: &[(usize, Replaced)],
    ) -> Option<Child> {
        let page_size = self.page_size;
        let fine = |child: &Child| !child.is_underfull(page_size);
        let replaced_fine = touched.iter().all(|(_, replaced)| match replaced {
            Replaced::One(child) => fine(child),
            Replaced::Pieces(pieces) => !pieces.is_empty() && pieces.iter().all(|(_, c)| fine(c)),
        });
        if !replaced_fine || !branch.children.iter().all(fine) {
            return None;
        }
        let count = branch.children.len() + touched.len();
        let mut keys: Vec<&[u8]> = Vec::with_capacity(count);
        let mut children: Vec<Child> = Vec::with_capacity(count);
        // The low bound of the first child, which `pack_branches` counts as if it were a
        // separator.
        let mut first_low = low;
        let mut touched = touched.iter().peekable();
        for (index, child) in branch.children.iter().enumerate() {
            let separator = index
                .checked_sub(1)
                .map(|i| branch.separators.get(i).expect("a separator per child"));
            match touched.next_if(|(i, _)| *i == index) {
                Some((_, Replaced::Pieces(pieces))) => {
                    for (piece_low, piece) in pieces {
                        if children.is_empty() {
                            first_low = piece_low;
                        } else {
                            keys.push(piece_low);
                        }
                        children.push(piece.clone());
                    }
                }
                Some((_, Replaced::One(replacement))) => {
                    keys.extend(separator);
                    children.push(replacement.clone());
                }
                None => {
                    keys.extend(separator);
                    children.push(child.clone());
                }
            }
        }
        let separators = Separators::new(keys);
        let estimate = BranchBuilder::encoded_size(first_low.len()) + separators.encoded();
        if estimate > page_size.bytes() - BRANCH_SLOTS_AT {
            return None;
        }
        assert!(
            BRANCH_SLOTS_AT + separators.encoded() <= page_size.bytes(),
            "spliced branch does not fit its page"
        );
        self.made += 1;
        let spliced = Branch::new(level, Arc::new(separators), children);
        Some(Child::Mem(Arc::new(Node::Branch(spliced))))
    }

    /// The leaf that replaces `node`, a leaf within `low` and `bounds`, after `writes`,
    /// built without decoding the entries it keeps: runs of unchanged entries are copied
    /// as they are between the writes. `None` (nothing built) when the result needs the
    /// general rebuild: it does not fit one page, or side values are involved.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] reading the page, or keys out of place in it.
    fn patch_leaf(
        &mut self,
        node: &Child,
        low: &[u8],
        bounds: Option<Bounds<'_>>,
        writes: &[Write<'_>],
    ) -> Result<Option<Replaced>> {
        if let Child::Mem(mem) = node
            && !mem.as_leaf().side().is_empty()
        {
            return Ok(None);
        }
        let page_size = self.page_size;
        if writes
            .iter()
            .any(|(k, v)| v.is_some_and(|v| !page_size.stores_inline(k.len(), v.len())))
        {
            return Ok(None);
        }
        let page = node.leaf_page(self.pages, bounds)?;
        assert!(self.builder.is_empty(), "a leaf build starts empty");
        let built = self.patch_leaf_into(node, low, &page, writes);
        if !matches!(built, Ok(true)) {
            self.builder.reset();
            return built.map(|_| None);
        }
        self.removed += page.len() as u64;
        self.added += self.builder.len() as u64;
        if self.builder.is_empty() {
            return Ok(Some(Replaced::Pieces(Vec::new())));
        }
        self.made += 1;
        let leaf = Leaf::finish(&mut self.builder, Vec::new());
        Ok(Some(Replaced::One(Child::Mem(Arc::new(Node::Leaf(leaf))))))
    }

    /// Merges the entries of `page` (leaf `node`, whose low bound is `low`) with `writes`
    /// into the builder: `false` if they do not fit one page.
    fn patch_leaf_into(
        &mut self,
        node: &Child,
        low: &[u8],
        page: &LeafPage<'_>,
        writes: &[Write<'_>],
    ) -> Result<bool> {
        // An in-memory leaf was built by an apply, which keeps it in order and in place; a
        // page of the file is checked as `check_order` checks one.
        let from_file = matches!(node, Child::Disk(_));
        // An in-memory leaf knows what it may hold; a page of the file is scanned.
        let kinds = match node {
            Child::Mem(mem) => mem.as_leaf().kinds(),
            Child::Disk(_) => page.kinds()?,
        };
        let (lsn, horizon) = (self.lsn, self.horizon);
        let builder = &mut self.builder;
        let push_write = |builder: &mut LeafBuilder, &(key, value): &Write<'_>| {
            let entry = LeafEntry {
                key,
                version: lsn,
                value: value.map_or(LeafValue::Tombstone, LeafValue::Inline),
            };
            let fits = builder.fits(&entry);
            if fits {
                builder.push(&entry);
            }
            fits
        };
        if !kinds.tombstone {
            // No entry to drop: only the writes' places need finding, by binary search,
            // and the entries between them are copied as runs without being read. A page
            // of the file was checked in full (keys strictly increasing) when first read;
            // its place in the parent is checked here as `check_order` checks it.
            if from_file && !page.is_empty() && page.key(0)? < low {
                return Err(misplaced(node));
            }
            let mut run_start = 0;
            for write in writes {
                let at = page.lower_bound_from(run_start, write.0)?;
                if !builder.push_run(page, kinds, run_start..at)? || !push_write(builder, write) {
                    return Ok(false);
                }
                let replaced =
                    at < page.len() && compare(page.key(at)?, write.0) == Ordering::Equal;
                run_start = if replaced { at + 1 } else { at };
            }
            return builder.push_run(page, kinds, run_start..page.len());
        }
        let mut pending = writes.iter().peekable();
        let mut run_start = 0;
        // What the pending run holds: a tombstone only if it keeps one, so that a leaf
        // whose tombstones all expired is known to hold none.
        let mut run_kinds = EntryKinds {
            tombstone: false,
            ..kinds
        };
        let mut previous: Option<&[u8]> = None;
        for index in 0..page.len() {
            let (key, tombstone) = page.key_and_tombstone(index)?;
            if from_file && previous.map_or(key < low, |p| key <= p) {
                return Err(misplaced(node));
            }
            previous = Some(key);
            while let Some(write) = pending.next_if(|w| w.0 < key) {
                if !builder.push_run(page, run_kinds, run_start..index)?
                    || !push_write(builder, write)
                {
                    return Ok(false);
                }
                run_kinds.tombstone = false;
                run_start = index;
            }
            let replaced = pending.next_if(|w| w.0 == key);
            if replaced.is_some() || tombstone.is_some_and(|version| version <= horizon) {
                if !builder.push_run(page, run_kinds, run_start..index)? {
                    return Ok(false);
                }
                run_kinds.tombstone = false;
                run_start = index + 1;
                if let Some(write) = replaced
                    && !push_write(builder, write)
                {
                    return Ok(false);
                }
            } else if tombstone.is_some() {
                run_kinds.tombstone = true;
            }
        }
        if !builder.push_run(page, run_kinds, run_start..page.len())? {
            return Ok(false);
        }
        Ok(pending.all(|write| push_write(builder, write)))
    }

    /// Applies `writes` to the children of `branch` (which lies within `low` and `high`)
    /// they fall in: for each child touched, in order, its index and what replaces it.
    fn apply_children(
        &mut self,
        branch: &Branch,
        level: u8,
        (low, high): (&[u8], Option<&[u8]>),
        writes: &[Write<'_>],
    ) -> Result<Vec<(usize, Replaced)>> {
        let mut touched = Vec::new();
        let mut rest = writes;
        while let Some(&(first, _)) = rest.first() {
            let index = branch.separators.count_at_or_below(first);
            let upper = branch.separators.get(index);
            let take = match upper {
                Some(upper) => rest.partition_point(|(k, _)| compare(k, upper) == Ordering::Less),
                None => rest.len(),
            };
            let (mine, after) = rest.split_at(take);
            rest = after;
            let child_low = match index.checked_sub(1) {
                Some(i) => branch.separators.get(i).expect("a separator per child"),
                None => low,
            };
            let child_high = upper.or(high);
            let child = branch
                .children
                .get(index)
                .expect("a child per separator and one more");
            let replaced = self.apply_node(child, level - 1, child_low, child_high, mine)?;
            touched.push((index, replaced));
        }
        Ok(touched)
    }

    /// Merges every underfull piece (all at `level`) with a neighbour (the next one, or
    /// the previous one for the last) and repacks the pair, in one left-to-right pass.
    fn rebalance(&mut self, mut pieces: Vec<Piece>, level: u8) -> Result<Vec<Piece>> {
        let mut index = 0;
        while index < pieces.len() {
            let underfull = pieces
                .get(index)
                .is_some_and(|(_, n)| n.is_underfull(self.page_size));
            if !underfull || pieces.len() < 2 {
                index += 1;
                continue;
            }
            let left = if index + 1 < pieces.len() {
                index
            } else {
                index - 1
            };
            let right = pieces.remove(left + 1);
            let left_piece = pieces.remove(left);
            let merged = self.merge_pair(left_piece, right, level)?;
            let count = merged.len();
            pieces.splice(left..left, merged);
            index = left + count;
        }
        Ok(pieces)
    }

    /// Two neighbouring nodes at `level`, repacked into one or more.
    fn merge_pair(&mut self, left: Piece, right: Piece, level: u8) -> Result<Vec<Piece>> {
        let ((left_low, left_node), (right_low, right_node)) = (left, right);
        self.drop_node(&left_node);
        self.drop_node(&right_node);
        if level == 0 {
            let left_bounds = Some(Bounds {
                low: Some(&left_low),
                high: Some(&right_low),
            });
            let mut items = left_node.items(self.pages, left_bounds)?;
            check_order(&left_node, &left_low, &items)?;
            // The right one's upper bound is its next sibling's low, not known here: its
            // page is verified without being marked.
            let right = right_node.items(self.pages, None)?;
            check_order(&right_node, &right_low, &right)?;
            if let (Some(last), Some(first)) = (items.last(), right.first())
                && last.key >= first.key
            {
                return Err(misplaced(&right_node));
            }
            items.extend(right);
            let before = items.len();
            items.retain(|item| !self.expired(item));
            self.removed += (before - items.len()) as u64;
            return Ok(self.leaves(left_low, &items));
        }
        let left_bounds = Some(Bounds {
            low: Some(&left_low),
            high: Some(&right_low),
        });
        let a = left_node.branch(self.pages, level, left_bounds)?;
        let b = right_node.branch(self.pages, level, None)?;
        let children: Vec<Piece> = unpack_branch(left_low, &a)
            .chain(unpack_branch(right_low, &b))
            .collect();
        drop((a, b));
        Ok(self.branches(level, children))
    }

    /// Whether `item` is a tombstone at or below the horizon, which a rebuild drops.
    fn expired(&self, item: &Item<'_>) -> bool {
        matches!(item.value, Stored::Tombstone) && item.version <= self.horizon
    }

    /// The entries of a leaf after the batch's `writes`: old entries and writes merged by
    /// key, a write replacing the old entry of its key, a delete leaving a tombstone, and
    /// old tombstones at or below the horizon dropped. A value too large to store inline
    /// is copied into a side value.
    fn merge_leaf<'a>(&self, old: Vec<Item<'a>>, writes: &[Write<'a>]) -> Vec<Item<'a>> {
        let (lsn, page_size) = (self.lsn, self.page_size);
        let written = |&(key, value): &Write<'a>| Item {
            key,
            version: lsn,
            value: match value {
                None => Stored::Tombstone,
                Some(v) if page_size.stores_inline(key.len(), v.len()) => Stored::Inline(v),
                Some(v) => Stored::Side(Arc::from(v)),
            },
        };
        let mut merged = Vec::with_capacity(writes.len() + old.len());
        let mut old = old.into_iter().peekable();
        let mut writes = writes.iter().peekable();
        loop {
            let take_old = match (old.peek(), writes.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(o), Some(w)) => o.key < w.0,
            };
            if take_old {
                merged.extend(old.next().filter(|item| !self.expired(item)));
            } else {
                let write = writes.next().expect("peeked");
                if old.peek().is_some_and(|o| o.key == write.0) {
                    old.next();
                }
                merged.push(written(write));
            }
        }
        merged
    }
}

/// `pieces` as the replacement of one node: a single piece is [`Replaced::One`], so that
/// the parent keeps its separators and swaps the child in place instead of unpacking and
/// repacking all its children (and its parent then the same, up to the root) for every leaf
/// split below it. The piece's low bound is the replaced node's, or above it if the node's
/// first child went away, which its parent's separator still bounds.
fn one_or_pieces(mut pieces: Vec<Piece>) -> Replaced {
    if pieces.len() == 1
        && let Some((_, node)) = pieces.pop()
    {
        return Replaced::One(node);
    }
    Replaced::Pieces(pieces)
}

/// Checks that a leaf's entries, about to be rebuilt, increase and start at or above the
/// leaf's low bound. A page passed its own checks when first read, but only its parent
/// places it: a file whose checksums all hold can still misplace a page, and the rebuild
/// must refuse it rather than build a page out of order.
fn check_order(leaf: &Child, low: &[u8], items: &[Item<'_>]) -> Result<()> {
    // An in-memory leaf was built by an apply, which keeps it in order and in place.
    if matches!(leaf, Child::Mem(_)) {
        return Ok(());
    }
    let increasing = items.windows(2).all(|w| w[0].key < w[1].key);
    if !increasing || items.first().is_some_and(|i| i.key < low) {
        return Err(misplaced(leaf));
    }
    Ok(())
}

/// The corruption of a leaf whose keys are out of place.
fn misplaced(leaf: &Child) -> Error {
    let id = leaf.page().map_or(PageId(0), |p| p.id);
    let kind = CorruptionKind::OutOfOrder { index: 0 };
    Error::corruption(
        id,
        0,
        "leaf keys (out of order or below the parent's separator)",
        kind,
    )
}
