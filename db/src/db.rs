//! The Db: tables on either engine under one log. This module holds the handle, the write
//! path (log, then the apply stage, then the visible LSN), reads at the visible LSN, and
//! checkpoints; `recovery.rs` opens a Db, `apply.rs` applies records.
//!
//! The write path. A write is checked against the limits and resolved (table names to
//! ids, written into the record its [`WriteBatch`] encoded as it was built), and the record
//! is handed to the log, which assigns its LSN as it queues it, so LSNs follow submission
//! order. The log calls back once the record is written (and synced, if the write asked):
//! callbacks run one at a time in LSN order, so the callback is the apply stage. It applies
//! the record to every table it names, then publishes the visible LSN, and only then does
//! the writer hear its outcome.
//!
//! A writer hears it in one of two ways. [`Db::commit`] blocks: if it finds the log idle it
//! writes the group itself and runs the apply stage on its own thread. [`Db::commit_with`]
//! (and [`Db::commit_async`], its future) only queues: the log's writer thread writes,
//! syncs and applies, and the callback runs there, so a server holds no thread per commit
//! in flight. The outcome, its durability and its order are the same either way.
//!
//! Point writes (`points.rs`): a server gathers the puts and deletes its connections read
//! in one round of its event loop and logs them as one append, each its own record and LSN, with one
//! callback that applies them in order and answers each.
//!
//! Checkpoints. The background thread's checkpoints (by log bytes, age or memory) prefer
//! the last record that froze a full LSM memtable, pinned by the apply stage, to the
//! visible LSN: the memtable there is frozen already, so the checkpoint freezes none of
//! its own and the tables keep flushing whole memtables, as a tree alone does.
//!
//! Lock order: `checkpoints`, then `apply`, then `stored`, then `published`; `poisoned`,
//! `boundary` and `stop` are leaves.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use popdb_io::{DirLock, FsRef};
use popdb_wal::{Lead, LogId, Lsn, NewRecord, NodeId, Record, RecordKind, Term, Wal, WalStats};

use crate::apply::{Applied, ApplyEnv, ApplyState, apply_record};
use crate::batch::{Commit, WriteBatch, limit};
use crate::engine::{EngineView, EngineWork};
use crate::error::{Error, Result};
use crate::options::{DbOptions, Durability, WriteOptions};
use crate::outcome::Outcome;
use crate::read::{Entry, ReadView, Scan, engine_view_at, scan_view};
use crate::record::{self, LogRecord, RecordRef};
use crate::recovery::DbRecovery;
use crate::state_file::{CheckpointImage, DbState};
use crate::table::{TableDesc, TableOptions, validate_name};
use crate::tables::{Table, Tables, table_dir};

/// LSNs are leased this many at a time: a record that readers may see before the log has
/// made it durable first needs its LSN under a durable lease.
const LEASE_STEP: u64 = 1 << 20;

/// An open PopDB database. See the crate docs for an example.
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    background: Option<JoinHandle<()>>,
    recovery: DbRecovery,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.inner.dir)
            .field("visible_lsn", &self.visible_lsn())
            .finish_non_exhaustive()
    }
}

/// What the Db shares with its log callbacks and its background thread.
pub(crate) struct Inner {
    pub(crate) fs: FsRef,
    pub(crate) dir: PathBuf,
    pub(crate) gen_dir: PathBuf,
    pub(crate) options: DbOptions,
    pub(crate) wal: Wal,
    pub(crate) block_cache: Arc<popdb_lsm::BlockCache>,
    pub(crate) apply: Mutex<ApplyState>,
    /// The tables live at the visible LSN. Replaced (under the write lock, with `visible`)
    /// only by a record that creates or drops a table; readers take the read lock, so the
    /// tables they see agree with the visible LSN they load under it.
    published: RwLock<Arc<Tables>>,
    /// The visible LSN. A record that leaves the tables as they are publishes itself by
    /// storing this alone (under the apply lock): readers are not held up, nor is the apply
    /// stage by them.
    visible: AtomicU64,
    /// The state file as last stored.
    pub(crate) stored: Mutex<DbState>,
    /// `stored`'s LSN lease, which only grows: the apply stage checks it once per record
    /// without taking `stored`, whose holder may be syncing the state file.
    lease: AtomicU64,
    /// Held for a whole checkpoint (one at a time); when the last one was taken.
    checkpoints: Mutex<CheckpointClock>,
    /// The state at the last record that froze a full LSM memtable, for the next
    /// background checkpoint (see [`Inner::checkpoint_background`]).
    boundary: Mutex<Option<Pinned>>,
    poisoned: Mutex<Option<Arc<Error>>>,
    /// Why the Db refuses writes for good (until a reopen), if it does.
    read_only: Mutex<Option<String>>,
    /// Set once `poisoned` or `read_only` is: until then a writer checks this alone.
    refusing: AtomicBool,
    /// Records at or above this LSN are kept in the log whatever checkpoints allow
    /// (`u64::MAX`: no retention point).
    retain_from: std::sync::atomic::AtomicU64,
    /// Set to stop the background thread, which waits on the condvar between rounds.
    pub(crate) stop: Mutex<bool>,
    pub(crate) wake: Condvar,
    /// The last error the background thread met (it carries on).
    pub(crate) background_error: Mutex<Option<Error>>,
    _lock: DirLock,
}

#[derive(Debug)]
struct CheckpointClock {
    at: Duration,
    log_bytes: u64,
}

/// The state a checkpoint writes, taken under the apply lock at one LSN: the Db's image and
/// every table then live, with a view of each that needs one to checkpoint there.
struct Pinned {
    image: CheckpointImage,
    tables: Vec<(Arc<Table>, Option<PinnedView>)>,
}

/// A table's view pinned with a checkpoint's LSN.
type PinnedView = Box<dyn EngineView>;

impl Pinned {
    /// Pins `state`, the apply stage's state after its last record, with a view of every
    /// table.
    fn new(state: &ApplyState) -> Pinned {
        Pinned {
            image: Self::image(state),
            tables: state
                .tables
                .iter()
                .map(|t| (Arc::clone(t), Some(t.engine.read_view())))
                .collect(),
        }
    }

    /// Pins `state` without views, if every table can checkpoint at its LSN without one
    /// (LSM tables only): a view would keep the memtables it saw in memory.
    fn without_views(state: &ApplyState) -> Option<Pinned> {
        if !state
            .tables
            .iter()
            .all(|t| t.engine.checkpoints_without_view())
        {
            return None;
        }
        Some(Pinned {
            image: Self::image(state),
            tables: state.tables.iter().map(|t| (Arc::clone(t), None)).collect(),
        })
    }

    fn image(state: &ApplyState) -> CheckpointImage {
        CheckpointImage {
            lsn: state.last,
            aborts: state.aborts.clone(),
            tables: state.tables.descs(),
            idempotency: state.idempotency.entries(),
        }
    }
}

/// Where a writer waits for the apply stage's answer: blocked on the condvar, or as a task
/// whose waker is kept.
struct Answer<T> {
    state: Mutex<AnswerState<T>>,
    ready: Condvar,
}

struct AnswerState<T> {
    result: Option<T>,
    waker: Option<Waker>,
}

impl<T> Default for Answer<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(AnswerState {
                result: None,
                waker: None,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Answer<T> {
    fn fill(&self, result: T) {
        let waker = {
            let mut state = self.state.lock();
            state.result = Some(result);
            state.waker.take()
        };
        self.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wait(&self) -> T {
        let mut state = self.state.lock();
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            self.ready.wait(&mut state);
        }
    }

    fn poll(&self, cx: &Context<'_>) -> Poll<T> {
        let mut state = self.state.lock();
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The duty to write the log's queued group, handed out by [`Db::write_one_leading`] and
/// [`Db::write_points_leading`] when the log was idle. [`WriteLead::run`] writes and applies the group on the calling thread;
/// dropping it does the same. Until it runs, no write is logged: run it soon.
#[must_use = "writes wait for this lead: call `run`"]
#[derive(Debug)]
pub struct WriteLead {
    pub(crate) lead: popdb_wal::OwnedLead,
}

impl WriteLead {
    /// Writes the queued group and applies it; each write's `done` runs here.
    pub fn run(self) {
        self.lead.run();
    }

    /// [`WriteLead::run`] if at most `records` records are queued (a write is one), else
    /// the log's writer thread takes the group ([`popdb_wal::OwnedLead::run_if_at_most`]).
    pub fn run_if_at_most(self, records: usize) {
        self.lead.run_if_at_most(records);
    }
}

/// A commit in progress ([`Db::commit_async`]): `.await` it, or [`CommitTicket::wait`].
pub struct CommitTicket {
    answer: Arc<Answer<Result<u64>>>,
}

impl CommitTicket {
    /// Blocks until the commit's outcome is known.
    ///
    /// # Errors
    /// As [`Db::commit`].
    pub fn wait(self) -> Result<u64> {
        self.answer.wait()
    }
}

impl Future for CommitTicket {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        self.answer.poll(cx)
    }
}

impl std::fmt::Debug for CommitTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitTicket")
    }
}

/// A checked commit: the record to log (encoded), or an outcome already decided.
enum Prepared {
    Log(Vec<u8>, Durability),
    Decided(Result<u64>),
}

/// Counters and positions of a Db.
#[derive(Clone, Debug)]
pub struct DbStats {
    /// The visible LSN: every record through it is applied and readable.
    pub visible_lsn: u64,
    /// The log is durable through this LSN.
    pub durable_lsn: u64,
    /// The last completed checkpoint's LSN: the log is kept above it (it pins the log).
    pub checkpoint_lsn: Option<u64>,
    /// What pins the log: "checkpoint at LSN c" (records above c are needed for
    /// recovery), or "nothing".
    pub log_pinned_by: String,
    /// The log's counters since open.
    pub wal: WalStats,
    /// Per table.
    pub tables: Vec<TableStats>,
    /// The last error the background thread met, if any.
    pub background_error: Option<String>,
    /// Why the Db is read-only, if it is.
    pub read_only: Option<String>,
    /// LSNs up to this one may have been handed out; the log continues above it.
    pub lsn_lease: u64,
}

/// Counters of one table.
#[derive(Clone, Debug)]
pub struct TableStats {
    /// The table.
    pub desc: TableDesc,
    /// Its files hold every record through this LSN.
    pub watermark: Option<u64>,
    /// The last record applied to it.
    pub last_applied: Option<u64>,
    /// Memory only a checkpoint releases (memtables, in-memory pages).
    pub memory_bytes: u64,
    /// What its engine wrote since open: flushes, compactions, checkpoints.
    pub work: EngineWork,
}

impl Db {
    /// Opens the database in `dir`, creating it if there is none, and recovers it: replays
    /// the log from the last completed checkpoint (see [`Db::recovery`] for what it did).
    /// Takes the directory's lock: a second opener gets an error naming the holder.
    ///
    /// ```
    /// # fn main() -> popdb_db::Result<()> {
    /// use popdb_db::{Db, DbOptions, EngineKind, TableOptions, WriteBatch};
    /// # let temp = std::env::temp_dir().join(format!("popdb-doc-{}", std::process::id()));
    /// let db = Db::open(&temp, DbOptions::default())?;
    /// db.create_table("users", TableOptions::new(EngineKind::Btree))?;
    /// let mut batch = WriteBatch::new();
    /// batch.put("users", "alice", "admin");
    /// let lsn = db.write(batch)?;
    /// assert_eq!(db.get("users", b"alice")?, Some((b"admin".to_vec(), lsn)));
    /// # drop(db);
    /// # std::fs::remove_dir_all(&temp).ok();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// `Io` (the lock is held: the message names the holder), `Corruption` naming the
    /// damaged file, the log's and the engines' open errors.
    pub fn open(dir: impl AsRef<Path>, options: DbOptions) -> Result<Db> {
        let (inner, recovery) = crate::recovery::open(dir.as_ref(), options)?;
        let background = inner
            .options
            .background
            .then(|| crate::background::start(Arc::clone(&inner)))
            .transpose()?;
        Ok(Db {
            inner,
            background,
            recovery,
        })
    }

    /// What opening the Db found and did.
    pub fn recovery(&self) -> &DbRecovery {
        &self.recovery
    }

    /// The visible LSN: every record through it is applied; reads are taken at it.
    pub fn visible_lsn(&self) -> u64 {
        self.inner.visible.load(Ordering::Acquire)
    }

    /// Creates table `name` on the engine and with the options given.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or options; [`Error::TableExists`];
    /// [`Error::LimitExceeded`] past [`crate::limits::TABLES_MAX`]; the log's errors.
    pub fn create_table(&self, name: &str, options: TableOptions) -> Result<TableDesc> {
        validate_name(name)?;
        options.validate()?;
        if self.inner.published().1.by_name(name).is_some() {
            return Err(Error::TableExists(name.to_string()));
        }
        let record = LogRecord::CreateTable {
            name: name.to_string(),
            options,
        };
        match self.inner.submit(record.encode(), Durability::Sync)? {
            Applied::TableCreated(desc) => Ok(desc),
            Applied::Refused(error) => Err(error),
            other => Err(unexpected(&other)),
        }
    }

    /// Drops table `name`. Its files are deleted once a checkpoint covering the drop is
    /// durable.
    ///
    /// # Errors
    /// [`Error::UnknownTable`]; the log's errors.
    pub fn drop_table(&self, name: &str) -> Result<TableDesc> {
        let id = self.table(name)?.desc.id;
        match self
            .inner
            .submit(LogRecord::DropTable { id }.encode(), Durability::Sync)?
        {
            Applied::TableDropped(desc) => Ok(desc),
            Applied::Refused(error) => Err(error),
            other => Err(unexpected(&other)),
        }
    }

    /// The live tables, in id (creation) order.
    pub fn tables(&self) -> Vec<TableDesc> {
        self.inner.published().1.descs()
    }

    /// What the catalog says of table `name`.
    ///
    /// # Errors
    /// [`Error::UnknownTable`].
    pub fn describe(&self, name: &str) -> Result<TableDesc> {
        Ok(self.table(name)?.desc.clone())
    }

    fn table(&self, name: &str) -> Result<Arc<Table>> {
        self.inner
            .published()
            .1
            .by_name(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTable(name.to_string()))
    }

    /// Applies `batch` atomically (one log record), durably unless the Db's default says
    /// otherwise; returns its LSN, the version of every value it wrote.
    ///
    /// # Errors
    /// [`Error::UnknownTable`], [`Error::LimitExceeded`] (nothing logged);
    /// [`Error::Unknown`] if the log failed after accepting it; [`Error::Poisoned`].
    pub fn write(&self, batch: WriteBatch) -> Result<u64> {
        self.write_with(batch, WriteOptions::default())
    }

    /// [`Db::write`] with options.
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn write_with(&self, batch: WriteBatch, options: WriteOptions) -> Result<u64> {
        self.commit(Commit {
            writes: batch,
            durability: options.durability,
            ..Commit::default()
        })
    }

    /// Writes one key: stores `value` under `key` in `table` (`value` `None` deletes the
    /// key), as a [`WriteBatch`] of that one write would, with no batch built: the key
    /// and value are borrowed and copied once, into the log record. Returns the LSN.
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn write_one(
        &self,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
        options: WriteOptions,
    ) -> Result<u64> {
        let (record, durability) = self.prepare_one(table, key, value, options)?;
        commit_result(self.inner.submit(record, durability))
    }

    /// [`Db::write_one`] without blocking, as [`Db::commit_with`] is [`Db::commit`]
    /// without blocking: `done` gets what [`Db::write_one`] would have returned, exactly
    /// once, on the thread that applies the record or on this one if it is refused.
    pub fn write_one_with(
        &self,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
        options: WriteOptions,
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) {
        let lead = self.write_one_logged(table, key, value, options, false, done);
        debug_assert!(lead.is_none(), "a lead was given without being asked for");
    }

    /// [`Db::write_one_with`] for an event loop: if the log is idle and the write is not
    /// synced, the write is queued but not yet written, and the caller gets the lead, which
    /// writes (and applies) the write with every other queued behind it when it runs or
    /// drops. An event loop that runs it once it has read every request ready makes them
    /// one group, written by one `pwrite` on its own thread, without a hand-off to the
    /// log's writer thread and back. `None` if another thread leads (the write joins its
    /// group), if the write is synced (the writer thread syncs its group while the loop
    /// goes on), or if the write was refused (`done` has the error).
    pub fn write_one_leading(
        &self,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
        options: WriteOptions,
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) -> Option<WriteLead> {
        self.write_one_logged(table, key, value, options, true, done)
    }

    /// Prepares and logs one write; with `lead_if_idle`, a no-sync write that finds the
    /// log idle hands back the lead.
    fn write_one_logged(
        &self,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
        options: WriteOptions,
        lead_if_idle: bool,
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) -> Option<WriteLead> {
        match self.prepare_one(table, key, value, options) {
            // A sync group's fdatasync would hold the event loop for a disk's flush: the
            // log's writer thread syncs it while the loop reads the next group.
            Ok((record, durability)) => self.log(
                record,
                durability,
                lead_if_idle && durability == Durability::NoSync,
                done,
            ),
            Err(error) => {
                done(Err(error));
                None
            }
        }
    }

    /// The log record of one write, checked against the limits a batch of it would be.
    pub(crate) fn prepare_one(
        &self,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
        options: WriteOptions,
    ) -> Result<(Vec<u8>, Durability)> {
        limit("key size", key.len(), crate::limits::KEY_SIZE_MAX)?;
        let value_size = value.map_or(0, <[u8]>::len);
        limit("value size", value_size, crate::limits::VALUE_SIZE_MAX)?;
        limit(
            "batch size",
            key.len() + value_size,
            crate::limits::BATCH_SIZE_MAX,
        )?;
        let id = {
            let tables = self.inner.published.read();
            tables
                .by_name(table)
                .map(|t| t.desc.id)
                .ok_or_else(|| Error::UnknownTable(table.to_string()))?
        };
        let record = record::single_write_payload(id, key, value);
        let durability = options.durability.unwrap_or(self.inner.options.durability);
        Ok((record, durability))
    }

    /// Commits a transaction: its conditions are checked when it applies, in log order;
    /// all of its writes apply or none does. Returns the LSN it committed at.
    ///
    /// # Errors
    /// [`Error::Conflict`] naming the first failed condition (certainly not applied);
    /// [`Error::Unknown`] (it may have applied: resend with the same idempotency key, or
    /// read); [`Error::UnknownTable`], [`Error::LimitExceeded`] (nothing logged);
    /// [`Error::Poisoned`].
    pub fn commit(&self, commit: Commit) -> Result<u64> {
        match self.prepare_commit(commit)? {
            Prepared::Decided(result) => result,
            Prepared::Log(record, durability) => {
                commit_result(self.inner.submit(record, durability))
            }
        }
    }

    /// [`Db::commit`] without blocking: logs the transaction and returns; `done` gets what
    /// [`Db::commit`] would have returned, exactly once, once the commit is as durable as
    /// it asked and applied (visible), in LSN order with every other commit. `done` runs
    /// on whichever thread applies the record (usually the log's writer thread), or on
    /// this one before `commit_with` returns when the outcome is known at once (a refusal,
    /// a resent idempotency key). Keep it short: later commits wait for it.
    ///
    /// Nothing here blocks on the disk; only a log whose queue is over
    /// `WalOptions::queue_bytes_max` makes this wait for room.
    pub fn commit_with(&self, commit: Commit, done: impl FnOnce(Result<u64>) + Send + 'static) {
        match self.prepare_commit(commit) {
            Ok(Prepared::Log(record, durability)) => self.log_with(record, durability, done),
            Ok(Prepared::Decided(result)) => done(result),
            Err(error) => done(Err(error)),
        }
    }

    /// Queues the encoded `record`; `done` gets the commit's result (see
    /// [`Db::commit_with`]).
    fn log_with(
        &self,
        record: Vec<u8>,
        durability: Durability,
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) {
        let lead = self.log(record, durability, false, done);
        debug_assert!(lead.is_none(), "a lead was given without being asked for");
    }

    /// [`Db::log_with`]; with `lead_if_idle`, hands back the lead if the log was idle.
    fn log(
        &self,
        record: Vec<u8>,
        durability: Durability,
        lead_if_idle: bool,
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) -> Option<WriteLead> {
        let (from_log, refused) = refusable(done);
        let queued = self
            .inner
            .enqueue(record, durability, lead_if_idle, move |applied| {
                from_log(commit_result(applied));
            });
        match queued {
            Ok(lead) => lead
                .and_then(Lead::into_owned)
                .map(|lead| WriteLead { lead }),
            Err(error) => {
                refused(Err(error));
                None
            }
        }
    }

    /// [`Db::commit_with`] as a future: awaiting the ticket yields what [`Db::commit`]
    /// returns, without a thread blocked on it meanwhile. Dropping the ticket does not
    /// cancel the commit.
    pub fn commit_async(&self, commit: Commit) -> CommitTicket {
        let answer = Arc::new(Answer::default());
        let filled = Arc::clone(&answer);
        self.commit_with(commit, move |result| filled.fill(result));
        CommitTicket { answer }
    }

    /// Resolves a commit's tables and checks it: the log record to write, or the outcome
    /// already known (a resent idempotency key).
    fn prepare_commit(&self, commit: Commit) -> Result<Prepared> {
        commit.check_limits()?;
        if let Some(key) = commit.idempotency
            && let Some(first) = self.inner.apply.lock().idempotency.get(&key)
        {
            return Ok(Prepared::Decided(outcome_result(first)));
        }
        // Held only while names become ids: a record that creates or drops a table waits
        // for it, nothing else does.
        let tables = self.inner.published.read();
        let id_of = |name: &str| {
            tables
                .by_name(name)
                .map(|t| t.desc.id)
                .ok_or_else(|| Error::UnknownTable(name.to_string()))
        };
        let mut conditions = Vec::with_capacity(commit.conditions.len());
        for condition in commit.conditions {
            conditions.push(record::Condition {
                table: id_of(&condition.table)?,
                check: condition.check,
            });
        }
        // A batch names one table far more often than several: its id needs no vector.
        let (one, many);
        let names = commit.writes.tables();
        let ids: &[u64] = if let (1, Some(name)) = (names.len(), names.get(0)) {
            one = [id_of(name)?];
            &one
        } else {
            many = names.iter().map(id_of).collect::<Result<Vec<u64>>>()?;
            &many
        };
        drop(tables);
        // The batch is the record's table writes already, each naming its table by its
        // index in `ids`: only the table fields change.
        let (mut buf, count) = commit.writes.into_encoded();
        record::replace_tables(&mut buf, count, |index| {
            usize::try_from(index)
                .ok()
                .and_then(|index| ids.get(index).copied())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "a batch names table index {index} of {}",
                        ids.len()
                    ))
                })
        })?;
        let payload = record::write_payload(buf, count, commit.idempotency, &conditions);
        let durability = commit.durability.unwrap_or(self.inner.options.durability);
        Ok(Prepared::Log(payload, durability))
    }

    /// Applies a record that was made durable elsewhere (the Raft layer's state machine
    /// calls this with each committed entry, in LSN order): the same apply stage as the
    /// embedded write path. `kind` other than `Normal` only advances the LSN.
    ///
    /// # Errors
    /// `Corruption` if the payload is not a Db record; `InvalidArgument` if `lsn` is not
    /// above the last applied; [`Error::Poisoned`]; an engine's failure (which poisons).
    pub fn apply_logged(&self, lsn: u64, kind: RecordKind, payload: &[u8]) -> Result<Applied> {
        let record = decode_record(lsn, kind, payload)?;
        self.inner.apply_one(lsn, record.as_ref(), true)
    }

    /// The value of `key` in `table` and its version (the LSN that wrote it), at the
    /// visible LSN; `None` if absent.
    ///
    /// # Errors
    /// [`Error::UnknownTable`]; the engine's (corruption, i/o).
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        let mut value = Vec::new();
        loop {
            // The table alone is held across the read, not the published set of tables.
            let (visible, engine) = {
                let tables = self.inner.published.read();
                let visible = self.inner.visible.load(Ordering::Acquire);
                let table = tables
                    .by_name(table)
                    .ok_or_else(|| Error::UnknownTable(table.to_string()))?;
                (visible, Arc::clone(&table.engine))
            };
            // `None`: the visible LSN moved past what the engine retains; read at the new one.
            if let Some(found) = engine.get_at(visible, key, &mut value)? {
                return Ok(found.map(|version| (value, version)));
            }
        }
    }

    /// The entries of `table` that `scan` covers, at the visible LSN.
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn scan(&self, table: &str, scan: &Scan) -> Result<Vec<Entry>> {
        let view = self.table_view(table)?;
        scan_view(view.as_ref(), scan)
    }

    /// A view of one table at the visible LSN.
    fn table_view(&self, name: &str) -> Result<Box<dyn EngineView>> {
        loop {
            let (visible, tables) = self.inner.published();
            let table = tables
                .by_name(name)
                .ok_or_else(|| Error::UnknownTable(name.to_string()))?;
            if let Some(view) = engine_view_at(table.engine.as_ref(), visible)? {
                return Ok(view);
            }
        }
    }

    /// A read view of every table at the visible LSN.
    ///
    /// # Errors
    /// An engine's.
    pub fn read_view(&self) -> Result<ReadView> {
        loop {
            let (visible, tables) = self.inner.published();
            if let Some(view) = ReadView::take(visible, tables)? {
                return Ok(view);
            }
        }
    }

    /// A read view of every table at `lsn`, an LSN at or below the visible one that every
    /// table still retains (an LSM table keeps every version above its watermark; a B+tree
    /// table its last few roots). `Ok(None)` if some table no longer retains it, or `lsn` is
    /// above the visible LSN. The view holds the tables live at the visible LSN that existed
    /// at `lsn` (a table dropped since is not in it).
    ///
    /// # Errors
    /// An engine's.
    pub fn read_view_at(&self, lsn: u64) -> Result<Option<ReadView>> {
        let (visible, tables) = self.inner.published();
        if lsn > visible {
            return Ok(None);
        }
        let tables = if tables.iter().any(|t| t.desc.id > lsn) {
            // Tables created after `lsn` did not exist at it.
            let mut older = Tables::clone(&tables);
            for id in tables.iter().map(|t| t.desc.id).filter(|&id| id > lsn) {
                older.remove(id);
            }
            Arc::new(older)
        } else {
            tables
        };
        ReadView::take(lsn, tables)
    }

    /// Takes a checkpoint now: every table's files then hold every record through the
    /// returned LSN, and the log below it may go. Does nothing (and returns the last
    /// checkpoint's LSN) if nothing was applied since.
    ///
    /// # Errors
    /// `Io` from the state file, the log's sync or a table's checkpoint (the checkpoint is
    /// then not complete; the next one redoes it).
    pub fn checkpoint(&self) -> Result<u64> {
        self.inner.checkpoint()
    }

    /// Makes every write so far durable (no-sync writes included).
    ///
    /// # Errors
    /// The log's.
    pub fn sync(&self) -> Result<u64> {
        self.inner.sync()
    }

    /// Runs one round of background work by hand (for a Db opened without its background
    /// thread): flushes and compactions, then a checkpoint if one is due. Returns whether
    /// there was anything to do.
    ///
    /// # Errors
    /// The first error met.
    pub fn maintenance_step(&self) -> Result<bool> {
        self.inner.maintenance_round()
    }

    /// Keeps the log's records from `lsn` up, whatever checkpoints would let go (`None`:
    /// no retention point). A replication layer sets it to what a lagging follower still
    /// needs.
    pub fn retain_log_from(&self, lsn: Option<u64>) {
        self.inner.retain_from.store(
            lsn.unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// Counters and positions.
    pub fn stats(&self) -> DbStats {
        self.inner.stats()
    }

    /// Why the Db refuses writes, if it does.
    pub fn poison_cause(&self) -> Option<Arc<Error>> {
        self.inner.poisoned.lock().clone()
    }

    /// Stops the background thread and makes every write durable.
    ///
    /// # Errors
    /// The log's.
    pub fn close(mut self) -> Result<()> {
        self.stop_background();
        if self.inner.wal.is_poisoned() {
            return Ok(());
        }
        self.inner.sync().map(|_| ())
    }

    fn stop_background(&mut self) {
        *self.inner.stop.lock() = true;
        self.inner.wake.notify_all();
        if let Some(handle) = self.background.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.stop_background();
    }
}

/// What the apply stage's answer to a write record means to its caller.
pub(crate) fn commit_result(applied: Result<Applied>) -> Result<u64> {
    match applied? {
        Applied::Write(outcome) => outcome_result(outcome),
        other => Err(unexpected(&other)),
    }
}

/// What a write's outcome means to its caller.
fn outcome_result(outcome: Outcome) -> Result<u64> {
    match outcome {
        Outcome::Committed { lsn } => Ok(lsn),
        Outcome::ConditionFailed { lsn, condition } => Err(Error::Conflict { condition, lsn }),
        Outcome::UnknownTable { table, .. } => Err(Error::UnknownTable(format!(
            "with id {table} (dropped while the write was logged)"
        ))),
    }
}

fn unexpected(applied: &Applied) -> Error {
    Error::Unknown(format!(
        "the apply stage answered {applied:?} to the wrong request"
    ))
}

/// The Db record in a log record (`None` for Raft's own kinds), borrowing its keys and
/// values from `payload`.
pub(crate) fn decode_record(
    lsn: u64,
    kind: RecordKind,
    payload: &[u8],
) -> Result<Option<RecordRef<'_>>> {
    if kind != RecordKind::Normal {
        return Ok(None);
    }
    RecordRef::decode(payload)
        .map(Some)
        .map_err(|e| Error::corruption("the log", format!("record {lsn}: {e}")))
}

impl Inner {
    #[allow(clippy::too_many_arguments, reason = "built once, by recovery")]
    pub(crate) fn new(
        fs: FsRef,
        dir: PathBuf,
        gen_dir: PathBuf,
        options: DbOptions,
        wal: Wal,
        block_cache: Arc<popdb_lsm::BlockCache>,
        apply: ApplyState,
        stored: DbState,
        lock: DirLock,
    ) -> Inner {
        let (visible, published) = (apply.last, Arc::clone(&apply.tables));
        let lease = stored.lsn_lease;
        let log_bytes = wal.stats().bytes;
        let now = options.clock.now();
        Inner {
            fs,
            dir,
            gen_dir,
            options,
            wal,
            block_cache,
            apply: Mutex::new(apply),
            published: RwLock::new(published),
            visible: AtomicU64::new(visible),
            stored: Mutex::new(stored),
            lease: AtomicU64::new(lease),
            checkpoints: Mutex::new(CheckpointClock { at: now, log_bytes }),
            boundary: Mutex::new(None),
            poisoned: Mutex::new(None),
            read_only: Mutex::new(None),
            refusing: AtomicBool::new(false),
            retain_from: std::sync::atomic::AtomicU64::new(u64::MAX),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            background_error: Mutex::new(None),
            _lock: lock,
        }
    }

    fn published(&self) -> (u64, Arc<Tables>) {
        let tables = self.published.read();
        // Loaded under the read lock: a record that changes the tables stores its LSN under
        // the write lock, so these tables are the ones live at this LSN.
        (self.visible.load(Ordering::Acquire), Arc::clone(&tables))
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if !self.refusing.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(cause) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned { cause });
        }
        if let Some(reason) = self.read_only.lock().clone() {
            return Err(Error::ReadOnly(reason));
        }
        Ok(())
    }

    /// Sets aside [`DbOptions::reserve_bytes`] in `path`; if that fails, the Db turns
    /// read-only and says why.
    pub(crate) fn take_reserve(&self, path: &Path) {
        let bytes = self.options.reserve_bytes;
        if bytes == 0 {
            return;
        }
        let result = self
            .fs
            .open(path, popdb_io::OpenOptions::create())
            .and_then(|file| {
                file.allocate(bytes)?;
                file.sync_data()
            })
            .and_then(|()| self.fs.sync_dir(&self.dir));
        if let Err(error) = result {
            let _ = self.fs.remove_file(path);
            *self.read_only.lock() = Some(format!(
                "could not set aside {bytes} bytes for checkpoints ({error}); free space and \
                 reopen"
            ));
            self.refusing.store(true, Ordering::Release);
        }
    }

    /// Stops writes for good (until a reopen); returns the error to report.
    pub(crate) fn poison(&self, cause: Error) -> Error {
        let mut poisoned = self.poisoned.lock();
        let cause = Arc::clone(poisoned.get_or_insert_with(|| Arc::new(cause)));
        self.refusing.store(true, Ordering::Release);
        Error::Poisoned { cause }
    }

    /// Logs `record` and waits for the apply stage's answer.
    fn submit(self: &Arc<Self>, payload: Vec<u8>, durability: Durability) -> Result<Applied> {
        let answer = Arc::new(Answer::default());
        let filled = Arc::clone(&answer);
        let lead = self.enqueue(payload, durability, true, move |result| filled.fill(result))?;
        // With no lock held: a caller that found the log idle writes the group itself
        // and runs the apply stage for it, with no hand-off to another thread; others queue
        // behind it meanwhile, into the next group.
        if let Some(lead) = lead {
            lead.run();
        }
        answer.wait()
    }

    /// Logs the encoded record `payload`; `done` gets the apply stage's answer, on the
    /// thread that runs the apply stage for it (never if this returns an error). With `lead_if_idle`, a caller
    /// that finds the log idle gets the [`Lead`] and must run it; otherwise the log's own
    /// writer thread writes the group and applies it.
    fn enqueue(
        self: &Arc<Self>,
        payload: Vec<u8>,
        durability: Durability,
        lead_if_idle: bool,
        done: impl FnOnce(Result<Applied>) + Send + 'static,
    ) -> Result<Option<Lead<'_>>> {
        self.check_writable()?;
        self.check_record_size(payload.len())?;
        let record = NewRecord {
            term: Term(0),
            node: NodeId(0),
            kind: RecordKind::Normal,
            payload,
        };
        // Weak: the callback must never hold the last reference, or the log's own thread
        // would drop (and join) the log. A blocking writer holds the Db until it has its
        // answer, which is given only after the reference taken here is gone.
        let inner = Arc::downgrade(self);
        let durability = match durability {
            Durability::Sync => popdb_wal::Durability::Sync,
            Durability::NoSync => popdb_wal::Durability::NoSync,
        };
        // The log picks the LSN as it queues the record, so records queue in LSN order
        // with no lock of the Db's. The apply stage reads the record, and its LSN, from the
        // log's copy, which the log hands back (none if the append was dropped unwritten).
        let callback = move |appended: popdb_wal::Result<popdb_wal::Appended>,
                             logged: &[Record]| {
            let lsn = logged.first().map(|r| r.id.lsn);
            // Armed only once the log calls back: a callback it refuses is dropped uncalled,
            // and the refusal reaches the writer through `enqueue`'s error instead.
            let done = AnswerOnUnwind::new(done, lsn);
            let result = match inner.upgrade() {
                None => Err(Error::Unknown(format!(
                    "{} is logged but the Db closed before applying it",
                    RecordName(lsn)
                ))),
                Some(inner) => match (appended, lsn) {
                    (Ok(appended), Some(lsn)) => inner
                        .apply_logged_record(lsn.0, logged, appended.durable)
                        .map_err(|error| {
                            // The record is in the log: a reopen applies it.
                            Error::Unknown(format!(
                                "record {lsn} is logged but was not applied: {error}"
                            ))
                        }),
                    (Ok(appended), None) => Err(inner.poison(Error::corruption(
                        "the Db's own record",
                        format!("the log handed back no record for {}", appended.first),
                    ))),
                    (Err(error), lsn) => Err(Error::Unknown(format!(
                        "the log failed after accepting {}: {}",
                        RecordName(lsn),
                        inner.poison(error.into())
                    ))),
                },
            };
            done.answer(result);
        };
        if lead_if_idle {
            let lead = self.wal.append_one_reading(record, durability, callback)?;
            Ok(Some(lead))
        } else {
            self.wal.submit_one_reading(record, durability, callback)?;
            Ok(None)
        }
    }

    /// Refuses a record payload of `len` bytes that the log would: only a log configured
    /// below the Db's limits can refuse a record they allow.
    pub(crate) fn check_record_size(&self, len: usize) -> Result<()> {
        let record_max = self.options.wal.record_size_max;
        if len > record_max as usize {
            return Err(Error::LimitExceeded {
                limit: "log record size",
                actual: len as u64,
                max: u64::from(record_max),
            });
        }
        Ok(())
    }

    /// [`Inner::apply_one`] of the record this Db logged at `lsn`, as the log handed it
    /// back (`logged`: the records of its append). One that is not there or does not
    /// decode (a bug) poisons the Db, since every later record would apply without it.
    fn apply_logged_record(&self, lsn: u64, logged: &[Record], durable: bool) -> Result<Applied> {
        match logged {
            [record] if record.id.lsn.0 == lsn => self.apply_own_record(record, durable),
            _ => Err(self.poison(Error::corruption(
                "the Db's own record",
                format!("the log handed back {} records for {lsn}", logged.len()),
            ))),
        }
    }

    /// [`Inner::apply_one`] of `record`, one this Db logged, as the log handed it back. One
    /// that does not decode (a bug) poisons the Db, since every later record would apply
    /// without it.
    pub(crate) fn apply_own_record(&self, record: &Record, durable: bool) -> Result<Applied> {
        let lsn = record.id.lsn.0;
        match RecordRef::decode(&record.payload) {
            Ok(decoded) => self.apply_one(lsn, Some(&decoded), durable),
            Err(e) => Err(self.poison(Error::corruption(
                "the Db's own record",
                format!("record {lsn}: {e}"),
            ))),
        }
    }

    /// The apply stage: applies the record at `lsn` and publishes it. `durable` says the
    /// log holds it durably; if not, its LSN is leased first, so no reader sees an LSN a
    /// crash could hand out again.
    pub(crate) fn apply_one(
        &self,
        lsn: u64,
        record: Option<&RecordRef<'_>>,
        durable: bool,
    ) -> Result<Applied> {
        self.check_writable()?;
        let durable_lsn = if durable {
            lsn.max(self.wal.durable_lsn())
        } else {
            self.wal.durable_lsn()
        };
        let mut state = self.apply.lock();
        if lsn <= state.last {
            return Err(Error::InvalidArgument(format!(
                "record {lsn} is at or below the last applied, {}",
                state.last
            )));
        }
        if lsn > durable_lsn
            && let Err(error) = self.lease(lsn)
        {
            return Err(self.poison(error));
        }
        let env = ApplyEnv {
            fs: &self.fs,
            gen_dir: &self.gen_dir,
            options: &self.options,
            block_cache: &self.block_cache,
            durable_lsn,
        };
        // The published tables are always the apply state's as of the last record.
        let tables_before = Arc::as_ptr(&state.tables);
        match apply_record(&env, &mut state, lsn, record) {
            Ok(applied) => {
                if std::mem::take(&mut state.full_freeze) {
                    self.full_freeze_at(&state);
                }
                if std::ptr::eq(tables_before, Arc::as_ptr(&state.tables)) {
                    self.visible.store(state.last, Ordering::Release);
                } else {
                    let mut tables = self.published.write();
                    *tables = Arc::clone(&state.tables);
                    self.visible.store(state.last, Ordering::Release);
                }
                Ok(applied)
            }
            Err(error) => Err(self.poison(error)),
        }
    }

    /// The record just applied froze a table's full memtable: pins the state there for the
    /// next background checkpoint, and wakes the background thread to flush the memtable.
    /// Not inside a recovery window, where tables stand at different LSNs.
    fn full_freeze_at(&self, state: &ApplyState) {
        if state.window.is_none()
            && let Some(pinned) = Pinned::without_views(state)
        {
            *self.boundary.lock() = Some(pinned);
        }
        // Under the lock the background thread waits with, so the wake cannot fall between
        // its check of `stop` and its wait.
        let _stop = self.stop.lock();
        self.wake.notify_one();
    }

    /// Makes sure `lsn` is under the durable LSN lease.
    fn lease(&self, lsn: u64) -> Result<()> {
        if lsn <= self.lease.load(Ordering::Acquire) || lsn <= self.stored.lock().lsn_lease {
            return Ok(());
        }
        self.store_state(|state| state.lsn_lease = lsn.saturating_add(LEASE_STEP))
    }

    /// Durably replaces the state file with the stored state changed by `change`.
    pub(crate) fn store_state(&self, change: impl FnOnce(&mut DbState)) -> Result<()> {
        let mut stored = self.stored.lock();
        let mut next = stored.clone();
        change(&mut next);
        next.store(&*self.fs, &self.gen_dir)?;
        self.lease.fetch_max(next.lsn_lease, Ordering::AcqRel);
        *stored = next;
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<u64> {
        let durable = self.wal.sync()?;
        for table in self.published().1.iter() {
            table.engine.set_durable_lsn(durable);
        }
        Ok(durable)
    }

    /// A Db-wide checkpoint at the visible LSN, as DESIGN.md's numbered steps.
    pub(crate) fn checkpoint(&self) -> Result<u64> {
        let mut clock = self.checkpoints.lock();
        // 1. C is the visible LSN; pin every table's state at C.
        let pinned = Pinned::new(&self.apply.lock());
        self.checkpoint_pinned(&mut clock, pinned)
    }

    /// The background's checkpoint: at the last record that froze a full LSM memtable, if
    /// that is above the last checkpoint, else at the visible LSN. At such a record the
    /// memtable is already frozen (and usually flushed), so the checkpoint freezes nothing:
    /// one at an arbitrary LSN would freeze a partial memtable and shift every later
    /// freeze, leaving a fuller memtable for whoever checkpoints next.
    fn checkpoint_background(&self) -> Result<u64> {
        let mut clock = self.checkpoints.lock();
        let done = self.stored.lock().done.as_ref().map_or(0, |d| d.lsn);
        let boundary = self.boundary.lock().take().filter(|p| p.image.lsn > done);
        let pinned = match boundary {
            Some(pinned) => pinned,
            None => Pinned::new(&self.apply.lock()),
        };
        self.checkpoint_pinned(&mut clock, pinned)
    }

    /// Steps 2 to 4 of a checkpoint at the LSN `pinned` was taken at, which may lie below
    /// the visible LSN: the image holds the Db's state there, and each table checkpoints
    /// exactly the records through it (from the view pinned with it, or from its own state
    /// for an engine that needs none).
    fn checkpoint_pinned(&self, clock: &mut CheckpointClock, pinned: Pinned) -> Result<u64> {
        let log_bytes = self.wal.stats().bytes;
        let Pinned {
            image,
            tables: pinned,
        } = pinned;
        let c = image.lsn;
        let done = self.stored.lock().done.as_ref().map_or(0, |d| d.lsn);
        if c <= done {
            return Ok(done);
        }
        // 2. The intent, with the aborts of its window.
        self.store_state(|state| {
            state.intent = Some(image.clone());
            state.lsn_lease = state.lsn_lease.max(c);
        })?;
        // 3. The log durable through C, then every table (idle ones too) at C.
        let durable = self.wal.sync()?;
        for (table, view) in &pinned {
            table.engine.set_durable_lsn(durable);
            match view {
                Some(view) => table.engine.checkpoint_view(view.as_ref(), c)?,
                None => table.engine.checkpoint(c)?,
            }
        }
        // 4. Done. Then what it lets go: the files of tables dropped at or below C, the
        // log through C.
        self.store_state(|state| {
            state.done = Some(image);
            state.intent = None;
        })?;
        let gone: Vec<u64> = {
            let mut state = self.apply.lock();
            state.aborts.retain(|&lsn| lsn > c);
            let (gone, kept): (Vec<_>, Vec<_>) = state
                .dropped
                .iter()
                .partition(|&&(_, dropped)| dropped <= c);
            state.dropped = kept;
            gone.into_iter().map(|(id, _)| id).collect()
        };
        for id in gone {
            remove_table_dir(&self.fs, &self.gen_dir, id)?;
        }
        let retain_from = self.retain_from.load(std::sync::atomic::Ordering::Acquire);
        let purge_through = c.min(retain_from.saturating_sub(1));
        if self.options.purge_log && purge_through > 0 {
            self.wal.purge(LogId {
                lsn: Lsn(purge_through),
                term: Term(0),
                node: NodeId(0),
            })?;
        }
        *clock = CheckpointClock {
            at: self.options.clock.now(),
            log_bytes,
        };
        Ok(c)
    }

    /// Whether a background checkpoint is due: log bytes, age, or memory.
    fn checkpoint_due(&self) -> bool {
        let (log_bytes, age) = {
            let clock = self.checkpoints.lock();
            (
                self.wal.stats().bytes.saturating_sub(clock.log_bytes),
                self.options.clock.now().saturating_sub(clock.at),
            )
        };
        if log_bytes == 0 {
            return false;
        }
        let memory: u64 = self
            .published()
            .1
            .iter()
            .map(|t| t.engine.memory_bytes())
            .sum();
        log_bytes >= self.options.checkpoint_log_bytes
            || age >= self.options.checkpoint_interval
            || memory >= self.options.memory_budget
    }

    /// One round of background work: syncs no-sync writes, runs flushes and compactions
    /// until none is left (at most a bounded number of steps), then a checkpoint if due.
    pub(crate) fn maintenance_round(&self) -> Result<bool> {
        let mut worked = false;
        if self
            .wal
            .last_log_id()
            .is_some_and(|last| last.lsn.0 > self.wal.durable_lsn())
            && !self.wal.is_poisoned()
        {
            self.sync()?;
            worked = true;
        }
        let tables = self.published().1;
        let durable = self.wal.durable_lsn();
        for table in tables.iter() {
            table.engine.set_durable_lsn(durable);
            for _ in 0..64 {
                if !table.engine.maintenance_step()? {
                    break;
                }
                worked = true;
            }
        }
        if self.checkpoint_due() {
            self.checkpoint_background()?;
            worked = true;
        }
        Ok(worked)
    }

    fn stats(&self) -> DbStats {
        let (visible, tables) = self.published();
        let checkpoint_lsn = self.stored.lock().done.as_ref().map(|d| d.lsn);
        DbStats {
            visible_lsn: visible,
            durable_lsn: self.wal.durable_lsn(),
            checkpoint_lsn,
            log_pinned_by: {
                let retain_from = self.retain_from.load(std::sync::atomic::Ordering::Acquire);
                match checkpoint_lsn {
                    Some(c) if retain_from <= c => format!("retention point at LSN {retain_from}"),
                    Some(c) => format!("checkpoint at LSN {c}"),
                    None => "no checkpoint yet: the whole log".to_string(),
                }
            },
            wal: self.wal.stats(),
            tables: tables
                .iter()
                .map(|t| TableStats {
                    desc: t.desc.clone(),
                    watermark: t.engine.watermark(),
                    last_applied: t.engine.last_applied(),
                    memory_bytes: t.engine.memory_bytes(),
                    work: t.engine.work(),
                })
                .collect(),
            background_error: self
                .background_error
                .lock()
                .as_ref()
                .map(ToString::to_string),
            read_only: self.read_only.lock().clone(),
            lsn_lease: self.stored.lock().lsn_lease,
        }
    }
}

/// Deletes the directory of table `id` and everything in it.
pub(crate) fn remove_table_dir(fs: &FsRef, gen_dir: &Path, id: u64) -> Result<()> {
    let dir = table_dir(gen_dir, id);
    remove_dir_all(fs, &dir)?;
    fs.sync_dir(gen_dir)
        .map_err(|e| Error::io(format!("sync {}", gen_dir.display()), e))
}

/// Deletes `dir` and everything in it (nothing if it does not exist).
pub(crate) fn remove_dir_all(fs: &FsRef, dir: &Path) -> Result<()> {
    if !fs
        .exists(dir)
        .map_err(|e| Error::io(format!("stat {}", dir.display()), e))?
    {
        return Ok(());
    }
    let entries = fs
        .read_dir(dir)
        .map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    for name in entries {
        let path = dir.join(name);
        if fs.remove_file(&path).is_err() {
            remove_dir_all(fs, &path)?;
        }
    }
    fs.remove_dir(dir)
        .map_err(|e| Error::io(format!("remove {}", dir.display()), e))
}

/// A record's answer that is given even if applying the record panics: the log catches the
/// panic and poisons itself, but the callback's `done` would be dropped unanswered and its
/// writer would wait forever. Dropped while still holding `done` (only while unwinding), it
/// answers that the outcome is unknown: the record is in the log, and a reopen replays it.
struct AnswerOnUnwind<F: FnOnce(Result<Applied>)> {
    done: Option<F>,
    lsn: Option<Lsn>,
}

impl<F: FnOnce(Result<Applied>)> AnswerOnUnwind<F> {
    fn new(done: F, lsn: Option<Lsn>) -> Self {
        Self {
            done: Some(done),
            lsn,
        }
    }

    fn answer(mut self, result: Result<Applied>) {
        if let Some(done) = self.done.take() {
            done(result);
        }
    }
}

impl<F: FnOnce(Result<Applied>)> Drop for AnswerOnUnwind<F> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(Error::Unknown(format!(
                "{} is logged but applying it panicked (the log is poisoned)",
                RecordName(self.lsn)
            ))));
        }
    }
}

/// `done` reachable from two places: the first handle goes into the log's callback, the
/// second stays with the caller. The log drops a callback it refuses without calling it,
/// so the caller gives the refusal through the second; whichever is called first calls
/// `done`, and the other does nothing.
pub(crate) fn refusable<T, F: FnOnce(T) + Send + 'static>(
    done: F,
) -> (impl FnOnce(T) + Send + 'static, impl FnOnce(T)) {
    fn answer<T, F: FnOnce(T)>(slot: &Mutex<Option<F>>, result: T) {
        if let Some(done) = slot.lock().take() {
            done(result);
        }
    }
    let slot = Arc::new(Mutex::new(Some(done)));
    let from_log = Arc::clone(&slot);
    (
        move |result| answer(&from_log, result),
        move |result| answer(&slot, result),
    )
}

/// A logged record in a message: by its LSN, if the log handed the record back.
pub(crate) struct RecordName(pub(crate) Option<Lsn>);

impl std::fmt::Display for RecordName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(lsn) => write!(f, "record {lsn}"),
            None => f.write_str("the record"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use std::sync::mpsc;

    use super::*;
    use crate::batch::Condition;
    use crate::engine::EngineKind;
    use crate::record::Check;

    fn open() -> Db {
        let options = DbOptions {
            fs: Arc::new(popdb_io::SimFs::new(7)),
            background: false,
            ..DbOptions::default()
        };
        let db = Db::open(Path::new("/db"), options).unwrap();
        db.create_table("t", TableOptions::new(EngineKind::Lsm))
            .unwrap();
        db
    }

    fn put(key: &str, value: &str) -> Commit {
        let mut writes = WriteBatch::new();
        writes.put("t", key, value);
        Commit {
            writes,
            ..Commit::default()
        }
    }

    /// `write_one` and `write_one_with` do what a batch of that one write does: the same
    /// LSNs, the same values afterwards, the same refusals (unknown table, key and value
    /// limits), on both engines.
    #[test]
    fn write_one_matches_a_one_write_batch() {
        use crate::limits::{KEY_SIZE_MAX, VALUE_SIZE_MAX};
        let (batched, single) = (open(), open());
        for db in [&batched, &single] {
            db.create_table("b", TableOptions::new(EngineKind::Btree))
                .unwrap();
        }
        let mut rng = popdb_testkit::Rng(11);
        for i in 0..400 {
            let table = ["t", "b", "missing"][rng.index(3)];
            let key = match rng.below(40) {
                0 => vec![1; KEY_SIZE_MAX + 1],
                1 => Vec::new(),
                _ => rng.bytes(6, b"abc"),
            };
            let value = match rng.below(40) {
                0 => Some(vec![2; VALUE_SIZE_MAX + 1]),
                1..10 => None,
                _ => Some(rng.bytes(20, b"xyz")),
            };
            let mut batch = WriteBatch::new();
            match &value {
                Some(value) => batch.put(table, &key, value),
                None => batch.delete(table, &key),
            };
            let expected = batched.write(batch);
            let got = if i % 2 == 0 {
                single.write_one(table, &key, value.as_deref(), WriteOptions::default())
            } else {
                let (sender, receiver) = mpsc::channel();
                single.write_one_with(
                    table,
                    &key,
                    value.as_deref(),
                    WriteOptions::default(),
                    move |result| sender.send(result).unwrap(),
                );
                receiver.recv().unwrap()
            };
            assert_eq!(format!("{got:?}"), format!("{expected:?}"), "write {i}");
            if table != "missing" && key.len() <= KEY_SIZE_MAX {
                assert_eq!(
                    single.get(table, &key).unwrap(),
                    batched.get(table, &key).unwrap()
                );
            }
        }
        assert!(single.visible_lsn() > 100, "most writes committed");
        assert_eq!(single.visible_lsn(), batched.visible_lsn());
    }

    /// `write_one_leading` hands the lead back only for a no-sync write that found the log
    /// idle; until the lead runs the write is neither answered nor visible, and once it
    /// runs (or drops) the write and those queued behind it are, in LSN order.
    #[test]
    fn write_one_leading_writes_when_the_lead_runs() {
        let db = open();
        let nosync = WriteOptions {
            durability: Some(Durability::NoSync),
        };
        let (sender, receiver) = mpsc::channel();
        let answer = |sender: &mpsc::Sender<Result<u64>>| {
            let sender = sender.clone();
            move |result| sender.send(result).unwrap()
        };
        for round in 0..3_u8 {
            let before = db.visible_lsn();
            let lead = db
                .write_one_leading("t", &[round], Some(b"v"), nosync, answer(&sender))
                .expect("an idle log leads a no-sync write");
            db.write_one_with("t", &[round, 1], Some(b"w"), nosync, answer(&sender));
            assert!(
                receiver.recv_timeout(Duration::from_millis(20)).is_err(),
                "answered before the lead ran"
            );
            assert_eq!(db.get("t", &[round]).unwrap(), None);
            match round {
                0 => lead.run(),
                1 => lead.run_if_at_most(1),
                _ => drop(lead),
            }
            let lsns = [receiver.recv().unwrap(), receiver.recv().unwrap()];
            assert_eq!(lsns.map(Result::unwrap), [before + 1, before + 2]);
            assert_eq!(db.get("t", &[round, 1]).unwrap().unwrap().0, b"w");
        }
        // A synced write is the writer thread's to sync; a refused one is answered here.
        let synced = WriteOptions {
            durability: Some(Durability::Sync),
        };
        assert!(
            db.write_one_leading("t", b"s", Some(b"v"), synced, answer(&sender))
                .is_none()
        );
        assert!(receiver.recv().unwrap().is_ok());
        assert!(
            db.write_one_leading("missing", b"k", Some(b"v"), nosync, answer(&sender))
                .is_none()
        );
        assert!(matches!(
            receiver.recv().unwrap(),
            Err(Error::UnknownTable(_))
        ));
    }

    /// A callback hears of its commit once it is applied: the value is visible at its LSN,
    /// and the answers come in LSN order.
    #[test]
    fn commit_with_answers_once_applied_in_lsn_order() {
        let db = Arc::new(open());
        let (tx, rx) = mpsc::channel();
        for i in 0..200 {
            let tx = tx.clone();
            let seen = Arc::clone(&db);
            let key = format!("k{i:03}");
            db.commit_with(put(&key, "v"), move |result| {
                let lsn = result.unwrap();
                let (value, version) = seen.get("t", key.as_bytes()).unwrap().unwrap();
                assert_eq!((value.as_slice(), version), (b"v".as_slice(), lsn));
                assert!(seen.visible_lsn() >= lsn);
                tx.send(lsn).unwrap();
            });
        }
        drop(tx);
        let lsns: Vec<u64> = rx.iter().collect();
        assert_eq!(lsns.len(), 200);
        assert!(lsns.windows(2).all(|w| w[0] < w[1]), "{lsns:?}");
    }

    /// Readers racing table creations and writes see the tables live at the LSN they read
    /// at: a table created at or below it (one whose creation had returned before the view
    /// was taken, for one) is there, with its id; none created above it is.
    #[test]
    fn read_views_racing_creations_see_the_tables_of_their_lsn() {
        let db = open();
        let created: Mutex<Vec<(String, u64)>> = Mutex::default();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..60 {
                    let name = format!("c{i:02}");
                    let desc = db
                        .create_table(&name, TableOptions::new(EngineKind::Lsm))
                        .unwrap();
                    created.lock().push((name, desc.id));
                    db.commit(Commit {
                        durability: Some(Durability::NoSync),
                        ..put(&format!("k{i}"), "v")
                    })
                    .unwrap();
                }
                done.store(true, Ordering::Release);
            });
            let mut views = 0;
            while !done.load(Ordering::Acquire) || views == 0 {
                let known = created.lock().clone();
                let view = db.read_view().unwrap();
                for (name, id) in &known {
                    assert_eq!(
                        view.table_id(name).unwrap(),
                        *id,
                        "{name} at {}",
                        view.lsn()
                    );
                }
                for i in 0..60 {
                    if let Ok(id) = view.table_id(&format!("c{i:02}")) {
                        assert!(id <= view.lsn(), "table {id} above view {}", view.lsn());
                    }
                }
                views += 1;
            }
        });
    }

    /// The ticket gives what `commit` gives: a conflict is a conflict, a refusal before
    /// logging is the same error, a resent idempotency key its first outcome.
    #[test]
    fn commit_async_outcomes_match_commit() {
        let db = open();
        let lsn = db.commit_async(put("a", "1")).wait().unwrap();
        let conflict = Commit {
            conditions: vec![Condition {
                table: "t".into(),
                check: Check::Absent { key: b"a".to_vec() },
            }],
            ..put("b", "2")
        };
        assert!(matches!(
            db.commit_async(conflict.clone()).wait(),
            Err(Error::Conflict { condition: 0, .. })
        ));
        assert!(matches!(db.commit(conflict), Err(Error::Conflict { .. })));
        let mut unknown = WriteBatch::new();
        unknown.put("nope", "k", "v");
        let unknown = Commit {
            writes: unknown,
            ..Commit::default()
        };
        assert!(matches!(
            db.commit_async(unknown).wait(),
            Err(Error::UnknownTable(_))
        ));
        let key = crate::record::IdempotencyKey {
            client: 7,
            sequence: 1,
        };
        let first = db
            .commit_async(Commit {
                idempotency: Some(key),
                ..put("c", "3")
            })
            .wait()
            .unwrap();
        let again = db
            .commit_async(Commit {
                idempotency: Some(key),
                ..put("c", "4")
            })
            .wait()
            .unwrap();
        assert_eq!(again, first);
        assert!(first > lsn);
        assert_eq!(db.get("t", b"c").unwrap(), Some((b"3".to_vec(), first)));
    }
}
