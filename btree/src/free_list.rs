//! Free-list pages: the ids of pages no tree of the file reaches any more, each with the
//! checkpoint transaction that freed it, in a chain of pages that the meta page roots.
//! Spec: docs/format/btree.md (section 8, "Free-list page"); layout constants in
//! `page_format.rs`.
//!
//! The freeing transaction is kept because a page may be reused only once nothing can
//! reach it any more: after the meta page of the checkpoint that freed it is durable, and
//! once no read view holds an older root (the reuse rule, docs/format/btree.md section
//! 11). A page lists at least one entry (an empty free list is no page at all); within a
//! page, entries strictly increase by `(freed_txn, page_id)`; a page lists nothing freed
//! after the transaction that wrote it, and never itself, and links to neither a meta page
//! nor itself. Rules across pages of a chain (no id twice, every id below the high-water
//! mark, a walk bounded by the meta's `free_page_count`) are the tree's to check.

#![deny(clippy::indexing_slicing)]

use crate::error::{CorruptionKind, Error, Result};
use crate::page_format::{
    COUNT_AT, FIRST_TREE_PAGE, FREE_ENTRIES_AT, FREE_ENTRY_SIZE, LEVEL_AT, PAGE_ID_MAX, PageHeader,
    PageId, PageRef, PageType, TxnId, check_zero, decode_link, field_u64, invalid, is_referable,
    put, seal, write_link,
};
use crate::page_size::PageSize;

/// One free page and the checkpoint transaction that freed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FreeEntry {
    /// The transaction whose checkpoint stopped reaching the page. Compared first: entries
    /// sort by `(freed_txn, page_id)`.
    pub freed_txn: TxnId,
    /// The free page.
    pub page_id: PageId,
}

/// A validated free-list page, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct FreeListPage<'a> {
    page: &'a [u8],
    page_id: PageId,
    txn_id: TxnId,
    count: usize,
    next: Option<PageRef>,
}

impl<'a> FreeListPage<'a> {
    /// Validates `page` as free-list page `expected_id`: checksum, header (level 0, a count
    /// of 1 to the page's capacity), link (a next page that is neither a meta page nor this
    /// one), every entry (a page id that can be referenced, `freed_txn` not
    /// after the page's own transaction), their strict order, and zero bytes after them.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the field at fault.
    pub fn decode(page: &'a [u8], page_size: PageSize, expected_id: PageId) -> Result<Self> {
        let header = PageHeader::decode(page, page_size, expected_id, PageType::FreeList)?;
        let id = expected_id;
        if header.level != 0 {
            return Err(invalid(
                id,
                LEVEL_AT,
                "free-list level",
                header.level.into(),
            ));
        }
        // An empty free-list page is never written: a list with nothing in it is no page.
        let count = usize::from(header.count);
        if !(1..=page_size.free_list_capacity()).contains(&count) {
            let at = COUNT_AT;
            return Err(invalid(id, at, "free-list count", count as u64));
        }
        let next = decode_link(page, id)?;
        let list = Self {
            page,
            page_id: header.page_id,
            txn_id: header.txn_id,
            count,
            next,
        };
        list.check_entries()?;
        let end = FREE_ENTRIES_AT + count * FREE_ENTRY_SIZE;
        check_zero(page, id, end..page.len(), "free-list padding")?;
        Ok(list)
    }

    /// Writes free-list page `page_id` listing `entries`, linked to `next`, into `out` (one
    /// page long) and returns its checksum.
    ///
    /// # Panics
    /// If `out` is not a page long, `entries` is empty (an empty free list is no page, not
    /// an empty one), the entries do not fit or are not strictly increasing,
    /// an entry names a meta page or the page itself or was freed after `txn_id`, or
    /// `page_id` or `next` cannot hold a free-list page (caller bugs).
    pub fn encode(
        out: &mut [u8],
        page_id: PageId,
        txn_id: TxnId,
        entries: &[FreeEntry],
        next: Option<PageRef>,
    ) -> u32 {
        let page_size = PageSize::from_u32(u32::try_from(out.len()).unwrap_or(0))
            .unwrap_or_else(|| panic!("free-list page buffer of {} bytes", out.len()));
        let referable = |id: PageId| (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&id.0);
        assert!(referable(page_id), "free-list page id {page_id:?}");
        assert!(!entries.is_empty(), "empty free-list page {page_id:?}");
        assert!(
            entries.len() <= page_size.free_list_capacity(),
            "{} free-list entries in a page of {}",
            entries.len(),
            page_size.free_list_capacity()
        );
        for (a, b) in entries.iter().zip(entries.iter().skip(1)) {
            assert!(a < b, "free-list entries out of order: {a:?}, {b:?}");
        }
        out.fill(0);
        for (i, entry) in entries.iter().enumerate() {
            assert!(
                referable(entry.page_id) && entry.page_id != page_id,
                "free-list entry {entry:?} in page {page_id:?}"
            );
            assert!(
                entry.freed_txn <= txn_id,
                "{entry:?} freed after {txn_id:?}"
            );
            let at = FREE_ENTRIES_AT + i * FREE_ENTRY_SIZE;
            put(out, at, &entry.page_id.0.to_le_bytes());
            put(out, at + 8, &entry.freed_txn.0.to_le_bytes());
        }
        if let Some(next) = next {
            assert!(
                referable(next.id) && next.id != page_id,
                "free-list next {next:?}"
            );
        }
        PageHeader {
            page_type: PageType::FreeList,
            level: 0,
            count: u16::try_from(entries.len()).expect("capacity fits a u16"),
            page_id,
            txn_id,
        }
        .write(out);
        write_link(out, next);
        seal(out)
    }

    /// The page's id.
    pub fn page_id(&self) -> PageId {
        self.page_id
    }

    /// The checkpoint transaction that wrote the page.
    pub fn txn_id(&self) -> TxnId {
        self.txn_id
    }

    /// The next page of the free list, if any.
    pub fn next(&self) -> Option<PageRef> {
        self.next
    }

    /// The number of entries, at least 1.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the page lists no free page: never, for a page that decoded (decode refuses
    /// a count of 0).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `index`.
    ///
    /// # Panics
    /// If `index >= len()` (a caller bug).
    pub fn entry(&self, index: usize) -> Result<FreeEntry> {
        assert!(
            index < self.count,
            "free-list index {index} of {}",
            self.count
        );
        let at = FREE_ENTRIES_AT + index * FREE_ENTRY_SIZE;
        let page_id = field_u64(self.page, self.page_id, at, "free-list page id")?;
        let freed = field_u64(self.page, self.page_id, at + 8, "free-list freed_txn")?;
        Ok(FreeEntry {
            freed_txn: TxnId(freed),
            page_id: PageId(page_id),
        })
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = Result<FreeEntry>> + '_ {
        (0..self.count).map(|i| self.entry(i))
    }

    fn check_entries(&self) -> Result<()> {
        let mut prev: Option<FreeEntry> = None;
        for index in 0..self.count {
            let at = FREE_ENTRIES_AT + index * FREE_ENTRY_SIZE;
            let entry = self.entry(index)?;
            if !is_referable(entry.page_id.0, self.page_id) {
                let what = "free-list page id";
                return Err(invalid(self.page_id, at, what, entry.page_id.0));
            }
            if entry.freed_txn > self.txn_id {
                let what = "free-list freed_txn";
                return Err(invalid(self.page_id, at + 8, what, entry.freed_txn.0));
            }
            if prev.is_some_and(|p| p >= entry) {
                let kind = CorruptionKind::OutOfOrder {
                    index: index as u64,
                };
                return Err(Error::corruption(self.page_id, at, "free-list entry", kind));
            }
            prev = Some(entry);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests index known layouts")]

    use super::*;

    fn entry(txn: u64, id: u64) -> FreeEntry {
        FreeEntry {
            freed_txn: TxnId(txn),
            page_id: PageId(id),
        }
    }

    #[test]
    fn free_list_round_trips_full_and_single() {
        let size = PageSize::new(512).unwrap();
        let cap = size.free_list_capacity();
        let full: Vec<FreeEntry> = (0..cap as u64).map(|i| entry(1 + i / 5, 100 + i)).collect();
        let next = Some(PageRef {
            id: PageId(8),
            checksum: 77,
        });
        for (entries, next) in [(full, next), (vec![entry(40, 2)], None)] {
            let mut page = vec![0u8; 512];
            FreeListPage::encode(&mut page, PageId(9), TxnId(40), &entries, next);
            let list = FreeListPage::decode(&page, size, PageId(9)).unwrap();
            let got: Vec<FreeEntry> = list.entries().map(Result::unwrap).collect();
            assert_eq!(got, entries);
            assert_eq!(list.next(), next);
            assert_eq!(list.txn_id(), TxnId(40));
        }
    }

    #[test]
    fn decode_refuses_order_self_listing_and_future_frees() {
        let size = PageSize::new(512).unwrap();
        let mut page = vec![0u8; 512];
        FreeListPage::encode(
            &mut page,
            PageId(9),
            TxnId(5),
            &[entry(1, 3), entry(2, 3)],
            None,
        );
        let forge = |at: usize, value: u64| {
            let mut bad = page.clone();
            bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
            seal(&mut bad);
            FreeListPage::decode(&bad, size, PageId(9)).unwrap_err()
        };
        let second = FREE_ENTRIES_AT + FREE_ENTRY_SIZE;
        let e = forge(second + 8, 1);
        assert!(matches!(
            e.as_corruption().unwrap().kind,
            CorruptionKind::OutOfOrder { .. }
        ));
        assert_eq!(
            forge(second, 9).as_corruption().unwrap().what,
            "free-list page id"
        );
        assert_eq!(
            forge(second, 1).as_corruption().unwrap().what,
            "free-list page id"
        );
        assert_eq!(
            forge(second + 8, 6).as_corruption().unwrap().what,
            "free-list freed_txn"
        );
    }
}
