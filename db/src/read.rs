//! Reads: point gets and range scans on one table, and read views across every table at
//! one LSN. Every read is taken at the published visible LSN, so a record that spans
//! tables is seen whole or not at all.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::engine::{Direction, Engine, EngineView};
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

/// Reads up to `scan.limit` entries of `view`.
pub(crate) fn scan_view(view: &dyn EngineView, scan: &Scan) -> Result<Vec<Entry>> {
    let (lower, upper) = scan.bounds();
    let mut entries = Vec::new();
    if scan.limit == 0 {
        return Ok(entries);
    }
    let mut cursor = view.scan(
        lower.as_ref().map(Vec::as_slice),
        upper.as_ref().map(Vec::as_slice),
        scan.direction,
    )?;
    while cursor.valid() && entries.len() < scan.limit {
        entries.push(Entry {
            key: cursor.key().to_vec(),
            value: cursor.value().to_vec(),
            version: cursor.version(),
        });
        cursor.next()?;
    }
    Ok(entries)
}

/// A consistent view of every table at one LSN: everything applied through it, nothing
/// after. Writes go on meanwhile; the view pins what it reads.
pub struct ReadView {
    lsn: u64,
    tables: Arc<Tables>,
    views: HashMap<u64, Box<dyn EngineView>>,
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
        let mut views = HashMap::with_capacity(tables.len());
        for table in tables.iter() {
            match engine_view_at(table.engine.as_ref(), lsn)? {
                Some(view) => views.insert(table.desc.id, view),
                None => return Ok(None),
            };
        }
        Ok(Some(ReadView { lsn, tables, views }))
    }

    /// The LSN the view reads at (0 for an empty Db).
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    fn table(&self, name: &str) -> Result<(&Arc<Table>, &dyn EngineView)> {
        let table = self
            .tables
            .by_name(name)
            .ok_or_else(|| Error::UnknownTable(name.to_string()))?;
        let view = self.views.get(&table.desc.id).expect("a view per table");
        Ok((table, view.as_ref()))
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

    /// The entries of `table` that `scan` covers.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn scan(&self, table: &str, scan: &Scan) -> Result<Vec<Entry>> {
        let (_, view) = self.table(table)?;
        scan_view(view, scan)
    }
}
