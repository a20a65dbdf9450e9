//! Builds a branch page: a leftmost child, then separators in strictly increasing order,
//! each with the child that holds the keys from it on. Spec: docs/format/btree.md (section
//! 6, "Branch page"); the reader is `branch_page.rs`.
//!
//! Like the leaf builder, it builds in place in one reused page-sized buffer: slots grow up
//! from the header, entries grow down from the page's end in slot order, the space between
//! stays zero, so a page is fully determined by its level, children, separators, page id
//! and transaction id.
//!
//! Invariants, asserted (a violation would put bad bytes on disk): the level is 1 to
//! [`LEVEL_MAX`]; separators strictly increase and are within [`PageSize::key_size_max`];
//! every child can be referenced and is not the page itself; a finished page has at least
//! one separator; every entry fits.

use crate::page_format::{
    BRANCH_CHILD_CHECKSUM_AT, BRANCH_CHILD_ID_AT, BRANCH_ENTRY_HEADER_SIZE, BRANCH_KEY_LEN_AT,
    BRANCH_LEFTMOST_CHECKSUM_AT, BRANCH_LEFTMOST_ID_AT, BRANCH_SLOTS_AT, FIRST_TREE_PAGE,
    LEVEL_MAX, PAGE_ID_MAX, PageHeader, PageId, PageRef, PageType, SLOT_SIZE, TxnId, put, seal,
};
use crate::page_size::PageSize;

/// Builds one branch page at a time in a reused buffer.
#[derive(Clone, Debug)]
pub struct BranchBuilder {
    page: Vec<u8>,
    page_size: PageSize,
    level: u8,
    count: usize,
    /// The page offset of the last entry pushed; the page size when empty.
    heap_start: usize,
}

impl BranchBuilder {
    /// An empty branch at `level` whose leftmost child is `leftmost`.
    ///
    /// # Panics
    /// If `level` is not 1 to [`LEVEL_MAX`] or `leftmost` cannot be referenced.
    pub fn new(page_size: PageSize, level: u8, leftmost: PageRef) -> Self {
        let mut builder = Self {
            page: vec![0; page_size.bytes()],
            page_size,
            level,
            count: 0,
            heap_start: page_size.bytes(),
        };
        builder.reset(level, leftmost);
        builder
    }

    /// Empties the builder for the next page, at `level` with leftmost child `leftmost`.
    ///
    /// # Panics
    /// As [`BranchBuilder::new`].
    pub fn reset(&mut self, level: u8, leftmost: PageRef) {
        assert!((1..=LEVEL_MAX).contains(&level), "branch level {level}");
        assert_referable(leftmost.id);
        self.page.fill(0);
        self.level = level;
        self.count = 0;
        self.heap_start = self.page.len();
        put(
            &mut self.page,
            BRANCH_LEFTMOST_ID_AT,
            &leftmost.id.0.to_le_bytes(),
        );
        put(
            &mut self.page,
            BRANCH_LEFTMOST_CHECKSUM_AT,
            &leftmost.checksum.to_le_bytes(),
        );
    }

    /// The page size this builder makes.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// The level of the page being built.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The number of separators pushed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no separator was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes an entry with a separator of `key_len` bytes takes, its slot included.
    pub fn encoded_size(key_len: usize) -> usize {
        SLOT_SIZE + BRANCH_ENTRY_HEADER_SIZE + key_len
    }

    /// Bytes still free for entries and their slots.
    pub fn free_space(&self) -> usize {
        self.heap_start - (BRANCH_SLOTS_AT + self.count * SLOT_SIZE)
    }

    /// Whether a separator of `key_len` bytes fits in the space left.
    pub fn fits(&self, key_len: usize) -> bool {
        Self::encoded_size(key_len) <= self.free_space()
    }

    /// The last separator pushed.
    pub fn last_separator(&self) -> Option<&[u8]> {
        (self.count > 0).then(|| self.key_at(self.heap_start))
    }

    /// Appends `separator` with `child`, the page holding the keys from `separator` on.
    ///
    /// # Panics
    /// If an invariant of the module header breaks (a caller bug).
    pub fn push(&mut self, separator: &[u8], child: PageRef) {
        let key_max = self.page_size.key_size_max();
        assert!(
            separator.len() <= key_max,
            "separator of {} bytes exceeds {key_max}",
            separator.len()
        );
        if let Some(last) = self.last_separator() {
            assert!(separator > last, "separators out of order");
        }
        assert_referable(child.id);
        let size = Self::encoded_size(separator.len());
        assert!(
            size <= self.free_space(),
            "branch entry of {size} bytes does not fit in {} free",
            self.free_space()
        );
        let start = self.heap_start - (size - SLOT_SIZE);
        let key_len = u16::try_from(separator.len()).expect("key_size_max fits a u16");
        put(
            &mut self.page,
            start + BRANCH_KEY_LEN_AT,
            &key_len.to_le_bytes(),
        );
        put(
            &mut self.page,
            start + BRANCH_CHILD_ID_AT,
            &child.id.0.to_le_bytes(),
        );
        put(
            &mut self.page,
            start + BRANCH_CHILD_CHECKSUM_AT,
            &child.checksum.to_le_bytes(),
        );
        put(&mut self.page, start + BRANCH_ENTRY_HEADER_SIZE, separator);
        let slot_at = BRANCH_SLOTS_AT + self.count * SLOT_SIZE;
        let slot = u16::try_from(start).expect("page offsets fit a u16");
        put(&mut self.page, slot_at, &slot.to_le_bytes());
        self.count += 1;
        self.heap_start = start;
    }

    /// Writes the header and checksum and returns the finished page; finishing again
    /// gives the same page.
    ///
    /// # Panics
    /// If no separator was pushed, `page_id` cannot hold a branch, or a child is the page
    /// itself.
    pub fn finish(&mut self, page_id: PageId, txn_id: TxnId) -> &[u8] {
        assert!(self.count >= 1, "a branch needs at least two children");
        assert_referable(page_id);
        for child in self.child_ids() {
            assert_ne!(child, page_id, "a branch names itself as a child");
        }
        PageHeader {
            page_type: PageType::Branch,
            level: self.level,
            count: u16::try_from(self.count).expect("slots fit the page"),
            page_id,
            txn_id,
        }
        .write(&mut self.page);
        seal(&mut self.page);
        &self.page
    }

    /// Checks the builder's state: entries packed back to back from the page's end in slot
    /// order, separators strictly increasing, zero free space. O(page size).
    ///
    /// # Panics
    /// If any does not hold.
    pub fn check_invariants(&self) {
        let slots_end = BRANCH_SLOTS_AT + self.count * SLOT_SIZE;
        assert!(slots_end <= self.heap_start, "slots run into entries");
        let mut end = self.page.len();
        let mut prev: Option<&[u8]> = None;
        for start in self.starts() {
            let key = self.key_at(start);
            assert_eq!(
                start + BRANCH_ENTRY_HEADER_SIZE + key.len(),
                end,
                "entries packed"
            );
            if let Some(prev) = prev {
                assert!(key > prev, "separators out of order");
            }
            prev = Some(key);
            end = start;
        }
        assert_eq!(end, self.heap_start, "the last entry starts the heap");
        assert!(
            self.page[slots_end..self.heap_start]
                .iter()
                .all(|&b| b == 0),
            "free space is not zero"
        );
    }

    fn child_ids(&self) -> impl Iterator<Item = PageId> + '_ {
        let read = |at: usize| {
            PageId(u64::from_le_bytes(
                self.page[at..at + 8].try_into().expect("8 bytes"),
            ))
        };
        std::iter::once(read(BRANCH_LEFTMOST_ID_AT))
            .chain(self.starts().map(move |s| read(s + BRANCH_CHILD_ID_AT)))
    }

    fn starts(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).map(|i| {
            let at = BRANCH_SLOTS_AT + i * SLOT_SIZE;
            usize::from(u16::from_le_bytes([self.page[at], self.page[at + 1]]))
        })
    }

    fn key_at(&self, start: usize) -> &[u8] {
        let len = u16::from_le_bytes([self.page[start], self.page[start + 1]]);
        let key_at = start + BRANCH_ENTRY_HEADER_SIZE;
        &self.page[key_at..key_at + usize::from(len)]
    }
}

fn assert_referable(id: PageId) {
    assert!(
        (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&id.0),
        "page {id:?} cannot be a child"
    );
}
