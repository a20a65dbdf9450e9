//! Whole-tree checks and statistics over one read view: a walk of every node with an
//! explicit stack (no recursion), bounded by the node count.
//!
//! The invariants: keys strictly increase within each leaf and across leaves; every key
//! of a child lies within the bounds its parent's separators give it; every node fits its
//! page (a leaf is a page image the reader accepts in full; a branch's separators fit a
//! branch page); every branch has at least one separator and one child more; every leaf is
//! at the same depth and every child one level below its parent; no leaf is empty except
//! the root of an empty tree.

use crate::error::Result;
use crate::leaf_page::{LeafPage, LeafValue};
use crate::node::{Branch, Child, Node, SIDE_ID_BASE, branch_bytes, is_side};
use crate::pages::Bounds;
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
    /// Nodes still in memory (applied since the last checkpoint).
    pub mem_node_count: u64,
    /// Live entries (tombstones excluded).
    pub entry_count: u64,
    /// Tombstones kept.
    pub tombstone_count: u64,
    /// Bytes in use in all nodes, page headers included, as they are or would be encoded.
    pub bytes: u64,
    /// Bytes of values too large for a leaf (in overflow chains, or held beside in-memory
    /// leaves until a checkpoint writes them).
    pub overflow_value_bytes: u64,
    /// The page size.
    pub page_size: u64,
}

impl TreeStats {
    /// Bytes in use over the bytes of the nodes' pages: how full the pages are.
    pub fn fill_factor(&self) -> f64 {
        if self.node_count == 0 {
            return 0.0;
        }
        self.bytes as f64 / (self.node_count * self.page_size) as f64
    }
}

/// A node to visit, with its level and the bounds its keys must lie in: at or above
/// `low`, below `high`.
struct Visit {
    node: Child,
    level: u8,
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
    depth: usize,
}

impl Visit {
    fn bounds(&self) -> Bounds<'_> {
        Bounds {
            low: self.low.as_deref(),
            high: self.high.as_deref(),
        }
    }
}

impl ReadView {
    /// Checks the invariants of the module header, in O(tree size).
    ///
    /// # Panics
    /// If any does not hold, or a page cannot be read.
    pub fn check_invariants(&self) {
        self.walk(true).expect("every page of the tree reads");
    }

    /// The tree's statistics, in O(tree size): every page is read.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] naming a damaged page.
    pub fn stats(&self) -> Result<TreeStats> {
        self.walk(false)
    }

    fn walk(&self, check: bool) -> Result<TreeStats> {
        let page_size = self.page_size();
        let pages = self.pages();
        let mut stats = TreeStats {
            page_size: page_size.bytes() as u64,
            ..TreeStats::default()
        };
        let mut leaf_depth = None;
        let mut last_key: Option<Vec<u8>> = None;
        let mut stack = vec![Visit {
            node: self.root_node().clone(),
            level: self.root().level,
            low: None,
            high: None,
            depth: 1,
        }];
        while let Some(visit) = stack.pop() {
            assert!(visit.depth <= crate::TREE_HEIGHT_MAX, "tree too tall");
            stats.node_count += 1;
            stats.depth = stats.depth.max(visit.depth);
            if let Child::Mem(node) = &visit.node {
                stats.mem_node_count += 1;
                if check {
                    assert_eq!(node.level(), visit.level, "node level");
                }
            }
            if visit.level > 0 {
                let branch = visit
                    .node
                    .branch(pages, visit.level, Some(visit.bounds()))?;
                stats.bytes += branch_bytes(&branch.separators) as u64;
                if check {
                    check_branch(&branch, &visit, page_size.bytes());
                }
                // Pushed right to left, so leaves are visited in key order.
                for (index, child) in branch.children.iter().enumerate().rev() {
                    let low = index.checked_sub(1).and_then(|i| branch.separators.get(i));
                    stack.push(Visit {
                        node: child.clone(),
                        level: visit.level - 1,
                        low: low.map(|s| s.to_vec()).or_else(|| visit.low.clone()),
                        high: branch
                            .separators
                            .get(index)
                            .map(|s| s.to_vec())
                            .or_else(|| visit.high.clone()),
                        depth: visit.depth + 1,
                    });
                }
                continue;
            }
            stats.leaf_count += 1;
            let page = visit.node.leaf_page(pages, Some(visit.bounds()))?;
            stats.bytes += page.used_bytes()? as u64;
            let depth = *leaf_depth.get_or_insert(visit.depth);
            assert_eq!(depth, visit.depth, "leaves at different depths");
            if check {
                assert!(
                    !page.is_empty() || visit.depth == 1,
                    "empty leaf below the root"
                );
            }
            visit_entries(&visit, &page, check, &mut stats, &mut last_key)?;
        }
        Ok(stats)
    }
}

/// Counts the entries of leaf `page` into `stats` and, if `check`, checks their order
/// (after `last_key`, which it advances), bounds, versions and side values.
fn visit_entries(
    visit: &Visit,
    page: &LeafPage<'_>,
    check: bool,
    stats: &mut TreeStats,
    last_key: &mut Option<Vec<u8>>,
) -> Result<()> {
    let mut side_index: usize = 0;
    let mem = match &visit.node {
        Child::Mem(node) => Some(node.as_leaf()),
        Child::Disk(_) => None,
    };
    for entry in page.entries() {
        let entry = entry?;
        match entry.value {
            LeafValue::Tombstone => stats.tombstone_count += 1,
            LeafValue::Inline(_) => stats.entry_count += 1,
            LeafValue::Overflow(r) => {
                stats.entry_count += 1;
                stats.overflow_value_bytes += u64::from(r.value_size);
                if let Some(leaf) = mem
                    && is_side(r)
                {
                    if check {
                        assert_eq!(
                            r.first.id.0,
                            SIDE_ID_BASE + side_index as u64,
                            "side value order"
                        );
                        assert_eq!(r.first.checksum, 0, "side value checksum");
                        let value = leaf.side().get(side_index).expect("side value present");
                        assert_eq!(value.len() as u64, u64::from(r.value_size), "side size");
                    }
                    side_index += 1;
                }
            }
        }
        if check {
            let key = entry.key;
            assert!(
                last_key.as_deref().is_none_or(|l| l < key),
                "keys out of order"
            );
            assert!(
                visit.low.as_deref().is_none_or(|l| l <= key),
                "key below its bound"
            );
            assert!(
                visit.high.as_deref().is_none_or(|h| key < h),
                "key above its bound"
            );
            assert!(entry.version >= 1, "version 0");
            *last_key = Some(key.to_vec());
        }
    }
    if let Some(leaf) = mem {
        assert_eq!(side_index, leaf.side().len(), "side values unreferenced");
        if check {
            // The kinds a leaf remembers may say more than it holds, never less: a rebuild
            // skips looking for tombstones, and a checkpoint for chains, where they say none.
            let (said, held) = (leaf.kinds(), page.kinds()?);
            assert!(
                said.tombstone || !held.tombstone,
                "a tombstone the leaf does not know of"
            );
            assert!(
                said.overflow || !held.overflow,
                "an overflow value the leaf does not know of"
            );
        }
    }
    Ok(())
}

fn check_branch(b: &Branch, visit: &Visit, page_bytes: usize) {
    let count = b.separators.len();
    assert!(count >= 1, "branch without a separator");
    assert_eq!(b.children.len(), count + 1, "children per separator");
    assert!(
        branch_bytes(&b.separators) <= page_bytes,
        "branch does not fit its page"
    );
    assert!(
        b.separators
            .iter()
            .zip(b.separators.iter().skip(1))
            .all(|(a, b)| a < b),
        "separators out of order"
    );
    let first = b.separators.get(0).expect("count >= 1");
    let last = b.separators.get(count - 1).expect("count >= 1");
    assert!(
        visit.low.as_deref().is_none_or(|l| l < first),
        "separator below its bound"
    );
    assert!(
        visit.high.as_deref().is_none_or(|h| last < h),
        "separator above its bound"
    );
    let _ = Node::level;
}
