//! The nodes of the copy-on-write tree: pages of the file, read through the map, and
//! in-memory nodes made by applies since. Spec of the page images: docs/format/btree.md
//! (sections 5 and 6); the protocol they are written under: section 11.
//!
//! A child is either a page of the file ([`Child::Disk`], a reference with its checksum)
//! or an in-memory node ([`Child::Mem`]). An apply copies the path from the root to each
//! leaf it changes into new in-memory nodes; everything else is shared, in memory or on
//! disk. A checkpoint writes the in-memory nodes it reaches and records each one's page in
//! its `written` slot; the tree then swaps such nodes for their pages (`swizzle`), so
//! memory holds only what was written since.
//!
//! Why an apply never changes a node in place, even one no read view holds: every batch
//! publishes its root, and every node of the latest tree is reachable from it, so any
//! reader may pin it and read it at any moment without taking the writer's lock; a node a
//! reader cannot reach is one the apply itself just made, which it builds once. So the
//! copies are made cheap instead: a changed leaf copies its unchanged entries as byte runs
//! (`Apply::patch_leaf`), and a branch copy shares its separators and its list of children
//! ([`Children`]), holding only the children replaced since in a small patch.
//!
//! An in-memory leaf is a page image made by [`LeafBuilder`], with the placeholder page id
//! [`LEAF_PLACEHOLDER`] and transaction 0: a checkpoint copies it under its real id (and
//! re-encodes it when it holds side values).
//! A value too large to store inline that an apply wrote is a **side value**: an
//! `Arc<[u8]>` held by the leaf, which its entry references as an overflow reference with
//! the placeholder id `SIDE_ID_BASE + index` (index into the leaf's side values) and
//! checksum 0. An overflow reference below [`SIDE_ID_BASE`] names a chain already in the
//! file, which the leaf shares. A branch keeps its separators end to end in one buffer
//! ([`Separators`], shared by copies whose separators did not change) and its children in
//! a shared list with a patch ([`Children`]), rather than a page image, because a branch page
//! stores each child's page id
//! and checksum, which an in-memory child does not have yet; its size is still measured
//! with the branch page's rules ([`branch_bytes`]), so a checkpoint can always encode it
//! into one page.
//!
//! Invariants (checked by `ReadView::check_invariants`): a node always fits its page; a
//! branch at level `L` has `children.len() == separators.len() + 1` children, all at level
//! `L - 1`, except transiently inside an apply, where a branch may drop to one child and is
//! merged with a sibling (or collapsed, at the root) before the apply publishes. Real page
//! ids stay below [`SIDE_ID_BASE`] (the file's page limit, docs/limits.md).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

use crate::LeafBuilder;
use crate::branch_builder::BranchBuilder;
use crate::branch_page::BranchPage;
use crate::error::Result;
use crate::leaf_page::{EntryKinds, LeafEntry, LeafPage, LeafValue};
use crate::overflow::OverflowRef;
use crate::page_format::{BRANCH_SLOTS_AT, LEAF_SLOTS_AT, PAGE_ID_MAX, PageId, PageRef};
use crate::page_size::PageSize;
use crate::pages::{Bounds, Pages};
use crate::search::compare;
use crate::spare_pages::SparePages;

/// The page id an in-memory leaf image carries until a checkpoint writes it.
pub(crate) const LEAF_PLACEHOLDER: PageId = PageId(PAGE_ID_MAX);

/// The placeholder page id of a leaf's side value 0. Real page ids stay below it.
pub(crate) const SIDE_ID_BASE: u64 = PAGE_ID_MAX - (1 << 16);

/// Whether an overflow reference of an in-memory leaf names one of its side values.
pub(crate) fn is_side(reference: OverflowRef) -> bool {
    reference.first.id.0 >= SIDE_ID_BASE
}

/// A child of a branch, or a root: a page of the file or an in-memory node.
#[derive(Clone, Debug)]
pub(crate) enum Child {
    /// An in-memory node.
    Mem(Arc<Node>),
    /// A page of the file.
    Disk(PageRef),
}

/// An in-memory node: a leaf image or a branch.
#[derive(Debug)]
pub(crate) enum Node {
    /// A leaf page image.
    Leaf(Leaf),
    /// A branch: separators and children.
    Branch(Branch),
}

/// An in-memory leaf: one page image built by [`LeafBuilder`].
#[derive(Debug)]
pub(crate) struct Leaf {
    image: Box<[u8]>,
    page_size: PageSize,
    /// Bytes of slots and entries (the header excluded).
    used: usize,
    /// The side values its overflow references name, in entry order.
    side: Vec<Arc<[u8]>>,
    /// Which kinds of entries other than inline values the leaf may hold (a tombstone; a
    /// value in a side value or a chain of the file), as its builder knew them: a
    /// checkpoint's walk for chains need not read the leaves that hold none, and a rebuild
    /// need not look for tombstones in a leaf that holds none. A kind it says may be
    /// there may be absent, never the other way round.
    kinds: EntryKinds,
    /// The page a checkpoint wrote this leaf to.
    written: OnceLock<PageRef>,
    /// Where the image goes back when the leaf is dropped.
    spares: Option<Arc<SparePages>>,
}

/// A leaf entry's value while a leaf is rebuilt: in a page (or a write), a side value, a
/// chain in the file, or a tombstone.
#[derive(Clone, Debug)]
pub(crate) enum Stored<'a> {
    Inline(&'a [u8]),
    Side(Arc<[u8]>),
    Chain(OverflowRef),
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
            Stored::Chain(r) => LeafValue::Overflow(*r),
            Stored::Tombstone => LeafValue::Tombstone,
        };
        LeafEntry {
            key: self.key,
            version: self.version,
            value,
        }
    }

    /// The item of a leaf page's entry, its overflow references naming chains of the file
    /// (an in-memory leaf's side values go through `Leaf::item_of`).
    pub(crate) fn of_page(entry: LeafEntry<'a>) -> Self {
        let value = match entry.value {
            LeafValue::Inline(v) => Stored::Inline(v),
            LeafValue::Overflow(r) => Stored::Chain(r),
            LeafValue::Tombstone => Stored::Tombstone,
        };
        Item {
            key: entry.key,
            version: entry.version,
            value,
        }
    }
}

/// A low bound of a piece being packed.
pub(crate) type Key = Arc<[u8]>;

/// A branch's separators, end to end in one buffer, shared between the copies of a branch
/// whose children changed but whose separators did not: copying such a branch copies no
/// key and touches no reference count per key.
#[derive(Debug, Default)]
pub(crate) struct Separators {
    bytes: Box<[u8]>,
    /// The end of each separator in `bytes`.
    ends: Box<[u32]>,
    /// Bytes their entries take in a branch page, slots included.
    encoded: usize,
}

impl Separators {
    /// The separators `keys`, in order.
    pub(crate) fn new<'k>(keys: impl IntoIterator<Item = &'k [u8]>) -> Self {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut encoded = 0;
        for key in keys {
            bytes.extend_from_slice(key);
            ends.push(u32::try_from(bytes.len()).expect("a branch's keys fit a page"));
            encoded += BranchBuilder::encoded_size(key.len());
        }
        Self {
            bytes: bytes.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
            encoded,
        }
    }

    /// The number of separators.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes their entries take in a branch page, slots included.
    pub(crate) fn encoded(&self) -> usize {
        self.encoded
    }

    /// Separator `index`, if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<&[u8]> {
        let end = *self.ends.get(index)? as usize;
        let start = index
            .checked_sub(1)
            .map_or(0, |i| self.ends.get(i).map_or(0, |&e| e as usize));
        self.bytes.get(start..end)
    }

    /// The separators in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The number of separators at or below `key`.
    pub(crate) fn count_at_or_below(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self
                .get(mid)
                .is_some_and(|s| compare(s, key) != Ordering::Greater)
            {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// An in-memory branch: separator `i` is the least key child `i + 1` may hold.
#[derive(Debug)]
pub(crate) struct Branch {
    pub(crate) level: u8,
    pub(crate) separators: Arc<Separators>,
    pub(crate) children: Children,
    /// The page a checkpoint wrote this branch to.
    written: OnceLock<PageRef>,
}

/// The most children a branch keeps in its patch before a copy folds them into a new
/// shared list.
const PATCH_MAX: usize = 16;

/// A branch's children: a list shared between the copies of a branch (`base`), and the
/// few children that replaced some of it since (`patch`, by index). An apply copies every
/// branch on the path to each leaf it changes; with the list shared, such a copy clones
/// one `Arc` and the patch, not a reference (and its count, in a node elsewhere in memory)
/// per child, and dropping the copy later releases as few.
///
/// Invariant: patch indexes strictly increase and lie below `base.len()`; at most
/// [`PATCH_MAX`] of them.
#[derive(Clone, Debug)]
pub(crate) struct Children {
    base: Arc<[Child]>,
    patch: Vec<(usize, Child)>,
}

impl Children {
    /// Children `list`, in order.
    pub(crate) fn new(list: Vec<Child>) -> Self {
        Self {
            base: list.into(),
            patch: Vec::new(),
        }
    }

    /// The number of children.
    pub(crate) fn len(&self) -> usize {
        self.base.len()
    }

    /// Child `index`, if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<&Child> {
        match self.patch.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.patch.get(at).map(|(_, child)| child),
            Err(_) => self.base.get(index),
        }
    }

    /// The children in order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Child> + ExactSizeIterator + '_ {
        (0..self.len()).map(|i| self.get(i).expect("an index below len"))
    }

    /// These children with `replaced` (indexes strictly increasing, each below `len()`)
    /// put in place of theirs: shares the list unless the patch grows past [`PATCH_MAX`].
    pub(crate) fn replaced(&self, replaced: Vec<(usize, Child)>) -> Self {
        let mut patch = Vec::with_capacity(self.patch.len() + replaced.len());
        let mut old = self.patch.iter().peekable();
        for (index, child) in replaced {
            assert!(index < self.len(), "child {index} of {}", self.len());
            while let Some(kept) = old.next_if(|(i, _)| *i < index) {
                patch.push(kept.clone());
            }
            old.next_if(|(i, _)| *i == index);
            assert!(
                patch.last().is_none_or(|(i, _)| *i < index),
                "replaced children out of order"
            );
            patch.push((index, child));
        }
        patch.extend(old.cloned());
        if patch.len() <= PATCH_MAX {
            return Self {
                base: Arc::clone(&self.base),
                patch,
            };
        }
        let mut list = self.base.to_vec();
        for (index, child) in patch {
            *list.get_mut(index).expect("patch indexes lie below len") = child;
        }
        Self::new(list)
    }
}

/// A node with the least key its subtree may hold (its separator in the parent; the
/// parent's own low bound for the first child).
pub(crate) type Piece = (Key, Child);

impl Node {
    /// An empty leaf: the root of an empty tree, its image from `spares`' pool.
    pub(crate) fn empty(page_size: PageSize, spares: &Arc<SparePages>) -> Self {
        let mut builder = LeafBuilder::with_spares(page_size, spares);
        Node::Leaf(Leaf::finish(&mut builder, Vec::new()))
    }

    /// The node's level: 0 for a leaf.
    pub(crate) fn level(&self) -> u8 {
        match self {
            Node::Leaf(_) => 0,
            Node::Branch(b) => b.level,
        }
    }

    /// The page a checkpoint wrote this node to, if one did.
    pub(crate) fn written(&self) -> Option<PageRef> {
        match self {
            Node::Leaf(l) => l.written.get().copied(),
            Node::Branch(b) => b.written.get().copied(),
        }
    }

    /// Records the page a checkpoint wrote this node to.
    pub(crate) fn set_written(&self, page: PageRef) {
        let slot = match self {
            Node::Leaf(l) => &l.written,
            Node::Branch(b) => &b.written,
        };
        let previous = slot.set(page);
        assert!(previous.is_ok(), "a node is written once");
    }

    /// Whether the node is below a quarter full (or a branch of one child), and so should
    /// be merged with a sibling.
    pub(crate) fn is_underfull(&self, page_size: PageSize) -> bool {
        match self {
            Node::Leaf(l) => l.used < (page_size.bytes() - LEAF_SLOTS_AT) / 4,
            Node::Branch(b) => {
                b.children.len() < 2
                    || b.separators.encoded < (page_size.bytes() - BRANCH_SLOTS_AT) / 4
            }
        }
    }
}

impl Child {
    /// Whether the child should be merged with a sibling. A page of the file never is: it
    /// was balanced when it was made, and reading it to check would cost a page read.
    pub(crate) fn is_underfull(&self, page_size: PageSize) -> bool {
        match self {
            Child::Mem(node) => node.is_underfull(page_size),
            Child::Disk(_) => false,
        }
    }

    /// The child as a page reference, if it is in the file or a checkpoint wrote it.
    pub(crate) fn page(&self) -> Option<PageRef> {
        match self {
            Child::Mem(node) => node.written(),
            Child::Disk(page) => Some(*page),
        }
    }

    /// The items of this child, a leaf (a level-0 child).
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] reading a page.
    pub(crate) fn items<'a>(
        &'a self,
        pages: &'a Pages,
        bounds: Option<Bounds<'_>>,
    ) -> Result<Vec<Item<'a>>> {
        match self {
            Child::Mem(node) => {
                let leaf = node.as_leaf();
                Ok(leaf
                    .page()
                    .entries()
                    .map(|entry| {
                        leaf.item_of(entry.expect("an in-memory leaf is an image LeafBuilder made"))
                    })
                    .collect())
            }
            Child::Disk(page) => pages
                .leaf(*page, bounds)?
                .entries()
                .map(|e| e.map(Item::of_page))
                .collect(),
        }
    }

    /// This child as a branch at `level`: borrowed if in memory, decoded from its page
    /// (children as references) otherwise.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] reading a page.
    pub(crate) fn branch<'a>(
        &'a self,
        pages: &Pages,
        level: u8,
        bounds: Option<Bounds<'_>>,
    ) -> Result<Cow<'a, Branch>> {
        match self {
            Child::Mem(node) => match &**node {
                Node::Branch(b) => Ok(Cow::Borrowed(b)),
                Node::Leaf(_) => unreachable!("a child above level 0 is a branch"),
            },
            Child::Disk(page) => Ok(Cow::Owned(Branch::of_page(
                &pages.branch(*page, level, bounds)?,
            )?)),
        }
    }
}

/// A branch to read: in memory, or a page of the file.
pub(crate) enum BranchRef<'a> {
    Mem(&'a Branch),
    Page(BranchPage<'a>),
}

impl<'a> BranchRef<'a> {
    /// The number of children.
    pub(crate) fn child_count(&self) -> usize {
        match self {
            BranchRef::Mem(b) => b.children.len(),
            BranchRef::Page(p) => p.child_count(),
        }
    }

    /// Child `index`.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] from the page.
    pub(crate) fn child(&self, index: usize) -> Result<Child> {
        match self {
            BranchRef::Mem(b) => Ok(b
                .children
                .get(index)
                .expect("index within children")
                .clone()),
            BranchRef::Page(p) => p.child(index).map(Child::Disk),
        }
    }

    /// Separator `index`.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] from the page.
    pub(crate) fn separator(&self, index: usize) -> Result<&'a [u8]> {
        match self {
            BranchRef::Mem(b) => Ok(b.separators.get(index).expect("index within separators")),
            BranchRef::Page(p) => p.separator(index),
        }
    }

    /// The bounds of child `index`, within the branch's own `bounds`.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] from the page.
    pub(crate) fn child_bounds(&self, index: usize, bounds: Bounds<'a>) -> Result<Bounds<'a>> {
        let low = match index.checked_sub(1) {
            Some(i) => Some(self.separator(i)?),
            None => bounds.low,
        };
        let high = if index + 1 < self.child_count() {
            Some(self.separator(index)?)
        } else {
            bounds.high
        };
        Ok(Bounds { low, high })
    }

    /// The index of the child whose subtree holds `key`.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] from the page.
    pub(crate) fn child_index(&self, key: &[u8]) -> Result<usize> {
        match self {
            BranchRef::Mem(b) => Ok(b.child_index(key)),
            BranchRef::Page(p) => p.child_index(key),
        }
    }
}

impl Child {
    /// This child, a branch at `level`, to read.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] reading its page.
    pub(crate) fn branch_ref<'a>(
        &'a self,
        pages: &'a Pages,
        level: u8,
        bounds: Option<Bounds<'_>>,
    ) -> Result<BranchRef<'a>> {
        match self {
            Child::Mem(node) => match &**node {
                Node::Branch(b) => Ok(BranchRef::Mem(b)),
                Node::Leaf(_) => unreachable!("a child above level 0 is a branch"),
            },
            Child::Disk(page) => pages.branch(*page, level, bounds).map(BranchRef::Page),
        }
    }

    /// This child, a leaf, as a page read in place.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] reading its page.
    pub(crate) fn leaf_page<'a>(
        &'a self,
        pages: &'a Pages,
        bounds: Option<Bounds<'_>>,
    ) -> Result<LeafPage<'a>> {
        match self {
            Child::Mem(node) => Ok(node.as_leaf().page()),
            Child::Disk(page) => pages.leaf(*page, bounds),
        }
    }

    /// Appends the value of `entry`, an entry of this leaf, to `out`; `false` for a
    /// tombstone.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] reading an overflow chain.
    pub(crate) fn value_into(
        &self,
        pages: &Pages,
        entry: &LeafEntry<'_>,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        match entry.value {
            LeafValue::Inline(v) => out.extend_from_slice(v),
            LeafValue::Overflow(r) => match self {
                Child::Mem(node) if is_side(r) => {
                    out.extend_from_slice(node.as_leaf().side_value(r));
                }
                _ => pages.read_value(r, out)?,
            },
            LeafValue::Tombstone => return Ok(false),
        }
        Ok(true)
    }

    /// Whether two children are the same node or page.
    pub(crate) fn same(&self, other: &Child) -> bool {
        match (self, other) {
            (Child::Mem(a), Child::Mem(b)) => Arc::ptr_eq(a, b),
            (Child::Disk(a), Child::Disk(b)) => a == b,
            _ => false,
        }
    }
}

impl Node {
    /// The node as a leaf.
    ///
    /// # Panics
    /// If it is a branch (a caller bug: levels say which it is).
    #[inline]
    pub(crate) fn as_leaf(&self) -> &Leaf {
        match self {
            Node::Leaf(l) => l,
            Node::Branch(_) => unreachable!("a level-0 node is a leaf"),
        }
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        if let Some(spares) = &self.spares {
            spares.put(std::mem::take(&mut self.image));
        }
    }
}

impl Leaf {
    /// Takes the builder's page as an in-memory leaf with these side values (no checksum:
    /// a checkpoint re-encodes it); the builder starts over.
    pub(crate) fn finish(builder: &mut LeafBuilder, side: Vec<Arc<[u8]>>) -> Self {
        let page_size = builder.page_size();
        let used = page_size.bytes() - LEAF_SLOTS_AT - builder.free_space();
        let kinds = builder.kinds();
        let spares = builder.spares().cloned();
        let image = builder.take_in_memory(LEAF_PLACEHOLDER);
        Self {
            image,
            page_size,
            used,
            side,
            kinds,
            written: OnceLock::new(),
            spares,
        }
    }

    /// Whether any entry's value may be in overflow pages (a side value or a chain).
    pub(crate) fn has_overflow(&self) -> bool {
        self.kinds.overflow
    }

    /// Which kinds of entries other than inline values the leaf may hold.
    pub(crate) fn kinds(&self) -> EntryKinds {
        self.kinds
    }

    /// The leaf's page, read in place.
    pub(crate) fn page(&self) -> LeafPage<'_> {
        LeafPage::decode_verified(&self.image, self.page_size, LEAF_PLACEHOLDER)
            .expect("an in-memory leaf is an image LeafBuilder made")
    }

    /// The page image.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.image
    }

    /// The side value an overflow reference of this leaf names.
    pub(crate) fn side_value(&self, reference: OverflowRef) -> &Arc<[u8]> {
        let index = reference.first.id.0 - SIDE_ID_BASE;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.side.get(i))
            .expect("an in-memory overflow reference names a side value of its leaf")
    }

    /// `entry`, one of this leaf's, while rebuilding: side values shared, not copied.
    pub(crate) fn item_of<'a>(&'a self, entry: LeafEntry<'a>) -> Item<'a> {
        match entry.value {
            LeafValue::Overflow(r) if is_side(r) => Item {
                key: entry.key,
                version: entry.version,
                value: Stored::Side(Arc::clone(self.side_value(r))),
            },
            _ => Item::of_page(entry),
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
}

impl Branch {
    /// A branch with these separators and children, not yet written.
    pub(crate) fn new(level: u8, separators: Arc<Separators>, children: Vec<Child>) -> Self {
        Self::with_children(level, separators, Children::new(children))
    }

    /// A branch with these separators and children, not yet written.
    pub(crate) fn with_children(
        level: u8,
        separators: Arc<Separators>,
        children: Children,
    ) -> Self {
        Self {
            level,
            separators,
            children,
            written: OnceLock::new(),
        }
    }

    /// The branch a page holds, its children as references.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] from the page's accessors.
    pub(crate) fn of_page(page: &BranchPage<'_>) -> Result<Self> {
        let keys = (0..page.len())
            .map(|i| page.separator(i))
            .collect::<Result<Vec<_>>>()?;
        let separators = Arc::new(Separators::new(keys));
        let children = (0..page.child_count())
            .map(|i| page.child(i).map(Child::Disk))
            .collect::<Result<_>>()?;
        Ok(Self::new(page.level(), separators, children))
    }

    /// The index of the child whose subtree holds `key`: the number of separators at or
    /// below it.
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        self.separators.count_at_or_below(key)
    }
}

impl Clone for Branch {
    /// A copy to change: not written.
    fn clone(&self) -> Self {
        Self::with_children(
            self.level,
            Arc::clone(&self.separators),
            self.children.clone(),
        )
    }
}

/// Bytes a branch page with these separators takes: the fixed part, the slots and the
/// entries.
pub(crate) fn branch_bytes(separators: &Separators) -> usize {
    BRANCH_SLOTS_AT + separators.encoded
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

/// Packs `items` (in strictly increasing key order) into leaves that fit the page, with
/// `builder` (empty; reused across calls, since it holds a page-sized buffer, and left
/// empty).
/// The first leaf gets `low` as its low bound, each next one its first key. No items, no
/// leaves.
pub(crate) fn pack_leaves(low: Key, items: &[Item<'_>], builder: &mut LeafBuilder) -> Vec<Piece> {
    if items.is_empty() {
        return Vec::new();
    }
    let sizes: Vec<usize> = items.iter().map(|i| i.entry(0).encoded_size()).collect();
    let starts = split_runs(&sizes, builder.page_size().bytes() - LEAF_SLOTS_AT);
    assert!(
        builder.is_empty(),
        "pack_leaves starts from an empty builder"
    );
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
        let run_low = low.take().unwrap_or_else(|| Key::from(first));
        let leaf = Leaf::finish(builder, side);
        pieces.push((run_low, Child::Mem(Arc::new(Node::Leaf(leaf)))));
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
        let mut keys: Vec<Key> = Vec::with_capacity(end - start - 1);
        let mut kids = Vec::with_capacity(end - start);
        kids.push(first);
        for (separator, child) in run_children {
            keys.push(separator);
            kids.push(child);
        }
        let separators = Separators::new(keys.iter().map(|k| &**k));
        assert!(
            branch_bytes(&separators) <= page_size.bytes(),
            "packed branch does not fit its page"
        );
        let branch = Branch::new(level, Arc::new(separators), kids);
        pieces.push((low, Child::Mem(Arc::new(Node::Branch(branch)))));
    }
    pieces
}

/// The children of `node` (a branch) as pieces, `low` being the branch's own low bound.
pub(crate) fn unpack_branch(low: Key, branch: &Branch) -> impl Iterator<Item = Piece> + '_ {
    std::iter::once(low)
        .chain(branch.separators.iter().map(Key::from))
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
    fn children_replaced_match_a_list_model_through_patches_and_folds() {
        let page = |id: u64| {
            Child::Disk(PageRef {
                id: PageId(id),
                checksum: 0,
            })
        };
        let mut model: Vec<u64> = (0..90).collect();
        let mut children = Children::new(model.iter().map(|&id| page(id)).collect());
        let mut state = 7;
        for round in 0..200u64 {
            let mut indexes: Vec<usize> = (0..=next(&mut state) % 6)
                .map(|_| usize::try_from(next(&mut state) % 90).expect("small"))
                .collect();
            indexes.sort_unstable();
            indexes.dedup();
            let replaced = indexes
                .iter()
                .map(|&i| {
                    let id = 1000 + round * 10 + i as u64;
                    *model.get_mut(i).expect("below 90") = id;
                    (i, page(id))
                })
                .collect();
            let before = children.clone();
            children = children.replaced(replaced);
            assert!(children.patch.len() <= PATCH_MAX);
            assert_eq!(children.len(), model.len());
            let ids: Vec<u64> = children
                .iter()
                .map(|c| c.page().expect("a page").id.0)
                .collect();
            assert_eq!(ids, model, "round {round}");
            assert_eq!(before.len(), 90, "the copy it came from is unchanged");
        }
    }

    #[test]
    fn pack_leaves_of_nothing_is_no_leaf() {
        let mut builder = LeafBuilder::new(PageSize::DEFAULT);
        assert!(pack_leaves(Key::default(), &[], &mut builder).is_empty());
    }
}
