//! One page of a scan: at most the scan's limit of entries, and no more bytes than fit one
//! response frame; a cursor (the last key returned) when the scan may go on. The page is
//! read in chunks sized by the bytes left, so memory stays near one frame's worth even
//! with large values.

use std::ops::Bound;

use popdb_db::{Direction, ReadView, Scan};
use popdb_protocol::{self as wire, KEY_SIZE_MAX, Limits};

/// Bytes of an Entries body besides its entries: read_lsn, count and the largest cursor
/// (tag, key length, a key one byte over the limit for safety, lsn), plus slack.
const ENTRIES_OVERHEAD: usize = 8 + 4 + (1 + 4 + KEY_SIZE_MAX as usize + 1 + 8) + 64;
/// Bytes of one entry besides its key and value: two lengths and a version.
const ENTRY_OVERHEAD: usize = 4 + 4 + 8;
/// Entries read per chunk at most.
const CHUNK_MAX: usize = 1024;

/// A page's entries and whether the scan may have more.
#[derive(Debug)]
pub struct Page {
    /// In the scan's direction.
    pub entries: Vec<wire::Entry>,
    /// Whether a cursor should be returned.
    pub more: bool,
}

/// Reads the page of `scan` that starts after its cursor (if any), from `view`.
///
/// # Errors
/// The Db's (unknown table, corruption, i/o).
pub fn scan_page(view: &ReadView, scan: &wire::Scan, limits: &Limits) -> popdb_db::Result<Page> {
    let count_max = match scan.limit {
        0 => limits.scan_limit_max,
        n => n.min(limits.scan_limit_max),
    } as usize;
    let budget = limits.body_size_max().saturating_sub(ENTRIES_OVERHEAD);
    let direction = match scan.direction {
        wire::Direction::Forward => Direction::Forward,
        wire::Direction::Backward => Direction::Backward,
    };
    let (mut lower, mut upper) = (scan.lower.clone(), scan.upper.clone());
    if let Some(cursor) = &scan.cursor {
        let after = Bound::Excluded(cursor.key.clone());
        match direction {
            Direction::Forward => lower = tighter_lower(lower, after),
            Direction::Backward => upper = tighter_upper(upper, after),
        }
    }
    let mut page = Page {
        entries: Vec::new(),
        more: false,
    };
    let mut bytes = 0_usize;
    let mut entry_size_max = 64_usize;
    loop {
        if is_empty_range(&lower, &upper) {
            return Ok(page);
        }
        let left = (budget - bytes) / entry_size_max;
        let chunk = (count_max - page.entries.len() + 1).min(left.clamp(1, CHUNK_MAX));
        let found = view.scan(
            &scan.table,
            &Scan {
                lower: lower.clone(),
                upper: upper.clone(),
                prefix: None,
                direction,
                limit: chunk,
            },
        )?;
        let exhausted = found.len() < chunk;
        for entry in found {
            let size = ENTRY_OVERHEAD + entry.key.len() + entry.value.len();
            if page.entries.len() == count_max || bytes + size > budget {
                page.more = true;
                return Ok(page);
            }
            bytes += size;
            entry_size_max = entry_size_max.max(size);
            page.entries.push(wire::Entry {
                key: entry.key,
                value: entry.value,
                version: entry.version,
            });
        }
        if exhausted {
            return Ok(page);
        }
        let Some(last) = page.entries.last() else {
            return Ok(page);
        };
        let after = Bound::Excluded(last.key.clone());
        match direction {
            Direction::Forward => lower = after,
            Direction::Backward => upper = after,
        }
    }
}

/// The stricter of two lower bounds.
fn tighter_lower(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x > y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// The stricter of two upper bounds.
fn tighter_upper(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x < y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// Whether no key lies between the bounds.
fn is_empty_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => {
            l >= u
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(k: &[u8]) -> Bound<Vec<u8>> {
        Bound::Included(k.to_vec())
    }
    fn exc(k: &[u8]) -> Bound<Vec<u8>> {
        Bound::Excluded(k.to_vec())
    }

    #[test]
    fn bounds_tighten_and_empty_ranges_are_seen() {
        assert_eq!(tighter_lower(inc(b"a"), exc(b"b")), exc(b"b"));
        assert_eq!(tighter_lower(exc(b"a"), inc(b"a")), exc(b"a"));
        assert_eq!(tighter_upper(inc(b"z"), exc(b"m")), exc(b"m"));
        assert_eq!(tighter_upper(Bound::Unbounded, exc(b"m")), exc(b"m"));
        assert!(is_empty_range(&inc(b"b"), &inc(b"a")));
        assert!(!is_empty_range(&inc(b"a"), &inc(b"a")));
        assert!(is_empty_range(&exc(b"a"), &inc(b"a")));
        assert!(!is_empty_range(&Bound::Unbounded, &exc(b"a")));
    }
}
