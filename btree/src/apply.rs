//! Applying a sorted batch of writes to a tree, copy-on-write: every node on a path to a
//! changed leaf is rebuilt into a new node, and every other node is shared with the tree
//! the batch started from. Spec: docs/format/btree.md (section 11, "Between
//! checkpoints").
//!
//! A changed leaf is rebuilt in one pass, merging its entries with the batch's writes for
//! it, and packed into as many leaves as the page rules need (a split). A parent then
//! merges each underfull child with a sibling and repacks the pair, and packs its own
//! children into as many branches as they need; the root grows a level while more than one
//! node is left and collapses while it is a branch of one child. Deletes write tombstones
//! (kept with their version until checkpoints purge them), so a leaf never empties here.
//!
//! The descent recurses, once per level: the tree is in memory and its height is bounded
//! by [`crate::TREE_HEIGHT_MAX`] (asserted by `pack_branches`).

use std::sync::Arc;

use crate::node::{Branch, Item, Node, Piece, Stored, pack_branches, pack_leaves, unpack_branch};
use crate::page_size::PageSize;

/// One write of a batch: a value, or `None` for a delete.
pub(crate) type Write<'b> = (&'b [u8], Option<&'b [u8]>);

/// The tree after applying `writes` (strictly increasing keys) at `lsn` to `root`.
pub(crate) fn apply_root(
    root: &Arc<Node>,
    writes: &[Write<'_>],
    lsn: u64,
    page_size: PageSize,
) -> Arc<Node> {
    if writes.is_empty() {
        return Arc::clone(root);
    }
    let mut pieces = apply_node(root, Vec::new(), writes, lsn, page_size);
    let mut level = root.level();
    while pieces.len() > 1 {
        level += 1;
        pieces = pack_branches(level, pieces, page_size);
    }
    let Some((_, mut node)) = pieces.pop() else {
        return Arc::new(Node::empty(page_size));
    };
    while let Node::Branch(b) = &*node {
        if b.children.len() > 1 {
            break;
        }
        let only = Arc::clone(b.children.first().expect("a branch has a child"));
        node = only;
    }
    node
}

/// The pieces (all at `node`'s level) that replace `node`, whose low bound is `low`, after
/// applying `writes`, all of which belong to its subtree.
fn apply_node(
    node: &Arc<Node>,
    low: Vec<u8>,
    writes: &[Write<'_>],
    lsn: u64,
    page_size: PageSize,
) -> Vec<Piece> {
    match &**node {
        Node::Leaf(leaf) => {
            let old = (0..leaf.len()).map(|i| leaf.item(i));
            let merged = merge_leaf(old, writes, lsn, page_size);
            pack_leaves(low, &merged, page_size)
        }
        Node::Branch(branch) => {
            let children = apply_children(branch, low, writes, lsn, page_size);
            let children = rebalance(children, page_size);
            if children.is_empty() {
                return children;
            }
            pack_branches(branch.level, children, page_size)
        }
    }
}

/// `branch`'s children as pieces, each child that `writes` touch replaced by the pieces
/// applying its share gives.
fn apply_children(
    branch: &Branch,
    low: Vec<u8>,
    writes: &[Write<'_>],
    lsn: u64,
    page_size: PageSize,
) -> Vec<Piece> {
    let mut children = Vec::with_capacity(branch.children.len() + 2);
    let mut rest = writes;
    for (index, (child_low, child)) in unpack_branch(low, branch).enumerate() {
        let take = match branch.separators.get(index) {
            Some(upper) => rest.partition_point(|(k, _)| *k < upper.as_slice()),
            None => rest.len(),
        };
        let (mine, after) = rest.split_at(take);
        rest = after;
        if mine.is_empty() {
            children.push((child_low, child));
        } else {
            children.extend(apply_node(&child, child_low, mine, lsn, page_size));
        }
    }
    assert!(rest.is_empty(), "writes past the last child");
    children
}

/// Merges every underfull piece with a neighbour (the next one, or the previous one for
/// the last) and repacks the pair, in one left-to-right pass.
fn rebalance(mut pieces: Vec<Piece>, page_size: PageSize) -> Vec<Piece> {
    let mut index = 0;
    while index < pieces.len() {
        let underfull = pieces
            .get(index)
            .is_some_and(|(_, n)| n.is_underfull(page_size));
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
        let merged = merge_pair(left_piece, right, page_size);
        let count = merged.len();
        pieces.splice(left..left, merged);
        index = left + count;
    }
    pieces
}

/// Two neighbouring nodes at one level, repacked into one or more.
fn merge_pair(left: Piece, right: Piece, page_size: PageSize) -> Vec<Piece> {
    let ((left_low, left_node), (right_low, right_node)) = (left, right);
    match (&*left_node, &*right_node) {
        (Node::Leaf(a), Node::Leaf(b)) => {
            let items: Vec<Item<'_>> = (0..a.len())
                .map(|i| a.item(i))
                .chain((0..b.len()).map(|i| b.item(i)))
                .collect();
            pack_leaves(left_low, &items, page_size)
        }
        (Node::Branch(a), Node::Branch(b)) => {
            let children: Vec<Piece> = unpack_branch(left_low, a)
                .chain(unpack_branch(right_low, b))
                .collect();
            pack_branches(a.level, children, page_size)
        }
        _ => unreachable!("siblings at different levels"),
    }
}

/// The entries of a leaf after `writes` at `lsn`: old entries and writes merged by key, a
/// write replacing the old entry of its key, a delete leaving a tombstone. A value too
/// large to store inline is copied into a side value.
fn merge_leaf<'a>(
    old: impl Iterator<Item = Item<'a>>,
    writes: &[Write<'a>],
    lsn: u64,
    page_size: PageSize,
) -> Vec<Item<'a>> {
    let written = |&(key, value): &Write<'a>| Item {
        key,
        version: lsn,
        value: match value {
            None => Stored::Tombstone,
            Some(v) if page_size.stores_inline(key.len(), v.len()) => Stored::Inline(v),
            Some(v) => Stored::Side(Arc::from(v)),
        },
    };
    let mut merged = Vec::with_capacity(writes.len() + 8);
    let mut old = old.peekable();
    let mut writes = writes.iter().peekable();
    loop {
        let take_old = match (old.peek(), writes.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(o), Some(w)) => o.key < w.0,
        };
        if take_old {
            merged.extend(old.next());
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
