//! Overflow pages: a value too large for its leaf lives in a chain of them, each holding
//! the next page's id and checksum and a run of the value's bytes. Spec:
//! docs/format/btree.md (section 7, "Overflow page"); layout constants in
//! `page_format.rs`.
//!
//! Every page of a chain but the last is full ([`PageSize::overflow_data_max`] bytes of
//! data); the last holds the rest, at least one byte. So a value of `n` bytes is exactly
//! [`PageSize::overflow_page_count`]`(n)` pages, and a reader walks a chain in a loop
//! bounded by that count, verifying each page against the checksum its predecessor (or the
//! leaf entry) holds for it, and never fetching a meta page. A chain that comes back to a
//! page it has visited is refused by that bound ([`read_overflow_chain`] says why). Chains
//! are written last page first, since each page carries its successor's checksum.

#![deny(clippy::indexing_slicing)]

use crate::error::{CorruptionKind, Error, Result};
use crate::page_format::{
    COUNT_AT, FIRST_TREE_PAGE, HAS_NEXT_AT, LEVEL_AT, OVERFLOW_DATA_AT, OVERFLOW_DATA_SIZE_AT,
    OVERFLOW_RESERVED_AT, PAGE_ID_MAX, PageHeader, PageId, PageRef, PageType, TxnId, check_zero,
    decode_link, field_bytes, field_u32, invalid, put, seal, verify_parent_checksum, write_link,
};
use crate::page_size::{PageSize, VALUE_SIZE_MAX};

/// A leaf entry's reference to a value in overflow pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OverflowRef {
    /// The chain's first page.
    pub first: PageRef,
    /// The value's size in bytes (the whole chain's data).
    pub value_size: u32,
}

/// A decoded overflow page, borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverflowPage<'a> {
    data: &'a [u8],
    next: Option<PageRef>,
    page_id: PageId,
    txn_id: TxnId,
}

impl<'a> OverflowPage<'a> {
    /// Validates `page` as overflow page `expected_id`: checksum, header (level and count
    /// 0), link, reserved bytes, a data size that fills the page when a next page follows
    /// and is 1 to the page's capacity otherwise, and zero bytes after the data.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the field at fault.
    pub fn decode(page: &'a [u8], page_size: PageSize, expected_id: PageId) -> Result<Self> {
        let header = PageHeader::decode(page, page_size, expected_id, PageType::Overflow)?;
        let id = expected_id;
        if header.level != 0 {
            return Err(invalid(id, LEVEL_AT, "overflow level", header.level.into()));
        }
        if header.count != 0 {
            let at = COUNT_AT;
            return Err(invalid(id, at, "overflow count", header.count.into()));
        }
        let next = decode_link(page, id)?;
        let size = field_u32(page, id, OVERFLOW_DATA_SIZE_AT, "overflow data size")?;
        let capacity = page_size.overflow_data_max();
        let valid = match next {
            Some(_) => size as usize == capacity,
            None => (1..=capacity).contains(&(size as usize)),
        };
        if !valid {
            let at = OVERFLOW_DATA_SIZE_AT;
            return Err(invalid(id, at, "overflow data size", size.into()));
        }
        let reserved = OVERFLOW_RESERVED_AT..OVERFLOW_DATA_AT;
        check_zero(page, id, reserved, "overflow reserved")?;
        let data_end = OVERFLOW_DATA_AT + size as usize;
        let data = field_bytes(page, id, OVERFLOW_DATA_AT..data_end, "overflow data")?;
        check_zero(page, id, data_end..page.len(), "overflow padding")?;
        Ok(Self {
            data,
            next,
            page_id: header.page_id,
            txn_id: header.txn_id,
        })
    }

    /// Writes overflow page `page_id` holding `data`, linked to `next`, into `out` (one
    /// page long) and returns its checksum.
    ///
    /// # Panics
    /// If `out` is not a page long, `page_id` or `next` cannot hold an overflow page,
    /// `data` is empty or too long, or a page with a successor is not full (caller bugs).
    pub fn encode(
        out: &mut [u8],
        page_id: PageId,
        txn_id: TxnId,
        data: &[u8],
        next: Option<PageRef>,
    ) -> u32 {
        let page_size = PageSize::from_u32(u32::try_from(out.len()).unwrap_or(0))
            .unwrap_or_else(|| panic!("overflow page buffer of {} bytes", out.len()));
        let capacity = page_size.overflow_data_max();
        assert!(
            (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&page_id.0),
            "overflow page id {page_id:?}"
        );
        assert!(!data.is_empty(), "empty overflow page");
        assert!(
            data.len() <= capacity,
            "overflow data of {} bytes",
            data.len()
        );
        if let Some(next) = next {
            assert_eq!(
                data.len(),
                capacity,
                "only the last overflow page is partial"
            );
            assert!(
                (FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&next.id.0) && next.id != page_id,
                "overflow next page {next:?}"
            );
        }
        out.fill(0);
        PageHeader {
            page_type: PageType::Overflow,
            level: 0,
            count: 0,
            page_id,
            txn_id,
        }
        .write(out);
        write_link(out, next);
        let size = u32::try_from(data.len()).expect("overflow data fits a page");
        put(out, OVERFLOW_DATA_SIZE_AT, &size.to_le_bytes());
        put(out, OVERFLOW_DATA_AT, data);
        seal(out)
    }

    /// The value bytes this page holds.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The next page of the chain, if any.
    pub fn next(&self) -> Option<PageRef> {
        self.next
    }

    /// The page's id.
    pub fn page_id(&self) -> PageId {
        self.page_id
    }

    /// The checkpoint transaction that wrote the page.
    pub fn txn_id(&self) -> TxnId {
        self.txn_id
    }
}

/// Writes `value` as an overflow chain on pages `ids` (in chain order), last page first:
/// each page is encoded into `buf` (one page long) and handed to `emit` with its id.
/// Returns the reference a leaf entry stores.
///
/// # Panics
/// If `value` is empty or above [`VALUE_SIZE_MAX`], `ids` is not exactly
/// [`PageSize::overflow_page_count`] pages, or an id cannot hold an overflow page.
pub fn write_overflow_chain(
    txn_id: TxnId,
    value: &[u8],
    ids: &[PageId],
    buf: &mut [u8],
    mut emit: impl FnMut(PageId, &[u8]),
) -> OverflowRef {
    let page_size = PageSize::from_u32(u32::try_from(buf.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("overflow page buffer of {} bytes", buf.len()));
    let value_size = u32::try_from(value.len())
        .ok()
        .filter(|&n| n <= VALUE_SIZE_MAX)
        .unwrap_or_else(|| panic!("value of {} bytes", value.len()));
    assert!(value_size > 0, "an empty value is stored inline");
    assert_eq!(
        ids.len() as u64,
        page_size.overflow_page_count(value_size),
        "overflow chain page count"
    );
    let mut next = None;
    let chunks = value.chunks(page_size.overflow_data_max());
    for (&id, chunk) in ids.iter().zip(chunks).rev() {
        let checksum = OverflowPage::encode(buf, id, txn_id, chunk, next);
        emit(id, buf);
        next = Some(PageRef { id, checksum });
    }
    OverflowRef {
        first: next.expect("a non-empty value has a first page"),
        value_size,
    }
}

/// Reads the value `reference` names: fetches each page of the chain with `fetch`,
/// verifies it in full and against the checksum its predecessor holds for it, and hands
/// its data to `sink` in order. Walks exactly [`PageSize::overflow_page_count`] pages and
/// never fetches a meta page.
///
/// A chain that comes back to a page it has visited is refused without a set of visited
/// ids: `fetch` returns the same bytes for the same id (pages a reference reaches are never
/// written while it is read), so from a repeated id on the chain repeats the same pages, and
/// the walk reaches its last index on a page that has a successor ("overflow chain
/// length"). A page naming itself or a meta page as its successor is refused by its decoder.
///
/// # Errors
/// [`Error::Corruption`] for a first page id that is a meta page or past [`PAGE_ID_MAX`],
/// a damaged or stale page, a chain that ends early or goes on (a chain that revisits a
/// page goes on), or a last page whose size does not complete the value; any error `fetch`
/// returns. On an error `sink` may have been handed a prefix of the value, which the caller
/// discards.
pub fn read_overflow_chain<'a>(
    page_size: PageSize,
    reference: OverflowRef,
    mut fetch: impl FnMut(PageId) -> Result<&'a [u8]>,
    mut sink: impl FnMut(&'a [u8]),
) -> Result<()> {
    let value_size = reference.value_size;
    if value_size == 0 || value_size > VALUE_SIZE_MAX {
        let kind = CorruptionKind::InvalidValue {
            found: value_size.into(),
        };
        return Err(Error::corruption(
            reference.first.id,
            0,
            "overflow value size",
            kind,
        ));
    }
    let first = reference.first.id;
    if !(FIRST_TREE_PAGE..=PAGE_ID_MAX).contains(&first.0) {
        let kind = CorruptionKind::InvalidValue { found: first.0 };
        return Err(Error::corruption(first, 0, "overflow first page id", kind));
    }
    let count = page_size.overflow_page_count(value_size);
    let capacity = page_size.overflow_data_max() as u64;
    let last_size = u64::from(value_size) - (count - 1) * capacity;
    let mut at = reference.first;
    for index in 0..count {
        let bytes = fetch(at.id)?;
        let page = OverflowPage::decode(bytes, page_size, at.id)?;
        verify_parent_checksum(bytes, at)?;
        let is_last = index + 1 == count;
        match (page.next, is_last) {
            (Some(next), false) => at = next,
            (None, true) if page.data.len() as u64 == last_size => {}
            (None, true) => {
                let found = page.data.len() as u64;
                let what = "overflow data size (chain's last page)";
                return Err(invalid(at.id, OVERFLOW_DATA_SIZE_AT, what, found));
            }
            (next, _) => {
                let what = "overflow chain length";
                let found = u64::from(next.is_some());
                return Err(invalid(at.id, HAS_NEXT_AT, what, found));
            }
        }
        sink(page.data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests index known layouts")]

    use std::collections::HashMap;

    use super::*;

    fn chain(size: PageSize, value: &[u8], first_id: u64) -> (OverflowRef, HashMap<u64, Vec<u8>>) {
        let count = size.overflow_page_count(value.len() as u32);
        let ids: Vec<PageId> = (0..count).map(|i| PageId(first_id + i)).collect();
        let mut pages = HashMap::new();
        let mut buf = vec![0u8; size.bytes()];
        let r = write_overflow_chain(TxnId(3), value, &ids, &mut buf, |id, page| {
            pages.insert(id.0, page.to_vec());
        });
        (r, pages)
    }

    fn read(size: PageSize, r: OverflowRef, pages: &HashMap<u64, Vec<u8>>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let fetch = |id: PageId| {
            pages.get(&id.0).map(Vec::as_slice).ok_or_else(|| {
                let kind = CorruptionKind::Truncated {
                    needed: 1,
                    available: 0,
                };
                Error::corruption(id, 0, "test page", kind)
            })
        };
        read_overflow_chain(size, r, fetch, |d| out.extend_from_slice(d))?;
        Ok(out)
    }

    #[test]
    fn chains_round_trip_at_every_boundary() {
        let size = PageSize::new(512).unwrap();
        let cap = size.overflow_data_max();
        for len in [1, 2, cap - 1, cap, cap + 1, 2 * cap, 3 * cap + 7] {
            let value: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (r, pages) = chain(size, &value, 10);
            assert_eq!(pages.len() as u64, size.overflow_page_count(len as u32));
            assert_eq!(r.first.id, PageId(10));
            assert_eq!(read(size, r, &pages).unwrap(), value, "len {len}");
        }
    }

    #[test]
    fn chains_refuse_damage_stale_pages_and_wrong_lengths() {
        let size = PageSize::new(512).unwrap();
        let value = vec![0xabu8; 2 * size.overflow_data_max() + 5];
        let (r, pages) = chain(size, &value, 4);
        for id in 4..7u64 {
            for at in [0, 4, 30, 60, 511] {
                let mut bad = pages.clone();
                bad.get_mut(&id).unwrap()[at] ^= 1;
                assert!(read(size, r, &bad).is_err(), "flip page {id} byte {at}");
            }
        }
        // A stale but intact last page: its own checksum holds, the parent's does not.
        let mut stale = pages.clone();
        let mut buf = vec![0u8; 512];
        OverflowPage::encode(&mut buf, PageId(6), TxnId(2), &[1, 2, 3, 4, 5], None);
        stale.insert(6, buf);
        let e = read(size, r, &stale).unwrap_err();
        assert_eq!(
            e.as_corruption().unwrap().what,
            "checksum in the parent reference"
        );
        for value_size in [r.value_size - 1, r.value_size + 1, r.value_size + 600] {
            let wrong = OverflowRef { value_size, ..r };
            assert!(
                read(size, wrong, &pages).is_err(),
                "value size {value_size}"
            );
        }
    }

    #[test]
    fn decode_refuses_partial_pages_with_a_successor_and_stray_bytes() {
        let size = PageSize::new(512).unwrap();
        let mut page = vec![0u8; 512];
        OverflowPage::encode(&mut page, PageId(2), TxnId(1), &[9; 10], None);
        let p = OverflowPage::decode(&page, size, PageId(2)).unwrap();
        assert_eq!((p.data(), p.next()), (&[9u8; 10][..], None));
        let mut forged = page.clone();
        forged[crate::page_format::HAS_NEXT_AT] = 1;
        forged[crate::page_format::NEXT_ID_AT] = 3;
        seal(&mut forged);
        assert!(OverflowPage::decode(&forged, size, PageId(2)).is_err());
        let mut padded = page.clone();
        padded[500] = 1;
        seal(&mut padded);
        let e = OverflowPage::decode(&padded, size, PageId(2)).unwrap_err();
        assert_eq!(e.as_corruption().unwrap().offset, 500);
    }
}
