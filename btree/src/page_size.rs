//! Page sizes, and the key and value limits each page size implies. Spec:
//! docs/format/btree.md (section 2, "Page size and limits"); limits: docs/limits.md.
//!
//! A page size is a power of two from 512 bytes to 64 KiB (4 KiB by default), fixed when
//! a file is created and recorded in its meta pages. 512 bytes is the sector size the
//! simulated file system tears at, so every page is whole sectors; 64 KiB keeps every
//! in-page offset within a `u16` slot.
//!
//! The limits make every page hold at least [`ENTRIES_PER_PAGE_MIN`] of the largest
//! entries, so that a full page plus one more entry always splits into two pages that fit:
//! - a leaf entry stores its value inline when key and value together are at most
//!   [`PageSize::leaf_payload_max`] bytes, and otherwise an overflow reference (12 bytes)
//!   to a chain of overflow pages;
//! - a key is at most [`PageSize::key_size_max`] bytes, so that the key and an overflow
//!   reference fit that payload, and four separators of that size fit a branch page;
//! - a value is at most [`VALUE_SIZE_MAX`] bytes, whatever the page size.

use crate::error::{Error, Result};
use crate::page_format::{
    BRANCH_ENTRY_HEADER_SIZE, BRANCH_SLOTS_AT, FREE_ENTRIES_AT, FREE_ENTRY_SIZE, HEADER_SIZE,
    LEAF_ENTRY_HEADER_SIZE, OVERFLOW_DATA_AT, OVERFLOW_REF_SIZE, PAGE_ID_MAX, PageId, SLOT_SIZE,
};

/// The smallest page size.
pub const PAGE_SIZE_MIN: u32 = 512;
/// The largest page size.
pub const PAGE_SIZE_MAX: u32 = 1 << 16;
/// The page size of a tree created without one.
pub const PAGE_SIZE_DEFAULT: u32 = 4096;
/// The fewest entries of the largest size a leaf or a branch page holds.
pub const ENTRIES_PER_PAGE_MIN: usize = 4;
/// The largest value, in bytes: 4 MiB. A value is written whole in one batch, and a
/// batch is one WAL record (16 MiB at most by default), so this leaves room for a batch of
/// several; a value of this size is a chain of 1,037 overflow pages at 4 KiB.
pub const VALUE_SIZE_MAX: u32 = 4 << 20;

/// A page size: a power of two from [`PAGE_SIZE_MIN`] to [`PAGE_SIZE_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageSize(u32);

impl Default for PageSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl PageSize {
    /// [`PAGE_SIZE_DEFAULT`].
    pub const DEFAULT: Self = Self(PAGE_SIZE_DEFAULT);

    /// The page size of `bytes`.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] unless `bytes` is a power of two from 512 to 65,536.
    pub fn new(bytes: u32) -> Result<Self> {
        Self::from_u32(bytes).ok_or(Error::InvalidOptions(
            "page size must be a power of two from 512 to 65536 bytes",
        ))
    }

    /// The page size of `bytes`, if it is one.
    pub const fn from_u32(bytes: u32) -> Option<Self> {
        if bytes.is_power_of_two() && bytes >= PAGE_SIZE_MIN && bytes <= PAGE_SIZE_MAX {
            Some(Self(bytes))
        } else {
            None
        }
    }

    /// Every page size, smallest first.
    pub fn all() -> impl Iterator<Item = Self> {
        (PAGE_SIZE_MIN.trailing_zeros()..=PAGE_SIZE_MAX.trailing_zeros()).map(|s| Self(1 << s))
    }

    /// The size in bytes.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The size in bytes, as a length.
    pub const fn bytes(self) -> usize {
        self.0 as usize
    }

    /// The file offset of page `id`.
    ///
    /// # Panics
    /// If `id` is past [`PAGE_ID_MAX`] (no page there can be valid).
    pub const fn offset_of(self, id: PageId) -> u64 {
        assert!(id.0 <= PAGE_ID_MAX, "page id past PAGE_ID_MAX");
        id.0 * self.0 as u64
    }

    /// The most bytes of key plus inline value one leaf entry holds; larger values go to
    /// overflow pages. 1,001 bytes at 4 KiB.
    pub const fn leaf_payload_max(self) -> usize {
        // Wrapping: a page of at least PAGE_SIZE_MIN bytes leaves a positive payload (the
        // table in the format doc), and this runs for every entry a cursor steps to.
        (self.bytes().wrapping_sub(HEADER_SIZE) / ENTRIES_PER_PAGE_MIN)
            .wrapping_sub(SLOT_SIZE + LEAF_ENTRY_HEADER_SIZE)
    }

    /// The largest key: 989 bytes at 4 KiB, 93 at 512 bytes, 16,349 at 64 KiB.
    pub const fn key_size_max(self) -> usize {
        // Wrapping: the payload exceeds an overflow reference at every page size.
        self.leaf_payload_max().wrapping_sub(OVERFLOW_REF_SIZE)
    }

    /// Whether an entry with a key of `key_len` bytes stores a value of `value_len` bytes
    /// inline (otherwise in an overflow chain). Requires `key_len <= key_size_max()`.
    pub const fn stores_inline(self, key_len: usize, value_len: usize) -> bool {
        key_len.saturating_add(value_len) <= self.leaf_payload_max()
    }

    /// Bytes of value data one overflow page holds.
    pub const fn overflow_data_max(self) -> usize {
        self.bytes() - OVERFLOW_DATA_AT
    }

    /// Pages of the overflow chain of a value of `value_size` bytes.
    pub const fn overflow_page_count(self, value_size: u32) -> u64 {
        (value_size as u64).div_ceil(self.overflow_data_max() as u64)
    }

    /// Entries one free-list page holds.
    pub const fn free_list_capacity(self) -> usize {
        (self.bytes() - FREE_ENTRIES_AT) / FREE_ENTRY_SIZE
    }

    /// Checks a key and value against the limits, for a caller's write.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] naming `"key size"` or `"value size"`.
    pub fn check_entry(self, key_len: usize, value_len: usize) -> Result<()> {
        let key_max = self.key_size_max();
        if key_len > key_max {
            return Err(Error::LimitExceeded {
                limit: "key size",
                found: key_len as u64,
                max: key_max as u64,
            });
        }
        if value_len > VALUE_SIZE_MAX as usize {
            return Err(Error::LimitExceeded {
                limit: "value size",
                found: value_len as u64,
                max: VALUE_SIZE_MAX.into(),
            });
        }
        Ok(())
    }
}

// Every page size keeps the promises in the module header.
const _: () = {
    let mut bytes = PAGE_SIZE_MIN;
    while bytes <= PAGE_SIZE_MAX {
        let size = PageSize(bytes);
        let leaf_entry_max = SLOT_SIZE + LEAF_ENTRY_HEADER_SIZE + size.leaf_payload_max();
        assert!(ENTRIES_PER_PAGE_MIN * leaf_entry_max <= size.bytes() - HEADER_SIZE);
        let branch_entry_max = SLOT_SIZE + BRANCH_ENTRY_HEADER_SIZE + size.key_size_max();
        assert!(ENTRIES_PER_PAGE_MIN * branch_entry_max <= size.bytes() - BRANCH_SLOTS_AT);
        // Slots hold entry offsets, and counts fit the header's u16.
        assert!(size.bytes() - 1 <= u16::MAX as usize);
        assert!((size.bytes() - HEADER_SIZE) / SLOT_SIZE <= u16::MAX as usize);
        assert!(size.free_list_capacity() <= u16::MAX as usize);
        assert!(size.key_size_max() <= u16::MAX as usize);
        bytes *= 2;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_accepts_powers_of_two_in_range_only() {
        let all: Vec<u32> = PageSize::all().map(PageSize::get).collect();
        assert_eq!(all, [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]);
        for bad in [0, 1, 256, 511, 513, 3000, 4097, 1 << 17, u32::MAX] {
            assert!(PageSize::new(bad).is_err(), "{bad}");
        }
        assert_eq!(PageSize::default().get(), 4096);
    }

    #[test]
    fn limits_match_the_documented_figures() {
        let at = |b| PageSize::new(b).unwrap();
        assert_eq!(at(4096).leaf_payload_max(), 1001);
        assert_eq!(at(4096).key_size_max(), 989);
        assert_eq!(at(512).key_size_max(), 93);
        assert_eq!(at(65536).key_size_max(), 16349);
        assert_eq!(at(4096).overflow_data_max(), 4048);
        assert_eq!(at(4096).free_list_capacity(), 253);
        assert_eq!(at(4096).overflow_page_count(VALUE_SIZE_MAX), 1037);
        assert_eq!(at(4096).overflow_page_count(0), 0);
        assert_eq!(at(4096).offset_of(PageId(3)), 12288);
    }

    #[test]
    fn inline_values_stop_at_the_payload_limit() {
        let size = PageSize::DEFAULT;
        assert!(size.stores_inline(0, 1001));
        assert!(!size.stores_inline(0, 1002));
        assert!(size.stores_inline(989, 12));
        assert!(!size.stores_inline(989, 13));
    }

    #[test]
    fn check_entry_names_the_limit() {
        let size = PageSize::DEFAULT;
        size.check_entry(989, VALUE_SIZE_MAX as usize).unwrap();
        let e = size.check_entry(990, 0).unwrap_err();
        assert!(matches!(
            e,
            Error::LimitExceeded {
                limit: "key size",
                found: 990,
                max: 989
            }
        ));
        let e = size
            .check_entry(0, VALUE_SIZE_MAX as usize + 1)
            .unwrap_err();
        assert!(matches!(
            e,
            Error::LimitExceeded {
                limit: "value size",
                ..
            }
        ));
    }
}
