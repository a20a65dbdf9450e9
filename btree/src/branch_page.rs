//! Reads a branch page in place: separator keys are slices of the page, child references
//! are found by binary search over the slot directory. Spec: docs/format/btree.md
//! (section 6, "Branch page"); layout constants in `page_format.rs`; the writer is
//! `branch_builder.rs`.
//!
//! A branch at level `L` (1 or more) has `n >= 1` separators and `n + 1` children, all at
//! level `L - 1`: child 0 (the leftmost, in the header) holds the keys below separator 0,
//! and child `i + 1` (in entry `i`) the keys from separator `i` up to, not including,
//! separator `i + 1`. Each child reference carries the child's checksum.
//!
//! As with leaves, [`BranchPage::decode`] checks everything once (checksum, header, slots,
//! entries packed from the page's end in slot order, strictly increasing separators, zero
//! free space) and [`BranchPage::decode_verified`] only the header, for pages verified
//! when first read; accessors check every offset they follow and never panic on bytes.
//! Nothing allocates; a search probes O(log n) slots.

#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;

use crate::error::{CorruptionKind, Error, Result};
use crate::page_format::{
    BRANCH_CHILD_CHECKSUM_AT, BRANCH_CHILD_ID_AT, BRANCH_ENTRY_HEADER_SIZE, BRANCH_KEY_LEN_AT,
    BRANCH_LEFTMOST_CHECKSUM_AT, BRANCH_LEFTMOST_ID_AT, BRANCH_SLOTS_AT, COUNT_AT, LEVEL_AT,
    LEVEL_MAX, PageHeader, PageId, PageRef, PageType, SLOT_SIZE, TxnId, check_len, check_zero,
    field_bytes, field_u16, field_u32, field_u64, invalid, is_referable, verified_header,
};
use crate::page_size::PageSize;
use crate::search::SearchKey;

/// A branch page, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct BranchPage<'a> {
    page: &'a [u8],
    page_size: PageSize,
    page_id: PageId,
    txn_id: TxnId,
    level: u8,
    count: usize,
}

/// The header fields a decode of a branch page found, to reopen it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BranchFound {
    page_id: PageId,
    txn_id: TxnId,
    level: u8,
    count: usize,
}

impl<'a> BranchPage<'a> {
    /// Validates `page` as branch `expected_id` in full (see the module header).
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the field at fault.
    pub fn decode(page: &'a [u8], page_size: PageSize, expected_id: PageId) -> Result<Self> {
        let header = PageHeader::decode(page, page_size, expected_id, PageType::Branch)?;
        let branch = Self::from_header(page, page_size, header)?;
        branch.check_entries()?;
        Ok(branch)
    }

    /// Opens a page that passed [`BranchPage::decode`] before, checking only its length
    /// and header.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the header is not a branch's.
    pub fn decode_verified(
        page: &'a [u8],
        page_size: PageSize,
        expected_id: PageId,
    ) -> Result<Self> {
        check_len(page, page_size, expected_id)?;
        let header = PageHeader::decode_unverified(page, expected_id, PageType::Branch)?;
        Self::from_header(page, page_size, header)
    }

    /// [`BranchPage::decode_verified`] of a page its parent expects at `level`, with that
    /// level check too: the header read in place, the precise error left to the full
    /// decode. A get opens each branch of its path this way.
    ///
    /// # Errors
    /// As [`BranchPage::decode_verified`], and for a page at another level.
    #[inline]
    pub(crate) fn open_verified(
        page: &'a [u8],
        page_size: PageSize,
        expected_id: PageId,
        level: u8,
    ) -> Result<Self> {
        if let Some(header) = verified_header(
            page,
            page_size,
            expected_id,
            PageType::Branch,
            BRANCH_SLOTS_AT,
        ) && header.level == level
            && (1..=LEVEL_MAX).contains(&level)
            && header.count != 0
        {
            return Ok(Self {
                page,
                page_size,
                page_id: expected_id,
                txn_id: header.txn_id,
                level,
                count: header.count,
            });
        }
        Self::open_verified_error(page, page_size, expected_id, level)
    }

    /// What [`BranchPage::open_verified`] refused, named by the full checks.
    #[cold]
    #[inline(never)]
    fn open_verified_error(
        page: &'a [u8],
        page_size: PageSize,
        expected_id: PageId,
        level: u8,
    ) -> Result<Self> {
        let branch = Self::decode_verified(page, page_size, expected_id)?;
        if branch.level != level {
            let what = "branch level (not its parent's less one)";
            return Err(invalid(expected_id, LEVEL_AT, what, branch.level.into()));
        }
        Ok(branch)
    }

    /// What [`BranchPage::reopen`] needs to open this page again.
    #[inline]
    pub(crate) fn found(&self) -> BranchFound {
        BranchFound {
            page_id: self.page_id,
            txn_id: self.txn_id,
            level: self.level,
            count: self.count,
        }
    }

    /// Reopens a page this process decoded before, from the fields that decode found,
    /// without reading its header again (a cursor stepping to the next child of a branch
    /// on its path). Accessors still check every offset they follow.
    #[inline]
    pub(crate) fn reopen(page: &'a [u8], page_size: PageSize, found: BranchFound) -> Self {
        Self {
            page,
            page_size,
            page_id: found.page_id,
            txn_id: found.txn_id,
            level: found.level,
            count: found.count,
        }
    }

    fn from_header(page: &'a [u8], page_size: PageSize, header: PageHeader) -> Result<Self> {
        let id = header.page_id;
        if !(1..=LEVEL_MAX).contains(&header.level) {
            return Err(invalid(id, LEVEL_AT, "branch level", header.level.into()));
        }
        let count = usize::from(header.count);
        if count == 0 || BRANCH_SLOTS_AT + count * SLOT_SIZE > page.len() {
            return Err(invalid(id, COUNT_AT, "branch count", count as u64));
        }
        Ok(Self {
            page,
            page_size,
            page_id: id,
            txn_id: header.txn_id,
            level: header.level,
            count,
        })
    }

    /// The page's id.
    pub fn page_id(&self) -> PageId {
        self.page_id
    }

    /// The checkpoint transaction that wrote the page.
    pub fn txn_id(&self) -> TxnId {
        self.txn_id
    }

    /// The page's height above the leaves: its children are at `level() - 1`.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The number of separators (one less than the children).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a branch holds at least one separator.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The number of children.
    pub fn child_count(&self) -> usize {
        self.count + 1
    }

    /// Bytes of the page in use (header, slots and entries), for fill statistics.
    pub fn used_bytes(&self) -> Result<usize> {
        let heap_start = self.slot(self.count - 1)?;
        Ok(BRANCH_SLOTS_AT + self.count * SLOT_SIZE + (self.page.len() - heap_start))
    }

    /// Separator `index`.
    ///
    /// # Panics
    /// If `index >= len()` (a caller bug).
    pub fn separator(&self, index: usize) -> Result<&'a [u8]> {
        let start = self.slot(index)?;
        let key_len = field_u16(self.page, self.page_id, start, "branch key length")?;
        let key_at = start + BRANCH_ENTRY_HEADER_SIZE;
        let range = key_at..key_at + usize::from(key_len);
        field_bytes(self.page, self.page_id, range, "branch key")
    }

    /// Child `index`: 0 is the leftmost, `i + 1` the one after separator `i`.
    ///
    /// # Panics
    /// If `index > len()` (a caller bug).
    pub fn child(&self, index: usize) -> Result<PageRef> {
        match index.checked_sub(1) {
            None => self.child_at(BRANCH_LEFTMOST_ID_AT, BRANCH_LEFTMOST_CHECKSUM_AT),
            Some(entry) => {
                // `slot` leaves room for an entry header before the page's end.
                let start = self.slot(entry)?;
                let (id_at, sum_at) = (
                    start.wrapping_add(BRANCH_CHILD_ID_AT),
                    start.wrapping_add(BRANCH_CHILD_CHECKSUM_AT),
                );
                self.child_at(id_at, sum_at)
            }
        }
    }

    /// The index of the child whose key range holds `key`: the number of separators at or
    /// below it.
    pub fn child_index(&self, key: &[u8]) -> Result<usize> {
        let key = SearchKey::new(key);
        let slots_end = self.slots_end();
        // The slot directory, split once: a probe's slot read is then one bounds check.
        // `from_header` checked that it fits the page.
        let slots = self
            .page
            .get(BRANCH_SLOTS_AT..slots_end)
            .map_or(&[][..], |slots| slots.as_chunks::<SLOT_SIZE>().0);
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            // `lo < hi <= count`, a u16: the sum cannot overflow.
            let mid = lo.wrapping_add(hi) / 2;
            let separator = match self.probe(slots, mid, slots_end) {
                Some(separator) => separator,
                None => self.separator(mid)?,
            };
            if key.compare(separator) == Ordering::Greater {
                hi = mid;
            } else {
                lo = mid.wrapping_add(1);
            }
        }
        Ok(lo)
    }

    /// Separator `index` (below `count`) for a search, or `None` where
    /// [`BranchPage::separator`] may return an error (which the caller then asks it for).
    /// Reads the same bytes with the same checks, without building a `Result` per probe;
    /// `slots_end` is [`BranchPage::slots_end`], worked out once per search.
    /// `slots` is the slot directory as [`BranchPage::child_index`] splits it.
    #[inline]
    fn probe(&self, slots: &[[u8; SLOT_SIZE]], index: usize, slots_end: usize) -> Option<&'a [u8]> {
        // No sum here can overflow: `index < count`, which came from a u16, a slot is a
        // u16 and a key length a u16. A search runs this about log2(count) times a level.
        let &slot = slots.get(index)?;
        let start = usize::from(u16::from_le_bytes(slot));
        if start < slots_end {
            return None;
        }
        let entry = self.page.get(start..)?;
        let &len = entry.first_chunk::<2>()?;
        let key_end = BRANCH_ENTRY_HEADER_SIZE.wrapping_add(usize::from(u16::from_le_bytes(len)));
        entry.get(BRANCH_ENTRY_HEADER_SIZE..key_end)
    }

    /// The page offset one past the slot directory.
    fn slots_end(&self) -> usize {
        // `count` came from a u16 (and fits the page, checked by `from_header`).
        BRANCH_SLOTS_AT.wrapping_add(self.count.wrapping_mul(SLOT_SIZE))
    }

    /// The child whose key range holds `key`.
    pub fn child_for(&self, key: &[u8]) -> Result<PageRef> {
        self.child(self.child_index(key)?)
    }

    fn child_at(&self, id_at: usize, checksum_at: usize) -> Result<PageRef> {
        let id = field_u64(self.page, self.page_id, id_at, "branch child id")?;
        if !is_referable(id, self.page_id) {
            return Err(invalid(self.page_id, id_at, "branch child id", id));
        }
        let checksum = field_u32(
            self.page,
            self.page_id,
            checksum_at,
            "branch child checksum",
        )?;
        Ok(PageRef {
            id: PageId(id),
            checksum,
        })
    }

    /// The page offset slot `index` holds, which must point past the slots and leave room
    /// for an entry header before the page's end.
    fn slot(&self, index: usize) -> Result<usize> {
        assert!(index < self.count, "branch index {index} of {}", self.count);
        // Below `slots_end`, and a slot is a u16: no sum here can overflow.
        let at = BRANCH_SLOTS_AT.wrapping_add(index.wrapping_mul(SLOT_SIZE));
        let start = usize::from(field_u16(self.page, self.page_id, at, "branch slot")?);
        if start < self.slots_end()
            || start.wrapping_add(BRANCH_ENTRY_HEADER_SIZE) > self.page.len()
        {
            return Err(invalid(self.page_id, at, "branch slot", start as u64));
        }
        Ok(start)
    }

    /// The full structural check of [`BranchPage::decode`], after the header's.
    fn check_entries(&self) -> Result<()> {
        self.child(0)?;
        let mut end = self.page.len();
        let mut prev_key: Option<&[u8]> = None;
        for index in 0..self.count {
            let start = self.slot(index)?;
            let key_len = field_u16(
                self.page,
                self.page_id,
                start + BRANCH_KEY_LEN_AT,
                "branch key length",
            )?;
            if usize::from(key_len) > self.page_size.key_size_max() {
                let what = "branch key length";
                return Err(invalid(self.page_id, start, what, key_len.into()));
            }
            let key = self.separator(index)?;
            self.child(index + 1)?;
            if start + BRANCH_ENTRY_HEADER_SIZE + key.len() != end {
                let at = BRANCH_SLOTS_AT + index * SLOT_SIZE;
                return Err(invalid(self.page_id, at, "branch slot", start as u64));
            }
            if prev_key.is_some_and(|prev| key <= prev) {
                let kind = CorruptionKind::OutOfOrder {
                    index: index as u64,
                };
                return Err(Error::corruption(self.page_id, start, "branch key", kind));
            }
            prev_key = Some(key);
            end = start;
        }
        let slots_end = BRANCH_SLOTS_AT + self.count * SLOT_SIZE;
        check_zero(self.page, self.page_id, slots_end..end, "branch free space")
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, reason = "tests fail loudly by design")]
mod tests {
    use super::*;
    use crate::branch_builder::BranchBuilder;
    use crate::page_format::{HEADER_SIZE, PAGE_ID_MAX};

    /// `open_verified`'s answer as the full checks give it: `decode_verified`, then the
    /// level its parent expects.
    fn reference(page: &[u8], size: PageSize, id: PageId, level: u8) -> Result<BranchPage<'_>> {
        let branch = BranchPage::decode_verified(page, size, id)?;
        if branch.level() != level {
            let what = "branch level (not its parent's less one)";
            return Err(invalid(id, LEVEL_AT, what, branch.level().into()));
        }
        Ok(branch)
    }

    fn outcome(result: Result<BranchPage<'_>>) -> std::result::Result<BranchFound, String> {
        result.map(|page| page.found()).map_err(|e| e.to_string())
    }

    /// Every value of interest in every header byte, at every expected id and level: the
    /// in-place header read accepts exactly what the full checks accept, with the same
    /// fields, and refuses with their error.
    #[test]
    fn open_verified_accepts_and_refuses_exactly_as_the_full_header_checks() {
        let size = PageSize::DEFAULT;
        let child = |id| PageRef {
            id: PageId(id),
            checksum: 7,
        };
        let mut builder = BranchBuilder::new(size, 2, child(10));
        builder.push(b"key-1", child(11));
        builder.push(b"key-2", child(12));
        let page = builder.finish(PageId(5), TxnId(9)).to_vec();
        let ids = [0, 1, 2, 4, 5, 6, PAGE_ID_MAX, PAGE_ID_MAX + 1].map(PageId);
        let mut checked = 0;
        for at in 0..HEADER_SIZE {
            for value in [0, 1, 2, 3, 5, 31, 32, 0xff, page[at] ^ 1] {
                let mut damaged = page.clone();
                damaged[at] = value;
                for id in ids {
                    for level in [0, 1, 2, 3, 31, 32] {
                        assert_eq!(
                            outcome(BranchPage::open_verified(&damaged, size, id, level)),
                            outcome(reference(&damaged, size, id, level)),
                            "byte {at} = {value}, id {id:?}, level {level}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        let accepted = BranchPage::open_verified(&page, size, PageId(5), 2).unwrap();
        assert_eq!((accepted.len(), accepted.txn_id()), (2, TxnId(9)));
        for short in [&page[..page.len() - 1], &page[..HEADER_SIZE], &[][..]] {
            assert_eq!(
                outcome(BranchPage::open_verified(short, size, PageId(5), 2)),
                outcome(reference(short, size, PageId(5), 2)),
            );
        }
        assert!(checked > 10_000);
    }
}
