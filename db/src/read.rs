//! Reads: point gets and range scans on one table, and read views across every table at
//! one LSN. Every read is taken at the published visible LSN, so a record that spans
//! tables is seen whole or not at all.

use std::ops::Bound;
use std::sync::Arc;

use crate::engine::{Cursor, Direction, Engine, EngineView};
use crate::error::{Error, Result};
use crate::tables::{Table, Tables};

/// One entry a scan returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The LSN of the write that produced it.
    pub version: u64,
}

/// What a scan covers: bounds, an optional prefix (intersected with the bounds), the
/// order, and a limit on the entries returned.
#[derive(Clone, Debug)]
pub struct Scan {
    /// Lower bound.
    pub lower: Bound<Vec<u8>>,
    /// Upper bound.
    pub upper: Bound<Vec<u8>>,
    /// Only keys starting with these bytes.
    pub prefix: Option<Vec<u8>>,
    /// Ascending or descending.
    pub direction: Direction,
    /// At most this many entries (`usize::MAX` for no limit).
    pub limit: usize,
}

impl Default for Scan {
    fn default() -> Self {
        Self {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            prefix: None,
            direction: Direction::Forward,
            limit: usize::MAX,
        }
    }
}

impl Scan {
    /// Every key, ascending.
    pub fn all() -> Self {
        Self::default()
    }

    /// Keys starting with `prefix`, ascending.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        Self {
            prefix: Some(prefix.into()),
            ..Self::default()
        }
    }

    /// Keys in `[start, end)`, ascending.
    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self {
            lower: Bound::Included(start.into()),
            upper: Bound::Excluded(end.into()),
            ..Self::default()
        }
    }

    /// The bounds with the prefix folded in.
    pub(crate) fn bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let Some(prefix) = &self.prefix else {
            return (self.lower.clone(), self.upper.clone());
        };
        let lower = max_lower(self.lower.clone(), Bound::Included(prefix.clone()));
        let upper = match prefix_successor(prefix) {
            Some(end) => min_upper(self.upper.clone(), Bound::Excluded(end)),
            None => self.upper.clone(),
        };
        (lower, upper)
    }
}

/// The smallest key above every key starting with `prefix`; `None` if there is none (the
/// prefix is empty or all 0xff).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn max_lower(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
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

fn min_upper(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
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

/// Whether `error` says a view at that LSN is no longer retained (the reader was slow and
/// the visible LSN moved on: it retries at the new one).
fn out_of_range(error: &Error) -> bool {
    matches!(
        error,
        Error::Lsm(popdb_lsm::Error::ViewOutOfRange { .. })
            | Error::Btree(popdb_btree::Error::ViewOutOfRange { .. })
    )
}

/// A view of `engine` at `lsn`, the visible LSN or below it: the latest state if the
/// engine has applied nothing above `lsn`. `Ok(None)` if `lsn` is no longer retained.
pub(crate) fn engine_view_at(engine: &dyn Engine, lsn: u64) -> Result<Option<Box<dyn EngineView>>> {
    let view = engine.read_view();
    if view.lsn().unwrap_or(0) <= lsn {
        return Ok(Some(view));
    }
    match engine.read_view_at(lsn) {
        Ok(view) => Ok(Some(view)),
        Err(e) if out_of_range(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Entries a scan reserves room for up front: a scan of a few hundred entries grows its
/// vector no more than once, and an unlimited one starts no larger than this.
const SCAN_CAPACITY_MAX: usize = 256;

/// Reads up to `scan.limit` entries of `view`.
pub(crate) fn scan_view(view: &dyn EngineView, scan: &Scan) -> Result<Vec<Entry>> {
    let mut cursor = ScanCursor::open(view, scan)?;
    let mut entries = Vec::with_capacity(scan.limit.min(SCAN_CAPACITY_MAX));
    while cursor.valid() {
        entries.push(Entry {
            key: cursor.key().to_vec(),
            value: cursor.value().to_vec(),
            version: cursor.version(),
        });
        cursor.next()?;
    }
    Ok(entries)
}

/// A cursor over the entries of one table that a [`Scan`] covers, in its direction and up
/// to its limit, borrowed from a [`ReadView`]: the current key and value are the engine's
/// own, copied nowhere, so a scan that only looks at its entries allocates nothing per
/// entry ([`ReadView::scan`] copies each into an [`Entry`]). A step that fails leaves the
/// cursor invalid.
pub struct ScanCursor<'v> {
    /// `None` for a scan that reads nothing (a limit of 0).
    cursor: Option<Box<dyn Cursor + 'v>>,
    /// Entries the limit still allows, the current one included.
    remaining: usize,
    /// Whether the cursor is on an entry: the limit allows one and the engine's cursor is
    /// on one. Kept up to date by every step, so that reading an entry asks the engine's
    /// cursor nothing but the entry.
    valid: bool,
}

impl std::fmt::Debug for ScanCursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanCursor")
            .field("valid", &self.valid())
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl<'v> ScanCursor<'v> {
    fn open(view: &'v dyn EngineView, scan: &Scan) -> Result<Self> {
        if scan.limit == 0 {
            return Ok(Self {
                cursor: None,
                remaining: 0,
                valid: false,
            });
        }
        // Without a prefix the bounds are the scan's own: no copy of them is made here.
        let narrowed;
        let (lower, upper) = if scan.prefix.is_none() {
            (&scan.lower, &scan.upper)
        } else {
            narrowed = scan.bounds();
            (&narrowed.0, &narrowed.1)
        };
        let cursor = view.scan(
            lower.as_ref().map(Vec::as_slice),
            upper.as_ref().map(Vec::as_slice),
            scan.direction,
        )?;
        Ok(Self {
            valid: cursor.valid(),
            cursor: Some(cursor),
            remaining: scan.limit,
        })
    }
}

impl ScanCursor<'_> {
    /// Whether the cursor is on an entry.
    pub fn valid(&self) -> bool {
        self.valid
    }

    fn current(&self) -> &dyn Cursor {
        assert!(self.valid(), "read from an invalid scan cursor");
        self.cursor
            .as_deref()
            .expect("a valid cursor has an engine cursor")
    }

    /// The current key.
    ///
    /// # Panics
    /// If the cursor is not [`ScanCursor::valid`].
    pub fn key(&self) -> &[u8] {
        self.current().key()
    }

    /// The current value.
    ///
    /// # Panics
    /// If the cursor is not [`ScanCursor::valid`].
    pub fn value(&self) -> &[u8] {
        self.current().value()
    }

    /// The current entry's version: the LSN of the write that produced it.
    ///
    /// # Panics
    /// If the cursor is not [`ScanCursor::valid`].
    pub fn version(&self) -> u64 {
        self.current().version()
    }

    /// Moves to the next entry (invalid past the last, or once the limit is reached: the
    /// engine is then not read further).
    ///
    /// # Errors
    /// The engine's (corruption, i/o).
    #[expect(
        clippy::should_implement_trait,
        reason = "a cursor step that can fail, not Iterator::next"
    )]
    pub fn next(&mut self) -> Result<()> {
        if !self.valid() {
            return Ok(());
        }
        self.remaining -= 1;
        self.valid = false;
        if self.remaining == 0 {
            return Ok(());
        }
        let cursor = self
            .cursor
            .as_mut()
            .expect("a valid cursor has an engine cursor");
        cursor.next()?;
        self.valid = cursor.valid();
        Ok(())
    }
}

/// A consistent view of every table at one LSN: everything applied through it, nothing
/// after. Writes go on meanwhile; the view pins what it reads.
pub struct ReadView {
    lsn: u64,
    /// The catalog the view was taken of: a read finds its table by name there, with the
    /// cheap hash the catalog's names use (SipHash of the name was a twentieth of a point
    /// read's instructions), so taking a view copies no name.
    tables: Arc<Tables>,
    /// Each table's engine view with the table's id, in ascending id order (the catalog's).
    views: Vec<(u64, Box<dyn EngineView>)>,
}

impl std::fmt::Debug for ReadView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadView")
            .field("lsn", &self.lsn)
            .field("tables", &self.views.len())
            .finish()
    }
}

impl ReadView {
    /// A view of `tables` at `lsn`; `Ok(None)` if some table no longer retains `lsn`.
    pub(crate) fn take(lsn: u64, tables: Arc<Tables>) -> Result<Option<ReadView>> {
        let mut views = Vec::with_capacity(tables.len());
        for table in tables.iter() {
            let Some(view) = engine_view_at(table.engine.as_ref(), lsn)? else {
                return Ok(None);
            };
            views.push((table.desc.id, view));
        }
        Ok(Some(ReadView { lsn, tables, views }))
    }

    /// The LSN the view reads at (0 for an empty Db).
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    fn table(&self, name: &str) -> Result<(&Arc<Table>, &dyn EngineView)> {
        let unknown = || Error::UnknownTable(name.to_string());
        let table = self.tables.by_name(name).ok_or_else(unknown)?;
        let at = self
            .views
            .binary_search_by_key(&table.desc.id, |(id, _)| *id)
            .map_err(|_| unknown())?;
        Ok((table, self.views[at].1.as_ref()))
    }

    /// The id of table `name` in this view.
    ///
    /// # Errors
    /// [`Error::UnknownTable`].
    pub fn table_id(&self, name: &str) -> Result<u64> {
        Ok(self.table(name)?.0.desc.id)
    }

    /// The value of `key` in `table` and its version; `None` if absent.
    ///
    /// # Errors
    /// [`Error::UnknownTable`]; the engine's (corruption, i/o).
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        let (_, view) = self.table(table)?;
        let mut value = Vec::new();
        Ok(view
            .get_into(key, &mut value)?
            .map(|version| (value, version)))
    }

    /// As [`ReadView::get`], with the value written into `value` (cleared first, left
    /// empty when absent); returns the version. A caller that reuses one buffer makes
    /// point reads that allocate nothing.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn get_into(&self, table: &str, key: &[u8], value: &mut Vec<u8>) -> Result<Option<u64>> {
        let (_, view) = self.table(table)?;
        view.get_into(key, value)
    }

    /// The entries of `table` that `scan` covers.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn scan(&self, table: &str, scan: &Scan) -> Result<Vec<Entry>> {
        let (_, view) = self.table(table)?;
        scan_view(view, scan)
    }

    /// A cursor over the entries of `table` that `scan` covers, reading them in place
    /// (see [`ScanCursor`]); positioned at the first.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn cursor(&self, table: &str, scan: &Scan) -> Result<ScanCursor<'_>> {
        let (_, view) = self.table(table)?;
        ScanCursor::open(view, scan)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;
    use std::path::Path;
    use std::sync::Arc;

    use popdb_io::SimFs;

    use super::{Entry, Scan};
    use crate::{Db, DbOptions, Direction, EngineKind, TableOptions, WriteBatch};

    fn db() -> Db {
        let fs = SimFs::new(7);
        let mut options = DbOptions {
            fs: Arc::new(fs),
            background: false,
            reserve_bytes: 64 * 1024,
            ..DbOptions::default()
        };
        options.lsm.memtable_size_max = 2 * 1024;
        options.lsm.l0_compaction_trigger = 2;
        Db::open(Path::new("/db"), options).unwrap()
    }

    fn scans() -> Vec<Scan> {
        let mut scans = Vec::new();
        for direction in [Direction::Forward, Direction::Backward] {
            for limit in [0, 1, 7, 40, usize::MAX] {
                let base = Scan {
                    direction,
                    limit,
                    ..Scan::default()
                };
                scans.push(base.clone());
                scans.push(Scan {
                    prefix: Some(b"k01".to_vec()),
                    ..base.clone()
                });
                scans.push(Scan {
                    lower: Bound::Excluded(b"k050".to_vec()),
                    upper: Bound::Included(b"k120".to_vec()),
                    ..base.clone()
                });
                scans.push(Scan {
                    lower: Bound::Included(b"k150".to_vec()),
                    prefix: Some(b"k1".to_vec()),
                    ..base
                });
            }
        }
        scans
    }

    #[test]
    fn cursor_reads_what_scan_returns_on_both_engines() {
        let db = db();
        for (name, engine) in [("l", EngineKind::Lsm), ("b", EngineKind::Btree)] {
            db.create_table(name, TableOptions::new(engine)).unwrap();
            for round in 0..4u32 {
                let mut batch = WriteBatch::new();
                for i in 0..200u32 {
                    let key = format!("k{i:03}");
                    if (i + round) % 5 == 0 {
                        batch.delete(name, key);
                    } else {
                        batch.put(name, key, format!("v{round}-{i}"));
                    }
                }
                db.write(batch).unwrap();
                if round == 1 {
                    db.checkpoint().unwrap();
                }
            }
        }
        let view = db.read_view().unwrap();
        for name in ["l", "b"] {
            for scan in scans() {
                let expected = view.scan(name, &scan).unwrap();
                assert!(expected.len() <= scan.limit);
                let mut cursor = view.cursor(name, &scan).unwrap();
                let mut read = Vec::new();
                while cursor.valid() {
                    read.push(Entry {
                        key: cursor.key().to_vec(),
                        value: cursor.value().to_vec(),
                        version: cursor.version(),
                    });
                    cursor.next().unwrap();
                }
                cursor.next().unwrap();
                assert!(!cursor.valid());
                assert_eq!(read, expected, "table {name}, {scan:?}");
                let mut value = Vec::new();
                for entry in &expected {
                    let version = view.get_into(name, &entry.key, &mut value).unwrap();
                    assert_eq!(version, Some(entry.version));
                    assert_eq!(value, entry.value);
                }
            }
            let all = view.scan(name, &Scan::all()).unwrap();
            assert_eq!(all.len(), 160, "table {name}");
            let mut value = b"stale".to_vec();
            assert_eq!(view.get_into(name, b"k002", &mut value).unwrap(), None);
        }
    }
}
