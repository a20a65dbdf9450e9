//! Reads a leaf page in place: keys, versions and values are slices of the page (which may
//! lie in a read-only map), found by binary search over the slot directory. Spec:
//! docs/format/btree.md (section 5, "Leaf page"); layout constants in `page_format.rs`;
//! the writer is `leaf_builder.rs`.
//!
//! Two ways in:
//! - [`LeafPage::decode`] checks everything once, in O(page size): the checksum, the
//!   header, every slot and entry, that entries are packed back to back from the page's end
//!   in slot order (entry 0 last), that keys strictly increase, and that the free space
//!   between the slots and the entries is zero. An accepted page is the one byte sequence
//!   [`crate::LeafBuilder`] makes of its entries.
//! - [`LeafPage::decode_verified`] checks the header only, in O(1), for a page that passed
//!   `decode` when it was first read. Its accessors still check every offset they follow,
//!   so they return [`Error::Corruption`], never panic, on bytes that changed since.
//!
//! Nothing here allocates; loops run at most once per slot, and a search probes
//! O(log count) slots.

#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;
use std::ops::Range;

use crate::error::{CorruptionKind, Error, Result};
use crate::overflow::OverflowRef;
use crate::page_format::{
    COUNT_AT, KIND_INLINE, KIND_OVERFLOW, KIND_TOMBSTONE, LEAF_ENTRY_HEADER_SIZE, LEAF_KEY_LEN_AT,
    LEAF_KIND_AT, LEAF_SLOTS_AT, LEAF_VALUE_SIZE_AT, LEAF_VERSION_AT, LEVEL_AT, OVERFLOW_REF_SIZE,
    PageHeader, PageId, PageRef, PageType, SLOT_SIZE, TxnId, check_len, check_zero, field_bytes,
    field_u8, field_u16, field_u32, field_u64, invalid, is_referable, verified_header,
};
use crate::page_size::{PageSize, VALUE_SIZE_MAX};
use crate::search::{SearchKey, compare};

/// What a leaf entry holds for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafValue<'a> {
    /// The value, stored in the leaf.
    Inline(&'a [u8]),
    /// The value is in a chain of overflow pages.
    Overflow(OverflowRef),
    /// The key was deleted at the entry's version.
    Tombstone,
}

/// One entry of a leaf page, borrowing the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafEntry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The version: the LSN of the write that stored this entry (at least 1).
    pub version: u64,
    /// The value or where it is.
    pub value: LeafValue<'a>,
}

impl LeafEntry<'_> {
    /// Bytes the entry takes in a leaf page, its slot included.
    pub fn encoded_size(&self) -> usize {
        let body = match self.value {
            LeafValue::Inline(v) => v.len(),
            LeafValue::Overflow(_) => OVERFLOW_REF_SIZE,
            LeafValue::Tombstone => 0,
        };
        SLOT_SIZE + LEAF_ENTRY_HEADER_SIZE + self.key.len() + body
    }
}

/// Which kinds of entries other than inline values a leaf holds, or may hold: what a
/// leaf rebuild needs to know of the entries it copies without decoding them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EntryKinds {
    /// A tombstone.
    pub(crate) tombstone: bool,
    /// A value in overflow pages (or an in-memory leaf's side value).
    pub(crate) overflow: bool,
}

impl EntryKinds {
    /// The kinds of either.
    pub(crate) fn union(self, other: Self) -> Self {
        Self {
            tombstone: self.tombstone || other.tombstone,
            overflow: self.overflow || other.overflow,
        }
    }
}

/// A leaf page, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct LeafPage<'a> {
    page: &'a [u8],
    page_size: PageSize,
    page_id: PageId,
    txn_id: TxnId,
    count: usize,
}

impl<'a> LeafPage<'a> {
    /// Validates `page` as leaf `expected_id` in full (see the module header).
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the field at fault.
    pub fn decode(page: &'a [u8], page_size: PageSize, expected_id: PageId) -> Result<Self> {
        let header = PageHeader::decode(page, page_size, expected_id, PageType::Leaf)?;
        let leaf = Self::from_header(page, page_size, header)?;
        leaf.check_entries()?;
        Ok(leaf)
    }

    /// Opens a page that passed [`LeafPage::decode`] before, checking only its length and
    /// header.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the header is not a leaf's.
    pub fn decode_verified(
        page: &'a [u8],
        page_size: PageSize,
        expected_id: PageId,
    ) -> Result<Self> {
        check_len(page, page_size, expected_id)?;
        let header = PageHeader::decode_unverified(page, expected_id, PageType::Leaf)?;
        Self::from_header(page, page_size, header)
    }

    /// [`LeafPage::decode_verified`] with the header read in place and the precise error
    /// left to the full decode. A get opens the leaf of its path this way.
    ///
    /// # Errors
    /// As [`LeafPage::decode_verified`].
    #[inline]
    pub(crate) fn open_verified(
        page: &'a [u8],
        page_size: PageSize,
        expected_id: PageId,
    ) -> Result<Self> {
        if let Some(header) =
            verified_header(page, page_size, expected_id, PageType::Leaf, LEAF_SLOTS_AT)
            && header.level == 0
        {
            return Ok(Self {
                page,
                page_size,
                page_id: expected_id,
                txn_id: header.txn_id,
                count: header.count,
            });
        }
        // Refused: the full checks name the fault.
        Self::decode_verified(page, page_size, expected_id)
    }

    /// Reopens a page this process decoded before, from the fields that decode found,
    /// without reading its header again (a cursor stepping through one leaf). Accessors
    /// still check every offset they follow.
    #[inline]
    pub(crate) fn reopen(
        page: &'a [u8],
        page_size: PageSize,
        page_id: PageId,
        txn_id: TxnId,
        count: usize,
    ) -> Self {
        Self {
            page,
            page_size,
            page_id,
            txn_id,
            count,
        }
    }

    fn from_header(page: &'a [u8], page_size: PageSize, header: PageHeader) -> Result<Self> {
        let id = header.page_id;
        if header.level != 0 {
            return Err(invalid(id, LEVEL_AT, "leaf level", header.level.into()));
        }
        let count = usize::from(header.count);
        if LEAF_SLOTS_AT + count * SLOT_SIZE > page.len() {
            return Err(invalid(id, COUNT_AT, "leaf count", count as u64));
        }
        Ok(Self {
            page,
            page_size,
            page_id: id,
            txn_id: header.txn_id,
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

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the page holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the page in use (header, slots and entries), for fill statistics.
    pub fn used_bytes(&self) -> Result<usize> {
        let heap_start = match self.count.checked_sub(1) {
            None => self.page.len(),
            Some(last) => self.slot(last)?,
        };
        Ok(self.slots_end() + (self.page.len() - heap_start))
    }

    /// The key of entry `index`.
    ///
    /// # Panics
    /// If `index >= len()` (a caller bug).
    pub fn key(&self, index: usize) -> Result<&'a [u8]> {
        self.key_at(self.slot(index)?)
    }

    /// The key of the entry at page offset `start` (a slot's, checked).
    fn key_at(&self, start: usize) -> Result<&'a [u8]> {
        let key_len = field_u16(self.page, self.page_id, start, "leaf key length")?;
        let key_at = start + LEAF_ENTRY_HEADER_SIZE;
        field_bytes(
            self.page,
            self.page_id,
            key_at..key_at + usize::from(key_len),
            "leaf key",
        )
    }

    /// The key of entry `index` and, if the entry is a tombstone, its version: what a leaf
    /// rebuild needs to know of an entry it copies as it is.
    ///
    /// # Panics
    /// If `index >= len()` (a caller bug).
    pub(crate) fn key_and_tombstone(&self, index: usize) -> Result<(&'a [u8], Option<u64>)> {
        let start = self.slot(index)?;
        let key = self.key_at(start)?;
        let kind = field_u8(
            self.page,
            self.page_id,
            start + LEAF_KIND_AT,
            "leaf entry kind",
        )?;
        if kind != KIND_TOMBSTONE {
            return Ok((key, None));
        }
        let at = start + LEAF_VERSION_AT;
        let version = field_u64(self.page, self.page_id, at, "leaf entry version")?;
        Ok((key, Some(version)))
    }

    /// Which kinds of entries other than inline values the page holds: a scan of the
    /// entries' kind bytes, without decoding them, for a leaf rebuild that may skip the
    /// entries it keeps.
    ///
    /// # Errors
    /// [`Error::Corruption`] for a slot out of place.
    pub(crate) fn kinds(&self) -> Result<EntryKinds> {
        let mut kinds = EntryKinds::default();
        self.scan_kinds(|kind| {
            kinds.tombstone |= kind == KIND_TOMBSTONE;
            kinds.overflow |= kind == KIND_OVERFLOW;
            false
        })?;
        Ok(kinds)
    }

    /// Whether any entry's value is in overflow pages: a scan of the entries' kind bytes,
    /// without decoding them, for the walks that look for overflow references.
    ///
    /// # Errors
    /// [`Error::Corruption`] for a slot out of place.
    pub(crate) fn has_overflow(&self) -> Result<bool> {
        self.has_kind(KIND_OVERFLOW)
    }

    /// Whether any entry's kind byte is `kind`.
    fn has_kind(&self, kind: u8) -> Result<bool> {
        self.scan_kinds(|found| found == kind)
    }

    /// Passes each entry's kind byte to `stop` until it returns true (then `true`): one
    /// pass over the slots, checked as [`LeafPage::slot`] checks each (an apply runs it
    /// over every leaf of the file it rebuilds).
    fn scan_kinds(&self, mut stop: impl FnMut(u8) -> bool) -> Result<bool> {
        let slots_end = self.slots_end();
        let slots = field_bytes(
            self.page,
            self.page_id,
            LEAF_SLOTS_AT..slots_end,
            "leaf slot",
        )?;
        for (index, slot) in slots.chunks_exact(SLOT_SIZE).enumerate() {
            let &[s0, s1] = slot else {
                unreachable!("chunks of SLOT_SIZE bytes")
            };
            let start = usize::from(u16::from_le_bytes([s0, s1]));
            // A slot is a u16, so the sum cannot overflow.
            if start < slots_end || start.wrapping_add(LEAF_ENTRY_HEADER_SIZE) > self.page.len() {
                let at = LEAF_SLOTS_AT + index * SLOT_SIZE;
                return Err(invalid(self.page_id, at, "leaf slot", start as u64));
            }
            let at = start.wrapping_add(LEAF_KIND_AT);
            if stop(field_u8(self.page, self.page_id, at, "leaf entry kind")?) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The page offset where entry `index` starts (its slot): entries are packed back to
    /// back from the page's end in slot order, so entries `i..j` take the bytes from entry
    /// `j - 1`'s start to entry `i - 1`'s (or the page's end).
    ///
    /// # Panics
    /// If `index >= len()` (a caller bug).
    pub(crate) fn entry_start(&self, index: usize) -> Result<usize> {
        self.slot(index)
    }

    /// The page's bytes.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.page
    }

    /// Entry `index`.
    ///
    /// # Panics
    /// If `index >= len()` (a caller bug).
    pub fn entry(&self, index: usize) -> Result<LeafEntry<'a>> {
        let start = self.slot(index)?;
        self.parse(start).map(|(entry, _end)| entry)
    }

    /// The index of the first entry whose key is at or after `key` (`len()` if none).
    pub fn lower_bound(&self, key: &[u8]) -> Result<usize> {
        self.lower_bound_from(0, key)
    }

    /// The index of the first entry at or after `from` whose key is at or after `key`
    /// (`len()` if none): [`LeafPage::lower_bound`] over the entries from `from` on.
    pub(crate) fn lower_bound_from(&self, from: usize, key: &[u8]) -> Result<usize> {
        let key = SearchKey::new(key);
        let slots_end = self.slots_end();
        // The slot directory, split once: a probe's slot read is then one bounds check.
        // `from_header` checked that it fits the page.
        let slots = self
            .page
            .get(LEAF_SLOTS_AT..slots_end)
            .map_or(&[][..], |slots| slots.as_chunks::<SLOT_SIZE>().0);
        let (mut lo, mut hi) = (from.min(self.count), self.count);
        while lo < hi {
            // `lo < hi <= count`, a u16: the sum cannot overflow.
            let mid = lo.wrapping_add(hi) / 2;
            let probed = match self.probe(slots, mid, slots_end) {
                Some(probed) => probed,
                None => self.key(mid)?,
            };
            if key.compare(probed) == Ordering::Less {
                lo = mid.wrapping_add(1);
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Key `index` for a search, or `None` where [`LeafPage::key`] may return an error
    /// (which the caller then asks it for). Reads the same bytes with the same checks,
    /// without building a `Result` per probe; `slots_end` is [`LeafPage::slots_end`],
    /// worked out once per search.
    /// `slots` is the slot directory as [`LeafPage::lower_bound_from`] splits it.
    #[inline]
    fn probe(&self, slots: &[[u8; SLOT_SIZE]], index: usize, slots_end: usize) -> Option<&'a [u8]> {
        // No sum here can overflow: `index < count`, which came from a u16, a slot is a
        // u16 and a key length a u16. A get runs this about log2(count) times.
        let &slot = slots.get(index)?;
        let start = usize::from(u16::from_le_bytes(slot));
        if start < slots_end {
            return None;
        }
        // Past the page's end, or an entry header that does not fit, is refused by a
        // `get` below, as `LeafPage::slot` refuses it.
        let entry = self.page.get(start..)?;
        let &len = entry.first_chunk::<2>()?;
        let key_end = LEAF_ENTRY_HEADER_SIZE.wrapping_add(usize::from(u16::from_le_bytes(len)));
        entry.get(LEAF_ENTRY_HEADER_SIZE..key_end)
    }

    /// Entry `index`'s key and inline value, as ranges of the page's bytes, and its
    /// version: what a cursor stepping through the page needs of an entry. `None` where
    /// [`LeafPage::entry`] must be asked instead: an entry that is not an inline value, and
    /// any bytes `entry` would refuse. Reads the same bytes with the same checks as `entry`
    /// for an inline value, without building a `Result` per step.
    #[inline]
    pub(crate) fn probe_inline(&self, index: usize) -> Option<(Range<usize>, Range<usize>, u64)> {
        if index >= self.count {
            return None;
        }
        // No sum below can overflow: `index < count` and `count` came from a `u16`, a slot
        // is a `u16`, a key length a `u16`, and a value length a `u32` that `stores_inline`
        // bounds by the leaf payload before it is added.
        let at = LEAF_SLOTS_AT.wrapping_add(index.wrapping_mul(SLOT_SIZE));
        let &slot = self.page.get(at..)?.first_chunk::<2>()?;
        let start = usize::from(u16::from_le_bytes(slot));
        if start < LEAF_SLOTS_AT.wrapping_add(self.count.wrapping_mul(SLOT_SIZE)) {
            return None;
        }
        let header = self
            .page
            .get(start..)?
            .first_chunk::<LEAF_ENTRY_HEADER_SIZE>()?;
        let (key_len, kind, version, value_len) = entry_header(header);
        let (key_len, value_len) = (usize::from(key_len), value_len as usize);
        if kind != KIND_INLINE
            || version == 0
            || key_len > self.page_size.key_size_max()
            || !self.page_size.stores_inline(key_len, value_len)
        {
            return None;
        }
        let key_at = start.wrapping_add(LEAF_ENTRY_HEADER_SIZE);
        let body_at = key_at.wrapping_add(key_len);
        let end = body_at.wrapping_add(value_len);
        (end <= self.page.len()).then_some((key_at..body_at, body_at..end, version))
    }

    /// The entry of `key`, if the page holds it.
    pub fn find(&self, key: &[u8]) -> Result<Option<LeafEntry<'a>>> {
        let index = self.lower_bound(key)?;
        if index == self.count {
            return Ok(None);
        }
        // An inline value, the common entry, read by `probe_inline`'s checks (those of
        // `entry` for it) without building a `Result` for each field.
        if let Some((key_at, value_at, version)) = self.probe_inline(index)
            && let (Some(found), Some(value)) = (self.page.get(key_at), self.page.get(value_at))
        {
            let entry = LeafEntry {
                key: found,
                version,
                value: LeafValue::Inline(value),
            };
            return Ok((compare(found, key) == Ordering::Equal).then_some(entry));
        }
        let entry = self.entry(index)?;
        // `compare`, not `==`: a call to memcmp costs several times its few instructions.
        Ok((compare(entry.key, key) == Ordering::Equal).then_some(entry))
    }

    /// Every entry in key order; iterates both ways.
    pub fn entries(&self) -> LeafEntries<'a> {
        LeafEntries {
            leaf: *self,
            front: 0,
            back: self.count,
        }
    }

    fn slots_end(&self) -> usize {
        // `count` came from a u16 (or a builder's count, which fits a page): no overflow.
        LEAF_SLOTS_AT.wrapping_add(self.count.wrapping_mul(SLOT_SIZE))
    }

    /// The page offset slot `index` holds, which must point past the slots and leave room
    /// for an entry header before the page's end.
    fn slot(&self, index: usize) -> Result<usize> {
        assert!(index < self.count, "leaf index {index} of {}", self.count);
        // Below `slots_end`, and a slot is a u16: no sum here can overflow.
        let at = LEAF_SLOTS_AT.wrapping_add(index.wrapping_mul(SLOT_SIZE));
        let start = usize::from(field_u16(self.page, self.page_id, at, "leaf slot")?);
        if start < self.slots_end() || start.wrapping_add(LEAF_ENTRY_HEADER_SIZE) > self.page.len()
        {
            return Err(invalid(self.page_id, at, "leaf slot", start as u64));
        }
        Ok(start)
    }

    /// Decodes the entry at page offset `start`: the entry and the offset one past it.
    fn parse(&self, start: usize) -> Result<(LeafEntry<'a>, usize)> {
        let (page, id) = (self.page, self.page_id);
        // One bounds check for the entry's fixed part: this runs for every entry a leaf
        // rebuild or a cursor step reads.
        let header = field_bytes(
            page,
            id,
            start..start + LEAF_ENTRY_HEADER_SIZE,
            "leaf entry header",
        )?;
        let Some(header) = header.first_chunk::<LEAF_ENTRY_HEADER_SIZE>() else {
            unreachable!("field_bytes returned the whole header")
        };
        let (key_len, kind, version, value_size) = entry_header(header);
        let key_len = usize::from(key_len);
        if key_len > self.page_size.key_size_max() {
            return Err(invalid(id, start, "leaf key length", key_len as u64));
        }
        if version == 0 {
            return Err(invalid(
                id,
                start + LEAF_VERSION_AT,
                "leaf entry version",
                0,
            ));
        }
        let size_at = start + LEAF_VALUE_SIZE_AT;
        let key_at = start + LEAF_ENTRY_HEADER_SIZE;
        let body_at = key_at + key_len;
        let key = field_bytes(page, id, key_at..body_at, "leaf key")?;
        let bad_size = || invalid(id, size_at, "leaf value size", value_size.into());
        let (value, body_len) = match kind {
            KIND_INLINE => {
                let len = value_size as usize;
                if !self.page_size.stores_inline(key_len, len) {
                    return Err(bad_size());
                }
                let value = field_bytes(page, id, body_at..body_at + len, "leaf value")?;
                (LeafValue::Inline(value), len)
            }
            KIND_OVERFLOW => {
                let inline = self.page_size.stores_inline(key_len, value_size as usize);
                if inline || value_size > VALUE_SIZE_MAX {
                    return Err(bad_size());
                }
                let first = self.overflow_first(body_at)?;
                (
                    LeafValue::Overflow(OverflowRef { first, value_size }),
                    OVERFLOW_REF_SIZE,
                )
            }
            KIND_TOMBSTONE if value_size == 0 => (LeafValue::Tombstone, 0),
            KIND_TOMBSTONE => return Err(bad_size()),
            tag => {
                let kind = CorruptionKind::InvalidTag { tag };
                let at = start + LEAF_KIND_AT;
                return Err(Error::corruption(id, at, "leaf entry kind", kind));
            }
        };
        let entry = LeafEntry {
            key,
            version,
            value,
        };
        Ok((entry, body_at + body_len))
    }

    /// The overflow reference at page offset `at`.
    fn overflow_first(&self, at: usize) -> Result<PageRef> {
        let (page, id) = (self.page, self.page_id);
        let first = field_u64(page, id, at, "leaf overflow page id")?;
        let checksum = field_u32(page, id, at + 8, "leaf overflow checksum")?;
        if !is_referable(first, id) {
            return Err(invalid(id, at, "leaf overflow page id", first));
        }
        Ok(PageRef {
            id: PageId(first),
            checksum,
        })
    }

    /// The full structural check of [`LeafPage::decode`], after the header's.
    fn check_entries(&self) -> Result<()> {
        let mut end = self.page.len();
        let mut prev_key: Option<&[u8]> = None;
        for index in 0..self.count {
            let start = self.slot(index)?;
            let (entry, entry_end) = self.parse(start)?;
            if entry_end != end {
                let at = LEAF_SLOTS_AT + index * SLOT_SIZE;
                return Err(invalid(self.page_id, at, "leaf slot", start as u64));
            }
            if prev_key.is_some_and(|prev| entry.key <= prev) {
                let kind = CorruptionKind::OutOfOrder {
                    index: index as u64,
                };
                return Err(Error::corruption(self.page_id, start, "leaf key", kind));
            }
            prev_key = Some(entry.key);
            end = start;
        }
        check_zero(
            self.page,
            self.page_id,
            self.slots_end()..end,
            "leaf free space",
        )
    }
}

/// The fields of a leaf entry's fixed part: key length, kind, version and value size.
#[inline]
fn entry_header(header: &[u8; LEAF_ENTRY_HEADER_SIZE]) -> (u16, u8, u64, u32) {
    // Whole little-endian loads from the fixed offsets of section 5's entry layout; the
    // splits below are of constant lengths within 15 bytes and cannot fail.
    const _: () = assert!(
        LEAF_KEY_LEN_AT == 0
            && LEAF_KIND_AT == 2
            && LEAF_VERSION_AT == 3
            && LEAF_VALUE_SIZE_AT == 11
            && LEAF_ENTRY_HEADER_SIZE == 15,
        "the splits below follow section 5's entry layout"
    );
    let (&key_len, rest) = header
        .split_first_chunk::<2>()
        .expect("the key length is in the header");
    let (&[kind], rest) = rest
        .split_first_chunk::<1>()
        .expect("the kind is in the header");
    let (&version, rest) = rest
        .split_first_chunk::<8>()
        .expect("the version is in the header");
    let &value_size = rest
        .first_chunk::<4>()
        .expect("the value size is in the header");
    (
        u16::from_le_bytes(key_len),
        kind,
        u64::from_le_bytes(version),
        u32::from_le_bytes(value_size),
    )
}

/// The entries of a leaf page in key order, from either end. Each item is a `Result`: a
/// page opened with [`LeafPage::decode_verified`] may still hold damage.
#[derive(Clone, Debug)]
pub struct LeafEntries<'a> {
    leaf: LeafPage<'a>,
    front: usize,
    back: usize,
}

impl<'a> Iterator for LeafEntries<'a> {
    type Item = Result<LeafEntry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.front += 1;
        Some(self.leaf.entry(self.front - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.back - self.front;
        (left, Some(left))
    }
}

impl DoubleEndedIterator for LeafEntries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some(self.leaf.entry(self.back))
    }
}

impl ExactSizeIterator for LeafEntries<'_> {}

#[cfg(test)]
#[allow(clippy::indexing_slicing, reason = "tests fail loudly by design")]
mod tests {
    use super::*;
    use crate::leaf_builder::LeafBuilder;
    use crate::page_format::{HEADER_SIZE, PAGE_ID_MAX};

    fn outcome(
        result: Result<LeafPage<'_>>,
    ) -> std::result::Result<(PageId, TxnId, usize), String> {
        result
            .map(|leaf| (leaf.page_id(), leaf.txn_id(), leaf.len()))
            .map_err(|e| e.to_string())
    }

    /// Every value of interest in every header byte, at every expected id: the in-place
    /// header read accepts exactly what `decode_verified` accepts, with the same fields,
    /// and refuses with its error.
    #[test]
    fn open_verified_accepts_and_refuses_exactly_as_decode_verified() {
        let size = PageSize::DEFAULT;
        let mut builder = LeafBuilder::new(size);
        for (key, version) in [(&b"key-1"[..], 3), (b"key-2", 4)] {
            builder.push(&LeafEntry {
                key,
                version,
                value: LeafValue::Inline(b"value"),
            });
        }
        let page = builder.finish(PageId(5), TxnId(9)).to_vec();
        let ids = [0, 1, 2, 4, 5, 6, PAGE_ID_MAX, PAGE_ID_MAX + 1].map(PageId);
        let mut checked = 0;
        for at in 0..HEADER_SIZE {
            for value in [0, 1, 2, 3, 5, 31, 0xff, page[at] ^ 1] {
                let mut damaged = page.clone();
                damaged[at] = value;
                for id in ids {
                    assert_eq!(
                        outcome(LeafPage::open_verified(&damaged, size, id)),
                        outcome(LeafPage::decode_verified(&damaged, size, id)),
                        "byte {at} = {value}, id {id:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(
            outcome(LeafPage::open_verified(&page, size, PageId(5))),
            Ok((PageId(5), TxnId(9), 2))
        );
        for short in [&page[..page.len() - 1], &page[..HEADER_SIZE], &[][..]] {
            assert_eq!(
                outcome(LeafPage::open_verified(short, size, PageId(5))),
                outcome(LeafPage::decode_verified(short, size, PageId(5))),
            );
        }
        assert!(checked > 1_000);
    }
}
