//! The log's public handle: appends (blocking, awaited, or with a callback), reads, the Raft
//! operations (truncate, purge, vote), and close.
//!
//! Concurrency: callers take the state lock only to validate, assign LSNs and queue their
//! requests. Whoever leads (a blocking caller that found the log idle, or else the
//! background writer thread) holds the writer and turns everything queued into one write
//! and at most one fdatasync (group commit), synced as the policy and the requests in it
//! ask. Records queued but not yet written are readable from the queue, so a record can be
//! read as soon as its append returns (openraft relies on that). Callbacks run after the
//! leader has released the writer.
//!
//! Lock order: `Wal::writer`, then `Shared::state`; never the reverse. The notifier's,
//! the slots' and the deferred callbacks' locks are leaves. File I/O happens outside the
//! state lock.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use popdb_io::{DirLock, FsRef};

use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::format::RecordHeader;
use crate::ids::{LogId, Lsn, NodeId, Record, RecordKind, Term};
use crate::index::Index;
use crate::options::{Durability, WalOptions};
use crate::recovery::{self, RecoveryReport};
use crate::scan::record_size;
use crate::state::VOTE_SIZE_MAX;
use crate::ticket::{AppendCompletion, Appended, Completion, Deferred, Notifier, Slot, Ticket};
use crate::writer::{SyncPoint, Writer, run_callbacks};

/// The shared write-ahead log. See the crate docs.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Writer>>,
    background: Option<JoinHandle<()>>,
    _lock: DirLock,
}

/// The duty to write a queued group, given to an appender that found the log idle
/// ([`Wal::append_at_with_durability`]). [`Lead::run`] does it; dropping it does it too,
/// since the log writes nothing else until it is done.
#[must_use = "the log waits for this caller to write the group: call `run`"]
pub struct Lead<'a> {
    wal: Option<&'a Wal>,
}

impl Lead<'_> {
    /// Writes the queued group (and what queues meanwhile) and runs the completed
    /// callbacks; nothing if another thread leads.
    pub fn run(mut self) {
        if let Some(wal) = self.wal.take() {
            wal.lead_queued();
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if let Some(wal) = self.wal.take() {
            wal.lead_queued();
        }
    }
}

impl Lead<'_> {
    /// The same duty, holding the log's shared parts instead of borrowing it, so that it
    /// can be run later on another thread or task: an event loop that takes the lead can
    /// run it once it has read what else is ready, and write all of that as one group.
    /// Until it runs, the log writes nothing (appends queue behind it): run it soon.
    /// `None` if this caller does not lead (another thread writes the group).
    pub fn into_owned(mut self) -> Option<OwnedLead> {
        let wal = self.wal.take()?;
        Some(OwnedLead {
            parts: Some((Arc::clone(&wal.shared), Arc::clone(&wal.writer))),
        })
    }
}

/// A [`Lead`] that owns what it needs ([`Lead::into_owned`]). [`OwnedLead::run`] writes
/// the queued group; dropping it does too.
#[must_use = "the log waits for this lead to write the group: call `run`"]
pub struct OwnedLead {
    parts: Option<(Arc<Shared>, Arc<Mutex<Writer>>)>,
}

impl OwnedLead {
    /// Writes the queued group here and runs the completed callbacks; what queues
    /// meanwhile goes to the log's writer thread, so the caller is held for one group.
    pub fn run(mut self) {
        self.lead();
    }

    /// [`OwnedLead::run`] if at most `records` records are queued (a request other than an
    /// append counts as one); otherwise the lead passes to the log's writer thread, which
    /// writes the group while the caller goes on. An event loop uses it to write a small
    /// group itself, sparing two thread hand-offs, and to leave a large one (whose write
    /// and its callbacks' work, which grows with its records, would stall its other
    /// connections) to the writer.
    pub fn run_if_at_most(mut self, records: usize) {
        let Some((shared, _)) = &self.parts else {
            return;
        };
        let mut state = shared.state.lock();
        let mut queued = 0_usize;
        let small = state.requests.iter().all(|request| {
            queued += match request {
                Request::Append(append) => append.records.len(),
                _ => 1,
            };
            queued <= records
        });
        if small || state.poisoned.is_some() {
            drop(state);
            return self.lead();
        }
        state.leading = false;
        drop(state);
        shared.work.notify_one();
        self.parts = None;
    }

    fn lead(&mut self) {
        if let Some((shared, writer)) = self.parts.take() {
            writer.lock().lead_one_group();
            run_callbacks(&shared, &writer);
        }
    }
}

impl Drop for OwnedLead {
    fn drop(&mut self) {
        self.lead();
    }
}

impl std::fmt::Debug for OwnedLead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedLead")
            .field("leads", &self.parts.is_some())
            .finish()
    }
}

/// A record to append at the next LSN.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// Term of the leader writing it (0 without Raft).
    pub term: Term,
    /// Node id of the leader writing it (0 without Raft).
    pub node: NodeId,
    /// What it holds.
    pub kind: RecordKind,
    /// Opaque bytes.
    pub payload: Vec<u8>,
}

impl NewRecord {
    /// The record as appended at `lsn`.
    fn at(self, lsn: Lsn) -> Record {
        Record {
            id: LogId {
                lsn,
                term: self.term,
                node: self.node,
            },
            kind: self.kind,
            payload: self.payload,
        }
    }
}

/// Counters of the log's work since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records appended.
    pub records: u64,
    /// Group-commit writes (units) made.
    pub writes: u64,
    /// fdatasync calls on segments.
    pub syncs: u64,
    /// Bytes written into segments (headers included).
    pub bytes: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments turned back into spares or deleted.
    pub segments_recycled: u64,
    /// Completion callbacks that panicked (caught; the first poisoned the log).
    pub callback_panics: u64,
}

pub(crate) struct Shared {
    pub(crate) fs: FsRef,
    pub(crate) dir: PathBuf,
    pub(crate) options: WalOptions,
    pub(crate) state: Mutex<State>,
    /// Signalled when work is queued or the log closes; the writer waits on it.
    pub(crate) work: Condvar,
    /// Signalled when queued bytes drop; appenders over the budget wait on it.
    pub(crate) room: Condvar,
    /// Wakes appenders blocked on their tickets, once per completed group.
    pub(crate) notifier: Arc<Notifier>,
    /// Callbacks to run once the writer is released.
    pub(crate) deferred: Arc<Deferred>,
    /// `State::durable`, stored under the state lock whenever it changes, so that
    /// [`Wal::durable_lsn`] (asked once per record by the Db's apply stage) does not take
    /// the lock every appender takes.
    pub(crate) durable: AtomicU64,
}

pub(crate) struct State {
    /// The LSN the next appended record gets.
    pub(crate) next_lsn: u64,
    /// The last record appended (queued or written), or the purge point if the log is empty.
    pub(crate) last: Option<LogId>,
    pub(crate) purged: Option<LogId>,
    pub(crate) vote: Option<Vec<u8>>,
    pub(crate) requests: VecDeque<Request>,
    pub(crate) queued_bytes: u64,
    /// Records accepted but not yet in `index`, in LSN order.
    pub(crate) unwritten: VecDeque<Batch>,
    pub(crate) index: Index,
    /// Highest LSN known durable.
    pub(crate) durable: u64,
    pub(crate) poisoned: Option<Arc<Error>>,
    pub(crate) closed: bool,
    /// Someone (an appender or the background writer) holds the writer and is working
    /// through the queue; others only queue.
    pub(crate) leading: bool,
    /// The tail has written bytes not yet synced (mirrors the writer, for the interval timer).
    pub(crate) unsynced: bool,
    /// When the tail was last synced (mirrors the writer).
    pub(crate) last_sync: std::time::Duration,
    pub(crate) stats: WalStats,
}

pub(crate) enum Request {
    Append(AppendRequest),
    Truncate {
        from: u64,
        completion: Completion<()>,
    },
    Purge {
        upto: LogId,
        completion: Completion<()>,
    },
    SaveVote {
        vote: Vec<u8>,
        completion: Completion<()>,
    },
    Sync {
        completion: Completion<SyncPoint>,
    },
}

pub(crate) struct AppendRequest {
    pub(crate) records: Batch,
    pub(crate) bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) completion: AppendCompletion,
}

impl Request {
    pub(crate) fn fail(self, error: Error, deferred: &Deferred) {
        match self {
            Request::Append(r) => {
                r.completion.complete(Err(error), &r.records, deferred);
            }
            Request::Truncate { completion, .. }
            | Request::Purge { completion, .. }
            | Request::SaveVote { completion, .. } => completion.complete(Err(error)),
            Request::Sync { completion } => completion.complete(Err(error)),
        }
    }
}

impl State {
    fn refuse_if_unusable(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned {
                cause: Arc::clone(cause),
            });
        }
        Ok(())
    }
}

impl Wal {
    /// Opens the log in `dir`, creating it if there is none, and recovers it: reads every
    /// live segment from the medium, truncates a torn tail, and reports what it did.
    ///
    /// # Errors
    /// `Corruption` if the log is damaged anywhere but a torn tail (nothing is deleted);
    /// `Io` if the directory cannot be read or locked; `InvalidArgument` for bad options.
    pub fn open(fs: FsRef, dir: &Path, options: WalOptions) -> Result<(Wal, RecoveryReport)> {
        options.validate().map_err(Error::InvalidArgument)?;
        let recovered = recovery::recover(&fs, dir, &options)?;
        let report = recovered.report.clone();
        let state = State {
            next_lsn: recovered.next_lsn,
            last: recovered.last,
            purged: recovered.state.purged,
            vote: recovered.state.vote.clone(),
            requests: VecDeque::new(),
            queued_bytes: 0,
            unwritten: VecDeque::new(),
            index: recovered.index,
            durable: recovered.next_lsn - 1,
            poisoned: None,
            closed: false,
            leading: false,
            unsynced: false,
            last_sync: options.clock.now(),
            stats: WalStats::default(),
        };
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(state),
            work: Condvar::new(),
            room: Condvar::new(),
            notifier: Arc::default(),
            deferred: Arc::default(),
            durable: AtomicU64::new(recovered.next_lsn - 1),
        });
        let writer = Arc::new(Mutex::new(Writer::new(
            Arc::clone(&shared),
            recovered.writer,
        )));
        let background = {
            let (shared, writer) = (Arc::clone(&shared), Arc::clone(&writer));
            std::thread::Builder::new()
                .name("popdb-wal-writer".to_string())
                .spawn(move || Writer::run_background(shared, writer))
                .map_err(|e| Error::io("spawn log writer", e))?
        };
        Ok((
            Wal {
                shared,
                writer,
                background: Some(background),
                _lock: recovered.lock,
            },
            report,
        ))
    }

    /// Appends one record at the next LSN and waits for the outcome.
    pub fn append(&self, kind: RecordKind, payload: Vec<u8>) -> Result<Appended> {
        self.append_records(vec![NewRecord {
            term: Term(0),
            node: NodeId(0),
            kind,
            payload,
        }])
    }

    /// Appends records at the next LSNs, as one request, and waits for the outcome.
    ///
    /// If no one is writing, the calling thread writes the group itself (one write, one
    /// sync, no hand-off to another thread); otherwise it joins the next group.
    pub fn append_records(&self, records: Vec<NewRecord>) -> Result<Appended> {
        let slot = Slot::new(&self.shared.notifier);
        let lead = self.enqueue_append(
            Placement::Next(records),
            Durability::Policy,
            AppendCompletion::slot(Arc::clone(&slot)),
            true,
        )?;
        self.wait_led(lead, slot)
    }

    /// Appends records at the next LSNs, as one request (they are written in one write).
    ///
    /// # Errors
    /// Refused at once, changing nothing, if a record is too large, the batch is empty,
    /// or the log is poisoned or closed; otherwise the ticket carries the outcome.
    pub fn submit(&self, records: Vec<NewRecord>) -> Result<Ticket<Appended>> {
        self.submit_with_durability(records, Durability::Policy)
    }

    /// Like submit, with the durability this request needs: [`Durability::Sync`] completes
    /// only once the records are durable, whatever the sync policy; [`Durability::NoSync`]
    /// completes once they are written, and they become durable with the next sync. Either
    /// way the request joins the next group with whatever else is queued.
    ///
    /// # Errors
    /// As [`Wal::submit`].
    pub fn submit_with_durability(
        &self,
        records: Vec<NewRecord>,
        durability: Durability,
    ) -> Result<Ticket<Appended>> {
        let slot = Slot::new(&self.shared.notifier);
        self.enqueue_append(
            Placement::Next(records),
            durability,
            AppendCompletion::slot(Arc::clone(&slot)),
            false,
        )?;
        Ok(Ticket::new(slot))
    }

    /// Appends records whose LSNs the caller chose (Raft's `append`): the first must be the
    /// log's next LSN and the rest consecutive.
    ///
    /// # Errors
    /// Refused at once, changing nothing, if the LSNs do not follow the log's last one (or
    /// its purge point), a record is too large, or the log is poisoned or closed.
    pub fn submit_at(&self, records: Vec<Record>) -> Result<Ticket<Appended>> {
        let slot = Slot::new(&self.shared.notifier);
        self.enqueue_append(
            Placement::At(records),
            Durability::Policy,
            AppendCompletion::slot(Arc::clone(&slot)),
            false,
        )?;
        Ok(Ticket::new(slot))
    }

    /// Like [`Wal::submit_at`], but the outcome goes to `callback` (openraft's flush
    /// callback can be passed straight through). Callbacks are called once each, in LSN
    /// order, after their group is written, on whichever thread led that group, never while
    /// the log's locks are held: a callback may call the log again. One that panics is
    /// caught, counted in [`WalStats::callback_panics`], and poisons the log
    /// ([`Error::Panicked`] is the cause): every later callback gets that error instead of
    /// its result, since it may build on what the panic left half done. Keep them short:
    /// the next callbacks wait for them.
    ///
    /// # Errors
    /// As [`Wal::submit_at`]; on a refusal the callback is not called.
    pub fn submit_at_with(
        &self,
        records: Vec<Record>,
        callback: impl FnOnce(Result<Appended>) + Send + 'static,
    ) -> Result<()> {
        self.submit_at_with_durability(records, Durability::Policy, callback)
    }

    /// Like submit_at_with, with the durability this request needs (see
    /// [`Wal::submit_with_durability`]). Callbacks still run in LSN order, whatever each
    /// request asked: a [`Durability::NoSync`] callback never overtakes an earlier
    /// [`Durability::Sync`] one.
    ///
    /// # Errors
    /// As [`Wal::submit_at`]; on a refusal the callback is not called.
    pub fn submit_at_with_durability(
        &self,
        records: Vec<Record>,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>) + Send + 'static,
    ) -> Result<()> {
        self.enqueue_append(
            Placement::At(records),
            durability,
            AppendCompletion::callback(Box::new(callback)),
            false,
        )
        .map(|_| ())
    }

    /// Like [`Wal::submit_at_with_durability`], but if no one is writing, the caller is
    /// handed the lead: the returned [`Lead`] writes the queued group (and whatever queues
    /// meanwhile) on the caller's thread and then runs the completed callbacks, its own
    /// included, so an uncontended append makes no hand-off to another thread. Run it after
    /// releasing any lock other appenders need (the Db holds its sequencer lock only to
    /// queue): leading under such a lock would serialize the group commit behind it.
    ///
    /// # Errors
    /// As [`Wal::submit_at`]; on a refusal the callback is not called.
    pub fn append_at_with_durability(
        &self,
        records: Vec<Record>,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>) + Send + 'static,
    ) -> Result<Lead<'_>> {
        let lead = self.enqueue_append(
            Placement::At(records),
            durability,
            AppendCompletion::callback(Box::new(callback)),
            true,
        )?;
        Ok(Lead {
            wal: lead.then_some(self),
        })
    }

    /// Like [`Wal::append_at_with_durability`], but `callback` also gets the records
    /// appended: the log's own copy, so a caller that needs them once they are written
    /// (the Db applies its record from it) keeps no copy of its own.
    ///
    /// # Errors
    /// As [`Wal::submit_at`]; on a refusal the callback is not called.
    pub fn append_at_reading(
        &self,
        records: Vec<Record>,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<Lead<'_>> {
        self.lead_reading(Placement::At(records), durability, callback)
    }

    /// Like [`Wal::submit_at_with_durability`], but `callback` also gets the records
    /// appended, as [`Wal::append_at_reading`] gives them.
    ///
    /// # Errors
    /// As [`Wal::submit_at`]; on a refusal the callback is not called.
    pub fn submit_at_reading(
        &self,
        records: Vec<Record>,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<()> {
        self.submit_placed_reading(Placement::At(records), durability, callback)
    }

    /// Like [`Wal::append_at_reading`], for one record at the next LSN, which the log
    /// chooses as it queues the record (the callback reads it from the record it is handed):
    /// a caller that needs its LSN only once the record is written takes no lock of its own
    /// to keep LSNs in queue order, and no vector of one record is built.
    ///
    /// # Errors
    /// As [`Wal::submit`]; on a refusal the callback is not called.
    pub fn append_one_reading(
        &self,
        record: NewRecord,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<Lead<'_>> {
        self.lead_reading(Placement::One(record), durability, callback)
    }

    /// Like [`Wal::append_one_reading`], but never hands the caller the lead: the
    /// background writer writes the record (see [`Wal::submit_at_reading`]).
    ///
    /// # Errors
    /// As [`Wal::submit`]; on a refusal the callback is not called.
    pub fn submit_one_reading(
        &self,
        record: NewRecord,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<()> {
        self.submit_placed_reading(Placement::One(record), durability, callback)
    }

    /// Like [`Wal::append_one_reading`], for records at the next LSNs, as one request (one
    /// callback, handed all of them): a caller gathering many small records (a server's
    /// point writes of one round of its event loop) pays the request's costs (its queue entry, its
    /// callback, the callback's allocations) once for all of them.
    ///
    /// # Errors
    /// As [`Wal::submit`]; on a refusal the callback is not called.
    pub fn append_reading(
        &self,
        records: Vec<NewRecord>,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<Lead<'_>> {
        self.lead_reading(Placement::Next(records), durability, callback)
    }

    /// Like [`Wal::append_reading`], but never hands the caller the lead: the background
    /// writer writes the records.
    ///
    /// # Errors
    /// As [`Wal::submit`]; on a refusal the callback is not called.
    pub fn submit_reading(
        &self,
        records: Vec<NewRecord>,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<()> {
        self.submit_placed_reading(Placement::Next(records), durability, callback)
    }

    /// Queues an append whose callback reads the records; hands the caller the lead if no
    /// one is writing.
    fn lead_reading(
        &self,
        placement: Placement,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<Lead<'_>> {
        let lead = self.enqueue_append(
            placement,
            durability,
            AppendCompletion::reading(Box::new(callback)),
            true,
        )?;
        Ok(Lead {
            wal: lead.then_some(self),
        })
    }

    /// Queues an append whose callback reads the records, for the background writer.
    fn submit_placed_reading(
        &self,
        placement: Placement,
        durability: Durability,
        callback: impl FnOnce(Result<Appended>, &[Record]) + Send + 'static,
    ) -> Result<()> {
        self.enqueue_append(
            placement,
            durability,
            AppendCompletion::reading(Box::new(callback)),
            false,
        )
        .map(|_| ())
    }

    /// Writes what is queued as the leader, then runs completed callbacks.
    fn lead_queued(&self) {
        self.writer.lock().lead::<()>(None);
        run_callbacks(&self.shared, &self.writer);
    }

    /// Queues an append. With `lead_if_idle`, returns true if the caller must now lead (it
    /// was the first to find no one writing); otherwise the background writer is woken.
    /// A refused append's completion is dropped unused: the caller hears of the refusal
    /// from the error, never from its callback.
    fn enqueue_append(
        &self,
        placement: Placement,
        durability: Durability,
        completion: AppendCompletion,
        lead_if_idle: bool,
    ) -> Result<bool> {
        let mut completion = Some(completion);
        let queued = self.try_enqueue_append(placement, durability, &mut completion, lead_if_idle);
        if let Some(refused) = completion {
            refused.refuse();
        }
        queued
    }

    /// [`Wal::enqueue_append`]; takes `completion` only if the append is queued.
    fn try_enqueue_append(
        &self,
        placement: Placement,
        durability: Durability,
        completion: &mut Option<AppendCompletion>,
        lead_if_idle: bool,
    ) -> Result<bool> {
        let max = self.shared.options.record_size_max as usize;
        let (count, bytes): (usize, usize) = match &placement {
            Placement::Next(r) => (
                r.len(),
                r.iter().map(|r| record_size(r.payload.len())).sum(),
            ),
            Placement::One(r) => (1, record_size(r.payload.len())),
            Placement::At(r) => (
                r.len(),
                r.iter().map(|r| record_size(r.payload.len())).sum(),
            ),
        };
        if count == 0 {
            return Err(Error::InvalidArgument(
                "an append needs at least one record".into(),
            ));
        }
        let too_large = match &placement {
            Placement::Next(r) => r.iter().map(|r| r.payload.len()).find(|&n| n > max),
            Placement::One(r) => Some(r.payload.len()).filter(|&n| n > max),
            Placement::At(r) => r.iter().map(|r| r.payload.len()).find(|&n| n > max),
        };
        if let Some(len) = too_large {
            return Err(Error::InvalidArgument(format!(
                "record payload of {len} bytes exceeds the maximum of {max}"
            )));
        }
        let unit = crate::format::UNIT_HEADER_SIZE as u64 + bytes as u64;
        if unit
            > self.shared.options.record_capacity()
                + crate::format::RECORD_HEADER_SIZE as u64
                + crate::format::UNIT_HEADER_SIZE as u64
        {
            return Err(Error::InvalidArgument(format!(
                "an append of {bytes} bytes does not fit one segment of {} bytes",
                self.shared.options.segment_size
            )));
        }
        let mut state = self.shared.state.lock();
        loop {
            state.refuse_if_unusable()?;
            // Let one request through even if alone it exceeds the budget.
            if state.queued_bytes == 0
                || state.queued_bytes + bytes as u64 <= self.shared.options.queue_bytes_max
            {
                break;
            }
            self.shared.room.wait(&mut state);
        }
        let first = state.next_lsn;
        // One allocation per request, not per record: the queue, the reader path and the
        // writer share the batch.
        let records: Batch = match placement {
            Placement::Next(records) => records
                .into_iter()
                .zip(first..)
                .map(|(r, lsn)| r.at(Lsn(lsn)))
                .collect(),
            Placement::One(record) => Arc::new([record.at(Lsn(first))]),
            Placement::At(records) => {
                for (i, r) in records.iter().enumerate() {
                    let expected = first.checked_add(i as u64).ok_or_else(|| {
                        Error::InvalidArgument("the LSN space is exhausted".to_string())
                    })?;
                    if r.id.lsn.0 != expected {
                        return Err(Error::InvalidArgument(format!(
                            "record LSN {} does not follow: the log expects {expected}",
                            r.id.lsn
                        )));
                    }
                }
                Arc::from(records)
            }
        };
        let last = records.last().expect("at least one record").id;
        state.next_lsn = last
            .lsn
            .0
            .checked_add(1)
            .ok_or_else(|| Error::InvalidArgument("the LSN space is exhausted".to_string()))?;
        state.last = Some(last);
        state.unwritten.push_back(Arc::clone(&records));
        state.queued_bytes += bytes as u64;
        state.stats.records += records.len() as u64;
        state.requests.push_back(Request::Append(AppendRequest {
            records,
            bytes: bytes as u64,
            durability,
            completion: completion.take().expect("an append is queued once"),
        }));
        if lead_if_idle && !state.leading {
            state.leading = true;
            return Ok(true);
        }
        // A leader re-checks the queue before it gives up the lead, so only an idle log
        // needs its background writer woken; waking it under load would cost a futex
        // round trip per append.
        let wake = !state.leading;
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(false)
    }

    /// Waits for a queued request's result; if `lead`, first does the queued work itself
    /// (blocking callers lead when the log is idle, so a callback running on the background
    /// writer can still call the log).
    fn wait_led<T: Send + 'static>(&self, lead: bool, slot: Arc<Slot<T>>) -> Result<T> {
        if lead {
            self.writer.lock().lead(Some(&*slot));
            run_callbacks(&self.shared, &self.writer);
        }
        Ticket::new(slot).wait()
    }

    /// Reads the records with LSNs in `range`, including records whose append is still in
    /// flight.
    ///
    /// # Errors
    /// `InvalidArgument` if part of the range is purged or beyond the last record;
    /// `Corruption` if a record read back does not match its checksum; `Io` on read errors.
    pub fn read(&self, range: Range<Lsn>) -> Result<Vec<Record>> {
        let (start, end) = (range.start.0, range.end.0);
        if start >= end {
            return Ok(Vec::new());
        }
        // Collect what to read under the lock, read outside it.
        let mut plan: Vec<Source> = Vec::new();
        {
            let state = self.shared.state.lock();
            let first = state.purged.map_or(1, |p| p.lsn.0 + 1);
            if start < first || end > state.next_lsn {
                return Err(Error::InvalidArgument(format!(
                    "LSNs {start}..{end} are outside the log's {first}..{}",
                    state.next_lsn
                )));
            }
            for lsn in start..end {
                if let Some((batch, at)) = find_queued(&state.unwritten, lsn) {
                    plan.push(Source::Queued(Arc::clone(batch), at));
                } else {
                    let (segment, loc) = state.index.find(lsn).ok_or_else(|| {
                        Error::InvalidArgument(format!("LSN {lsn} is not in the log"))
                    })?;
                    plan.push(Source::File {
                        file: Arc::clone(&segment.file),
                        name: segment.name.clone(),
                        seed: segment.header.seed(),
                        offset: u64::from(loc.offset),
                        len: loc.len,
                        lsn,
                    });
                }
            }
        }
        let mut out = Vec::with_capacity(plan.len());
        for source in plan {
            out.push(match source {
                Source::Queued(batch, at) => batch[at].clone(),
                Source::File {
                    file,
                    name,
                    seed,
                    offset,
                    len,
                    lsn,
                } => {
                    let mut bytes = vec![0u8; len as usize];
                    file.read_exact_at(&mut bytes, offset)
                        .map_err(|e| Error::io("read segment", e))?;
                    match decode_record(&bytes, &seed, lsn) {
                        Some(record) => record,
                        None => return Err(self.read_back_failed(lsn, name, offset)),
                    }
                }
            });
        }
        Ok(out)
    }

    /// The error for a record that did not decode when read back: if it was purged since the
    /// read was planned, its segment may have been recycled and reused, so the bytes are
    /// someone else's; otherwise the file is damaged.
    fn read_back_failed(&self, lsn: u64, name: String, offset: u64) -> Error {
        let purged = self.shared.state.lock().purged.map_or(0, |p| p.lsn.0);
        if lsn <= purged {
            return Error::InvalidArgument(format!("LSN {lsn} was purged while it was read"));
        }
        Error::Corruption(Corruption {
            file: name,
            offset,
            what: "record read back",
            kind: CorruptionKind::InvalidValue { found: lsn },
        })
    }

    /// Removes the record at `from` and every later one (Raft's `truncate`). Durable when
    /// this returns. Records still in flight are written first, then removed.
    ///
    /// # Errors
    /// `InvalidArgument` if `from` is purged or beyond the next LSN.
    pub fn truncate(&self, from: Lsn) -> Result<()> {
        let slot = Slot::new(&self.shared.notifier);
        let lead = {
            let mut state = self.shared.state.lock();
            state.refuse_if_unusable()?;
            let floor = state.purged.map_or(0, |p| p.lsn.0);
            if from.0 <= floor || from.0 > state.next_lsn {
                return Err(Error::InvalidArgument(format!(
                    "cannot truncate from LSN {from}: the log holds {}..{}",
                    floor + 1,
                    state.next_lsn
                )));
            }
            // Nothing to remove, and no earlier truncate still queued whose durability
            // this call would otherwise claim.
            if from.0 == state.next_lsn && state.requests.is_empty() {
                return Ok(());
            }
            let last = if from.0 - 1 == floor {
                state.purged
            } else {
                let lsn = from.0 - 1;
                match find_queued(&state.unwritten, lsn) {
                    Some((batch, at)) => Some(batch[at].id),
                    None => state.index.log_id(lsn),
                }
            };
            state.next_lsn = from.0;
            state.last = last;
            // A batch that straddles `from` stays: its earlier records are still readable,
            // and later ones are beyond `next_lsn` or shadowed by newer batches.
            while state
                .unwritten
                .back()
                .is_some_and(|b| b[0].id.lsn.0 >= from.0)
            {
                state.unwritten.pop_back();
            }
            state.requests.push_back(Request::Truncate {
                from: from.0,
                completion: Completion::slot(Arc::clone(&slot)),
            });
            claim_lead(&mut state)
        };
        self.wait_led(lead, slot)
    }

    /// Removes every record up to and including `upto` (Raft's `purge`); `upto` may lie
    /// beyond the last record, and then the log is empty and continues at `upto + 1`.
    /// The purge point is durable when this returns. A point at or below the current one is
    /// already done and changes nothing.
    pub fn purge(&self, upto: LogId) -> Result<()> {
        let slot = Slot::new(&self.shared.notifier);
        let lead = {
            let mut state = self.shared.state.lock();
            state.refuse_if_unusable()?;
            let floor = state.purged.map_or(0, |p| p.lsn.0);
            if upto.lsn.0 <= floor {
                // Purging is monotonic; an older or equal point is already done.
                return Ok(());
            }
            if upto.lsn.0 == u64::MAX {
                return Err(Error::InvalidArgument(
                    "cannot purge through the last possible LSN".to_string(),
                ));
            }
            state.purged = Some(upto);
            if upto.lsn.0 >= state.next_lsn {
                state.next_lsn = upto.lsn.0 + 1;
                state.last = Some(upto);
            }
            while state
                .unwritten
                .front()
                .is_some_and(|b| last_lsn(b) <= upto.lsn.0)
            {
                // Still written by the writer (it holds its own reference); no longer readable.
                state.unwritten.pop_front();
            }
            state.requests.push_back(Request::Purge {
                upto,
                completion: Completion::slot(Arc::clone(&slot)),
            });
            claim_lead(&mut state)
        };
        self.wait_led(lead, slot)
    }

    /// Saves Raft's vote, durably, ordered after every append submitted before it.
    ///
    /// # Errors
    /// `InvalidArgument` if the vote exceeds [`VOTE_SIZE_MAX`] bytes.
    pub fn save_vote(&self, vote: &[u8]) -> Result<()> {
        if vote.len() > VOTE_SIZE_MAX {
            return Err(Error::InvalidArgument(format!(
                "vote of {} bytes exceeds {VOTE_SIZE_MAX}",
                vote.len()
            )));
        }
        let slot = Slot::new(&self.shared.notifier);
        let lead = {
            let mut state = self.shared.state.lock();
            state.refuse_if_unusable()?;
            state.requests.push_back(Request::SaveVote {
                vote: vote.to_vec(),
                completion: Completion::slot(Arc::clone(&slot)),
            });
            claim_lead(&mut state)
        };
        self.wait_led(lead, slot)
    }

    /// The last saved vote.
    pub fn vote(&self) -> Option<Vec<u8>> {
        self.shared.state.lock().vote.clone()
    }

    /// Makes every record appended so far durable, whatever the sync policy (and whatever
    /// durability their appends asked); returns the highest durable LSN (0 if the log is
    /// empty).
    pub fn sync(&self) -> Result<u64> {
        let slot = Slot::new(&self.shared.notifier);
        let lead = {
            let mut state = self.shared.state.lock();
            state.refuse_if_unusable()?;
            state.requests.push_back(Request::Sync {
                completion: Completion::slot(Arc::clone(&slot)),
            });
            claim_lead(&mut state)
        };
        // The fdatasync runs here, not on the writer: appends queued after this request go
        // on being written meanwhile (the Db's background syncs of no-sync writes no longer
        // stop every writer for the length of a sync).
        match self.wait_led(lead, slot)? {
            SyncPoint::Durable => Ok(self.shared.state.lock().durable),
            SyncPoint::Tail {
                file,
                segment_id,
                offset,
                last_lsn,
            } => match file.sync_data() {
                Ok(()) => Ok(self.writer.lock().synced(segment_id, offset, last_lsn)),
                Err(e) => {
                    // As for any failed sync: the log is poisoned, never retried.
                    let error = Error::io("sync segment", e);
                    self.writer.lock().poison(&error);
                    run_callbacks(&self.shared, &self.writer);
                    Err(error)
                }
            },
        }
    }

    /// The last record appended (written or in flight), or the purge point if the log is
    /// empty; `None` for a log that never held anything.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.shared.state.lock().last
    }

    /// The last purged record.
    pub fn last_purged(&self) -> Option<LogId> {
        self.shared.state.lock().purged
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.shared.state.lock().next_lsn)
    }

    /// The highest LSN known durable (0 if none). It moves only when the log really syncs
    /// (or a truncate lowers it); every record at or below it is durable, including those
    /// appended with [`Durability::NoSync`] before the sync.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let mut stats = self.shared.state.lock().stats;
        stats.callback_panics = self.shared.deferred.panics();
        stats
    }

    /// Whether an earlier failure poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.shared.state.lock().poisoned.is_some()
    }

    /// Finishes everything queued, then stops the writer.
    ///
    /// # Errors
    /// The poisoning error, if the log was poisoned.
    pub fn close(mut self) -> Result<()> {
        self.shutdown();
        let state = self.shared.state.lock();
        match &state.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: Arc::clone(cause),
            }),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.work.notify_all();
        self.shared.room.notify_all();
        if let Some(thread) = self.background.take() {
            // The writer thread itself may drop the last handle (a completion callback that
            // held its owner's last reference): it sees `closed` once the callback returns,
            // finishes the queue and exits; joining it from itself would never return.
            if thread.thread().id() == std::thread::current().id() {
                return;
            }
            // The writer catches its own panics (they poison the log, which `close`
            // reports); there is nothing left to report here.
            let _ = thread.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

/// Under the state lock, right after queueing a request: whether the caller must now lead.
fn claim_lead(state: &mut State) -> bool {
    if state.leading {
        return false;
    }
    state.leading = true;
    true
}

/// Records appended by one request, shared by the queue, readers and the writer.
pub(crate) type Batch = Arc<[Record]>;

fn last_lsn(batch: &Batch) -> u64 {
    batch.last().expect("batches are non-empty").id.lsn.0
}

/// The newest queued record with LSN `lsn`: its batch and index. Searched from the back,
/// because after a truncate a newer batch shadows the tail of an older one.
fn find_queued(unwritten: &VecDeque<Batch>, lsn: u64) -> Option<(&Batch, usize)> {
    for batch in unwritten.iter().rev() {
        let first = batch[0].id.lsn.0;
        if first <= lsn && lsn <= last_lsn(batch) {
            return Some((
                batch,
                usize::try_from(lsn - first).expect("batch index fits usize"),
            ));
        }
        if last_lsn(batch) < lsn {
            return None;
        }
    }
    None
}

enum Placement {
    Next(Vec<NewRecord>),
    /// One record at the next LSN: no vector of one is built on either side.
    One(NewRecord),
    At(Vec<Record>),
}

enum Source {
    Queued(Batch, usize),
    File {
        file: popdb_io::FileRef,
        name: String,
        seed: popdb_io::Crc32,
        offset: u64,
        len: u32,
        lsn: u64,
    },
}

fn decode_record(bytes: &[u8], seed: &popdb_io::Crc32, lsn: u64) -> Option<Record> {
    let header = RecordHeader::decode_checked(bytes, seed)?;
    if header.lsn != lsn || header.record_len() != bytes.len() {
        return None;
    }
    Some(Record {
        id: LogId {
            lsn: Lsn(header.lsn),
            term: Term(header.term),
            node: NodeId(header.node),
        },
        kind: RecordKind::from_tag(header.kind)?,
        payload: bytes[crate::format::RECORD_HEADER_SIZE..].to_vec(),
    })
}
