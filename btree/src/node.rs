//! The in-memory nodes of the copy-on-write tree, and how lists of them are packed into
//! nodes that fit a page. Spec of the page images: docs/format/btree.md (sections 5 and 6);
//! the file protocol they will be written under: section 11.
//!
//! A leaf is a page image made by [`LeafBuilder`]: the checkpoint will write it as is,
//! after stamping its page id, transaction and checksum. Until then it carries the
//! placeholder page id [`FIRST_TREE_PAGE`] and transaction 0. A value too large to store
//! inline is a **side value**: an `Arc<[u8]>` held by the leaf, which its entry references
//! as an overflow reference with the placeholder page id `SIDE_ID_BASE + index` (index into
//! the leaf's side values) and checksum 0; the checkpoint will write each side value as an
//! overflow chain and put the chain's real reference in the entry. A branch keeps its
//! separators in a `Vec` rather than a page image, because a branch page stores each
//! child's page id and checksum, which an in-memory child does not have yet; its size is
//! still measured with the branch page's rules ([`branch_bytes`]), so a checkpoint can
//! always encode it into one page.
//!
//! Invariants (checked by `Tree::check_invariants`): a node always fits its page; a branch
//! at level `L` has `children.len() == separators.len() + 1` children, all at level
//! `L - 1`, except transiently inside an apply, where a branch may drop to one child and is
//! merged with a sibling (or collapsed, at the root) before the apply publishes.

use std::sync::Arc;

use crate::LeafBuilder;
use crate::branch_builder::BranchBuilder;
use crate::leaf_page::{LeafEntry, LeafPage, LeafValue};
use crate::overflow::OverflowRef;
use crate::page_format::{BRANCH_SLOTS_AT, FIRST_TREE_PAGE, LEAF_SLOTS_AT, PageId, PageRef, TxnId};
use crate::page_size::PageSize;

/// A node of the tree: a leaf image or a branch.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A leaf page image.
    Leaf(Leaf),
    /// A branch: separators and children.
    Branch(Branch),
}

/// A leaf: one page image built by [`LeafBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    image: Box<[u8]>,
    page_size: PageSize,
    /// Bytes of slots and entries (the header excluded).
    used: usize,
    /// The side values its overflow references name, in entry order.
    side: Vec<Arc<[u8]>>,
}

/// The placeholder page id of a leaf's side value 0: above the leaf's own placeholder id,
/// as the page layer requires of an overflow reference.
pub(crate) const SIDE_ID_BASE: u64 = FIRST_TREE_PAGE + 1;

/// A leaf entry's value while a leaf is rebuilt: in a page (or a write), a side value, or
/// a tombstone.
#[derive(Clone, Debug)]
pub(crate) enum Stored<'a> {
    Inline(&'a [u8]),
    Side(Arc<[u8]>),
    Tombstone,
}

/// A leaf entry while a leaf is rebuilt.
#[derive(Clone, Debug)]
pub(crate) struct Item<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) version: u64,
    pub(crate) value: Stored<'a>,
}

impl<'a> Item<'a> {
    /// The entry as the page layer stores it, a side value named by `side_index`.
    fn entry(&self, side_index: usize) -> LeafEntry<'a> {
        let value = match &self.value {
            Stored::Inline(v) => LeafValue::Inline(v),
            Stored::Side(v) => LeafValue::Overflow(OverflowRef {
                first: PageRef {
                    id: PageId(SIDE_ID_BASE + side_index as u64),
                    checksum: 0,
                },
                value_size: u32::try_from(v.len()).expect("values are below VALUE_SIZE_MAX"),
            }),
            Stored::Tombstone => LeafValue::Tombstone,
        };
        LeafEntry {
            key: self.key,
            version: self.version,
            value,
        }
    }
}

/// A branch: `separators[i]` is the least key child `i + 1` may hold.
#[derive(Clone, Debug)]
pub(crate) struct Branch {
    pub(crate) level: u8,
    pub(crate) separators: Vec<Vec<u8>>,
    pub(crate) children: Vec<Arc<Node>>,
}

/// A node with the least key its subtree may hold (its separator in the parent; the
/// parent's own low bound for the first child).
pub(crate) type Piece = (Vec<u8>, Arc<Node>);

impl Node {
    /// An empty leaf: the root of an empty tree.
    pub(crate) fn empty(page_size: PageSize) -> Self {
        let mut builder = LeafBuilder::new(page_size);
        Node::Leaf(Leaf::finish(&mut builder))
    }

    /// The node's level: 0 for a leaf.
    pub(crate) fn level(&self) -> u8 {
        match self {
            Node::Leaf(_) => 0,
            Node::Branch(b) => b.level,
        }
    }

    /// Whether the node is below a quarter full (or a branch of one child), and so should
    /// be merged with a sibling.
    pub(crate) fn is_underfull(&self, page_size: PageSize) -> bool {
        match self {
            Node::Leaf(l) => l.used < (page_size.bytes() - LEAF_SLOTS_AT) / 4,
            Node::Branch(b) => {
                b.children.len() < 2
                    || branch_bytes(&b.separators) - BRANCH_SLOTS_AT
                        < (page_size.bytes() - BRANCH_SLOTS_AT) / 4
            }
        }
    }
}

impl Leaf {
    /// Finishes the builder's page as an in-memory leaf and resets the builder.
    fn finish(builder: &mut LeafBuilder) -> Self {
        let page_size = builder.page_size();
        let used = page_size.bytes() - LEAF_SLOTS_AT - builder.free_space();
        let image = builder
            .finish(PageId(FIRST_TREE_PAGE), TxnId(0))
            .to_vec()
            .into_boxed_slice();
        builder.reset();
        Self {
            image,
            page_size,
            used,
            side: Vec::new(),
        }
    }

    /// The leaf's page, read in place.
    pub(crate) fn page(&self) -> LeafPage<'_> {
        LeafPage::decode_verified(&self.image, self.page_size, PageId(FIRST_TREE_PAGE))
            .expect("an in-memory leaf is an image LeafBuilder made")
    }

    /// Entry `index`, borrowing the image.
    pub(crate) fn entry(&self, index: usize) -> LeafEntry<'_> {
        self.page()
            .entry(index)
            .expect("an in-memory leaf is an image LeafBuilder made")
    }

    /// The bytes of `entry`'s value, `None` for a tombstone.
    pub(crate) fn value<'s>(&'s self, entry: &LeafEntry<'s>) -> Option<&'s [u8]> {
        match entry.value {
            LeafValue::Inline(v) => Some(v),
            LeafValue::Overflow(r) => Some(self.side_value(r)),
            LeafValue::Tombstone => None,
        }
    }

    /// The side value an overflow reference of this leaf names.
    fn side_value(&self, reference: OverflowRef) -> &Arc<[u8]> {
        let index = reference.first.id.0 - SIDE_ID_BASE;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.side.get(i))
            .expect("an in-memory overflow reference names a side value of its leaf")
    }

    /// Entry `index` while rebuilding: side values shared, not copied.
    pub(crate) fn item(&self, index: usize) -> Item<'_> {
        let entry = self.entry(index);
        let value = match entry.value {
            LeafValue::Inline(v) => Stored::Inline(v),
            LeafValue::Overflow(r) => Stored::Side(Arc::clone(self.side_value(r))),
            LeafValue::Tombstone => Stored::Tombstone,
        };
        Item {
            key: entry.key,
            version: entry.version,
            value,
        }
    }

    /// The leaf's side values, in entry order.
    pub(crate) fn side(&self) -> &[Arc<[u8]>] {
        &self.side
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.page().len()
    }

    /// Bytes of the image in use, header included.
    pub(crate) fn used_bytes(&self) -> usize {
        LEAF_SLOTS_AT + self.used
    }

    /// The page image.
    pub(crate) fn image(&self) -> &[u8] {
        &self.image
    }
}

impl Branch {
    /// The index of the child whose subtree holds `key`: the number of separators at or
    /// below it.
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        self.separators.partition_point(|s| s.as_slice() <= key)
    }
}

/// Bytes a branch page with these separators takes: the fixed part, the slots and the
/// entries.
pub(crate) fn branch_bytes(separators: &[Vec<u8>]) -> usize {
    BRANCH_SLOTS_AT
        + separators
            .iter()
            .map(|s| BranchBuilder::encoded_size(s.len()))
            .sum::<usize>()
}

/// Splits `sizes` (each at most a quarter of `capacity`) into consecutive runs that each
/// fit `capacity`, of about equal sizes: each run but the last holds at least half the
/// capacity. Returns the start index of each run.
fn split_runs(sizes: &[usize], capacity: usize) -> Vec<usize> {
    let mut remaining: usize = sizes.iter().sum();
    let mut starts = vec![0];
    let mut current = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let runs_left = remaining.div_ceil(capacity).max(1);
        let target = remaining.div_ceil(runs_left);
        if current > 0 && (current + size > capacity || current >= target) {
            starts.push(i);
            remaining -= current;
            current = 0;
        }
        current += size;
    }
    starts
}

/// Packs `items` (in strictly increasing key order) into leaves that fit the page.
/// The first leaf gets `low` as its low bound, each next one its first key. No items, no
/// leaves.
pub(crate) fn pack_leaves(low: Vec<u8>, items: &[Item<'_>], page_size: PageSize) -> Vec<Piece> {
    if items.is_empty() {
        return Vec::new();
    }
    let sizes: Vec<usize> = items.iter().map(|i| i.entry(0).encoded_size()).collect();
    let starts = split_runs(&sizes, page_size.bytes() - LEAF_SLOTS_AT);
    let mut builder = LeafBuilder::new(page_size);
    let mut pieces = Vec::with_capacity(starts.len());
    let mut low = Some(low);
    for (run, &start) in starts.iter().enumerate() {
        let end = starts.get(run + 1).copied().unwrap_or(items.len());
        let run_items = items.get(start..end).expect("run starts are increasing");
        let mut side = Vec::new();
        for item in run_items {
            builder.push(&item.entry(side.len()));
            if let Stored::Side(v) = &item.value {
                side.push(Arc::clone(v));
            }
        }
        let first = run_items.first().expect("runs are not empty").key;
        let run_low = low.take().unwrap_or_else(|| first.to_vec());
        let leaf = Leaf {
            side,
            ..Leaf::finish(&mut builder)
        };
        pieces.push((run_low, Arc::new(Node::Leaf(leaf))));
    }
    pieces
}

/// Packs `children` (all at level `level - 1`, their low bounds increasing) into branches
/// at `level` that fit the page, each of at least two children unless there is only one.
///
/// # Panics
/// If `level` is past [`crate::LEVEL_MAX`] (the tree would be too tall to encode).
pub(crate) fn pack_branches(level: u8, children: Vec<Piece>, page_size: PageSize) -> Vec<Piece> {
    assert!(
        level <= crate::LEVEL_MAX,
        "branch level {level} past LEVEL_MAX"
    );
    // Each child is counted at its separator's size, the first one too: a branch's
    // leftmost child needs none, so the estimate errs on the side of fitting.
    let sizes: Vec<usize> = children
        .iter()
        .map(|(low, _)| BranchBuilder::encoded_size(low.len()))
        .collect();
    let starts = split_runs(&sizes, page_size.bytes() - BRANCH_SLOTS_AT);
    let mut pieces = Vec::with_capacity(starts.len());
    let mut rest = children.into_iter();
    for (run, &start) in starts.iter().enumerate() {
        let end = starts.get(run + 1).copied().unwrap_or(sizes.len());
        let mut run_children = rest.by_ref().take(end - start);
        let (low, first) = run_children.next().expect("runs are not empty");
        let mut branch = Branch {
            level,
            separators: Vec::with_capacity(end - start - 1),
            children: vec![first],
        };
        for (separator, child) in run_children {
            branch.separators.push(separator);
            branch.children.push(child);
        }
        assert!(
            branch_bytes(&branch.separators) <= page_size.bytes(),
            "packed branch does not fit its page"
        );
        pieces.push((low, Arc::new(Node::Branch(branch))));
    }
    pieces
}

/// The children of `node` (a branch) as pieces, `low` being the branch's own low bound.
pub(crate) fn unpack_branch(low: Vec<u8>, branch: &Branch) -> impl Iterator<Item = Piece> + '_ {
    std::iter::once(low)
        .chain(branch.separators.iter().cloned())
        .zip(branch.children.iter().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64, as popdb-testkit's (which this crate's unit tests cannot reach).
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn split_runs_fit_and_hold_two_items_each() {
        let capacity = 488;
        let mut state = 1;
        for _ in 0..2000 {
            let count = usize::try_from(next(&mut state) % 200).expect("small") + 2;
            let sizes: Vec<usize> = (0..count)
                .map(|_| 1 + usize::try_from(next(&mut state) % 122).expect("small"))
                .collect();
            let starts = split_runs(&sizes, capacity);
            assert_eq!(starts.first(), Some(&0));
            let ends = starts.iter().skip(1).copied().chain([count]);
            for (start, end) in starts.iter().copied().zip(ends) {
                let run = sizes.get(start..end).expect("runs increase");
                assert!(
                    run.iter().sum::<usize>() <= capacity,
                    "{sizes:?} {starts:?}"
                );
                if starts.len() > 1 {
                    assert!(run.len() >= 2, "{sizes:?} {starts:?}");
                }
            }
        }
    }

    #[test]
    fn pack_leaves_of_nothing_is_no_leaf() {
        assert!(pack_leaves(Vec::new(), &[], PageSize::DEFAULT).is_empty());
    }
}
