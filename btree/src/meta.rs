//! The two meta pages (ids 0 and 1): which tree the file holds, and how to choose between
//! them at open. Spec: docs/format/btree.md (sections 9 and 11); layout constants in
//! `page_format.rs`.
//!
//! A meta page is a page like any other (common header, checksum over bytes
//! `[4, page_size)`), whose fields follow the header: magic, `format_version`, page size,
//! high-water mark, entry and free-page counts, watermark, root and free-list references.
//! The meta of checkpoint transaction `T` is written to page `T mod 2`, so consecutive
//! checkpoints alternate between the two and a checkpoint never overwrites the meta it
//! builds on. A meta torn by a crash fails its checksum, and open takes the other one
//! ([`recover_meta`]).
//!
//! Every rule is checked twice: [`Meta::encode`] asserts it, [`Meta::decode`] validates
//! it. Absent references and watermark are a flag of 0 with zero fields, never a
//! sentinel value.

#![deny(clippy::indexing_slicing)]

use crate::error::{CorruptionKind, Error, Result};
use crate::page_format::{
    COUNT_AT, FIRST_TREE_PAGE, FORMAT_VERSION, LEVEL_AT, LEVEL_MAX, MAGIC, META_ENTRY_COUNT_AT,
    META_FREE_LIST_CHECKSUM_AT, META_FREE_LIST_ID_AT, META_FREE_PAGE_COUNT_AT,
    META_HAS_FREE_LIST_AT, META_HAS_ROOT_AT, META_HAS_WATERMARK_AT, META_MAGIC_AT,
    META_PAGE_COUNT_AT, META_PAGE_SIZE_AT, META_RESERVED_AT, META_ROOT_CHECKSUM_AT,
    META_ROOT_ID_AT, META_ROOT_LEVEL_AT, META_SIZE, META_VERSION_AT, META_WATERMARK_AT,
    PAGE_ID_MAX, PageHeader, PageId, PageRef, PageType, TXN_ID_AT, TxnId, check_len, check_zero,
    field_bytes, field_flag, field_u8, field_u32, field_u64, invalid, put, seal, verify_checksum,
};
use crate::page_size::{PAGE_SIZE_MAX, PageSize};

/// Bytes from the start of a file that [`recover_meta`] may need: two pages of the largest
/// size.
pub const META_READ_SIZE: usize = 2 * PAGE_SIZE_MAX as usize;

/// The root of a tree: its page, and the page's level (0 for a leaf root).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RootRef {
    /// The root page.
    pub page: PageRef,
    /// Its level: the tree's height less one.
    pub level: u8,
}

/// The fields of a meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Meta {
    /// The file's page size, the same in both metas.
    pub page_size: PageSize,
    /// The checkpoint transaction that wrote this meta; it lives in page `txn_id mod 2`,
    /// and the valid meta with the larger id is the current one.
    pub txn_id: TxnId,
    /// The high-water mark: pages `[0, page_count)` are the metas, the tree, the free list
    /// and the free pages it lists; pages at or past it are free. At least 2.
    pub page_count: u64,
    /// Entries in the tree's leaves (tombstones included).
    pub entry_count: u64,
    /// Page ids the free list holds.
    pub free_page_count: u64,
    /// The LSN through which the tree reflects every write; `None` before the first
    /// checkpoint that named one.
    pub watermark: Option<u64>,
    /// The tree's root; `None` for an empty tree.
    pub root: Option<RootRef>,
    /// The free list's first page; `None` when nothing is free.
    pub free_list: Option<PageRef>,
}

impl Meta {
    /// The meta of a new, empty file at transaction `txn_id`: no root, no free list, no
    /// watermark, two pages.
    pub fn empty(page_size: PageSize, txn_id: TxnId) -> Self {
        Self {
            page_size,
            txn_id,
            page_count: FIRST_TREE_PAGE,
            entry_count: 0,
            free_page_count: 0,
            watermark: None,
            root: None,
            free_list: None,
        }
    }

    /// The page this meta is written to: `txn_id mod 2`.
    pub fn page_id(&self) -> PageId {
        PageId(self.txn_id.0 % 2)
    }

    /// Writes the meta page into `out` (one page long) and returns its checksum.
    ///
    /// # Panics
    /// If `out` is not one page long or a rule of [`Meta::decode`] does not hold (a
    /// caller bug).
    pub fn encode(&self, out: &mut [u8]) -> u32 {
        assert_eq!(out.len(), self.page_size.bytes(), "meta page buffer");
        if let Some((at, what, found)) = self.broken_rule() {
            panic!("meta breaks a rule at offset {at} ({what}): {found}; {self:?}");
        }
        out.fill(0);
        PageHeader {
            page_type: PageType::Meta,
            level: 0,
            count: 0,
            page_id: self.page_id(),
            txn_id: self.txn_id,
        }
        .write(out);
        let root = self.root.unwrap_or(RootRef {
            page: PageRef {
                id: PageId(0),
                checksum: 0,
            },
            level: 0,
        });
        let free = self.free_list.map_or(0, |r| r.id.0);
        let free_sum = self.free_list.map_or(0, |r| r.checksum);
        put(out, META_MAGIC_AT, &MAGIC);
        put(out, META_VERSION_AT, &FORMAT_VERSION.to_le_bytes());
        put(out, META_PAGE_SIZE_AT, &self.page_size.get().to_le_bytes());
        put(out, META_PAGE_COUNT_AT, &self.page_count.to_le_bytes());
        put(out, META_ENTRY_COUNT_AT, &self.entry_count.to_le_bytes());
        put(
            out,
            META_FREE_PAGE_COUNT_AT,
            &self.free_page_count.to_le_bytes(),
        );
        put(
            out,
            META_WATERMARK_AT,
            &self.watermark.unwrap_or(0).to_le_bytes(),
        );
        put(out, META_ROOT_ID_AT, &root.page.id.0.to_le_bytes());
        put(out, META_FREE_LIST_ID_AT, &free.to_le_bytes());
        put(
            out,
            META_ROOT_CHECKSUM_AT,
            &root.page.checksum.to_le_bytes(),
        );
        put(out, META_FREE_LIST_CHECKSUM_AT, &free_sum.to_le_bytes());
        let flags = [
            u8::from(self.watermark.is_some()),
            u8::from(self.root.is_some()),
            u8::from(self.free_list.is_some()),
            root.level,
        ];
        put(out, META_HAS_WATERMARK_AT, &flags);
        seal(out)
    }

    /// Reads the page size a meta page claims from its first `META_SIZE` (104) bytes, after
    /// checking its magic and version: how many bytes the whole page is.
    ///
    /// # Errors
    /// [`Error::Corruption`]: `Truncated`, `BadMagic`, `UnsupportedVersion`, or an
    /// invalid page size.
    pub fn peek_page_size(prefix: &[u8], expected_id: PageId) -> Result<PageSize> {
        let id = expected_id;
        field_bytes(prefix, id, 0..META_SIZE, "meta page")?;
        let magic = field_bytes(prefix, id, META_MAGIC_AT..META_VERSION_AT, "meta magic")?;
        if magic != MAGIC {
            let found = magic.try_into().unwrap_or_default();
            let kind = CorruptionKind::BadMagic { found };
            return Err(Error::corruption(id, META_MAGIC_AT, "meta magic", kind));
        }
        let version = field_u32(prefix, id, META_VERSION_AT, "meta format_version")?;
        if version != FORMAT_VERSION {
            let kind = CorruptionKind::UnsupportedVersion {
                found: version,
                max: FORMAT_VERSION,
            };
            return Err(Error::corruption(
                id,
                META_VERSION_AT,
                "meta format_version",
                kind,
            ));
        }
        let size = field_u32(prefix, id, META_PAGE_SIZE_AT, "meta page_size")?;
        PageSize::from_u32(size)
            .ok_or_else(|| invalid(id, META_PAGE_SIZE_AT, "meta page_size", size.into()))
    }

    /// Validates `page` as meta page `expected_id` (0 or 1): magic, version and page size
    /// (before the checksum, whose range depends on them), the page's length, its
    /// checksum, header (type, id, level and count 0), that the transaction's parity is
    /// the page's, flags and reserved bytes, zero bytes after the fields, and the rules of
    /// [`Meta`]'s fields.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the field at fault.
    pub fn decode(page: &[u8], expected_id: PageId) -> Result<Self> {
        let id = expected_id;
        let page_size = Self::peek_page_size(page, id)?;
        check_len(page, page_size, id)?;
        verify_checksum(page, id)?;
        let header = PageHeader::decode_unverified(page, id, PageType::Meta)?;
        if header.level != 0 || header.count != 0 {
            let (at, found) = if header.level == 0 {
                (COUNT_AT, u64::from(header.count))
            } else {
                (LEVEL_AT, u64::from(header.level))
            };
            return Err(invalid(id, at, "meta level or count", found));
        }
        if header.txn_id.0 % 2 != id.0 {
            return Err(invalid(
                id,
                TXN_ID_AT,
                "meta txn_id parity",
                header.txn_id.0,
            ));
        }
        check_zero(page, id, META_RESERVED_AT..META_SIZE, "meta reserved")?;
        check_zero(page, id, META_SIZE..page.len(), "meta padding")?;
        let meta = Self::decode_fields(page, id, page_size, header.txn_id)?;
        if let Some((at, what, found)) = meta.broken_rule() {
            return Err(invalid(id, at, what, found));
        }
        Ok(meta)
    }

    fn decode_fields(page: &[u8], id: PageId, page_size: PageSize, txn_id: TxnId) -> Result<Self> {
        let u64_at = |at, what| field_u64(page, id, at, what);
        let has_watermark = field_flag(page, id, META_HAS_WATERMARK_AT, "meta has_watermark")?;
        let has_root = field_flag(page, id, META_HAS_ROOT_AT, "meta has_root")?;
        let has_free_list = field_flag(page, id, META_HAS_FREE_LIST_AT, "meta has_free_list")?;
        let root = PageRef {
            id: PageId(u64_at(META_ROOT_ID_AT, "meta root id")?),
            checksum: field_u32(page, id, META_ROOT_CHECKSUM_AT, "meta root checksum")?,
        };
        let root_level = field_u8(page, id, META_ROOT_LEVEL_AT, "meta root level")?;
        let free_list = PageRef {
            id: PageId(u64_at(META_FREE_LIST_ID_AT, "meta free-list id")?),
            checksum: field_u32(
                page,
                id,
                META_FREE_LIST_CHECKSUM_AT,
                "meta free-list checksum",
            )?,
        };
        let watermark = u64_at(META_WATERMARK_AT, "meta watermark")?;
        // A flag of 0 must come with zero fields, so that every meta has one encoding.
        let absent = [
            (!has_root && root.id.0 != 0, META_ROOT_ID_AT, root.id.0),
            (
                !has_root && root.checksum != 0,
                META_ROOT_CHECKSUM_AT,
                root.checksum.into(),
            ),
            (
                !has_root && root_level != 0,
                META_ROOT_LEVEL_AT,
                root_level.into(),
            ),
            (
                !has_free_list && free_list.id.0 != 0,
                META_FREE_LIST_ID_AT,
                free_list.id.0,
            ),
            (
                !has_free_list && free_list.checksum != 0,
                META_FREE_LIST_CHECKSUM_AT,
                free_list.checksum.into(),
            ),
            (
                !has_watermark && watermark != 0,
                META_WATERMARK_AT,
                watermark,
            ),
        ];
        if let Some(&(_, at, found)) = absent.iter().find(|(bad, _, _)| *bad) {
            return Err(invalid(id, at, "meta field of an absent reference", found));
        }
        Ok(Self {
            page_size,
            txn_id,
            page_count: u64_at(META_PAGE_COUNT_AT, "meta page_count")?,
            entry_count: u64_at(META_ENTRY_COUNT_AT, "meta entry_count")?,
            free_page_count: u64_at(META_FREE_PAGE_COUNT_AT, "meta free_page_count")?,
            watermark: has_watermark.then_some(watermark),
            root: has_root.then_some(RootRef {
                page: root,
                level: root_level,
            }),
            free_list: has_free_list.then_some(free_list),
        })
    }

    /// The first rule the fields break, as `(page offset, field, value)`.
    fn broken_rule(&self) -> Option<(usize, &'static str, u64)> {
        let pages = self.page_count;
        let in_tree = |id: PageId| id.0 >= FIRST_TREE_PAGE && id.0 < pages;
        let rules = [
            (
                (FIRST_TREE_PAGE..=PAGE_ID_MAX + 1).contains(&pages),
                META_PAGE_COUNT_AT,
                "meta page_count",
                pages,
            ),
            (
                self.root.is_none_or(|r| in_tree(r.page.id)),
                META_ROOT_ID_AT,
                "meta root id",
                self.root.map_or(0, |r| r.page.id.0),
            ),
            (
                self.root.is_none_or(|r| r.level <= LEVEL_MAX),
                META_ROOT_LEVEL_AT,
                "meta root level",
                self.root.map_or(0, |r| r.level.into()),
            ),
            (
                self.root.is_some() || self.entry_count == 0,
                META_ENTRY_COUNT_AT,
                "meta entry_count (no root)",
                self.entry_count,
            ),
            (
                self.free_list.is_none_or(|r| in_tree(r.id)),
                META_FREE_LIST_ID_AT,
                "meta free-list id",
                self.free_list.map_or(0, |r| r.id.0),
            ),
            (
                self.free_list
                    .is_none_or(|f| self.root.is_none_or(|r| r.page.id != f.id)),
                META_FREE_LIST_ID_AT,
                "meta free-list id (the root's)",
                self.free_list.map_or(0, |r| r.id.0),
            ),
            (
                self.free_page_count <= pages.saturating_sub(FIRST_TREE_PAGE)
                    && (self.free_list.is_some() || self.free_page_count == 0),
                META_FREE_PAGE_COUNT_AT,
                "meta free_page_count",
                self.free_page_count,
            ),
            (
                self.watermark != Some(0),
                META_WATERMARK_AT,
                "meta watermark",
                0,
            ),
        ];
        rules
            .into_iter()
            .find(|(holds, ..)| !holds)
            .map(|(_, at, what, found)| (at, what, found))
    }
}

/// The meta open uses, and what it found of the other one.
#[derive(Clone, Debug)]
pub struct MetaChoice {
    /// The valid meta with the larger transaction id: the file's tree.
    pub current: Meta,
    /// The other meta, when it is valid too (its transaction id is one less).
    pub previous: Option<Meta>,
    /// Why the other meta was not used, when it is not valid: a meta torn by a crash
    /// while it was being written, or damage.
    pub damaged: Option<Error>,
}

/// Chooses between the decoded metas of pages 0 and 1: the valid one with the larger
/// transaction id.
///
/// # Errors
/// [`Error::Corruption`] if neither is valid (meta 0's error), if both are valid but
/// disagree on the page size, or if their transaction ids are not consecutive: a sync
/// that returned success lost a meta write, which no crash explains.
pub fn select_meta(meta_0: Result<Meta>, meta_1: Result<Meta>) -> Result<MetaChoice> {
    match (meta_0, meta_1) {
        (Ok(a), Ok(b)) => {
            if a.page_size != b.page_size {
                let what = "meta page_size (differs from meta 0's)";
                return Err(invalid(
                    PageId(1),
                    META_PAGE_SIZE_AT,
                    what,
                    b.page_size.get().into(),
                ));
            }
            let (current, previous) = if a.txn_id > b.txn_id { (a, b) } else { (b, a) };
            if current.txn_id.0 != previous.txn_id.0 + 1 {
                let what = "meta txn_id (not one below the other meta's)";
                let found = previous.txn_id.0;
                return Err(invalid(previous.page_id(), TXN_ID_AT, what, found));
            }
            Ok(MetaChoice {
                current,
                previous: Some(previous),
                damaged: None,
            })
        }
        (Ok(current), Err(e)) | (Err(e), Ok(current)) => Ok(MetaChoice {
            current,
            previous: None,
            damaged: Some(e),
        }),
        (Err(e), Err(_)) => Err(e),
    }
}

/// Finds and chooses the meta of a file from its first bytes, `head` (at least
/// [`META_READ_SIZE`] of them, or the whole file if it is shorter). Meta 0 is at offset 0;
/// meta 1 at offset `page_size`, which meta 0 gives. When meta 0 is not valid, meta 1 is
/// looked for at each possible page size (512 to 65,536): the first (smallest) whose bytes
/// claim that page size as their offset and decode in full.
///
/// # Errors
/// As [`select_meta`]; and `UnsupportedVersion` when a meta with a valid checksum is of a
/// newer format, rather than falling back to the other meta.
pub fn recover_meta(head: &[u8]) -> Result<MetaChoice> {
    let meta_0 = decode_at(head, PageId(0), 0);
    let meta_1 = match &meta_0 {
        Ok(m) => decode_at(head, PageId(1), m.page_size.bytes()),
        Err(_) => probe_meta_1(head),
    };
    // A meta a newer build wrote (its checksum holds) is not damage: falling back to the
    // other one would open an older checkpoint of a file that build has moved on from.
    if let Err(e) = &meta_0
        && is_newer_format(head, PageId(0), 0, e)
    {
        return Err(e.clone());
    }
    if let (Ok(m), Err(e)) = (&meta_0, &meta_1)
        && is_newer_format(head, PageId(1), m.page_size.bytes(), e)
    {
        return Err(e.clone());
    }
    select_meta(meta_0, meta_1)
}

/// Whether `error`, from the meta at `offset` of `head`, is an unsupported version on a
/// page whose checksum holds.
fn is_newer_format(head: &[u8], id: PageId, offset: usize, error: &Error) -> bool {
    let unsupported = error
        .as_corruption()
        .is_some_and(|c| matches!(c.kind, CorruptionKind::UnsupportedVersion { .. }));
    let rest = head.get(offset..).unwrap_or_default();
    // The page size field keeps its place across versions (section 12).
    unsupported
        && field_u32(rest, id, META_PAGE_SIZE_AT, "meta page_size")
            .ok()
            .and_then(PageSize::from_u32)
            .and_then(|size| rest.get(..size.bytes()))
            .is_some_and(|page| verify_checksum(page, id).is_ok())
}

fn decode_at(head: &[u8], id: PageId, offset: usize) -> Result<Meta> {
    let rest = head.get(offset..).unwrap_or_default();
    let page_size = Meta::peek_page_size(rest, id)?;
    let page = field_bytes(rest, id, 0..page_size.bytes(), "meta page")?;
    Meta::decode(page, id)
}

/// Meta 1 without meta 0's page size: at each offset whose bytes claim that very page size,
/// smallest first, the first that decodes in full. A candidate that fails (torn, or bytes of
/// another page that happen to claim the size) does not hide a later one. Failing every
/// candidate, the first candidate's error; with no candidate, the error found where a file
/// of the default page size keeps meta 1. At most `PageSize::all()` (8) decodes.
fn probe_meta_1(head: &[u8]) -> Result<Meta> {
    let id = PageId(1);
    let mut first_error = None;
    for size in PageSize::all() {
        let rest = head.get(size.bytes()..).unwrap_or_default();
        if !Meta::peek_page_size(rest, id).is_ok_and(|claimed| claimed == size) {
            continue;
        }
        match decode_at(head, id, size.bytes()) {
            Ok(meta) => return Ok(meta),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let rest = head.get(PageSize::DEFAULT.bytes()..).unwrap_or_default();
    let claimed = Meta::peek_page_size(rest, id)?;
    let what = "meta page_size (not its own offset)";
    Err(invalid(id, META_PAGE_SIZE_AT, what, claimed.get().into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests index known layouts")]

    use super::*;

    fn page(meta: &Meta) -> Vec<u8> {
        let mut out = vec![0u8; meta.page_size.bytes()];
        meta.encode(&mut out);
        out
    }

    #[test]
    fn probe_meta_1_reports_the_first_candidate_when_none_decodes() {
        let (small, large) = (PageSize::new(512).unwrap(), PageSize::DEFAULT);
        let mut head = vec![0u8; 2 * large.bytes()];
        let mut torn = page(&Meta::empty(small, TxnId(5)));
        torn[300] ^= 1;
        head[512..1024].copy_from_slice(&torn);
        let mut other = page(&Meta::empty(large, TxnId(7)));
        other[META_PAGE_COUNT_AT] = 1;
        seal(&mut other);
        head[large.bytes()..].copy_from_slice(&other);
        let e = probe_meta_1(&head).unwrap_err();
        let c = e.as_corruption().unwrap();
        assert_eq!((c.page_id, c.what), (PageId(1), "page checksum"));
        let later = decode_at(&head, PageId(1), large.bytes()).unwrap_err();
        assert_eq!(later.as_corruption().unwrap().what, "meta page_count");
        // Repaired, the later candidate is found.
        head[large.bytes()..].copy_from_slice(&page(&Meta::empty(large, TxnId(7))));
        assert_eq!(probe_meta_1(&head).unwrap().txn_id, TxnId(7));
    }
}
