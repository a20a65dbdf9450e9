//! Opening a Db: the directory, its lock, the live generation, the state file, the log,
//! the tables of the last completed checkpoint, and the replay of the log above it through
//! the same apply stage as every write. Spec: DESIGN.md "Checkpoints and recovery" and
//! docs/format/layout.md.
//!
//! Steps, in order:
//! 1. Create the directory if missing and take its lock.
//! 2. Read `CURRENT` (a new Db points it at generation 1) and the generation's `STATE`.
//! 3. Open the log (it truncates a torn tail and says which LSNs it lost).
//! 4. Open every table of the last completed checkpoint.
//! 5. Replay the log from just above the checkpoint. Tables skip records at or below their
//!    own watermark; inside a checkpoint intent's window, a write's decision is the
//!    intent's (its abort list), since some tables may already hold later writes.
//!    Then delete the directories of tables neither live nor dropped within the replayed
//!    log.
//! 6. If the log would hand out an LSN a reader may have seen (the LSN lease, a table's
//!    watermark), checkpoint and move the log past it.
//!
//! Replay changes nothing a second replay would not redo the same way, so a crash during
//! recovery is harmless.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use popdb_io::{FsRef, create_dir_durably};
use popdb_wal::{LogId, Lsn, NodeId, RecoveryReport, SyncPolicy, Term, Wal};

use crate::apply::{ApplyState, Window};
use crate::db::{Inner, decode_record, remove_dir_all, remove_table_dir};
use crate::error::{Error, Result};
use crate::idempotency::Idempotency;
use crate::options::DbOptions;
use crate::state_file::{
    CURRENT_FILE, CURRENT_TEMP_FILE, DbState, STATE_FILE, STATE_TEMP_FILE, decode_current,
    generation_dir_name, load_current, store_current,
};
use crate::tables::{Tables, open_table, parse_table_dir, table_dir};

/// The log's directory inside the data directory.
pub(crate) const WAL_DIR: &str = "wal";

/// The file that holds space back, so that a checkpoint can still run when the disk fills.
pub(crate) const RESERVE_FILE: &str = "RESERVE";

/// Records read from the log per step of the replay.
const REPLAY_CHUNK: u64 = 1024;

/// What opening a Db found and did.
#[derive(Clone, Debug)]
pub struct DbRecovery {
    /// The log's recovery: segments read, the torn tail removed (with the LSNs it lost).
    pub wal: RecoveryReport,
    /// The generation opened.
    pub generation: u64,
    /// The last completed checkpoint replay started above.
    pub checkpoint_lsn: Option<u64>,
    /// A checkpoint intent found (begun, not recorded as done).
    pub intent_lsn: Option<u64>,
    /// Records replayed from the log.
    pub records_replayed: u64,
    /// The first and last LSN replayed.
    pub replayed: Option<(u64, u64)>,
    /// Directories of dropped tables (or of tables whose creation a crash took) deleted.
    pub table_dirs_removed: Vec<u64>,
    /// The log was moved past this LSN (the lease of a run whose unsynced tail was lost).
    pub log_skipped_to: Option<u64>,
    /// The visible LSN after recovery.
    pub visible_lsn: u64,
    /// Time taken.
    pub elapsed: Duration,
}

pub(crate) fn open(dir: &Path, options: DbOptions) -> Result<(Arc<Inner>, DbRecovery)> {
    let started = options.clock.now();
    let fs = Arc::clone(&options.fs);
    let io = |what: &str, e| Error::io(format!("{what} {}", dir.display()), e);
    create_dir_durably(&*fs, dir).map_err(|e| io("create", e))?;
    let lock = fs.lock_dir(dir).map_err(|e| io("lock", e))?;
    // The reserve goes first: recovery may need the space it held.
    let reserve_path = dir.join(RESERVE_FILE);
    if fs
        .exists(&reserve_path)
        .map_err(|e| io("stat the reserve in", e))?
    {
        fs.remove_file(&reserve_path)
            .map_err(|e| io("remove the reserve in", e))?;
    }

    let wal_dir = dir.join(WAL_DIR);
    let had_wal = fs.exists(&wal_dir).map_err(|e| io("stat the log in", e))?;
    // Each write says whether it needs a sync; `Always` only governs requests that do not.
    let wal_options = popdb_wal::WalOptions {
        sync: SyncPolicy::Always,
        clock: Arc::clone(&options.clock),
        ..options.wal.clone()
    };
    let (wal, wal_report) = Wal::open(Arc::clone(&fs), &wal_dir, wal_options)?;

    let generation = if let Some(generation) = load_current(&*fs, dir)? {
        generation
    } else {
        if had_wal && wal.last_log_id().is_some() {
            return Err(Error::corruption(
                CURRENT_FILE,
                "missing, while the log holds records: the log has no state to replay onto",
            ));
        }
        // A new Db, or one whose creation was cut short (it logs nothing before CURRENT).
        remove_generations(&fs, dir, None)?;
        let generation = 1;
        let gen_dir = dir.join(generation_dir_name(generation));
        create_dir_durably(&*fs, &gen_dir).map_err(|e| io("create generation in", e))?;
        DbState::default().store(&*fs, &gen_dir)?;
        store_current(&*fs, dir, generation)?;
        generation
    };
    let gen_dir = dir.join(generation_dir_name(generation));
    let Some(stored) = DbState::load(&*fs, &gen_dir)? else {
        return Err(Error::corruption(
            format!("{}/{STATE_FILE}", generation_dir_name(generation)),
            format!("missing: CURRENT names generation {generation}"),
        ));
    };
    remove_generations(&fs, dir, Some(generation))?;
    for debris in [dir.join(CURRENT_TEMP_FILE), gen_dir.join(STATE_TEMP_FILE)] {
        if fs.exists(&debris).map_err(|e| io("stat debris in", e))? {
            fs.remove_file(&debris)
                .map_err(|e| io("remove debris in", e))?;
        }
    }
    fs.sync_dir(dir).map_err(|e| io("sync", e))?;

    let base = stored.done.clone().unwrap_or_default();
    let block_cache = popdb_lsm::BlockCache::new(options.block_cache_bytes);
    let mut tables = Tables::default();
    for desc in &base.tables {
        let table_dir = table_dir(&gen_dir, desc.id);
        if !fs
            .exists(&table_dir)
            .map_err(|e| io("stat a table in", e))?
        {
            return Err(Error::corruption(
                table_dir.display().to_string(),
                format!(
                    "missing: table {:?} (id {}) is in the checkpoint at LSN {}",
                    desc.name, desc.id, base.lsn
                ),
            ));
        }
        tables.insert(open_table(
            &fs,
            &gen_dir,
            desc.clone(),
            &options,
            &block_cache,
        )?);
    }
    check_tables_hold_checkpoint(&tables, &gen_dir, base.lsn)?;
    // The log must hold every record above the checkpoint.
    let purged = wal.last_purged().map_or(0, |p| p.lsn.0);
    let first = wal_report.first.map_or(wal.next_lsn().0, |lsn| lsn.0);
    if purged < base.lsn && first > base.lsn + 1 {
        return Err(Error::corruption(
            WAL_DIR,
            format!(
                "the log starts at LSN {first} (purged through {purged}), but the last \
                 checkpoint is at {}: records in between are missing",
                base.lsn
            ),
        ));
    }
    let watermark_max = tables
        .iter()
        .filter_map(|t| t.engine.watermark())
        .max()
        .unwrap_or(0);

    let window = stored
        .intent
        .as_ref()
        .filter(|intent| intent.lsn > base.lsn)
        .map(|intent| Window {
            to: intent.lsn,
            aborts: intent.aborts.iter().copied().collect::<HashSet<u64>>(),
            idempotency: intent.idempotency.clone(),
        });
    let intent_lsn = window.as_ref().map(|w| w.to);
    let stored_intent = stored.intent.as_ref().map_or(0, |i| i.lsn);
    let apply = ApplyState {
        last: base.lsn,
        tables: Arc::new(tables),
        idempotency: Idempotency::from_entries(&base.idempotency),
        aborts: Vec::new(),
        dropped: Vec::new(),
        window,
        full_freeze: false,
    };
    let lease = stored.lsn_lease;
    let checkpoint_lsn = stored.done.as_ref().map(|d| d.lsn);
    let inner = Arc::new(Inner::new(
        Arc::clone(&fs),
        dir.to_path_buf(),
        gen_dir,
        options,
        wal,
        block_cache,
        apply,
        stored,
        lock,
    ));

    // Replay.
    let mut at = base.lsn.max(purged) + 1;
    let end = inner.wal.next_lsn().0;
    let mut replayed = None;
    let mut records_replayed = 0;
    while at < end {
        let to = end.min(at.saturating_add(REPLAY_CHUNK));
        for record in inner.wal.read(Lsn(at)..Lsn(to))? {
            let lsn = record.id.lsn.0;
            let decoded = decode_record(lsn, record.kind, &record.payload)?;
            inner
                .apply_one(lsn, decoded.as_ref(), true)
                .map_err(|error| match error {
                    // An open reports what failed, not that the half-open Db refuses writes.
                    Error::Poisoned { cause } => Error::clone(&cause),
                    error => error,
                })?;
            records_replayed += 1;
            replayed = Some((replayed.map_or(lsn, |(first, _)| first), lsn));
        }
        at = to;
    }
    // Directories of tables that are neither live nor dropped within the log still held:
    // dropped at or below the checkpoint, or created by a record a crash took.
    let mut table_dirs_removed = Vec::new();
    {
        let state = inner.apply.lock();
        let entries = fs
            .read_dir(&inner.gen_dir)
            .map_err(|e| io("list generation in", e))?;
        for name in entries {
            let Some(id) = name.to_str().and_then(parse_table_dir) else {
                continue;
            };
            let pending = state.dropped.iter().any(|&(dropped, _)| dropped == id);
            if state.tables.by_id(id).is_none() && !pending {
                remove_table_dir(&fs, &inner.gen_dir, id)?;
                table_dirs_removed.push(id);
            }
        }
    }
    // An intent whose window the log does not reach never got past its log sync: no
    // table passed the last completed checkpoint for it.
    inner.apply.lock().window = None;

    // Never hand out an LSN a reader may have seen.
    let floor = lease
        .max(watermark_max)
        .max(base.lsn)
        .max(stored_intent)
        .max(inner.wal.last_purged().map_or(0, |p| p.lsn.0));
    let mut log_skipped_to = None;
    if inner.wal.next_lsn().0 <= floor {
        inner.checkpoint()?;
        inner.wal.purge(LogId {
            lsn: Lsn(floor),
            term: Term(0),
            node: NodeId(0),
        })?;
        log_skipped_to = Some(floor);
    }

    inner.take_reserve(&reserve_path);

    let visible_lsn = inner.apply.lock().last;
    let recovery = DbRecovery {
        wal: wal_report,
        generation,
        checkpoint_lsn,
        intent_lsn,
        records_replayed,
        replayed,
        table_dirs_removed,
        log_skipped_to,
        visible_lsn,
        elapsed: inner.options.clock.now().saturating_sub(started),
    };
    Ok((inner, recovery))
}

/// Deletes every generation directory of `dir` but `keep`.
/// Every table of the last completed checkpoint holds it: the checkpoint was recorded done
/// only after each table (idle ones too) had checkpointed at `lsn`. A table that opens
/// below it (a B+tree that fell back to its older meta because the newer one read as
/// damaged, an LSM tree whose newest manifest edit is gone) would silently miss the writes
/// in between, since the replay starts above the checkpoint and the log through it may be
/// purged: refuse the open and name the table instead.
fn check_tables_hold_checkpoint(tables: &Tables, gen_dir: &Path, lsn: u64) -> Result<()> {
    if lsn == 0 {
        return Ok(());
    }
    for table in tables.iter() {
        let watermark = table.engine.watermark();
        if watermark.is_none_or(|w| w < lsn) {
            return Err(Error::corruption(
                table_dir(gen_dir, table.desc.id).display().to_string(),
                format!(
                    "table {:?} (id {}) holds writes through LSN {}, below the last \
                     checkpoint at LSN {lsn}: its newest checkpoint is damaged or lost",
                    table.desc.name,
                    table.desc.id,
                    watermark.map_or_else(|| "none".to_string(), |w| w.to_string()),
                ),
            ));
        }
    }
    Ok(())
}

fn remove_generations(fs: &FsRef, dir: &Path, keep: Option<u64>) -> Result<()> {
    let entries = fs
        .read_dir(dir)
        .map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    for name in entries {
        let Some(name) = name.to_str() else {
            continue;
        };
        let Ok(generation) = decode_current(format!("{name}\n").as_bytes()) else {
            continue;
        };
        if Some(generation) != keep {
            remove_dir_all(fs, &dir.join(name))?;
        }
    }
    Ok(())
}
