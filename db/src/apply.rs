//! The apply stage: one function that applies one log record to the tables, strictly in
//! LSN order. The embedded write path (after the log made the record durable), recovery's
//! replay and [`crate::Db::apply_logged`] (the Raft layer's state machine) all go through
//! [`apply_record`], so they cannot decide differently.
//!
//! A write record is validated against the state just before it: every table it names must
//! exist and every condition must hold; otherwise it applies as an abort (nothing written).
//! Inside a checkpoint intent's window (recovery only), the decision comes from the
//! intent's abort list instead, because some tables may already hold later writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use popdb_io::FsRef;

use crate::engine::{EngineView, Write};
use crate::error::{Error, Result};
use crate::idempotency::Idempotency;
use crate::limits::TABLES_MAX;
use crate::options::DbOptions;
use crate::outcome::Outcome;
use crate::record::{Check, IdempotencyKey, RecordRef, WriteRef};
use crate::table::{TableDesc, validate_name};
use crate::tables::{Tables, open_table};

/// What applying one record did.
#[derive(Clone, Debug)]
pub enum Applied {
    /// A write record: committed, or aborted and why (for a resent idempotency key, the
    /// first commit's outcome: nothing was applied again).
    Write(Outcome),
    /// A table was created.
    TableCreated(TableDesc),
    /// A table was dropped.
    TableDropped(TableDesc),
    /// A catalog change was refused (the name exists, the table is unknown, a limit):
    /// nothing changed.
    Refused(Error),
    /// A record that is not the Db's (Raft's blank and membership entries): only the LSN
    /// moved.
    Skipped,
}

/// The state the apply stage owns. Changed only by [`apply_record`], under the Db's apply
/// lock.
#[derive(Debug, Default)]
pub(crate) struct ApplyState {
    /// The last LSN applied: the visible LSN.
    pub(crate) last: u64,
    /// The live tables.
    pub(crate) tables: Arc<Tables>,
    pub(crate) idempotency: Idempotency,
    /// The write records that aborted since the last completed checkpoint, ascending.
    pub(crate) aborts: Vec<u64>,
    /// Dropped tables whose files stay until a checkpoint at or above the drop completes:
    /// (id, LSN of the drop).
    pub(crate) dropped: Vec<(u64, u64)>,
    /// Recovery only: the window of a checkpoint intent, whose decisions are recorded.
    pub(crate) window: Option<Window>,
    /// Set when the last record applied froze a table's full memtable
    /// ([`crate::engine::Engine::take_full_freeze`]); the Db takes it after each record.
    pub(crate) full_freeze: bool,
}

/// A checkpoint intent's window, (last completed checkpoint, `to`].
#[derive(Debug)]
pub(crate) struct Window {
    pub(crate) to: u64,
    pub(crate) aborts: HashSet<u64>,
    /// The idempotency keys as of `to`, which replace the replayed ones at its end.
    pub(crate) idempotency: Vec<(IdempotencyKey, Outcome)>,
}

/// What applying needs from the Db besides its state.
pub(crate) struct ApplyEnv<'a> {
    pub(crate) fs: &'a FsRef,
    pub(crate) gen_dir: &'a Path,
    pub(crate) options: &'a DbOptions,
    pub(crate) block_cache: &'a Arc<popdb_lsm::BlockCache>,
    /// The log is durable through this LSN.
    pub(crate) durable_lsn: u64,
}

/// Applies the record at `lsn` (`None`: not a Db record) on top of `state`.
///
/// # Errors
/// An engine's failure to apply or a table's failure to open. The tables may then hold
/// part of the record: the caller must stop applying (the Db poisons itself).
pub(crate) fn apply_record(
    env: &ApplyEnv<'_>,
    state: &mut ApplyState,
    lsn: u64,
    record: Option<&RecordRef<'_>>,
) -> Result<Applied> {
    assert!(
        lsn > state.last,
        "records are applied in LSN order: {lsn} after {}",
        state.last
    );
    if state.window.as_ref().is_some_and(|w| lsn > w.to) {
        close_window(state);
    }
    let applied = match record {
        None => Applied::Skipped,
        Some(RecordRef::Write(write)) => Applied::Write(apply_write(env, state, lsn, write)?),
        Some(RecordRef::CreateTable { name, options }) => {
            let refusal = if state.tables.by_name(name).is_some() {
                Some(Error::TableExists(name.clone()))
            } else if state.tables.len() >= TABLES_MAX {
                Some(Error::LimitExceeded {
                    limit: "tables",
                    actual: TABLES_MAX as u64 + 1,
                    max: TABLES_MAX as u64,
                })
            } else {
                validate_name(name).and_then(|()| options.validate()).err()
            };
            if let Some(error) = refusal {
                Applied::Refused(error)
            } else {
                let desc = TableDesc {
                    id: lsn,
                    name: name.clone(),
                    options: *options,
                };
                let table = open_table(
                    env.fs,
                    env.gen_dir,
                    desc.clone(),
                    env.options,
                    env.block_cache,
                )?;
                let mut tables = Tables::clone(&state.tables);
                tables.insert(table);
                state.tables = Arc::new(tables);
                Applied::TableCreated(desc)
            }
        }
        Some(RecordRef::DropTable { id }) => {
            let mut tables = Tables::clone(&state.tables);
            match tables.remove(*id) {
                Some(table) => {
                    state.tables = Arc::new(tables);
                    state.dropped.push((*id, lsn));
                    Applied::TableDropped(table.desc.clone())
                }
                None => Applied::Refused(Error::UnknownTable(format!("with id {id}"))),
            }
        }
    };
    state.last = lsn;
    if state.window.as_ref().is_some_and(|w| lsn == w.to) {
        close_window(state);
    }
    Ok(applied)
}

/// Ends an intent's window: from here on records are validated, and the idempotency keys
/// are the intent's (the replay inside the window could not know why a record aborted).
fn close_window(state: &mut ApplyState) {
    if let Some(window) = state.window.take() {
        state.idempotency = Idempotency::from_entries(&window.idempotency);
    }
}

fn apply_write(
    env: &ApplyEnv<'_>,
    state: &mut ApplyState,
    lsn: u64,
    write: &WriteRef<'_>,
) -> Result<Outcome> {
    if let Some(key) = write.idempotency
        && let Some(first) = state.idempotency.get(&key)
    {
        // A resend of a commit the Db already decided: nothing is applied again. Counted as
        // an abort so that a replay inside an intent's window agrees.
        state.aborts.push(lsn);
        return Ok(first);
    }
    let recorded = state
        .window
        .as_ref()
        .filter(|w| lsn <= w.to)
        .map(|w| !w.aborts.contains(&lsn));
    let outcome = match recorded {
        Some(true) => Outcome::Committed { lsn },
        // Why it aborted is not recorded; the intent's idempotency keys replace this
        // outcome when the window closes.
        Some(false) => Outcome::ConditionFailed { lsn, condition: 0 },
        None => validate(&state.tables, lsn, write)?,
    };
    if outcome == (Outcome::Committed { lsn }) {
        if let &[(id, _)] = &*write.runs {
            // One table (the common case): the record's writes are its batch as they are.
            state.full_freeze |= apply_table(env, state, lsn, id, &write.writes)?;
        } else {
            let mut by_table: BTreeMap<u64, Vec<Write<'_>>> = BTreeMap::new();
            for (table, w) in write.table_writes() {
                by_table.entry(table).or_default().push(w);
            }
            for (id, batch) in by_table {
                state.full_freeze |= apply_table(env, state, lsn, id, &batch)?;
            }
        }
    } else {
        state.aborts.push(lsn);
    }
    if let Some(key) = write.idempotency {
        state.idempotency.insert(key, outcome);
    }
    Ok(outcome)
}

/// Applies the writes of a committed record at `lsn` that go to table `id`; returns whether
/// they froze its full memtable.
fn apply_table(
    env: &ApplyEnv<'_>,
    state: &ApplyState,
    lsn: u64,
    id: u64,
    batch: &[Write<'_>],
) -> Result<bool> {
    let Some(table) = state.tables.by_id(id) else {
        // Only a recorded decision can get here: the log and the intent disagree.
        return Err(Error::corruption(
            "the log",
            format!("record {lsn}, recorded as committed, writes to unknown table {id}"),
        ));
    };
    if table.engine.watermark().is_some_and(|w| w >= lsn) {
        return Ok(false); // Recovery: the table's files already hold this record.
    }
    table.engine.apply(lsn, batch)?;
    table.engine.set_durable_lsn(env.durable_lsn);
    Ok(table.engine.take_full_freeze())
}

/// Decides a write record against the tables as they are (the state just before it).
fn validate(tables: &Tables, lsn: u64, write: &WriteRef<'_>) -> Result<Outcome> {
    let named = write
        .conditions
        .iter()
        .map(|c| c.table)
        .chain(write.runs.iter().map(|&(table, _)| table));
    for id in named {
        if tables.by_id(id).is_none() {
            return Ok(Outcome::UnknownTable { lsn, table: id });
        }
    }
    if write.conditions.is_empty() {
        // A plain batch: nothing to read (the view map alone costs a hasher's seeding).
        return Ok(Outcome::Committed { lsn });
    }
    let mut views: HashMap<u64, Box<dyn EngineView>> = HashMap::new();
    let mut value = Vec::new();
    for (index, condition) in write.conditions.iter().enumerate() {
        let view = match views.entry(condition.table) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let table = tables.by_id(condition.table).expect("checked above");
                e.insert(table.engine.read_view())
            }
        };
        let holds = match &condition.check {
            Check::Version { key, version } => view.get_into(key, &mut value)? == Some(*version),
            Check::Absent { key } => view.get_into(key, &mut value)?.is_none(),
            Check::Exists { key } => view.get_into(key, &mut value)?.is_some(),
            Check::RangeUnchanged { start, end, since } => {
                let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut cursor = view.scan(
                    Bound::Included(start),
                    upper,
                    crate::engine::Direction::Forward,
                )?;
                let mut unchanged = true;
                while cursor.valid() {
                    if cursor.version() > *since {
                        unchanged = false;
                        break;
                    }
                    cursor.next()?;
                }
                unchanged
            }
        };
        if !holds {
            let condition = u32::try_from(index).expect("conditions are bounded");
            return Ok(Outcome::ConditionFailed { lsn, condition });
        }
    }
    Ok(Outcome::Committed { lsn })
}
