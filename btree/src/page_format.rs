//! The page layout shared by every page type: the header, its offsets, the page checksum,
//! references between pages, and the field readers every page decoder uses. Spec:
//! docs/format/btree.md (sections 3 and 4); this file mirrors it, with each offset chained
//! from the field before it.
//!
//! Every page is exactly one page size long and starts with a 24-byte header:
//! `checksum u32, page_type u8, level u8, count u16, page_id u64, txn_id u64`. The
//! checksum is the crc32 of bytes `[4, page_size)`: every byte of the page but the
//! checksum field itself, which is excluded rather than zeroed so that a page can be
//! verified where it lies, in a read-only map. The header's `page_id` is the page's own
//! position, so a page written to or read from the wrong place is refused
//! ([`CorruptionKind::WrongPageId`]).
//!
//! Field readers return `Option` or [`Result`] and never index: every byte is input.

#![deny(clippy::indexing_slicing)]

use std::ops::Range;

use crate::error::{CorruptionKind, Error, Result};
use crate::page_size::PageSize;

/// Page offset of the page checksum (`u32`): crc32 of bytes `[CHECKSUM_FROM, page_size)`.
pub const CHECKSUM_AT: usize = 0;
/// Page offset of the page type (`u8`, [`PageType`]).
pub const PAGE_TYPE_AT: usize = CHECKSUM_AT + 4;
/// Page offset of the level (`u8`): a branch's height above the leaves (1 or more); 0 on
/// every other page type.
pub const LEVEL_AT: usize = PAGE_TYPE_AT + 1;
/// Page offset of the entry count (`u16`): slots of a leaf or branch, entries of a
/// free-list page; 0 on meta and overflow pages.
pub const COUNT_AT: usize = LEVEL_AT + 1;
/// Page offset of the page's own id (`u64`).
pub const PAGE_ID_AT: usize = COUNT_AT + 2;
/// Page offset of the id (`u64`) of the checkpoint transaction that wrote the page.
pub const TXN_ID_AT: usize = PAGE_ID_AT + 8;
/// Bytes of the common header.
pub const HEADER_SIZE: usize = TXN_ID_AT + 8;
/// The first byte the page checksum covers: everything after the checksum field.
pub const CHECKSUM_FROM: usize = CHECKSUM_AT + 4;

/// Bytes of one slot (a `u16` page offset) in a leaf or branch page.
pub const SLOT_SIZE: usize = 2;

/// Page offset of a leaf's slot array (`count` slots of [`SLOT_SIZE`]).
pub const LEAF_SLOTS_AT: usize = HEADER_SIZE;
/// Entry offset of a leaf entry's key length (`u16`).
pub const LEAF_KEY_LEN_AT: usize = 0;
/// Entry offset of a leaf entry's kind (`u8`: [`KIND_INLINE`], [`KIND_OVERFLOW`],
/// [`KIND_TOMBSTONE`]).
pub const LEAF_KIND_AT: usize = LEAF_KEY_LEN_AT + 2;
/// Entry offset of a leaf entry's version (`u64`): the LSN that wrote it, at least 1.
pub const LEAF_VERSION_AT: usize = LEAF_KIND_AT + 1;
/// Entry offset of a leaf entry's value size (`u32`): the whole value's size (inline or in
/// overflow pages); 0 for a tombstone.
pub const LEAF_VALUE_SIZE_AT: usize = LEAF_VERSION_AT + 8;
/// Bytes of a leaf entry before its key.
pub const LEAF_ENTRY_HEADER_SIZE: usize = LEAF_VALUE_SIZE_AT + 4;
/// Leaf entry kind: the value follows the key.
pub const KIND_INLINE: u8 = 0;
/// Leaf entry kind: an overflow reference (first page id `u64`, its checksum `u32`)
/// follows the key.
pub const KIND_OVERFLOW: u8 = 1;
/// Leaf entry kind: a deleted key's version; nothing follows the key.
pub const KIND_TOMBSTONE: u8 = 2;
/// Bytes of an overflow reference in a leaf entry.
pub const OVERFLOW_REF_SIZE: usize = 12;

/// Page offset of a branch's leftmost child id (`u64`).
pub const BRANCH_LEFTMOST_ID_AT: usize = HEADER_SIZE;
/// Page offset of the leftmost child's checksum (`u32`).
pub const BRANCH_LEFTMOST_CHECKSUM_AT: usize = BRANCH_LEFTMOST_ID_AT + 8;
/// Page offset of a branch's slot array.
pub const BRANCH_SLOTS_AT: usize = BRANCH_LEFTMOST_CHECKSUM_AT + 4;
/// Entry offset of a branch entry's separator key length (`u16`).
pub const BRANCH_KEY_LEN_AT: usize = 0;
/// Entry offset of a branch entry's child id (`u64`).
pub const BRANCH_CHILD_ID_AT: usize = BRANCH_KEY_LEN_AT + 2;
/// Entry offset of a branch entry's child checksum (`u32`).
pub const BRANCH_CHILD_CHECKSUM_AT: usize = BRANCH_CHILD_ID_AT + 8;
/// Bytes of a branch entry before its separator key.
pub const BRANCH_ENTRY_HEADER_SIZE: usize = BRANCH_CHILD_CHECKSUM_AT + 4;

/// Page offset of the next page's id (`u64`) on overflow and free-list pages.
pub const NEXT_ID_AT: usize = HEADER_SIZE;
/// Page offset of the next page's checksum (`u32`).
pub const NEXT_CHECKSUM_AT: usize = NEXT_ID_AT + 8;
/// Page offset of the `has_next` flag (`u8`, 0 or 1).
pub const HAS_NEXT_AT: usize = NEXT_CHECKSUM_AT + 4;
/// Page offset of 3 reserved bytes (zero) after `has_next`.
pub const LINK_RESERVED_AT: usize = HAS_NEXT_AT + 1;
/// Page offset one past the link fields.
pub const LINK_END: usize = LINK_RESERVED_AT + 3;

/// Page offset of an overflow page's data size (`u32`).
pub const OVERFLOW_DATA_SIZE_AT: usize = LINK_END;
/// Page offset of 4 reserved bytes (zero) on an overflow page.
pub const OVERFLOW_RESERVED_AT: usize = OVERFLOW_DATA_SIZE_AT + 4;
/// Page offset of an overflow page's data.
pub const OVERFLOW_DATA_AT: usize = OVERFLOW_RESERVED_AT + 4;

/// Page offset of a free-list page's entries (`count` entries of [`FREE_ENTRY_SIZE`]).
pub const FREE_ENTRIES_AT: usize = LINK_END;
/// Bytes of a free-list entry: `page_id u64`, `freed_txn u64`.
pub const FREE_ENTRY_SIZE: usize = 16;

/// The meta page's magic, ASCII `POPDBBTR`, at offset 24 (`META_MAGIC_AT`) of pages 0 and 1.
pub const MAGIC: [u8; 8] = *b"POPDBBTR";
/// The `format_version` this build writes, and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Page offset of the meta page's magic (8 bytes).
pub const META_MAGIC_AT: usize = HEADER_SIZE;
/// Page offset of `format_version` (`u32`).
pub const META_VERSION_AT: usize = META_MAGIC_AT + 8;
/// Page offset of the page size (`u32`).
pub const META_PAGE_SIZE_AT: usize = META_VERSION_AT + 4;
/// Page offset of the high-water mark (`u64`): pages below it are in use or listed free.
pub const META_PAGE_COUNT_AT: usize = META_PAGE_SIZE_AT + 4;
/// Page offset of the tree's entry count (`u64`).
pub const META_ENTRY_COUNT_AT: usize = META_PAGE_COUNT_AT + 8;
/// Page offset of the free list's entry count (`u64`).
pub const META_FREE_PAGE_COUNT_AT: usize = META_ENTRY_COUNT_AT + 8;
/// Page offset of the watermark LSN (`u64`), valid when `has_watermark` is 1.
pub const META_WATERMARK_AT: usize = META_FREE_PAGE_COUNT_AT + 8;
/// Page offset of the root page id (`u64`), valid when `has_root` is 1.
pub const META_ROOT_ID_AT: usize = META_WATERMARK_AT + 8;
/// Page offset of the free list's first page id (`u64`), valid when `has_free_list` is 1.
pub const META_FREE_LIST_ID_AT: usize = META_ROOT_ID_AT + 8;
/// Page offset of the root page's checksum (`u32`).
pub const META_ROOT_CHECKSUM_AT: usize = META_FREE_LIST_ID_AT + 8;
/// Page offset of the free list's first page's checksum (`u32`).
pub const META_FREE_LIST_CHECKSUM_AT: usize = META_ROOT_CHECKSUM_AT + 4;
/// Page offset of the `has_watermark` flag (`u8`).
pub const META_HAS_WATERMARK_AT: usize = META_FREE_LIST_CHECKSUM_AT + 4;
/// Page offset of the `has_root` flag (`u8`).
pub const META_HAS_ROOT_AT: usize = META_HAS_WATERMARK_AT + 1;
/// Page offset of the `has_free_list` flag (`u8`).
pub const META_HAS_FREE_LIST_AT: usize = META_HAS_ROOT_AT + 1;
/// Page offset of the root page's level (`u8`): 0 for a leaf root.
pub const META_ROOT_LEVEL_AT: usize = META_HAS_FREE_LIST_AT + 1;
/// Page offset of 4 reserved bytes (zero).
pub const META_RESERVED_AT: usize = META_ROOT_LEVEL_AT + 1;
/// Bytes of the meta fields; the rest of a meta page is zero.
pub const META_SIZE: usize = META_RESERVED_AT + 4;

/// The first page id that is not a meta page.
pub const FIRST_TREE_PAGE: u64 = 2;
/// The largest page id: 2^40 - 1, so that `id * page_size` stays below 2^56.
pub const PAGE_ID_MAX: u64 = (1 << 40) - 1;
/// The largest level of a branch page; trees hold at most `LEVEL_MAX + 1` levels, and a
/// descent is a loop bounded by it.
pub const LEVEL_MAX: u8 = 31;
/// The most page visits of a root-to-leaf descent.
pub const TREE_HEIGHT_MAX: usize = LEVEL_MAX as usize + 1;

const _: () = assert!(HEADER_SIZE == 24);
const _: () = assert!(LEAF_ENTRY_HEADER_SIZE == 15);
const _: () = assert!(BRANCH_SLOTS_AT == 36);
const _: () = assert!(BRANCH_ENTRY_HEADER_SIZE == 14);
const _: () = assert!(LINK_END == 40);
const _: () = assert!(OVERFLOW_DATA_AT == 48);
const _: () = assert!(OVERFLOW_DATA_AT.is_multiple_of(8));
const _: () = assert!(FREE_ENTRIES_AT.is_multiple_of(8));
const _: () = assert!(PAGE_ID_AT.is_multiple_of(8) && TXN_ID_AT.is_multiple_of(8));
const _: () = assert!(META_MAGIC_AT == 24 && META_PAGE_COUNT_AT == 40);
const _: () =
    assert!(META_WATERMARK_AT.is_multiple_of(8) && META_FREE_LIST_ID_AT.is_multiple_of(8));
const _: () = assert!(META_SIZE == 104 && META_SIZE.is_multiple_of(8));
// The meta fields lie in the first sector of the smallest page.
const _: () = assert!(META_SIZE <= 512);

/// A page's position in the file: page `id` lies at byte `id * page_size`. Pages 0 and 1
/// are the two meta pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId(pub u64);

/// A checkpoint transaction: each checkpoint writes its pages and then one meta page,
/// stamped with a transaction id one above the previous meta's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(pub u64);

/// A reference to a page from its parent (a branch, a meta page, a leaf entry, the
/// previous page of a chain): its id, and the checksum it must have. The checksum in the
/// parent catches a stale page (a lost write) that its own checksum cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRef {
    /// The page's id.
    pub id: PageId,
    /// The page's checksum (its bytes `[4, page_size)`).
    pub checksum: u32,
}

/// The type of a page, stored in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageType {
    /// One of the two meta pages (ids 0 and 1).
    Meta = 1,
    /// An interior page: separator keys and child references.
    Branch = 2,
    /// A leaf page: keys, versions, values or overflow references.
    Leaf = 3,
    /// A page of a value too large for a leaf.
    Overflow = 4,
    /// A page of the free list.
    FreeList = 5,
}

impl PageType {
    /// The type a tag byte names, if any.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Meta),
            2 => Some(Self::Branch),
            3 => Some(Self::Leaf),
            4 => Some(Self::Overflow),
            5 => Some(Self::FreeList),
            _ => None,
        }
    }

    /// The tag byte.
    pub fn tag(self) -> u8 {
        self as u8
    }
}

/// The common header of every page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    /// The page's type.
    pub page_type: PageType,
    /// A branch's level (1 or more); 0 otherwise.
    pub level: u8,
    /// Slots (leaf, branch) or entries (free list); 0 otherwise.
    pub count: u16,
    /// The page's own id.
    pub page_id: PageId,
    /// The checkpoint transaction that wrote the page.
    pub txn_id: TxnId,
}

impl PageHeader {
    /// Writes the header into the first `HEADER_SIZE` (24) bytes of `page` (the checksum
    /// field is left for [`seal`]).
    ///
    /// # Panics
    /// If `page` is shorter than the header (a writer bug: pages are page-sized).
    pub fn write(&self, page: &mut [u8]) {
        put(page, PAGE_TYPE_AT, &[self.page_type.tag(), self.level]);
        put(page, COUNT_AT, &self.count.to_le_bytes());
        put(page, PAGE_ID_AT, &self.page_id.0.to_le_bytes());
        put(page, TXN_ID_AT, &self.txn_id.0.to_le_bytes());
    }

    /// Reads and checks the header of `page`, which must be one `page_size` long, hold a
    /// valid checksum, be of type `expected_type` and name `expected_id` as its id. Level
    /// and count are the type decoders' to check.
    pub fn decode(
        page: &[u8],
        page_size: PageSize,
        expected_id: PageId,
        expected_type: PageType,
    ) -> Result<Self> {
        check_len(page, page_size, expected_id)?;
        verify_checksum(page, expected_id)?;
        Self::decode_unverified(page, expected_id, expected_type)
    }

    /// As [`PageHeader::decode`] without the length and checksum checks: for a page whose
    /// checksum was verified when it was first read. Still never panics. Refuses a meta
    /// page anywhere but pages 0 and 1, any other type there, and ids past [`PAGE_ID_MAX`].
    pub fn decode_unverified(
        page: &[u8],
        expected_id: PageId,
        expected_type: PageType,
    ) -> Result<Self> {
        // One bounds check for the whole header: this runs on every page a read visits.
        let Some(header) = page.first_chunk::<HEADER_SIZE>() else {
            return Err(truncated(page, expected_id, 0, HEADER_SIZE, "page header"));
        };
        // checksum (4), type, level, count (2), page id (8), txn id (8): section 4.
        const _: () = assert!(
            PAGE_TYPE_AT == 4
                && LEVEL_AT == 5
                && COUNT_AT == 6
                && PAGE_ID_AT == 8
                && TXN_ID_AT == 16
                && HEADER_SIZE == 24,
            "the splits below follow section 4's header layout"
        );
        // Whole little-endian loads at the constant offsets above; the splits are of
        // constant lengths within the 24 bytes and cannot fail.
        let (_checksum, rest) = header
            .split_first_chunk::<PAGE_TYPE_AT>()
            .expect("the checksum is in the header");
        let (&[tag, level], rest) = rest
            .split_first_chunk::<2>()
            .expect("type and level are in the header");
        let (&count, rest) = rest
            .split_first_chunk::<2>()
            .expect("the count is in the header");
        let (&id, rest) = rest
            .split_first_chunk::<8>()
            .expect("the page id is in the header");
        let &txn_id = rest
            .first_chunk::<8>()
            .expect("the txn id is in the header");
        let page_type = PageType::from_tag(tag).ok_or_else(|| {
            Error::corruption(
                expected_id,
                PAGE_TYPE_AT,
                "page type",
                CorruptionKind::InvalidTag { tag },
            )
        })?;
        if page_type != expected_type {
            let kind = CorruptionKind::WrongPageType {
                expected: expected_type.tag(),
                found: tag,
            };
            return Err(Error::corruption(
                expected_id,
                PAGE_TYPE_AT,
                "page type",
                kind,
            ));
        }
        let page_id = u64::from_le_bytes(id);
        let meta_slot = expected_id.0 < FIRST_TREE_PAGE;
        if meta_slot != (page_type == PageType::Meta) || expected_id.0 > PAGE_ID_MAX {
            let what = "page id (pages 0 and 1 are the metas)";
            return Err(invalid(expected_id, PAGE_ID_AT, what, expected_id.0));
        }
        if page_id != expected_id.0 {
            let kind = CorruptionKind::WrongPageId { found: page_id };
            return Err(Error::corruption(expected_id, PAGE_ID_AT, "page id", kind));
        }
        Ok(Self {
            page_type,
            level,
            count: u16::from_le_bytes(count),
            page_id: PageId(page_id),
            txn_id: TxnId(u64::from_le_bytes(txn_id)),
        })
    }
}

/// The fields a reader needs from the header of a tree page (not a meta) that passed a
/// full decode before: see [`verified_header`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct VerifiedHeader {
    /// A branch's level; 0 for a leaf.
    pub(crate) level: u8,
    /// Slots in the page's directory, which fits the page.
    pub(crate) count: usize,
    /// The checkpoint transaction that wrote the page.
    pub(crate) txn_id: TxnId,
}

/// The header of a tree page that passed a full decode before, read in place: `None`
/// unless [`check_len`] and [`PageHeader::decode_unverified`] would accept the page as
/// `expected_type` at `expected_id` and its slot directory, starting at `slots_at`, fits
/// the page (as the type's `from_header` requires), in which case the caller asks those
/// for the error. Every get reads each page of its path through here, so nothing is built
/// but the fields.
#[inline]
pub(crate) fn verified_header(
    page: &[u8],
    page_size: PageSize,
    expected_id: PageId,
    expected_type: PageType,
    slots_at: usize,
) -> Option<VerifiedHeader> {
    debug_assert!(
        expected_type != PageType::Meta,
        "meta pages have their own decoder"
    );
    if page.len() != page_size.bytes() || !(FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&expected_id.0)
    {
        return None;
    }
    // The layout `decode_unverified` asserts: type, level, count, page id, txn id.
    let header = page.first_chunk::<HEADER_SIZE>()?;
    let (_checksum, rest) = header.split_first_chunk::<PAGE_TYPE_AT>()?;
    let (&[tag, level], rest) = rest.split_first_chunk::<2>()?;
    let (&count, rest) = rest.split_first_chunk::<2>()?;
    let (&id, rest) = rest.split_first_chunk::<8>()?;
    let &txn_id = rest.first_chunk::<8>()?;
    let count = usize::from(u16::from_le_bytes(count));
    // `count` is a u16 and `slots_at` a header offset: the sum cannot overflow.
    let fits = slots_at.wrapping_add(count.wrapping_mul(SLOT_SIZE)) <= page.len();
    (tag == expected_type.tag() && u64::from_le_bytes(id) == expected_id.0 && fits).then(|| {
        VerifiedHeader {
            level,
            count,
            txn_id: TxnId(u64::from_le_bytes(txn_id)),
        }
    })
}

/// The checksum of a page: crc32 of its bytes `[CHECKSUM_FROM, len)`.
pub fn page_checksum(page: &[u8]) -> u32 {
    popdb_io::crc32(page.get(CHECKSUM_FROM..).unwrap_or_default())
}

/// Computes the page's checksum, stores it at offset 0 (`CHECKSUM_AT`) and returns it.
///
/// # Panics
/// If `page` is shorter than the header (a writer bug).
pub fn seal(page: &mut [u8]) -> u32 {
    let checksum = page_checksum(page);
    put(page, CHECKSUM_AT, &checksum.to_le_bytes());
    checksum
}

/// Checks the page's stored checksum against its bytes.
pub fn verify_checksum(page: &[u8], page_id: PageId) -> Result<u32> {
    let expected = field_u32(page, page_id, CHECKSUM_AT, "page checksum")?;
    let actual = page_checksum(page);
    if expected != actual {
        let kind = CorruptionKind::ChecksumMismatch { expected, actual };
        return Err(Error::corruption(
            page_id,
            CHECKSUM_AT,
            "page checksum",
            kind,
        ));
    }
    Ok(actual)
}

/// Checks a page against the checksum its parent reference holds for it (after the page's
/// own checksum was verified): a mismatch is a stale or misplaced page whose own checksum
/// is intact.
pub fn verify_parent_checksum(page: &[u8], reference: PageRef) -> Result<()> {
    let stored = field_u32(page, reference.id, CHECKSUM_AT, "page checksum")?;
    if stored != reference.checksum {
        let kind = CorruptionKind::ChecksumMismatch {
            expected: reference.checksum,
            actual: stored,
        };
        return Err(Error::corruption(
            reference.id,
            CHECKSUM_AT,
            "checksum in the parent reference",
            kind,
        ));
    }
    Ok(())
}

/// Checks that `page` is exactly one page long.
pub(crate) fn check_len(page: &[u8], page_size: PageSize, page_id: PageId) -> Result<()> {
    let needed = page_size.bytes() as u64;
    let available = page.len() as u64;
    if available < needed {
        let kind = CorruptionKind::Truncated { needed, available };
        return Err(Error::corruption(page_id, page.len(), "page length", kind));
    }
    if available > needed {
        let kind = CorruptionKind::InvalidValue { found: available };
        return Err(Error::corruption(page_id, 0, "page length", kind));
    }
    Ok(())
}

/// Whether `id` may be referenced from a page `own` (not a meta page, not itself, within
/// [`PAGE_ID_MAX`]).
pub(crate) fn is_referable(id: u64, own: PageId) -> bool {
    (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&id) && id != own.0
}

/// Reads the link of an overflow or free-list page: the next page, if `has_next` is 1.
/// Refuses a flag other than 0 or 1, non-zero fields when there is no next page, a next
/// page that cannot be referenced, and non-zero reserved bytes.
pub(crate) fn decode_link(page: &[u8], page_id: PageId) -> Result<Option<PageRef>> {
    let has_next = field_flag(page, page_id, HAS_NEXT_AT, "has_next")?;
    check_zero(page, page_id, LINK_RESERVED_AT..LINK_END, "link reserved")?;
    let id = field_u64(page, page_id, NEXT_ID_AT, "next page id")?;
    let checksum = field_u32(page, page_id, NEXT_CHECKSUM_AT, "next page checksum")?;
    if !has_next {
        check_zero(page, page_id, NEXT_ID_AT..HAS_NEXT_AT, "next page (none)")?;
        return Ok(None);
    }
    if !is_referable(id, page_id) {
        return Err(invalid(page_id, NEXT_ID_AT, "next page id", id));
    }
    Ok(Some(PageRef {
        id: PageId(id),
        checksum,
    }))
}

/// Writes the link fields of an overflow or free-list page.
pub(crate) fn write_link(page: &mut [u8], next: Option<PageRef>) {
    let (id, checksum, flag) = next.map_or((0, 0, 0), |r| (r.id.0, r.checksum, 1));
    put(page, NEXT_ID_AT, &id.to_le_bytes());
    put(page, NEXT_CHECKSUM_AT, &checksum.to_le_bytes());
    put(page, HAS_NEXT_AT, &[flag]);
}

/// Copies `bytes` into `page` at `at`.
///
/// # Panics
/// If the range is not inside `page` (writers size their buffers from the layout).
pub(crate) fn put(page: &mut [u8], at: usize, bytes: &[u8]) {
    page.get_mut(at..at + bytes.len())
        .expect("writers size pages from the layout constants")
        .copy_from_slice(bytes);
}

/// The byte at `at`, if inside `page`.
pub(crate) fn get_u8(page: &[u8], at: usize) -> Option<u8> {
    page.get(at).copied()
}

/// The `u16` at `at`, if inside `page`.
pub(crate) fn get_u16(page: &[u8], at: usize) -> Option<u16> {
    page.get(at..)?
        .first_chunk::<2>()
        .map(|&b| u16::from_le_bytes(b))
}

/// The `u32` at `at`, if inside `page`.
pub(crate) fn get_u32(page: &[u8], at: usize) -> Option<u32> {
    page.get(at..)?
        .first_chunk::<4>()
        .map(|&b| u32::from_le_bytes(b))
}

/// The `u64` at `at`, if inside `page`.
pub(crate) fn get_u64(page: &[u8], at: usize) -> Option<u64> {
    page.get(at..)?
        .first_chunk::<8>()
        .map(|&b| u64::from_le_bytes(b))
}

/// The `u8` field `what` at `at`, or `Truncated`.
pub(crate) fn field_u8(page: &[u8], id: PageId, at: usize, what: &'static str) -> Result<u8> {
    get_u8(page, at).ok_or_else(|| truncated(page, id, at, 1, what))
}

/// The `u16` field `what` at `at`, or `Truncated`.
pub(crate) fn field_u16(page: &[u8], id: PageId, at: usize, what: &'static str) -> Result<u16> {
    get_u16(page, at).ok_or_else(|| truncated(page, id, at, 2, what))
}

/// The `u32` field `what` at `at`, or `Truncated`.
pub(crate) fn field_u32(page: &[u8], id: PageId, at: usize, what: &'static str) -> Result<u32> {
    get_u32(page, at).ok_or_else(|| truncated(page, id, at, 4, what))
}

/// The `u64` field `what` at `at`, or `Truncated`.
pub(crate) fn field_u64(page: &[u8], id: PageId, at: usize, what: &'static str) -> Result<u64> {
    get_u64(page, at).ok_or_else(|| truncated(page, id, at, 8, what))
}

/// A flag byte at `at`: `0` is false, `1` true, anything else `InvalidValue`.
pub(crate) fn field_flag(page: &[u8], id: PageId, at: usize, what: &'static str) -> Result<bool> {
    match field_u8(page, id, at, what)? {
        0 => Ok(false),
        1 => Ok(true),
        found => Err(invalid(id, at, what, found.into())),
    }
}

/// The bytes `range` of `page`, or `Truncated`.
pub(crate) fn field_bytes<'a>(
    page: &'a [u8],
    id: PageId,
    range: Range<usize>,
    what: &'static str,
) -> Result<&'a [u8]> {
    let (start, len) = (range.start, range.len());
    page.get(range)
        .ok_or_else(|| truncated(page, id, start, len, what))
}

/// Checks that every byte of `range` is zero (reserved bytes, padding, free space).
pub(crate) fn check_zero(
    page: &[u8],
    id: PageId,
    range: Range<usize>,
    what: &'static str,
) -> Result<()> {
    let start = range.start;
    let bytes = field_bytes(page, id, range, what)?;
    match bytes.iter().position(|&b| b != 0) {
        None => Ok(()),
        Some(i) => {
            let found = bytes.get(i).copied().unwrap_or_default();
            Err(invalid(id, start + i, what, found.into()))
        }
    }
}

/// `InvalidValue` of field `what` at `at`.
pub(crate) fn invalid(id: PageId, at: usize, what: &'static str, found: u64) -> Error {
    Error::corruption(id, at, what, CorruptionKind::InvalidValue { found })
}

/// `Truncated` for `len` bytes of field `what` at `at` of `page`.
fn truncated(page: &[u8], id: PageId, at: usize, len: usize, what: &'static str) -> Error {
    let kind = CorruptionKind::Truncated {
        needed: (at as u64).saturating_add(len as u64),
        available: page.len() as u64,
    };
    Error::corruption(id, at, what, kind)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests index known layouts")]

    use super::*;

    fn kind(e: Error) -> CorruptionKind {
        e.as_corruption().expect("a corruption").kind.clone()
    }

    fn sealed_page(page_type: PageType, id: u64) -> Vec<u8> {
        let mut page = vec![0u8; 512];
        PageHeader {
            page_type,
            level: 0,
            count: 0,
            page_id: PageId(id),
            txn_id: TxnId(9),
        }
        .write(&mut page);
        seal(&mut page);
        page
    }

    #[test]
    fn header_round_trips_and_names_what_is_wrong() {
        let size = PageSize::new(512).unwrap();
        let page = sealed_page(PageType::Leaf, 7);
        let h = PageHeader::decode(&page, size, PageId(7), PageType::Leaf).unwrap();
        assert_eq!((h.page_id, h.txn_id, h.count), (PageId(7), TxnId(9), 0));
        let wrong_id = PageHeader::decode(&page, size, PageId(8), PageType::Leaf).unwrap_err();
        assert_eq!(kind(wrong_id), CorruptionKind::WrongPageId { found: 7 });
        let wrong_type = PageHeader::decode(&page, size, PageId(7), PageType::Branch);
        assert_eq!(
            kind(wrong_type.unwrap_err()),
            CorruptionKind::WrongPageType {
                expected: 2,
                found: 3
            }
        );
        let short = PageHeader::decode(&page[..511], size, PageId(7), PageType::Leaf);
        assert!(matches!(
            kind(short.unwrap_err()),
            CorruptionKind::Truncated { .. }
        ));
    }

    #[test]
    fn checksum_excludes_its_field_and_covers_every_other_byte() {
        let size = PageSize::new(512).unwrap();
        let page = sealed_page(PageType::Overflow, 3);
        assert_eq!(
            u32::from_le_bytes(page[..4].try_into().unwrap()),
            popdb_io::crc32(&page[4..])
        );
        for at in 0..page.len() {
            let mut bad = page.clone();
            bad[at] ^= 0x40;
            let e = PageHeader::decode(&bad, size, PageId(3), PageType::Overflow).unwrap_err();
            assert!(
                matches!(kind(e), CorruptionKind::ChecksumMismatch { .. }),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn meta_pages_live_at_ids_0_and_1_and_nothing_else_does() {
        let size = PageSize::new(512).unwrap();
        for (page_type, id, ok) in [
            (PageType::Meta, 1, true),
            (PageType::Meta, 2, false),
            (PageType::Leaf, 1, false),
            (PageType::Leaf, 0, false),
            (PageType::Leaf, PAGE_ID_MAX, true),
            (PageType::Leaf, PAGE_ID_MAX + 1, false),
        ] {
            let page = sealed_page(page_type, id);
            let got = PageHeader::decode(&page, size, PageId(id), page_type);
            assert_eq!(got.is_ok(), ok, "{page_type:?} at {id}");
        }
    }

    #[test]
    fn unknown_page_type_is_an_invalid_tag() {
        let mut page = sealed_page(PageType::Leaf, 2);
        page[PAGE_TYPE_AT] = 9;
        seal(&mut page);
        let e = PageHeader::decode_unverified(&page, PageId(2), PageType::Leaf).unwrap_err();
        assert_eq!(kind(e), CorruptionKind::InvalidTag { tag: 9 });
    }

    #[test]
    fn parent_checksum_catches_a_stale_page() {
        let page = sealed_page(PageType::Leaf, 4);
        let good = PageRef {
            id: PageId(4),
            checksum: page_checksum(&page),
        };
        verify_parent_checksum(&page, good).unwrap();
        let stale = PageRef {
            checksum: good.checksum ^ 1,
            ..good
        };
        assert!(verify_parent_checksum(&page, stale).is_err());
    }

    #[test]
    fn links_refuse_meta_pages_self_references_and_stray_bytes() {
        let mut page = vec![0u8; 64];
        assert_eq!(decode_link(&page, PageId(5)).unwrap(), None);
        let next = PageRef {
            id: PageId(6),
            checksum: 0xdead_beef,
        };
        write_link(&mut page, Some(next));
        assert_eq!(decode_link(&page, PageId(5)).unwrap(), Some(next));
        for bad_id in [0, 1, 5, PAGE_ID_MAX + 1] {
            write_link(
                &mut page,
                Some(PageRef {
                    id: PageId(bad_id),
                    ..next
                }),
            );
            assert!(decode_link(&page, PageId(5)).is_err(), "id {bad_id}");
        }
        write_link(&mut page, None);
        page[NEXT_CHECKSUM_AT] = 1;
        assert!(
            decode_link(&page, PageId(5)).is_err(),
            "checksum without a next page"
        );
        page[NEXT_CHECKSUM_AT] = 0;
        page[LINK_RESERVED_AT + 2] = 1;
        assert!(decode_link(&page, PageId(5)).is_err(), "reserved byte");
        page[LINK_RESERVED_AT + 2] = 0;
        page[HAS_NEXT_AT] = 2;
        assert!(decode_link(&page, PageId(5)).is_err(), "flag 2");
    }
}
