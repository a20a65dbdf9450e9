//! The offline verifier: [`check`] walks a Db's files, checksums and invariants and
//! reports everything it found, not only the first problem. Spec of what it verifies:
//! docs/format/layout.md, section 7, "Offline check".
//!
//! It recovers first, like an open: it reads `CURRENT` and the generation's `STATE`, makes
//! sure every table of the last completed checkpoint still has its files (the open refuses
//! a missing directory, and an engine would start empty in a directory that lost its
//! files, so then it stops there and reports it), and opens the Db, which replays the log
//! above the checkpoint and deletes the directories of tables neither live nor dropped
//! within the log. Then it reads, with no background work running: every live log record
//! above the checkpoint, every table forward and backward with a get of every key, and the
//! engines' own invariant checks.
//!
//! Memory is bounded: a scan is compared with its reverse through a count, an
//! order-independent digest and the order of each pass (a strictly descending sequence
//! with the same entries as a strictly ascending one is its reverse), never by holding a
//! table; problems are kept up to [`PROBLEMS_PER_SUBJECT_MAX`] per table and for the log.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use popdb_wal::Lsn;

use crate::db::{Inner, decode_record};
use crate::engine::{Direction, EngineKind, EngineView};
use crate::error::{Error, Result};
use crate::options::DbOptions;
use crate::read::engine_view_at;
use crate::recovery::DbRecovery;
use crate::state_file::{DbState, generation_dir_name, load_current};
use crate::table::TableDesc;
use crate::tables::{Table, open_table, parse_table_dir, table_dir};

/// Problems kept per table (and for the log); past it they are only counted.
const PROBLEMS_PER_SUBJECT_MAX: usize = 16;

/// Log records read per step.
const LOG_CHUNK: u64 = 1024;

/// The file an LSM tree's directory always holds (docs/format/manifest.md).
const LSM_CURRENT_FILE: &str = "CURRENT";

/// What [`check`] found. Its `Display` is a readable multi-line report.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckReport {
    /// The data directory checked.
    pub dir: PathBuf,
    /// The generation `CURRENT` names.
    pub generation: u64,
    /// `STATE` as found, before recovery: the last completed checkpoint's LSN.
    pub checkpoint_lsn: Option<u64>,
    /// `STATE` as found: the tables of the last completed checkpoint.
    pub checkpoint_tables_count: usize,
    /// `STATE` as found: a checkpoint intent (begun, not recorded as done).
    pub intent_lsn: Option<u64>,
    /// `STATE` as found: the LSN lease.
    pub lsn_lease: u64,
    /// What recovery did; `None` if the Db was not opened (a table of the checkpoint has
    /// lost its files: see `problems`).
    pub recovery: Option<DbRecovery>,
    /// The visible LSN after recovery.
    pub visible_lsn: u64,
    /// Live log records above the checkpoint read and decoded.
    pub log_records_count: u64,
    /// The first and last LSN of those records.
    pub log_range: Option<(u64, u64)>,
    /// Per live table, in id order.
    pub tables: Vec<TableCheck>,
    /// Everything wrong, each naming its file or table. Empty: the Db checks clean.
    pub problems: Vec<String>,
}

/// What [`check`] found in one table.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TableCheck {
    /// The table.
    pub desc: TableDesc,
    /// Its directory.
    pub dir: PathBuf,
    /// Live entries its forward scan read.
    pub entries_count: u64,
    /// The engine's one-line summary; `None` if its check failed (see the problems).
    pub engine: Option<String>,
    /// Problems found in it (also in [`CheckReport::problems`]).
    pub problems_count: usize,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Live entries of all tables.
    pub fn entries_count(&self) -> u64 {
        self.tables.iter().map(|t| t.entries_count).sum()
    }
}

/// Checks the Db in `dir` offline: reads `CURRENT` and `STATE`, recovers the Db as
/// [`crate::Db::open`] does (replaying the log, removing the directories of tables neither
/// live nor being dropped; [`CheckReport::recovery`] says what it did), then verifies
/// - every live log record above the checkpoint reads and decodes, at consecutive LSNs;
/// - every table: a forward and a backward scan read the same entries in reverse order,
///   keys strictly ordered, every version at or below the visible LSN and at or above the
///   table's id (the LSN that created it); a get of every key scanned returns the same
///   value and version; the engine's own checks (every page of a B+tree; the levels,
///   memtables and manifest of an LSM tree, whose SSTs the scans read) hold;
/// - the generation holds a directory for every live table and for no other table,
///   except those being dropped.
///
/// Every problem found goes into [`CheckReport::problems`]. `options` are the Db's; its
/// background work does not run during the check. Nothing is created: a directory
/// without `CURRENT` is refused.
///
/// ```
/// # fn main() -> popdb_db::Result<()> {
/// use popdb_db::{Db, DbOptions, EngineKind, TableOptions, WriteBatch, check};
/// # let temp = std::env::temp_dir().join(format!("popdb-doc-check-{}", std::process::id()));
/// let db = Db::open(&temp, DbOptions::default())?;
/// db.create_table("users", TableOptions::new(EngineKind::Btree))?;
/// let mut batch = WriteBatch::new();
/// batch.put("users", "alice", "admin");
/// db.write(batch)?;
/// db.close()?;
///
/// let report = check(&temp, DbOptions::default())?;
/// assert!(report.is_clean(), "{report}");
/// assert_eq!(report.entries_count(), 1);
/// println!("{report}");
/// # std::fs::remove_dir_all(&temp).ok();
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// Only when the Db cannot be opened at all, naming the file: `InvalidArgument` for a
/// directory without `CURRENT`; `CURRENT`'s or `STATE`'s `Corruption` or `Io`; the lock's
/// `Io` (a process has the Db open); the log's errors; an engine's error at open, turned
/// into a `Corruption` naming the table's file when opening that table alone fails too.
///
/// # Panics
/// If an engine's invariant does not hold over data that read clean (a bug, not damage).
pub fn check(dir: &Path, options: DbOptions) -> Result<CheckReport> {
    let options = DbOptions {
        background: false,
        ..options
    };
    let survey = survey(dir, &options)?;
    let done = survey.state.done.as_ref();
    let mut report = CheckReport {
        dir: dir.to_path_buf(),
        generation: survey.generation,
        checkpoint_lsn: done.map(|d| d.lsn),
        checkpoint_tables_count: done.map_or(0, |d| d.tables.len()),
        intent_lsn: survey.state.intent.as_ref().map(|i| i.lsn),
        lsn_lease: survey.state.lsn_lease,
        recovery: None,
        visible_lsn: 0,
        log_records_count: 0,
        log_range: None,
        tables: Vec::new(),
        problems: survey.problems.clone(),
    };
    if !report.problems.is_empty() {
        return Ok(report);
    }
    let (inner, recovery) = match crate::recovery::open(dir, options.clone()) {
        Ok(opened) => opened,
        Err(error) => return Err(attribute(&survey, &options, error)),
    };
    report.visible_lsn = recovery.visible_lsn;
    report.recovery = Some(recovery);
    check_log(&inner, &mut report);
    let (tables, dropped) = {
        let state = inner.apply.lock();
        let dropped: Vec<u64> = state.dropped.iter().map(|&(id, _)| id).collect();
        (Arc::clone(&state.tables), dropped)
    };
    for table in tables.iter() {
        let checked = check_table(&inner.gen_dir, table, report.visible_lsn);
        report.problems.extend(checked.1);
        report.tables.push(checked.0);
    }
    check_table_dirs(&inner, &tables, &dropped, &mut report.problems);
    Ok(report)
}

/// What the files say before anything is opened.
struct Survey {
    generation: u64,
    gen_dir: PathBuf,
    state: DbState,
    /// Tables of the last completed checkpoint whose files are gone.
    problems: Vec<String>,
}

/// Reads `CURRENT` and `STATE` under the Db's lock, and checks that every table of the
/// last completed checkpoint still has its directory and its engine's first file.
fn survey(dir: &Path, options: &DbOptions) -> Result<Survey> {
    let fs = &options.fs;
    let io = |what: &str, path: &Path, e| Error::io(format!("{what} {}", path.display()), e);
    let current = dir.join(crate::state_file::CURRENT_FILE);
    if !fs.exists(&current).map_err(|e| io("stat", &current, e))? {
        return Err(Error::InvalidArgument(format!(
            "{} has no CURRENT: not a PopDB data directory (check creates nothing)",
            dir.display()
        )));
    }
    let _lock = fs.lock_dir(dir).map_err(|e| io("lock", dir, e))?;
    let generation = load_current(&**fs, dir)?.ok_or_else(|| {
        Error::corruption(current.display().to_string(), "it vanished while read")
    })?;
    let gen_dir = dir.join(generation_dir_name(generation));
    if !fs.exists(&gen_dir).map_err(|e| io("stat", &gen_dir, e))? {
        return Err(Error::corruption(
            current.display().to_string(),
            format!("it names generation {generation}, whose directory is missing"),
        ));
    }
    let state = DbState::load(&**fs, &gen_dir)?.unwrap_or_default();
    let mut problems = Vec::new();
    if let Some(done) = &state.done {
        for desc in &done.tables {
            let file = first_file(&gen_dir, desc);
            if !fs.exists(&file).map_err(|e| io("stat", &file, e))? {
                problems.push(format!(
                    "table {} (id {}, {:?}) of the checkpoint at LSN {}: {} is missing, \
                     though the table's files held every write through that LSN; the Db was \
                     not opened",
                    desc.name,
                    desc.id,
                    desc.options.engine,
                    done.lsn,
                    file.display()
                ));
            }
        }
    }
    Ok(Survey {
        generation,
        gen_dir,
        state,
        problems,
    })
}

/// The file a table's engine always holds: the B+tree's one file, the LSM tree's
/// `CURRENT`.
fn first_file(gen_dir: &Path, desc: &TableDesc) -> PathBuf {
    let dir = table_dir(gen_dir, desc.id);
    match desc.options.engine {
        EngineKind::Btree => dir.join(popdb_btree::FILE_NAME),
        EngineKind::Lsm => dir.join(LSM_CURRENT_FILE),
    }
}

/// The Db did not open with `error`. An engine's error names a page or an SST but not its
/// table: each table of the last completed checkpoint is then opened alone and checked,
/// and the first that fails is named. Other errors already name their file.
fn attribute(survey: &Survey, options: &DbOptions, error: Error) -> Error {
    if !is_engine_error(&error) {
        return error;
    }
    let Some(done) = &survey.state.done else {
        return error;
    };
    let Some(dir) = survey.gen_dir.parent() else {
        return error;
    };
    let Ok(_lock) = options.fs.lock_dir(dir) else {
        return error;
    };
    let block_cache = popdb_lsm::BlockCache::new(options.block_cache_bytes);
    for desc in &done.tables {
        let probe = open_table(
            &options.fs,
            &survey.gen_dir,
            desc.clone(),
            options,
            &block_cache,
        )
        .and_then(|table| {
            table.engine.check()?;
            let view = table.engine.read_view();
            scan_all(view.as_ref())
        });
        if let Err(probe) = probe {
            let file = match desc.options.engine {
                EngineKind::Btree => first_file(&survey.gen_dir, desc),
                EngineKind::Lsm => table_dir(&survey.gen_dir, desc.id),
            };
            return Error::corruption(
                file.display().to_string(),
                format!(
                    "the Db does not open ({error}); table {} opened alone: {}",
                    desc.name,
                    describe(&probe, &table_dir(&survey.gen_dir, desc.id))
                ),
            );
        }
    }
    error
}

/// Whether `error` is an engine's, or poisoned the Db (a failed replay does) with one.
fn is_engine_error(error: &Error) -> bool {
    match error {
        Error::Lsm(_) | Error::Btree(_) => true,
        Error::Poisoned { cause } => is_engine_error(cause),
        _ => false,
    }
}

/// Reads every entry of `view` forward.
fn scan_all(view: &dyn EngineView) -> Result<()> {
    let mut cursor = view.scan(Bound::Unbounded, Bound::Unbounded, Direction::Forward)?;
    while cursor.valid() {
        cursor.next()?;
    }
    Ok(())
}

/// Problems of one subject (a table, the log), kept up to [`PROBLEMS_PER_SUBJECT_MAX`].
struct Problems {
    subject: String,
    kept: Vec<String>,
    count: usize,
}

impl Problems {
    fn new(subject: String) -> Self {
        Self {
            subject,
            kept: Vec::new(),
            count: 0,
        }
    }

    fn push(&mut self, what: impl fmt::Display) {
        self.count += 1;
        if self.kept.len() < PROBLEMS_PER_SUBJECT_MAX {
            self.kept.push(format!("{}: {what}", self.subject));
        }
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.count > self.kept.len() {
            let more = self.count - self.kept.len();
            self.kept
                .push(format!("{}: {more} more problems not listed", self.subject));
        }
        self.kept
    }
}

/// Reads every live log record above the last completed checkpoint.
fn check_log(inner: &Inner, report: &mut CheckReport) {
    let mut problems = Problems::new(format!(
        "the log ({})",
        inner.dir.join(crate::recovery::WAL_DIR).display()
    ));
    let checkpoint = inner.stored.lock().done.as_ref().map_or(0, |d| d.lsn);
    let purged = inner.wal.last_purged().map_or(0, |p| p.lsn.0);
    let mut at = checkpoint.max(purged) + 1;
    let end = inner.wal.next_lsn().0;
    'chunks: while at < end {
        let to = end.min(at.saturating_add(LOG_CHUNK));
        let records = match inner.wal.read(Lsn(at)..Lsn(to)) {
            Ok(records) => records,
            Err(error) => {
                problems.push(format_args!("reading LSNs {at}..{to}: {error}"));
                break 'chunks;
            }
        };
        let mut expected = at;
        for record in records {
            let lsn = record.id.lsn.0;
            if lsn != expected {
                problems.push(format_args!("record {lsn} where {expected} was due"));
            }
            if let Err(error) = decode_record(lsn, record.kind, &record.payload) {
                problems.push(error);
            }
            report.log_records_count += 1;
            report.log_range = Some((report.log_range.map_or(lsn, |(first, _)| first), lsn));
            expected = lsn + 1;
        }
        if expected != to {
            problems.push(format_args!("LSNs {expected}..{to} are missing"));
        }
        at = to;
    }
    report.problems.extend(problems.into_vec());
}

/// One pass over a table: how many entries, and a digest of them that ignores their order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pass {
    count: u64,
    sum: u64,
    xor: u64,
}

impl Pass {
    fn add(&mut self, key: &[u8], value: &[u8], version: u64) {
        let mut hasher = DefaultHasher::new();
        (key, value, version).hash(&mut hasher);
        let hash = hasher.finish();
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
        self.xor ^= hash;
    }
}

/// Checks one table; returns what it found and its problems.
fn check_table(gen_dir: &Path, table: &Table, visible: u64) -> (TableCheck, Vec<String>) {
    let desc = &table.desc;
    let dir = table_dir(gen_dir, desc.id);
    let mut problems = Problems::new(format!(
        "table {} (id {}, {:?}, {})",
        desc.name,
        desc.id,
        desc.options.engine,
        dir.display()
    ));
    let entries_count = match engine_view_at(table.engine.as_ref(), visible) {
        Ok(Some(view)) => check_scans(view.as_ref(), &dir, desc.id, visible, &mut problems),
        Ok(None) => {
            problems.push(format_args!("no read view at the visible LSN {visible}"));
            0
        }
        Err(error) => {
            problems.push(format_args!("read view: {}", describe(&error, &dir)));
            0
        }
    };
    let engine = table
        .engine
        .check()
        .map_err(|e| problems.push(format_args!("engine check: {}", describe(&e, &dir))))
        .ok();
    let checked = TableCheck {
        desc: desc.clone(),
        dir,
        entries_count,
        engine,
        problems_count: problems.count,
    };
    (checked, problems.into_vec())
}

/// Scans `view` forward and backward and compares the two; returns the entries the
/// forward scan read.
fn check_scans(
    view: &dyn EngineView,
    dir: &Path,
    table_id: u64,
    visible: u64,
    problems: &mut Problems,
) -> u64 {
    let passes = [Direction::Forward, Direction::Backward].map(|direction| {
        let scan = Scan {
            view,
            direction,
            dir,
            table_id,
            visible,
        };
        scan.pass(problems)
            .map_err(|error| {
                problems.push(format_args!(
                    "{direction:?} scan: {}",
                    describe(&error, dir)
                ));
            })
            .ok()
    });
    let [forward, backward] = passes;
    if let (Some(forward), Some(backward)) = (forward, backward)
        && forward != backward
    {
        problems.push(format_args!(
            "the backward scan read {} entries, the forward {}, or other ones",
            backward.count, forward.count
        ));
    }
    forward.map_or(0, |pass| pass.count)
}

/// `error`, with the path of the SST an LSM corruption names by id.
fn describe(error: &Error, dir: &Path) -> String {
    match error {
        Error::Lsm(popdb_lsm::Error::Corruption(popdb_lsm::Corruption {
            file_id: Some(id),
            ..
        })) => format!(
            "{error} (in {})",
            dir.join(format!("{id:016x}.sst")).display()
        ),
        _ => error.to_string(),
    }
}

/// One whole scan of a table's view.
struct Scan<'a> {
    view: &'a dyn EngineView,
    direction: Direction,
    dir: &'a Path,
    table_id: u64,
    visible: u64,
}

impl Scan<'_> {
    /// Scans the view whole: keys strictly ordered and, forward, versions from `table_id`
    /// through `visible` and a get of every key agreeing; what is wrong goes into
    /// `problems`. `Err` if the scan itself failed.
    fn pass(&self, problems: &mut Problems) -> Result<Pass> {
        let (direction, table_id, visible) = (self.direction, self.table_id, self.visible);
        let mut pass = Pass::default();
        let mut previous: Option<Vec<u8>> = None;
        let mut value = Vec::new();
        let mut cursor = self
            .view
            .scan(Bound::Unbounded, Bound::Unbounded, direction)?;
        while cursor.valid() {
            let (key, version) = (cursor.key(), cursor.version());
            pass.add(key, cursor.value(), version);
            if let Some(previous) = &previous {
                let ordered = match direction {
                    Direction::Forward => previous.as_slice() < key,
                    Direction::Backward => previous.as_slice() > key,
                };
                if !ordered {
                    problems.push(format_args!(
                        "{direction:?} scan: key \"{}\" after \"{}\"",
                        key.escape_ascii(),
                        previous.escape_ascii()
                    ));
                }
            }
            // Checked once, in the forward pass; the backward pass agrees with it through
            // the digest.
            if direction == Direction::Forward {
                if version > visible || version < table_id {
                    problems.push(format_args!(
                        "key \"{}\" has version {version}, outside [{table_id}, {visible}]",
                        key.escape_ascii()
                    ));
                }
                match self.view.get_into(key, &mut value) {
                    Ok(Some(got)) if got == version && value == cursor.value() => {}
                    Ok(got) => problems.push(format_args!(
                        "get of key \"{}\" returned version {got:?}, the scan {version}, or \
                         another value",
                        key.escape_ascii()
                    )),
                    Err(error) => problems.push(format_args!(
                        "get of key \"{}\": {}",
                        key.escape_ascii(),
                        describe(&error, self.dir)
                    )),
                }
            }
            previous = Some(key.to_vec());
            cursor.next()?;
        }
        Ok(pass)
    }
}

/// The generation must hold a directory for every live table and for no other table
/// except those being dropped (recovery removed the rest).
fn check_table_dirs(
    inner: &Inner,
    tables: &crate::tables::Tables,
    dropped: &[u64],
    problems: &mut Vec<String>,
) {
    let listed = match inner.fs.read_dir(&inner.gen_dir) {
        Ok(listed) => listed,
        Err(error) => {
            problems.push(format!("listing {}: {error}", inner.gen_dir.display()));
            return;
        }
    };
    let ids: Vec<u64> = listed
        .iter()
        .filter_map(|name| name.to_str().and_then(parse_table_dir))
        .collect();
    for &id in &ids {
        if tables.by_id(id).is_none() && !dropped.contains(&id) {
            problems.push(format!(
                "{}: the directory of no live table, nor of one being dropped",
                table_dir(&inner.gen_dir, id).display()
            ));
        }
    }
    for table in tables.iter() {
        if !ids.contains(&table.desc.id) {
            problems.push(format!(
                "table {} (id {}): its directory {} is missing",
                table.desc.name,
                table.desc.id,
                table_dir(&inner.gen_dir, table.desc.id).display()
            ));
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "PopDB check of {}", self.dir.display())?;
        writeln!(f, "  CURRENT: generation {}", self.generation)?;
        match self.checkpoint_lsn {
            Some(lsn) => write!(
                f,
                "  STATE: checkpoint at LSN {lsn} ({} tables)",
                self.checkpoint_tables_count
            )?,
            None => write!(f, "  STATE: no checkpoint yet")?,
        }
        match self.intent_lsn {
            Some(lsn) => write!(f, ", checkpoint intent at LSN {lsn}")?,
            None => write!(f, ", no intent")?,
        }
        writeln!(f, ", LSN lease {}", self.lsn_lease)?;
        match &self.recovery {
            Some(r) => write_recovery(f, r)?,
            None => writeln!(f, "  recovery: not run, the Db was not opened")?,
        }
        match self.log_range {
            Some((first, last)) => writeln!(
                f,
                "  log: {} records above the checkpoint read (LSN {first}..={last})",
                self.log_records_count
            )?,
            None => writeln!(f, "  log: no records above the checkpoint")?,
        }
        writeln!(
            f,
            "  tables: {}, {} entries",
            self.tables.len(),
            self.entries_count()
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "    {} (id {}, {:?}): {} entries; {}",
                t.desc.name,
                t.desc.id,
                t.desc.options.engine,
                t.entries_count,
                t.engine.as_deref().unwrap_or("engine check failed")
            )?;
        }
        if self.problems.is_empty() {
            return writeln!(f, "  problems: none");
        }
        writeln!(f, "  problems: {}", self.problems.len())?;
        for problem in &self.problems {
            writeln!(f, "    - {problem}")?;
        }
        Ok(())
    }
}

fn write_recovery(f: &mut fmt::Formatter<'_>, r: &DbRecovery) -> fmt::Result {
    write!(f, "  recovery: replayed {} records", r.records_replayed)?;
    if let Some((first, last)) = r.replayed {
        write!(f, " (LSN {first}..={last})")?;
    }
    write!(f, ", visible LSN {}", r.visible_lsn)?;
    if let Some(torn) = &r.wal.torn_tail {
        write!(f, "; the log's torn tail in {} removed", torn.segment)?;
    }
    if !r.wal.files_cleaned.is_empty() {
        write!(f, "; log files cleaned: {}", r.wal.files_cleaned.join(", "))?;
    }
    if !r.table_dirs_removed.is_empty() {
        let ids: Vec<String> = r
            .table_dirs_removed
            .iter()
            .map(|id| format!("t-{id:016x}"))
            .collect();
        write!(
            f,
            "; directories of tables neither live nor being dropped removed: {}",
            ids.join(", ")
        )?;
    }
    if let Some(lsn) = r.log_skipped_to {
        write!(f, "; the log moved past LSN {lsn}")?;
    }
    writeln!(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;
    use crate::engine::Cursor;

    /// Canaries: a view whose scans and gets disagree in the ways the check looks for.
    /// If the check stops finding them, it is broken.
    struct BrokenView {
        /// Sorted (key, value, version).
        entries: Vec<(Vec<u8>, Vec<u8>, u64)>,
        /// The backward scan skips this index.
        backward_skips: Option<usize>,
        /// Gets of this key report another version.
        get_lies_about: Option<Vec<u8>>,
    }

    struct VecCursor(Vec<(Vec<u8>, Vec<u8>, u64)>);

    impl Cursor for VecCursor {
        fn valid(&self) -> bool {
            !self.0.is_empty()
        }
        fn key(&self) -> &[u8] {
            &self.0[0].0
        }
        fn value(&self) -> &[u8] {
            &self.0[0].1
        }
        fn version(&self) -> u64 {
            self.0[0].2
        }
        fn next(&mut self) -> Result<()> {
            self.0.remove(0);
            Ok(())
        }
    }

    impl EngineView for BrokenView {
        fn lsn(&self) -> Option<u64> {
            self.entries.iter().map(|e| e.2).max()
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn get_into(&self, key: &[u8], value: &mut Vec<u8>) -> Result<Option<u64>> {
            let Some(entry) = self.entries.iter().find(|e| e.0 == key) else {
                return Ok(None);
            };
            value.clone_from(&entry.1);
            let lies = self.get_lies_about.as_deref() == Some(key);
            Ok(Some(entry.2 + u64::from(lies)))
        }
        fn scan(
            &self,
            _lower: Bound<&[u8]>,
            _upper: Bound<&[u8]>,
            direction: Direction,
        ) -> Result<Box<dyn Cursor + '_>> {
            let mut entries = self.entries.clone();
            if direction == Direction::Backward {
                if let Some(skip) = self.backward_skips {
                    entries.remove(skip);
                }
                entries.reverse();
            }
            Ok(Box::new(VecCursor(entries)))
        }
    }

    fn view(versions: &[u64]) -> BrokenView {
        BrokenView {
            entries: versions
                .iter()
                .enumerate()
                .map(|(i, &v)| (format!("k{i}").into_bytes(), b"v".to_vec(), v))
                .collect(),
            backward_skips: None,
            get_lies_about: None,
        }
    }

    fn run(view: &BrokenView, table_id: u64, visible: u64) -> (u64, Vec<String>) {
        let mut problems = Problems::new("t".to_string());
        let count = check_scans(view, Path::new("/t"), table_id, visible, &mut problems);
        (count, problems.into_vec())
    }

    #[test]
    fn check_scans_sound_view_has_no_problem() {
        assert_eq!(run(&view(&[3, 4, 5]), 2, 5), (3, Vec::new()));
    }

    #[test]
    fn check_scans_canary_backward_scan_missing_an_entry_is_found() {
        let mut broken = view(&[3, 4, 5]);
        broken.backward_skips = Some(1);
        let (count, problems) = run(&broken, 2, 5);
        assert_eq!(count, 3);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("backward scan read 2"), "{problems:?}");
    }

    #[test]
    fn check_scans_canary_versions_out_of_range_are_found() {
        // One older than the table, one newer than the visible LSN.
        let (_, problems) = run(&view(&[1, 4, 9]), 2, 5);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("outside [2, 5]")));
    }

    #[test]
    fn check_scans_canary_get_disagreeing_with_the_scan_is_found() {
        let mut broken = view(&[3, 4, 5]);
        broken.get_lies_about = Some(b"k2".to_vec());
        let (_, problems) = run(&broken, 2, 5);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("get of key \"k2\""), "{problems:?}");
    }

    #[test]
    fn check_scans_canary_keys_out_of_order_are_found() {
        let mut broken = view(&[3, 4, 5]);
        broken.entries.swap(0, 1);
        let (_, problems) = run(&broken, 2, 5);
        // Each pass sees one inversion.
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("after")), "{problems:?}");
    }

    #[test]
    fn problems_past_the_cap_are_counted_not_kept() {
        let mut problems = Problems::new("t".to_string());
        for i in 0..PROBLEMS_PER_SUBJECT_MAX + 5 {
            problems.push(i);
        }
        let kept = problems.into_vec();
        assert_eq!(kept.len(), PROBLEMS_PER_SUBJECT_MAX + 1);
        assert_eq!(kept.last().unwrap(), "t: 5 more problems not listed");
    }
}
