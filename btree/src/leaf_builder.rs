//! Builds a leaf page from entries given in strictly increasing key order. Spec:
//! docs/format/btree.md (section 5, "Leaf page"); the reader is `leaf_page.rs`.
//!
//! The page is built in place in one page-sized buffer, reused across pages with
//! [`LeafBuilder::reset`]: slots grow up from the header, entries grow down from the page's
//! end (entry 0 last, each next entry just below the one before), and the space between
//! is zeroed when the page is finished for a file. That is the one layout
//! [`crate::LeafPage::decode`] accepts, so a page is fully determined by its entries, page
//! id and transaction id. The
//! buffer is not cleared between pages: every byte of the header, the slots and the
//! entries is written when they are, and only the space left between them needs zeroing,
//! once, at the end (clearing a whole page per leaf an apply rebuilds cost a fifth of a
//! random fill's instructions).
//!
//! Invariants, asserted on every push (a violation would put bad bytes on disk): keys
//! strictly increase; each key is within [`PageSize::key_size_max`]; a version is at least
//! 1; a value is inline exactly when [`PageSize::stores_inline`] says so; overflow
//! references name a page that can be referenced; the entry fits.

use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

use crate::error::Result;
use crate::leaf_page::{EntryKinds, LeafEntry, LeafPage, LeafValue};
use crate::page_format::{
    FIRST_TREE_PAGE, KIND_INLINE, KIND_OVERFLOW, KIND_TOMBSTONE, LEAF_ENTRY_HEADER_SIZE,
    LEAF_KEY_LEN_AT, LEAF_KIND_AT, LEAF_SLOTS_AT, LEAF_VALUE_SIZE_AT, LEAF_VERSION_AT,
    OVERFLOW_REF_SIZE, PAGE_ID_MAX, PageHeader, PageId, PageType, SLOT_SIZE, TxnId, invalid, put,
    seal,
};
use crate::page_size::{PageSize, VALUE_SIZE_MAX};
use crate::search::compare;
use crate::spare_pages::SparePages;

/// Builds one leaf page at a time in a reused buffer.
#[derive(Clone, Debug)]
pub struct LeafBuilder {
    page: Vec<u8>,
    page_size: PageSize,
    count: usize,
    /// The page offset of the last entry pushed (the lowest entry); the page size when
    /// empty.
    heap_start: usize,
    /// The kinds of entries pushed, or that runs copied from pages holding them may hold.
    kinds: EntryKinds,
    /// Where [`LeafBuilder::take_in_memory`] gets the next page's buffer, and the leaves it
    /// hands pages to give them back; a zeroed buffer each time without.
    spares: Option<Arc<SparePages>>,
}

impl LeafBuilder {
    /// An empty builder for pages of `page_size`.
    pub fn new(page_size: PageSize) -> Self {
        Self {
            page: vec![0; page_size.bytes()],
            page_size,
            count: 0,
            heap_start: page_size.bytes(),
            kinds: EntryKinds::default(),
            spares: None,
        }
    }

    /// An empty builder for pages of `page_size` whose in-memory pages are built in
    /// buffers from `spares`.
    pub(crate) fn with_spares(page_size: PageSize, spares: &Arc<SparePages>) -> Self {
        Self {
            spares: Some(Arc::clone(spares)),
            ..Self::new(page_size)
        }
    }

    /// The pool this builder takes its in-memory pages' buffers from, if any.
    pub(crate) fn spares(&self) -> Option<&Arc<SparePages>> {
        self.spares.as_ref()
    }

    /// Empties the builder for the next page. The buffer keeps its bytes until pushes
    /// overwrite them and a finish zeroes the rest.
    pub fn reset(&mut self) {
        self.count = 0;
        self.heap_start = self.page.len();
        self.kinds = EntryKinds::default();
    }

    /// Which kinds of entries other than inline values the page holds: exactly for the
    /// entries pushed one by one, and for those copied by [`LeafBuilder::push_run`] what
    /// their source page was said to hold (so it may say more than the page holds).
    pub(crate) fn kinds(&self) -> EntryKinds {
        self.kinds
    }

    /// The page size this builder makes.
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// The number of entries pushed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes still free for entries and their slots.
    pub fn free_space(&self) -> usize {
        self.heap_start - (LEAF_SLOTS_AT + self.count * SLOT_SIZE)
    }

    /// Whether `entry` fits in the space left.
    pub fn fits(&self, entry: &LeafEntry<'_>) -> bool {
        entry.encoded_size() <= self.free_space()
    }

    /// The key of the last entry pushed.
    pub fn last_key(&self) -> Option<&[u8]> {
        (self.count > 0).then(|| self.key_at(self.heap_start))
    }

    /// Appends `entry` after every entry pushed so far.
    ///
    /// # Panics
    /// If the entry breaks an invariant of the module header (a caller bug).
    pub fn push(&mut self, entry: &LeafEntry<'_>) {
        let (key, size) = (entry.key, entry.encoded_size());
        assert!(
            key.len() <= self.page_size.key_size_max(),
            "leaf key of {} bytes exceeds {}",
            key.len(),
            self.page_size.key_size_max()
        );
        assert!(entry.version >= 1, "leaf entry version 0");
        if let Some(last) = self.last_key() {
            assert!(
                compare(key, last) == Ordering::Greater,
                "leaf keys out of order: {key:?} after {last:?}"
            );
        }
        assert!(
            size <= self.free_space(),
            "leaf entry of {size} bytes does not fit in {} free",
            self.free_space()
        );
        let (kind, value_size) = self.push_kind(entry);
        self.kinds = self.kinds.union(EntryKinds {
            tombstone: kind == KIND_TOMBSTONE,
            overflow: kind == KIND_OVERFLOW,
        });
        let start = self.heap_start - (size - SLOT_SIZE);
        let body_at = start + LEAF_ENTRY_HEADER_SIZE + key.len();
        let key_len = u16::try_from(key.len()).expect("key_size_max fits a u16");
        put(
            &mut self.page,
            start + LEAF_KEY_LEN_AT,
            &key_len.to_le_bytes(),
        );
        put(&mut self.page, start + LEAF_KIND_AT, &[kind]);
        put(
            &mut self.page,
            start + LEAF_VERSION_AT,
            &entry.version.to_le_bytes(),
        );
        put(
            &mut self.page,
            start + LEAF_VALUE_SIZE_AT,
            &value_size.to_le_bytes(),
        );
        put(&mut self.page, start + LEAF_ENTRY_HEADER_SIZE, key);
        match entry.value {
            LeafValue::Inline(v) => put(&mut self.page, body_at, v),
            LeafValue::Overflow(r) => {
                put(&mut self.page, body_at, &r.first.id.0.to_le_bytes());
                put(&mut self.page, body_at + 8, &r.first.checksum.to_le_bytes());
            }
            LeafValue::Tombstone => {}
        }
        let slot_at = LEAF_SLOTS_AT + self.count * SLOT_SIZE;
        let slot = u16::try_from(start).expect("page offsets fit a u16");
        put(&mut self.page, slot_at, &slot.to_le_bytes());
        self.count += 1;
        self.heap_start = start;
    }

    /// Appends entries `range` of `source` after every entry pushed so far, as they are:
    /// their bytes, one contiguous run in a page laid out as this builder lays pages out
    /// (one it made, or one [`LeafPage::decode`] accepted), are copied at once and their
    /// slots shifted, without decoding an entry. `source_kinds` says which kinds of
    /// entries the source may hold (what [`LeafPage::kinds`] finds, or more). Returns
    /// `false`, pushing nothing, if they do not fit in the space left.
    ///
    /// # Errors
    /// [`crate::Error::Corruption`] if the source's slots do not hold such a run (bytes
    /// changed since they were verified); nothing is pushed.
    ///
    /// # Panics
    /// If the run's first key is not above the last key pushed (a caller bug).
    pub(crate) fn push_run(
        &mut self,
        source: &LeafPage<'_>,
        source_kinds: EntryKinds,
        range: Range<usize>,
    ) -> Result<bool> {
        let Some(last) = range.end.checked_sub(1).filter(|&l| l >= range.start) else {
            return Ok(true);
        };
        let bytes = source.bytes();
        let run_start = source.entry_start(last)?;
        let run_end = match range.start.checked_sub(1) {
            None => bytes.len(),
            Some(before) => source.entry_start(before)?,
        };
        let count = range.len();
        let bad_run = || {
            let what = "leaf slot (entries not packed in slot order)";
            invalid(source.page_id(), LEAF_SLOTS_AT, what, run_start as u64)
        };
        if run_end <= run_start || run_end - run_start < count * LEAF_ENTRY_HEADER_SIZE {
            return Err(bad_run());
        }
        let run_len = run_end - run_start;
        if run_len + count * SLOT_SIZE > self.free_space() {
            return Ok(false);
        }
        if let Some(previous) = self.last_key() {
            let first = source.key(range.start)?;
            assert!(
                compare(first, previous) == Ordering::Greater,
                "leaf keys out of order: {first:?} after {previous:?}"
            );
        }
        let run = bytes.get(run_start..run_end).ok_or_else(bad_run)?;
        let target = self.heap_start - run_len;
        // Each entry starts below the one before it, within the run: the slots written
        // here then point at the same entries in the new page. The slots go into free
        // space, which a finish zeroes, so one out of place leaves nothing behind. The
        // source's slots are read as one slice (`entry_start` checked the run's ends lie
        // past them) and each is checked to lie within the run, below the one before.
        let slots_at = LEAF_SLOTS_AT + self.count * SLOT_SIZE;
        let source_slots = bytes
            .get(LEAF_SLOTS_AT + range.start * SLOT_SIZE..LEAF_SLOTS_AT + range.end * SLOT_SIZE)
            .ok_or_else(bad_run)?;
        let target_slots = self
            .page
            .get_mut(slots_at..slots_at + count * SLOT_SIZE)
            .expect("the run's slots fit the free space");
        let mut above = run_end;
        for (source_slot, target_slot) in source_slots
            .chunks_exact(SLOT_SIZE)
            .zip(target_slots.chunks_exact_mut(SLOT_SIZE))
        {
            let &[s0, s1] = source_slot else {
                unreachable!("chunks of SLOT_SIZE bytes")
            };
            let start = usize::from(u16::from_le_bytes([s0, s1]));
            if start >= above || start < run_start {
                return Err(bad_run());
            }
            above = start;
            // `run_start <= start` and the run fits below `heap_start`: below a page.
            let slot = (start - run_start + target) as u16;
            target_slot.copy_from_slice(&slot.to_le_bytes());
        }
        put(&mut self.page, target, run);
        self.count += count;
        self.heap_start = target;
        self.kinds = self.kinds.union(source_kinds);
        Ok(true)
    }

    /// The kind tag and stored value size of `entry`, after checking that the value is
    /// stored the way [`PageSize::stores_inline`] says.
    fn push_kind(&self, entry: &LeafEntry<'_>) -> (u8, u32) {
        let key_len = entry.key.len();
        match entry.value {
            LeafValue::Inline(v) => {
                assert!(
                    self.page_size.stores_inline(key_len, v.len()),
                    "value of {} bytes with a key of {key_len} belongs in overflow pages",
                    v.len()
                );
                let size = u32::try_from(v.len()).expect("inline values are below a page");
                (KIND_INLINE, size)
            }
            LeafValue::Overflow(r) => {
                let size = r.value_size as usize;
                assert!(
                    !self.page_size.stores_inline(key_len, size),
                    "value of {size} bytes with a key of {key_len} belongs inline"
                );
                assert!(r.value_size <= VALUE_SIZE_MAX, "value of {size} bytes");
                let id = r.first.id.0;
                assert!(
                    (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&id),
                    "overflow page id {id}"
                );
                (KIND_OVERFLOW, r.value_size)
            }
            LeafValue::Tombstone => (KIND_TOMBSTONE, 0),
        }
    }

    /// Writes the header and checksum and returns the finished page. The builder keeps its
    /// entries (finishing again gives the same page); [`LeafBuilder::reset`] starts the
    /// next one.
    ///
    /// # Panics
    /// If `page_id` is a meta page or past [`PAGE_ID_MAX`], or an overflow reference names
    /// the page itself.
    pub fn finish(&mut self, page_id: PageId, txn_id: TxnId) -> &[u8] {
        self.zero_free_space();
        self.write_header(page_id, txn_id);
        seal(&mut self.page);
        &self.page
    }

    /// Zeroes the space between the slots and the entries, which holds whatever the
    /// buffer held before (see the module header).
    fn zero_free_space(&mut self) {
        let slots_end = LEAF_SLOTS_AT + self.count * SLOT_SIZE;
        self.page[slots_end..self.heap_start].fill(0);
    }

    /// Finishes a copy of `page`, an in-memory leaf this crate built (its entries in place,
    /// no side values), as page `page_id` of transaction `txn_id`: the bytes pushing its
    /// entries again would make, since a leaf page is fully determined by its entries, ids
    /// and transaction, without decoding an entry. `kinds` says which kinds of entries it
    /// may hold (what its builder said, or more). [`LeafBuilder::reset`] starts the next.
    ///
    /// # Panics
    /// As [`LeafBuilder::finish`]; if `page` is not of this builder's page size.
    pub(crate) fn finish_copy(
        &mut self,
        page: &LeafPage<'_>,
        kinds: EntryKinds,
        page_id: PageId,
        txn_id: TxnId,
    ) -> &[u8] {
        self.page.copy_from_slice(page.bytes());
        self.kinds = kinds;
        self.count = page.len();
        self.heap_start = match self.count.checked_sub(1) {
            None => self.page.len(),
            Some(last) => page
                .entry_start(last)
                .expect("an in-memory leaf is an image LeafBuilder made"),
        };
        // O(page), as the copy: the image is still what the builder made (but for its free
        // space, which the finish zeroes).
        if cfg!(debug_assertions) {
            self.check_invariants();
            let held = page.kinds().expect("an in-memory leaf is well formed");
            assert!(
                kinds.union(held) == kinds,
                "kinds {kinds:?} miss some of {held:?}"
            );
        }
        self.finish(page_id, txn_id)
    }

    /// Finishes the page for use in memory only: the header is written with `page_id` and
    /// transaction 0 and the checksum field is left zero (the page is re-encoded under its
    /// real id before it reaches a file, by [`LeafBuilder::finish_copy`]). The builder
    /// hands over its buffer and starts the next page on a fresh one, so nothing is copied
    /// or cleared. The free space is left as the buffer held it: nothing reads it in
    /// memory, and few of the images applies build are ever written (about one in ten in
    /// a random fill: the rest are replaced first), so the finish that writes one zeroes it.
    ///
    /// # Panics
    /// As [`LeafBuilder::finish`].
    pub(crate) fn take_in_memory(&mut self, page_id: PageId) -> Box<[u8]> {
        // O(page), as the build before it: runs pushed by `push_run` are checked here.
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        // No check that no overflow reference names the page: an in-memory image carries
        // the placeholder id, above every id a reference holds (a file's pages and side
        // values are below it), and a checkpoint writes the image under its real id
        // through `finish`, which checks.
        assert_eq!(page_id.0, PAGE_ID_MAX, "an in-memory leaf's placeholder id");
        self.write_header_fields(page_id, TxnId(0));
        // The checksum field of an in-memory image stays zero; a reused buffer may hold
        // another page's.
        self.page[..4].fill(0);
        let fresh = match &self.spares {
            Some(spares) => spares.take(),
            None => vec![0; self.page_size.bytes()],
        };
        self.count = 0;
        self.heap_start = fresh.len();
        self.kinds = EntryKinds::default();
        std::mem::replace(&mut self.page, fresh).into_boxed_slice()
    }

    /// Writes the header after checking the page id (see [`LeafBuilder::finish`]).
    fn write_header(&mut self, page_id: PageId, txn_id: TxnId) {
        assert!(
            (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&page_id.0),
            "leaf page id {page_id:?}"
        );
        // `kinds` says every kind the page may hold: without overflow references there is
        // nothing to look for, and a checkpoint writing an in-memory leaf skips the walk.
        let starts = self
            .starts()
            .take(if self.kinds.overflow { self.count } else { 0 });
        for start in starts {
            if self.page.get(start + LEAF_KIND_AT) == Some(&KIND_OVERFLOW) {
                let at = start + LEAF_ENTRY_HEADER_SIZE + self.key_at(start).len();
                let first = self.page.get(at..at + 8).expect("written by push");
                assert_ne!(
                    first,
                    page_id.0.to_le_bytes(),
                    "overflow names its own leaf"
                );
            }
        }
        self.write_header_fields(page_id, txn_id);
    }

    /// Writes the header fields (the checksum's excepted) after checking the page id.
    fn write_header_fields(&mut self, page_id: PageId, txn_id: TxnId) {
        assert!(
            (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&page_id.0),
            "leaf page id {page_id:?}"
        );
        PageHeader {
            page_type: PageType::Leaf,
            level: 0,
            count: u16::try_from(self.count).expect("slots fit the page"),
            page_id,
            txn_id,
        }
        .write(&mut self.page);
    }

    /// Checks the builder's state: slots point at entries packed back to back from the
    /// page's end, keys strictly increase. The free space is zeroed by a finish, and
    /// checked only by the decoders of a finished page. O(entries).
    ///
    /// # Panics
    /// If any does not hold.
    pub fn check_invariants(&self) {
        let slots_end = LEAF_SLOTS_AT + self.count * SLOT_SIZE;
        assert!(slots_end <= self.heap_start, "slots run into entries");
        let mut end = self.page.len();
        let mut prev: Option<&[u8]> = None;
        for start in self.starts() {
            let key = self.key_at(start);
            let body = match self.page[start + LEAF_KIND_AT] {
                KIND_INLINE => {
                    let at = start + LEAF_VALUE_SIZE_AT;
                    u32::from_le_bytes(self.page[at..at + 4].try_into().expect("4 bytes")) as usize
                }
                KIND_OVERFLOW => OVERFLOW_REF_SIZE,
                kind => {
                    assert_eq!(kind, KIND_TOMBSTONE, "entry kind");
                    0
                }
            };
            let len = LEAF_ENTRY_HEADER_SIZE + key.len() + body;
            assert_eq!(
                start + len,
                end,
                "entry at {start} does not end where the next starts"
            );
            if let Some(prev) = prev {
                assert!(key > prev, "keys out of order");
            }
            prev = Some(key);
            end = start;
        }
        assert_eq!(end, self.heap_start, "the last entry starts the heap");
    }

    /// The page offsets of the entries, in slot order.
    fn starts(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).map(|i| {
            let at = LEAF_SLOTS_AT + i * SLOT_SIZE;
            usize::from(u16::from_le_bytes([self.page[at], self.page[at + 1]]))
        })
    }

    /// The key of the entry pushed at page offset `start`.
    fn key_at(&self, start: usize) -> &[u8] {
        let len = u16::from_le_bytes([self.page[start], self.page[start + 1]]);
        let key_at = start + LEAF_ENTRY_HEADER_SIZE;
        &self.page[key_at..key_at + usize::from(len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_format::{PageId, TxnId};

    fn entry<'a>(key: &'a [u8], value: &'a [u8]) -> LeafEntry<'a> {
        LeafEntry {
            key,
            version: 7,
            value: LeafValue::Inline(value),
        }
    }

    /// Fills `builder` with as many entries as fit, keys from `first` on, values of
    /// `value_len` bytes of `fill`.
    fn fill(builder: &mut LeafBuilder, first: u32, count: u32, value_len: usize, fill: u8) {
        let value = vec![fill; value_len];
        for i in first..first + count {
            let key = format!("key{i:08}");
            let e = entry(key.as_bytes(), &value);
            if !builder.fits(&e) {
                break;
            }
            builder.push(&e);
        }
    }

    /// A builder reused after a full page of 0xFF bytes makes the same pages as a fresh
    /// one: the bytes a smaller page leaves free are zeroed by the finish.
    #[test]
    fn reused_builder_after_full_page_matches_fresh_builder() {
        let size = PageSize::DEFAULT;
        let mut reused = LeafBuilder::new(size);
        fill(&mut reused, 0, 1_000, 200, 0xff);
        reused.finish(PageId(9), TxnId(3));
        reused.reset();
        fill(&mut reused, 500, 3, 10, 0x11);
        let mut fresh = LeafBuilder::new(size);
        fill(&mut fresh, 500, 3, 10, 0x11);
        let page = reused.finish(PageId(5), TxnId(2)).to_vec();
        assert_eq!(page, fresh.finish(PageId(5), TxnId(2)));
        LeafPage::decode(&page, size, PageId(5)).expect("a builder's page decodes");
        // Empty after a reset, too.
        reused.reset();
        let mut fresh = LeafBuilder::new(size);
        assert_eq!(
            reused.finish(PageId(5), TxnId(2)),
            fresh.finish(PageId(5), TxnId(2))
        );
    }

    /// An in-memory image built in a recycled buffer (a dropped leaf's, its bytes left in
    /// place) reads as one built in a zeroed buffer, with its checksum field zero, and
    /// finishes for a file into the same page, byte for byte.
    #[test]
    fn in_memory_image_in_recycled_buffer_matches_fresh_image() {
        let size = PageSize::DEFAULT;
        let spares = Arc::new(SparePages::new(size.bytes()));
        let mut builder = LeafBuilder::with_spares(size, &spares);
        fill(&mut builder, 0, 1_000, 150, 0xee);
        let mut dirty = builder.take_in_memory(PageId(PAGE_ID_MAX));
        dirty.fill(0xa5);
        // The spare buffer put back last is the next one a take hands the builder: the
        // empty page taken here swaps it in, and the next page is built in it.
        spares.put(dirty);
        let empty = builder.take_in_memory(PageId(PAGE_ID_MAX));
        assert_eq!(
            LeafPage::decode_verified(&empty, size, PageId(PAGE_ID_MAX))
                .map(|l| l.len())
                .ok(),
            Some(0)
        );
        fill(&mut builder, 42, 2, 30, 0x22);
        let image = builder.take_in_memory(PageId(PAGE_ID_MAX));
        let mut fresh = LeafBuilder::new(size);
        fill(&mut fresh, 42, 2, 30, 0x22);
        let fresh_image = fresh.take_in_memory(PageId(PAGE_ID_MAX));
        assert_ne!(
            image, fresh_image,
            "the free space keeps the recycled bytes"
        );
        let leaf = LeafPage::decode_verified(&image, size, PageId(PAGE_ID_MAX))
            .expect("an in-memory image's header");
        let fresh_leaf = LeafPage::decode_verified(&fresh_image, size, PageId(PAGE_ID_MAX))
            .expect("an in-memory image's header");
        assert_eq!(leaf.len(), 2);
        let entries: Vec<_> = leaf.entries().map(Result::ok).collect();
        let fresh_entries: Vec<_> = fresh_leaf.entries().map(Result::ok).collect();
        assert_eq!(entries, fresh_entries, "the same entries");
        assert!(image[..4].iter().all(|&b| b == 0), "checksum field");
        let kinds = EntryKinds::default();
        let page = builder
            .finish_copy(&leaf, kinds, PageId(7), TxnId(3))
            .to_vec();
        assert_eq!(
            page,
            fresh.finish_copy(&fresh_leaf, kinds, PageId(7), TxnId(3))
        );
        LeafPage::decode(&page, size, PageId(7)).expect("a finished copy decodes");
    }
}
