//! Point writes logged together: a server gathers the puts and deletes its connections read
//! in one round of its event loop into a [`PointWrites`] and logs them as one append, one
//! record (one LSN) per write, with one callback that applies them all and answers them
//! all. What a write costs besides its record (the log's queue entry and request, its
//! boxed callback, the Db's answer slot) is then paid once per append instead of once per
//! write: at 16 writes in flight per connection, those were much of the log writer
//! thread's work outside the engine.
//!
//! Each write is its own record, exactly as [`Db::write_one`] logs it: a reopen replays
//! them one by one, and one write's failure (its table dropped meanwhile) is its own. The
//! append is one unit of the log, so a crash keeps all of them or none; none is answered
//! before the unit is written (and synced, if asked).

use std::sync::{Arc, Weak};

use popdb_wal::{Lead, Lsn, NewRecord, NodeId, Record, RecordKind, Term};

use crate::db::{Db, Inner, RecordName, WriteLead, commit_result, refusable};
use crate::error::{Error, Result};
use crate::options::{Durability, WriteOptions};

/// The most bytes a [`PointWrites`] gathers, counting each write's key and value and a
/// fixed 64 bytes (at least its record's header in the log and its payload's framing).
/// Far inside the smallest log segment (64 KiB), so the append always fits one; a single
/// write of any allowed size is accepted alone.
pub const POINT_WRITES_BYTES_MAX: usize = 32 * 1024;

/// What each write counts besides its key and value (see [`POINT_WRITES_BYTES_MAX`]): a
/// put's record is exactly this much more (a 36-byte header, 28 bytes of framing), a
/// delete's less.
const POINT_OVERHEAD: usize = 64;

/// Point writes (puts and deletes of one key each) gathered for one log append: see the
/// module docs. Filled by [`Db::add_point_write`], logged by [`Db::write_points_leading`].
#[derive(Debug)]
pub struct PointWrites {
    records: Vec<NewRecord>,
    bytes: usize,
    options: WriteOptions,
}

impl PointWrites {
    /// No writes yet; they will be logged as `options` say.
    #[must_use]
    pub fn new(options: WriteOptions) -> Self {
        Self {
            records: Vec::new(),
            bytes: 0,
            options,
        }
    }

    /// How many writes are gathered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether a write of a `key_len`-byte key and a `value_len`-byte value fits beside
    /// those gathered ([`POINT_WRITES_BYTES_MAX`]); always, if none is.
    #[must_use]
    pub fn has_room(&self, key_len: usize, value_len: usize) -> bool {
        self.records.is_empty() || self.bytes + cost(key_len, value_len) <= POINT_WRITES_BYTES_MAX
    }

    /// Whether `other`'s writes fit beside these ([`POINT_WRITES_BYTES_MAX`]); always, if
    /// either has none.
    #[must_use]
    pub fn has_room_for(&self, other: &PointWrites) -> bool {
        self.records.is_empty()
            || other.records.is_empty()
            || self.bytes + other.bytes <= POINT_WRITES_BYTES_MAX
    }

    /// Moves `other`'s writes after these, leaving `other` empty (its buffer kept, so a
    /// caller that encodes each write into a scratch `PointWrites` first allocates no
    /// vector per write). They will be logged as these say ([`PointWrites::new`]).
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] if they do not fit ([`PointWrites::has_room_for`]); both
    /// are unchanged.
    pub fn append(&mut self, other: &mut PointWrites) -> Result<()> {
        if !self.has_room_for(other) {
            return Err(Error::LimitExceeded {
                limit: "point writes size",
                actual: (self.bytes + other.bytes) as u64,
                max: POINT_WRITES_BYTES_MAX as u64,
            });
        }
        self.records.append(&mut other.records);
        self.bytes += std::mem::take(&mut other.bytes);
        Ok(())
    }
}

fn cost(key_len: usize, value_len: usize) -> usize {
    POINT_OVERHEAD
        .saturating_add(key_len)
        .saturating_add(value_len)
}

impl Db {
    /// Adds a write to `writes`: stores `value` under `key` in `table` (`value` `None`
    /// deletes the key), checked and encoded as [`Db::write_one`] would; nothing is logged
    /// until [`Db::write_points_leading`].
    ///
    /// # Errors
    /// As [`Db::write_one`] refuses a write before logging it ([`Error::UnknownTable`],
    /// [`Error::LimitExceeded`]), and [`Error::LimitExceeded`] if `writes` has no room for
    /// it ([`PointWrites::has_room`]); `writes` is unchanged.
    pub fn add_point_write(
        &self,
        writes: &mut PointWrites,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<()> {
        let value_len = value.map_or(0, <[u8]>::len);
        if !writes.has_room(key.len(), value_len) {
            return Err(Error::LimitExceeded {
                limit: "point writes size",
                actual: (writes.bytes + cost(key.len(), value_len)) as u64,
                max: POINT_WRITES_BYTES_MAX as u64,
            });
        }
        let (payload, _) = self.prepare_one(table, key, value, writes.options)?;
        self.inner.check_record_size(payload.len())?;
        writes.records.push(NewRecord {
            term: Term(0),
            node: NodeId(0),
            kind: RecordKind::Normal,
            payload,
        });
        writes.bytes += cost(key.len(), value_len);
        Ok(())
    }

    /// Logs `writes` as one append and applies them in order, as [`Db::write_one_leading`]
    /// logs one: `done` gets each write's result, in the order they were added (what
    /// [`Db::write_one`] would have returned for it), exactly once, on the thread that
    /// applies them or on this one if they are refused. If the log is idle and the writes
    /// are not synced, they are queued but not yet written, and the caller gets the lead
    /// (see [`Db::write_one_leading`]).
    pub fn write_points_leading(
        &self,
        writes: PointWrites,
        done: impl FnOnce(Vec<Result<u64>>) + Send + 'static,
    ) -> Option<WriteLead> {
        if writes.is_empty() {
            done(Vec::new());
            return None;
        }
        let count = writes.len();
        let durability = writes
            .options
            .durability
            .unwrap_or(self.inner.options.durability);
        let (from_log, refused) = refusable(done);
        let queued = enqueue_points(
            &self.inner,
            writes.records,
            durability,
            durability == Durability::NoSync,
            from_log,
        );
        match queued {
            Ok(lead) => lead
                .and_then(Lead::into_owned)
                .map(|lead| WriteLead { lead }),
            Err(error) => {
                refused(vec![Err(error); count]);
                None
            }
        }
    }
}

/// Logs `records` as one append; `done` gets each one's result once the apply stage has
/// applied them all (never, if this returns an error). With `lead_if_idle`, a caller that
/// finds the log idle gets the [`Lead`].
fn enqueue_points(
    inner: &Arc<Inner>,
    records: Vec<NewRecord>,
    durability: Durability,
    lead_if_idle: bool,
    done: impl FnOnce(Vec<Result<u64>>) + Send + 'static,
) -> Result<Option<Lead<'_>>> {
    inner.check_writable()?;
    let count = records.len();
    // Weak, as for one write: the callback must never hold the last reference.
    let weak = Arc::downgrade(inner);
    let durability = match durability {
        Durability::Sync => popdb_wal::Durability::Sync,
        Durability::NoSync => popdb_wal::Durability::NoSync,
    };
    let callback = move |appended: popdb_wal::Result<popdb_wal::Appended>, logged: &[Record]| {
        let first = logged.first().map(|r| r.id.lsn);
        // Armed only once the log calls back (see `AnswersOnUnwind`).
        let done = AnswersOnUnwind::new(done, first, count);
        let results = apply_points(&weak, appended, logged, count);
        done.answer(results);
    };
    if lead_if_idle {
        Ok(Some(
            inner.wal.append_reading(records, durability, callback)?,
        ))
    } else {
        inner.wal.submit_reading(records, durability, callback)?;
        Ok(None)
    }
}

/// The apply stage of an append of `count` point writes: each record applied in turn, and
/// its result. The log handing back other than `count` records (a bug) poisons the Db.
fn apply_points(
    inner: &Weak<Inner>,
    appended: popdb_wal::Result<popdb_wal::Appended>,
    logged: &[Record],
    count: usize,
) -> Vec<Result<u64>> {
    let first = logged.first().map(|r| r.id.lsn);
    let Some(inner) = inner.upgrade() else {
        return each(count, first, |record| {
            Error::Unknown(format!(
                "{record} is logged but the Db closed before applying it"
            ))
        });
    };
    let appended = match appended {
        Ok(appended) if logged.len() == count => appended,
        Ok(_) => {
            let error = inner.poison(Error::corruption(
                "the Db's own records",
                format!(
                    "the log handed back {} records for an append of {count}",
                    logged.len()
                ),
            ));
            return vec![Err(error); count];
        }
        Err(error) => {
            let cause = inner.poison(error.into());
            return each(count, first, |record| {
                Error::Unknown(format!("the log failed after accepting {record}: {cause}"))
            });
        }
    };
    logged
        .iter()
        .map(|record| {
            let applied = inner
                .apply_own_record(record, appended.durable)
                .map_err(|error| {
                    // The record is in the log: a reopen applies it.
                    Error::Unknown(format!(
                        "record {} is logged but was not applied: {error}",
                        record.id.lsn
                    ))
                });
            commit_result(applied)
        })
        .collect()
}

/// `count` errors, one per write of an append whose first record is `first` (if the log
/// handed it back), each naming its own record.
fn each(count: usize, first: Option<Lsn>, error: impl Fn(RecordName) -> Error) -> Vec<Result<u64>> {
    (0..count as u64)
        .map(|i| Err(error(RecordName(first.map(|lsn| Lsn(lsn.0 + i))))))
        .collect()
}

/// The answers of an append's writes, given even if applying them panics (as
/// `AnswerOnUnwind` gives one write's): dropped while still holding `done` (only while
/// unwinding), it answers each write that its outcome is unknown.
struct AnswersOnUnwind<F: FnOnce(Vec<Result<u64>>)> {
    done: Option<F>,
    first: Option<Lsn>,
    count: usize,
}

impl<F: FnOnce(Vec<Result<u64>>)> AnswersOnUnwind<F> {
    fn new(done: F, first: Option<Lsn>, count: usize) -> Self {
        Self {
            done: Some(done),
            first,
            count,
        }
    }

    fn answer(mut self, results: Vec<Result<u64>>) {
        if let Some(done) = self.done.take() {
            done(results);
        }
    }
}

impl<F: FnOnce(Vec<Result<u64>>)> Drop for AnswersOnUnwind<F> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(each(self.count, self.first, |record| {
                Error::Unknown(format!(
                    "{record} is logged but applying the writes logged with it panicked (the \
                     log is poisoned)"
                ))
            }));
        }
    }
}
