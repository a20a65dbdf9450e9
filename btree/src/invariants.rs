//! Whole-tree checks and statistics over one read view: a walk of every node with an
//! explicit stack (no recursion), bounded by the node count.
//!
//! The invariants: keys strictly increase within each leaf and across leaves; every key
//! of a child lies within the bounds its parent's separators give it; every node fits its
//! page (a leaf is a page image the reader accepts in full; a branch's separators fit a
//! branch page); every branch has at least one separator and one child more; every leaf is
//! at the same depth and every child one level below its parent; no leaf is empty except
//! the root of an empty tree.

use std::sync::Arc;

use crate::leaf_page::{LeafPage, LeafValue};
use crate::node::{Leaf, Node, SIDE_ID_BASE, branch_bytes};
use crate::page_format::{FIRST_TREE_PAGE, PageId};
use crate::read_view::ReadView;

/// Statistics of one tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Levels: 1 for a tree that is one leaf.
    pub depth: usize,
    /// Leaves and branches.
    pub node_count: u64,
    /// Leaves.
    pub leaf_count: u64,
    /// Live entries (tombstones excluded).
    pub entry_count: u64,
    /// Tombstones kept.
    pub tombstone_count: u64,
    /// Bytes in use in all nodes, page headers included, as they would be encoded.
    pub bytes: u64,
    /// Bytes of the values too large for a leaf, held beside the leaves until checkpoints
    /// write them to overflow pages.
    pub side_value_bytes: u64,
}

/// A node to visit, with the bounds its keys must lie in: at or above `low`, below
/// `high`.
struct Visit<'a> {
    node: &'a Arc<Node>,
    low: Option<&'a [u8]>,
    high: Option<&'a [u8]>,
    depth: usize,
}

impl ReadView {
    /// Checks the invariants of the module header, in O(tree size).
    ///
    /// # Panics
    /// If any does not hold.
    pub fn check_invariants(&self) {
        self.walk(true);
    }

    /// The tree's statistics, in O(node count).
    pub fn stats(&self) -> TreeStats {
        self.walk(false)
    }

    fn walk(&self, check: bool) -> TreeStats {
        let page_size = self.page_size();
        let root = self.root_node();
        let mut stats = TreeStats::default();
        let mut leaf_depth = None;
        let mut last_key: Option<&[u8]> = None;
        let mut stack = vec![Visit {
            node: root,
            low: None,
            high: None,
            depth: 1,
        }];
        while let Some(visit) = stack.pop() {
            assert!(visit.depth <= crate::TREE_HEIGHT_MAX, "tree too tall");
            stats.node_count += 1;
            stats.depth = stats.depth.max(visit.depth);
            match &**visit.node {
                Node::Branch(b) => {
                    stats.bytes += branch_bytes(&b.separators) as u64;
                    if check {
                        check_branch(b, &visit, page_size.bytes());
                    }
                    // Pushed right to left, so leaves are visited in key order.
                    for (index, child) in b.children.iter().enumerate().rev() {
                        assert_eq!(child.level() + 1, b.level, "child level");
                        stack.push(Visit {
                            node: child,
                            low: index
                                .checked_sub(1)
                                .and_then(|i| b.separators.get(i))
                                .map(Vec::as_slice)
                                .or(visit.low),
                            high: b.separators.get(index).map(Vec::as_slice).or(visit.high),
                            depth: visit.depth + 1,
                        });
                    }
                }
                Node::Leaf(leaf) => {
                    stats.leaf_count += 1;
                    stats.bytes += leaf.used_bytes() as u64;
                    let depth = *leaf_depth.get_or_insert(visit.depth);
                    assert_eq!(depth, visit.depth, "leaves at different depths");
                    if check {
                        let page =
                            LeafPage::decode(leaf.image(), page_size, PageId(FIRST_TREE_PAGE))
                                .expect("a leaf image is a valid page");
                        assert!(
                            !page.is_empty() || std::ptr::eq(visit.node, root),
                            "empty leaf below the root"
                        );
                    }
                    visit_entries(leaf, &visit, check, &mut stats, &mut last_key);
                }
            }
        }
        stats
    }
}

/// Counts the entries of `leaf` into `stats` and, if `check`, checks their order (after
/// `last_key`, which it advances), bounds, versions and side values.
fn visit_entries<'a>(
    leaf: &'a Leaf,
    visit: &Visit<'a>,
    check: bool,
    stats: &mut TreeStats,
    last_key: &mut Option<&'a [u8]>,
) {
    let mut side_index: usize = 0;
    for entry in leaf.page().entries() {
        let entry = entry.expect("in-memory leaves are well formed");
        match entry.value {
            LeafValue::Tombstone => stats.tombstone_count += 1,
            LeafValue::Inline(_) => stats.entry_count += 1,
            LeafValue::Overflow(r) => {
                stats.entry_count += 1;
                stats.side_value_bytes += u64::from(r.value_size);
                if check {
                    check_side(leaf, r, side_index);
                }
                side_index += 1;
            }
        }
        if check {
            let key = entry.key;
            assert!(last_key.is_none_or(|l| l < key), "keys out of order");
            assert!(visit.low.is_none_or(|l| l <= key), "key below its bound");
            assert!(visit.high.is_none_or(|h| key < h), "key above its bound");
            assert!(entry.version >= 1, "version 0");
            *last_key = Some(key);
        }
    }
    assert_eq!(side_index, leaf.side().len(), "side values unreferenced");
}

/// Overflow reference number `index` of `leaf` names its side value `index`, of the size
/// it says.
fn check_side(leaf: &Leaf, reference: crate::OverflowRef, index: usize) {
    assert_eq!(
        reference.first.id.0,
        SIDE_ID_BASE + index as u64,
        "side value order"
    );
    assert_eq!(reference.first.checksum, 0, "side value checksum");
    let value = leaf.side().get(index).expect("side value present");
    assert_eq!(
        value.len() as u64,
        u64::from(reference.value_size),
        "side value size"
    );
}

fn check_branch(b: &crate::node::Branch, visit: &Visit<'_>, page_bytes: usize) {
    let count = b.separators.len();
    assert!(count >= 1, "branch without a separator");
    assert_eq!(b.children.len(), count + 1, "children per separator");
    assert!(
        branch_bytes(&b.separators) <= page_bytes,
        "branch does not fit its page"
    );
    assert!(
        b.separators.windows(2).all(|w| w[0] < w[1]),
        "separators out of order"
    );
    let first = b.separators.first().expect("count >= 1");
    let last = b.separators.last().expect("count >= 1");
    assert!(
        visit.low.is_none_or(|l| l < first.as_slice()),
        "separator below its bound"
    );
    assert!(
        visit.high.is_none_or(|h| last.as_slice() < h),
        "separator above its bound"
    );
}
