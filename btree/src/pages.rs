//! The file's pages as readers see them: a read-only map of `[0, page_count)` (the
//! high-water mark of the meta it was made for) and one flag per page saying whether the
//! page was verified since it was last written. Spec: docs/format/btree.md (section 11,
//! "Open" and "Reads").
//!
//! A page is verified in full (its checksum, every structural rule, and the checksum its
//! parent's reference holds for it) the first time it is read, and only its header after
//! that, as LMDB pays nothing per get for checksums. A checkpoint clears the flag of every
//! page it rewrites before writing it, and once it is durable sets it again for the branch
//! and leaf pages it wrote (their bytes are its own encoding of nodes this process built,
//! so there is nothing a read could check that the builder did not). The flags are shared
//! hints: a stale clear flag costs one more verification, never a wrong answer.
//!
//! A new `Pages` is made when a checkpoint grows the file; older ones stay alive for the
//! read views that hold them, and cover every page those views can reach.

use std::sync::atomic::{AtomicU64, Ordering};

use popdb_io::Mapping;

use crate::branch_page::BranchPage;
use crate::error::{CorruptionKind, Error, Result};
use crate::leaf_page::LeafPage;
use crate::overflow::{OverflowRef, read_overflow_chain};
use crate::page_format::{LEVEL_AT, PageId, PageRef, invalid, verify_parent_checksum};
use crate::page_size::PageSize;

/// Where a page's parent places it: its keys lie at or above `low` and below `high` (a
/// branch's separators strictly above `low`). `None` means unbounded on that side.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bounds<'a> {
    pub(crate) low: Option<&'a [u8]>,
    pub(crate) high: Option<&'a [u8]>,
}

/// A read-only map of the file's pages below a high-water mark.
#[derive(Debug)]
pub(crate) struct Pages {
    map: Mapping,
    page_size: PageSize,
    page_count: u64,
    /// Bit `i` of word `i / 64`: page `i` was verified in full since it was last written.
    verified: Box<[AtomicU64]>,
}

impl Pages {
    /// The pages of `map`, which holds exactly `page_count` pages. Verification flags are
    /// carried over from `previous` for the pages it covers.
    pub(crate) fn new(
        map: Mapping,
        page_size: PageSize,
        page_count: u64,
        previous: Option<&Pages>,
    ) -> Self {
        debug_assert_eq!(map.len() as u64, page_count * page_size.bytes() as u64);
        let words = usize::try_from(page_count.div_ceil(64)).expect("the map fits memory");
        let verified: Box<[AtomicU64]> = (0..words)
            .map(|i| {
                let bits = previous
                    .and_then(|p| p.verified.get(i))
                    .map_or(0, |w| w.load(Ordering::Relaxed));
                AtomicU64::new(bits)
            })
            .collect();
        Self {
            map,
            page_size,
            page_count,
            verified,
        }
    }

    /// The high-water mark this map covers.
    pub(crate) fn page_count(&self) -> u64 {
        self.page_count
    }

    /// The page size.
    #[inline]
    pub(crate) fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// The bytes of page `id`.
    ///
    /// # Errors
    /// [`Error::Corruption`] if `id` is at or past the high-water mark: a reference to a
    /// page the file does not hold.
    pub(crate) fn bytes(&self, id: PageId) -> Result<&[u8]> {
        let size = self.page_size.bytes() as u64;
        if id.0 >= self.page_count {
            let what = "page id (at or past the high-water mark)";
            return Err(Error::corruption(
                id,
                0,
                what,
                CorruptionKind::InvalidValue { found: id.0 },
            ));
        }
        // Below `page_count`, whose pages the map holds: no product or sum here can
        // overflow, and the range is inside the map. Every page a read visits comes here.
        let start = id.0.wrapping_mul(size) as usize;
        Ok(self
            .map
            .get(start..start.wrapping_add(self.page_size.bytes()))
            .expect("the map holds page_count pages"))
    }

    /// Where page `id`, below the high-water mark, starts in the map: for
    /// [`Pages::page_at`].
    ///
    /// # Panics
    /// If `id` is at or past the high-water mark (the caller read the page first).
    pub(crate) fn page_start(&self, id: PageId) -> usize {
        assert!(id.0 < self.page_count, "page {id:?} past the map");
        // Below `page_count`: the map holds the page, so no product overflows.
        id.0.wrapping_mul(self.page_size.bytes() as u64) as usize
    }

    /// The bytes of the page that starts at `start` in the map ([`Pages::page_start`]);
    /// `None` if the map does not hold it. A cursor reads its leaf through this once or
    /// twice per entry.
    #[inline]
    pub(crate) fn page_at(&self, start: usize) -> Option<&[u8]> {
        self.map
            .get(start..start.checked_add(self.page_size.bytes())?)
    }

    fn flag(&self, id: PageId) -> (&AtomicU64, u64) {
        let word = usize::try_from(id.0 / 64).expect("ids below page_count fit");
        let word = self
            .verified
            .get(word)
            .expect("ids below page_count have a flag");
        (word, 1 << (id.0 % 64))
    }

    fn is_verified(&self, id: PageId) -> bool {
        let (word, bit) = self.flag(id);
        word.load(Ordering::Acquire) & bit != 0
    }

    fn mark_verified(&self, id: PageId) {
        let (word, bit) = self.flag(id);
        word.fetch_or(bit, Ordering::Release);
    }

    /// Marks page `id`, which a checkpoint of this process just wrote from a node it
    /// built, as verified (see `Tree::checkpoint_root`).
    pub(crate) fn mark_written(&self, id: PageId) {
        if id.0 < self.page_count {
            self.mark_verified(id);
        }
    }

    /// Forgets that page `id` was verified: a checkpoint is about to rewrite it. Ids past
    /// this map are ignored (a later map starts them unverified).
    pub(crate) fn unverify(&self, id: PageId) {
        if id.0 < self.page_count {
            let (word, bit) = self.flag(id);
            word.fetch_and(!bit, Ordering::Release);
        }
    }

    /// The leaf `reference` names, verified in full on its first read: its structure, the
    /// checksum its parent holds for it, and that its keys lie within `bounds`. With
    /// `bounds` unknown (`None`), an unverified page is verified but not marked, so that
    /// the next read that knows its place checks it.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the page.
    pub(crate) fn leaf(
        &self,
        reference: PageRef,
        bounds: Option<Bounds<'_>>,
    ) -> Result<LeafPage<'_>> {
        let bytes = self.bytes(reference.id)?;
        if self.is_verified(reference.id) {
            return LeafPage::open_verified(bytes, self.page_size, reference.id);
        }
        let page = LeafPage::decode(bytes, self.page_size, reference.id)?;
        verify_parent_checksum(bytes, reference)?;
        if let Some(bounds) = bounds {
            if let Some(last) = page.len().checked_sub(1) {
                check_within(reference.id, page.key(0)?, page.key(last)?, bounds, false)?;
            }
            self.mark_verified(reference.id);
        }
        Ok(page)
    }

    /// As [`Pages::leaf`], with the bounds worked out only if the page is not verified yet:
    /// a verified page needs none, and finding them costs two separator reads a level.
    ///
    /// # Errors
    /// As [`Pages::leaf`], and `bounds`' own.
    #[inline]
    pub(crate) fn leaf_lazy<'b>(
        &self,
        reference: PageRef,
        bounds: impl FnOnce() -> Result<Bounds<'b>>,
    ) -> Result<LeafPage<'_>> {
        let bytes = self.bytes(reference.id)?;
        if self.is_verified(reference.id) {
            return LeafPage::open_verified(bytes, self.page_size, reference.id);
        }
        self.leaf(reference, Some(bounds()?))
    }

    /// As [`Pages::branch`], with the bounds worked out only if the page is not verified
    /// yet (see [`Pages::leaf_lazy`]).
    ///
    /// # Errors
    /// As [`Pages::branch`], and `bounds`' own.
    #[inline]
    pub(crate) fn branch_lazy<'b>(
        &self,
        reference: PageRef,
        level: u8,
        bounds: impl FnOnce() -> Result<Bounds<'b>>,
    ) -> Result<BranchPage<'_>> {
        let bytes = self.bytes(reference.id)?;
        if self.is_verified(reference.id) {
            return BranchPage::open_verified(bytes, self.page_size, reference.id, level);
        }
        self.branch(reference, level, Some(bounds()?))
    }

    /// The branch `reference` names, which must be at `level`; verified in full on its
    /// first read, as [`Pages::leaf`] (its separators strictly above `bounds.low`).
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the page, also for a branch at another level.
    pub(crate) fn branch(
        &self,
        reference: PageRef,
        level: u8,
        bounds: Option<Bounds<'_>>,
    ) -> Result<BranchPage<'_>> {
        let bytes = self.bytes(reference.id)?;
        let verified = self.is_verified(reference.id);
        let page = if verified {
            BranchPage::open_verified(bytes, self.page_size, reference.id, level)?
        } else {
            let page = BranchPage::decode(bytes, self.page_size, reference.id)?;
            verify_parent_checksum(bytes, reference)?;
            page
        };
        if page.level() != level {
            let what = "branch level (not its parent's less one)";
            return Err(invalid(reference.id, LEVEL_AT, what, page.level().into()));
        }
        if !verified && let Some(bounds) = bounds {
            if let Some(last) = page.len().checked_sub(1) {
                let (first, last) = (page.separator(0)?, page.separator(last)?);
                check_within(reference.id, first, last, bounds, true)?;
            }
            self.mark_verified(reference.id);
        }
        Ok(page)
    }

    /// Appends the value of the overflow chain `reference` names to `out`, verifying every
    /// page of the chain.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the page.
    pub(crate) fn read_value(&self, reference: OverflowRef, out: &mut Vec<u8>) -> Result<()> {
        out.reserve(reference.value_size as usize);
        read_overflow_chain(
            self.page_size,
            reference,
            |id| self.bytes(id),
            |chunk| out.extend_from_slice(chunk),
        )
    }

    /// The page ids of the overflow chain `reference` names, verifying every page.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the page.
    pub(crate) fn chain_ids(&self, reference: OverflowRef) -> Result<Vec<PageId>> {
        let mut ids = Vec::new();
        read_overflow_chain(
            self.page_size,
            reference,
            |id| {
                ids.push(id);
                self.bytes(id)
            },
            |_| {},
        )?;
        Ok(ids)
    }
}

/// Checks that a page's keys, `first` to `last`, lie within its parent's `bounds`.
fn check_within(
    id: PageId,
    first: &[u8],
    last: &[u8],
    bounds: Bounds<'_>,
    strictly_above_low: bool,
) -> Result<()> {
    let above = bounds.low.is_none_or(|low| {
        if strictly_above_low {
            first > low
        } else {
            first >= low
        }
    });
    let below = bounds.high.is_none_or(|high| last < high);
    if above && below {
        return Ok(());
    }
    let kind = CorruptionKind::OutOfOrder { index: 0 };
    let what = "page keys (outside the separators its parent places it between)";
    Err(Error::corruption(id, 0, what, kind))
}
