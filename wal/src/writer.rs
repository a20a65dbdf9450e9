//! The log writer: whoever leads (a blocking caller that found the log idle, or the
//! background thread) holds it and turns everything queued into one write and (per the sync
//! policy and the durability each append asks) one fdatasync: group commit. It performs
//! truncate, purge and vote saves in queue order, so that a vote and an append are never
//! reordered.
//!
//! Invariants:
//! - Units are written back to back in the tail segment; a segment is synced before the
//!   next one is created, so only the last segment can have a torn tail.
//! - Each unit's `durable_upto` is the offset through which its segment was durable when it
//!   was written (recovery uses it to tell a torn tail from corruption).
//! - The index forgets records superseded by a truncation only once the superseding
//!   segment is durable, in the same critical section that adds it.
//! - An append completes with `durable: true` only if its unit was synced (by its own
//!   group's sync, or before a segment switch). `State::durable` moves only after a real
//!   sync, to the last LSN the synced bytes hold: one sync covers every byte written
//!   before it, records of `NoSync` appends included. A [`crate::Wal::sync`] caller syncs
//!   on its own thread, outside the writer, the bytes written when its request came up in
//!   the queue ([`SyncPoint`]), and moves `durable` only if the tail is still that segment.
//! - A failed write or sync poisons the log; it is never retried.
//! - Waiters are completed, then woken, then their batches freed; callbacks run only after
//!   the writer is released.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use popdb_io::{Crc32, FileRef, WriteOp};

use crate::error::{Error, Result};
use crate::format::{
    RECORD_HEADER_SIZE, RecordHeader, SEGMENT_HEADER_SIZE, SegmentHeader, UNIT_HEADER_SIZE,
    UnitHeader,
};
use crate::ids::LogId;
use crate::index::{IndexedSegment, Loc, Locs};
use crate::options::{Durability, SyncPolicy};
use crate::segments::{Spares, install_segment, segment_name};
use crate::state::LogState;
use crate::ticket::{Appended, Deferred, Slot};
use crate::wal::{AppendRequest, Batch, Request, Shared, State};

/// Unsynced bytes handed to writeback at a time.
const WRITEBACK_CHUNK: u64 = 1 << 20;

/// When a lead ends, besides on an empty queue, a poisoned log or (for a blocking appender)
/// its own append complete.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Only then.
    Empty,
    /// After one group: what queues meanwhile goes to the background writer.
    AfterOneGroup,
    /// After a synced group. Callbacks (the Db's apply and the server's answers) run only
    /// once the lead ends; a lead that went on to the groups queued during a sync made the
    /// synced group's answers wait for the next group's fdatasync too. With few writes in
    /// flight (a synced write per connection), every client then waited idle for that
    /// second sync. Large groups once led on, keeping the writer writing back to back while
    /// many writes were in flight; since a server logs each round of its event loop's
    /// point writes as one append, ending after every synced group measured as fast or
    /// faster there too (50 connections at pipeline 16, 16 interleaved rounds, medians
    /// 386K -> 401K SETs/s; at pipeline 1 85.3K -> 86.4K). (A server's event loop leads
    /// small no-sync groups itself; between two background leads, it and blocking
    /// appenders find the log idle, and may lead the next group themselves.)
    AfterSyncedGroup,
}

/// Most bytes of appends gathered into one group-commit write.
const GROUP_BYTES_MAX: u64 = 8 << 20;

/// The segment being appended to.
pub(crate) struct Tail {
    pub(crate) header: SegmentHeader,
    /// `header.seed()`, computed once: every record and unit checksum starts from it.
    pub(crate) seed: Crc32,
    pub(crate) file: FileRef,
    /// Where the next unit goes.
    pub(crate) offset: u64,
    /// Offset through which the segment is durable.
    pub(crate) synced: u64,
    /// The LSN the next record in this segment must have.
    pub(crate) next_lsn: u64,
    /// Unsynced bytes from here on have not been handed to writeback yet.
    pub(crate) writeback_from: u64,
}

/// Records encoded into the buffer but not yet published: their locations, and their
/// batches (to take off the readers' queue once written).
#[derive(Default)]
struct Placed {
    locs: Vec<(u64, Loc)>,
    batches: Vec<Batch>,
}

/// What a sync request leaves its caller to sync ([`Writer::sync_point`]).
pub(crate) enum SyncPoint {
    /// Everything written is durable already.
    Durable,
    /// The tail segment's bytes through `offset`, holding records through `last_lsn`.
    Tail {
        file: FileRef,
        segment_id: u64,
        offset: u64,
        last_lsn: u64,
    },
}

/// What recovery hands the writer.
pub(crate) struct WriterInit {
    pub(crate) tail: Option<Tail>,
    pub(crate) spares: Spares,
    pub(crate) next_segment_id: u64,
    pub(crate) log_state: LogState,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    tail: Option<Tail>,
    spares: Spares,
    next_segment_id: u64,
    /// The state file's content as last stored.
    log_state: LogState,
    buf: Vec<u8>,
    /// Batches of completed appends, freed once their waiters are woken.
    garbage: Vec<Batch>,
    last_sync: Duration,
    /// The appends of the group being written, then those written: kept across groups
    /// (empty between them), like `placed`, so a group commit allocates nothing of its own.
    group: Vec<AppendRequest>,
    done: Vec<AppendRequest>,
    placed: Placed,
    /// Whether the work just done filled a slot (or failed), so blocked waiters need waking.
    wake: bool,
}

enum Work {
    /// The appends in `Writer::group`.
    Appends,
    One(Request),
    IntervalSync,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, init: WriterInit) -> Self {
        let last_sync = shared.options.clock.now();
        Self {
            shared,
            tail: init.tail,
            spares: init.spares,
            next_segment_id: init.next_segment_id,
            log_state: init.log_state,
            buf: Vec::new(),
            garbage: Vec::new(),
            last_sync,
            group: Vec::new(),
            done: Vec::new(),
            placed: Placed::default(),
            wake: false,
        }
    }

    /// Takes the next piece of work off the queue, if any: a run of appends (one group
    /// commit, moved into `taken`) or one other request.
    fn take_work(
        shared: &Shared,
        state: &mut State,
        taken: &mut Vec<AppendRequest>,
    ) -> Option<Work> {
        match state.requests.front()? {
            Request::Append(_) => {
                let mut bytes = 0u64;
                while let Some(Request::Append(r)) = state.requests.front() {
                    if !taken.is_empty() && bytes + r.bytes > GROUP_BYTES_MAX {
                        break;
                    }
                    bytes += r.bytes;
                    let Some(Request::Append(mut r)) = state.requests.pop_front() else {
                        unreachable!("front was an append")
                    };
                    r.completion.attach(&shared.deferred);
                    taken.push(r);
                }
                state.queued_bytes -= bytes;
                shared.room.notify_all();
                Some(Work::Appends)
            }
            _ => state.requests.pop_front().map(Work::One),
        }
    }

    /// Does one piece of work and wakes its waiters. A failure poisons the log.
    fn process(&mut self, work: Work) {
        // Only a group whose appends all completed callbacks clears it.
        self.wake = true;
        let result = match work {
            Work::Appends => self.write_appends(),
            Work::One(request) => self.control(request),
            Work::IntervalSync => self.sync_tail().map(|_| ()),
        };
        if let Err(e) = result {
            self.poison(&e);
        }
        if self.wake {
            self.shared.notifier.notify();
        }
        self.garbage.clear();
    }

    /// Processes queued work as the leader (the caller set `State::leading`) until the queue
    /// is empty or, if `until` is given, that request is complete; then gives up the lead,
    /// handing what is left to the background writer.
    ///
    /// A panic (a bug) poisons the log instead of leaving it led forever: the requests the
    /// panic unwound through complete with an error as they drop, and the queue is failed.
    pub(crate) fn lead<T>(&mut self, until: Option<&Slot<T>>) {
        self.lead_guarded(until, Stop::Empty);
    }

    /// [`Writer::lead`] for one group: what is queued now is written, what queues
    /// meanwhile goes to the background writer.
    pub(crate) fn lead_one_group(&mut self) {
        self.lead_guarded::<()>(None, Stop::AfterOneGroup);
    }

    fn lead_guarded<T>(&mut self, until: Option<&Slot<T>>, stop: Stop) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.lead_queue(until, stop))) {
            self.poison_panicked(&*panic);
        }
    }

    fn lead_queue<T>(&mut self, until: Option<&Slot<T>>, stop: Stop) {
        let mut stop_now = false;
        loop {
            let work = {
                let mut state = self.shared.state.lock();
                let done = stop_now || until.is_some_and(|slot| slot.is_filled());
                let work = if done || state.poisoned.is_some() {
                    None
                } else {
                    Self::take_work(&self.shared, &mut state, &mut self.group)
                };
                if work.is_none() {
                    state.leading = false;
                    // The background writer takes over what is queued, and runs the
                    // interval timer for bytes this leader left unsynced.
                    let interval = matches!(self.shared.options.sync, SyncPolicy::Interval(_));
                    // A closing log's background writer waits for the lead to end.
                    if !state.requests.is_empty() || state.closed || (interval && state.unsynced) {
                        drop(state);
                        self.shared.work.notify_one();
                    }
                    return;
                }
                work
            };
            if let Some(work) = work {
                stop_now = match stop {
                    Stop::Empty => false,
                    Stop::AfterOneGroup => true,
                    Stop::AfterSyncedGroup => {
                        matches!(work, Work::Appends) && self.wants_sync(&self.group)
                    }
                };
                self.process(work);
            }
        }
    }

    /// The background writer: leads whenever work is queued and no appender is leading,
    /// syncs on the interval timer, and on close makes everything durable. A panic poisons
    /// the log (as [`Writer::lead`] says) and ends the thread.
    pub(crate) fn run_background(shared: Arc<Shared>, writer: Arc<Mutex<Writer>>) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| Self::background(&shared, &writer))) {
            writer.lock().poison_panicked(&*panic);
            run_callbacks(&shared, &writer);
        }
    }

    fn background(shared: &Shared, writer_lock: &Mutex<Writer>) {
        loop {
            let interval_sync = {
                let mut state = shared.state.lock();
                loop {
                    if state.poisoned.is_some() {
                        break None;
                    }
                    if !state.leading && !state.requests.is_empty() {
                        state.leading = true;
                        break Some(false);
                    }
                    if state.closed && state.requests.is_empty() && !state.leading {
                        break None;
                    }
                    match shared.options.sync {
                        SyncPolicy::Interval(interval) if state.unsynced && !state.leading => {
                            let since = shared.options.clock.now().saturating_sub(state.last_sync);
                            if since >= interval {
                                state.leading = true;
                                break Some(true);
                            }
                            shared
                                .work
                                .wait_for(&mut state, interval.saturating_sub(since));
                        }
                        _ => shared.work.wait(&mut state),
                    }
                }
            };
            {
                let mut writer = writer_lock.lock();
                match interval_sync {
                    None => {
                        // A clean close leaves everything durable, whatever the policy.
                        if shared.state.lock().poisoned.is_none()
                            && let Err(e) = writer.sync_tail()
                        {
                            writer.poison(&e);
                        }
                        writer.shared.notifier.notify();
                        writer.spares.stop();
                        drop(writer);
                        run_callbacks(shared, writer_lock);
                        return;
                    }
                    Some(true) => {
                        writer.process(Work::IntervalSync);
                        writer.lead_guarded::<()>(None, Stop::AfterSyncedGroup);
                    }
                    Some(false) => writer.lead_guarded::<()>(None, Stop::AfterSyncedGroup),
                }
            }
            // Callbacks run with the writer released.
            run_callbacks(shared, writer_lock);
        }
    }

    /// Whether the unit holding `requests` must be synced: if any of them asks for it, or
    /// if the policy wants it (under `Always` only for requests that follow the policy: a
    /// `NoSync` request is not synced for its own sake; under `Interval` whenever it is due,
    /// since the timer would otherwise sync the same bytes a moment later).
    fn wants_sync(&self, requests: &[AppendRequest]) -> bool {
        if requests.iter().any(|r| r.durability == Durability::Sync) {
            return true;
        }
        match self.shared.options.sync {
            SyncPolicy::Always => requests.iter().any(|r| r.durability == Durability::Policy),
            SyncPolicy::Never => false,
            SyncPolicy::Interval(d) => {
                self.shared
                    .options
                    .clock
                    .now()
                    .saturating_sub(self.last_sync)
                    >= d
            }
        }
    }

    /// Writes a group of appends: one unit per segment touched, one write, at most one sync
    /// (as [`Writer::wants_sync`] says for the last unit; units before a segment switch are
    /// always synced).
    fn write_appends(&mut self) -> Result<()> {
        let mut group = std::mem::take(&mut self.group);
        let mut done = std::mem::take(&mut self.done);
        let mut placed = std::mem::take(&mut self.placed);
        let written = catch_unwind(AssertUnwindSafe(|| {
            self.write_group(&mut group, &mut done, &mut placed)
        }));
        let result = match written {
            Ok(result) => result,
            Err(panic) => {
                // The group's appends are answered (abandoned) as they drop: poison the log
                // first, so that whoever they wake finds it poisoned. The leader's own catch
                // then finds it poisoned already and keeps this cause.
                self.poison_panicked(&*panic);
                drop((group, done));
                std::panic::resume_unwind(panic);
            }
        };
        // Every path drains the group and the written appends; what an error left placed
        // was never published and must not be.
        group.clear();
        done.clear();
        placed.locs.clear();
        placed.batches.clear();
        (self.group, self.done, self.placed) = (group, done, placed);
        result
    }

    /// [`Writer::write_appends`] of `group`, through `done` and `placed` (empty, kept for
    /// their capacity).
    fn write_group(
        &mut self,
        group: &mut Vec<AppendRequest>,
        done: &mut Vec<AppendRequest>,
        placed: &mut Placed,
    ) -> Result<()> {
        // `done[..synced]` were written before a segment switch, so they are durable.
        let mut synced = 0;
        let mut unit: Option<UnitHeader> = None;
        self.buf.clear();
        let mut requests = group.drain(..);
        while let Some(request) = requests.next() {
            let first = request.records[0].id.lsn.0;
            let next_in_tail = unit.map_or_else(
                || self.tail.as_ref().map(|t| t.next_lsn),
                |u| Some(u.first_lsn + u64::from(u.record_count)),
            );
            let need = request.bytes
                + if unit.is_some() {
                    0
                } else {
                    UNIT_HEADER_SIZE as u64
                };
            let fits = self
                .tail
                .as_ref()
                .is_some_and(|t| t.offset + self.buf.len() as u64 + need <= t.header.segment_size);
            if next_in_tail != Some(first) || !fits {
                // A new segment: everything before it must be durable first.
                let flushed = self.flush(&mut unit, placed, true);
                if let Err(e) = flushed {
                    fail_in_order(done, request, requests, &e, &self.shared.deferred);
                    return Err(e);
                }
                synced = done.len();
                if let Err(e) = self.rotate(first) {
                    if matches!(e, Error::NoSpace { .. }) {
                        // Reset the log's view first, so that no refused appender can see
                        // its LSN still taken once it hears back.
                        let queued = self.refuse_queue();
                        complete_all(
                            done.drain(..),
                            synced,
                            &mut self.garbage,
                            &self.shared.deferred,
                        );
                        request.completion.complete(
                            Err(e.clone()),
                            &request.records,
                            &self.shared.deferred,
                        );
                        fail_all(requests, &e, &self.shared.deferred);
                        for request in queued {
                            request.fail(e.clone(), &self.shared.deferred);
                        }
                        return Ok(());
                    }
                    fail_in_order(done, request, requests, &e, &self.shared.deferred);
                    return Err(e);
                }
            }
            let tail = self.tail.as_ref().expect("a tail after rotation");
            let seed = &tail.seed;
            if unit.is_none() {
                self.buf.extend_from_slice(&[0u8; UNIT_HEADER_SIZE]);
                unit = Some(UnitHeader {
                    body_len: 0,
                    record_count: 0,
                    first_lsn: first,
                    generation: self.log_state.generation,
                    durable_upto: tail.synced,
                });
            }
            let u = unit.as_mut().expect("unit just opened");
            for record in request.records.iter() {
                let offset = tail.offset + self.buf.len() as u64;
                RecordHeader::encode_into(
                    &mut self.buf,
                    seed,
                    record.id.lsn.0,
                    record.id.term.0,
                    record.id.node.0,
                    record.kind.tag(),
                    &record.payload,
                );
                let len = RECORD_HEADER_SIZE + record.payload.len();
                u.record_count += 1;
                u.body_len += len as u32;
                placed.locs.push((
                    record.id.lsn.0,
                    Loc {
                        offset: u32::try_from(offset).expect("segment offsets fit u32"),
                        len: len as u32,
                        term: record.id.term.0,
                        node: record.id.node.0,
                    },
                ));
            }
            placed.batches.push(Arc::clone(&request.records));
            done.push(request);
        }
        drop(requests);
        let sync = self.wants_sync(&done[synced..]);
        match self.flush(&mut unit, placed, sync) {
            Ok(()) => {
                let durable = if sync { done.len() } else { synced };
                self.wake = complete_all(
                    done.drain(..),
                    durable,
                    &mut self.garbage,
                    &self.shared.deferred,
                );
                Ok(())
            }
            Err(e) => {
                fail_all(done.drain(..), &e, &self.shared.deferred);
                Err(e)
            }
        }
    }

    /// Writes the buffered unit (if any), syncing if asked, and publishes its records.
    fn flush(
        &mut self,
        unit: &mut Option<UnitHeader>,
        placed: &mut Placed,
        sync: bool,
    ) -> Result<()> {
        let Some(header) = unit.take() else {
            if sync {
                self.sync_tail()?;
            }
            return Ok(());
        };
        let tail = self.tail.as_mut().expect("a unit implies a tail");
        self.buf[..UNIT_HEADER_SIZE].copy_from_slice(&header.encode(&tail.seed));
        assert_eq!(
            self.buf.len(),
            UNIT_HEADER_SIZE + header.body_len as usize,
            "unit length disagrees with its header"
        );
        assert!(
            tail.offset + self.buf.len() as u64 <= tail.header.segment_size,
            "unit overflows its segment"
        );
        let op = WriteOp {
            offset: tail.offset,
            bytes: &self.buf,
        };
        self.spares.note_group(sync);
        tail.file.write_batch(&[op], sync).map_err(|e| {
            if sync {
                Error::io("write and sync segment", e)
            } else {
                Error::io("write segment", e)
            }
        })?;
        tail.offset += self.buf.len() as u64;
        tail.next_lsn = header.last_lsn() + 1;
        if !sync && tail.offset - tail.writeback_from >= WRITEBACK_CHUNK {
            // Without per-write syncs, start writeback as we go (as RocksDB's bytes_per_sync
            // does), so the sync before the next segment is not one long stall. A hint:
            // its failure changes nothing and is ignored.
            let _ = tail
                .file
                .start_writeback(tail.writeback_from, tail.offset - tail.writeback_from);
            tail.writeback_from = tail.offset;
        }
        if sync {
            tail.writeback_from = tail.offset;
            tail.synced = tail.offset;
            self.last_sync = self.shared.options.clock.now();
        }
        let written = self.buf.len() as u64;
        self.buf.clear();
        let mut guard = self.shared.state.lock();
        let state = &mut *guard;
        let segment = state
            .index
            .segments
            .last_mut()
            .expect("the tail is indexed");
        assert_eq!(
            segment.header.segment_id, tail.header.segment_id,
            "index tail mismatch"
        );
        for (lsn, loc) in placed.locs.drain(..) {
            assert_eq!(
                lsn,
                segment.end_lsn(),
                "record LSN does not follow the segment's last"
            );
            segment.locs.push(loc);
        }
        for batch in placed.batches.drain(..) {
            if state
                .unwritten
                .front()
                .is_some_and(|b| Arc::ptr_eq(b, &batch))
            {
                state.unwritten.pop_front();
            }
        }
        state.stats.writes += 1;
        state.stats.bytes += written;
        state.unsynced = !sync;
        state.last_sync = self.last_sync;
        if sync {
            state.stats.syncs += 1;
            state.durable = state.durable.max(header.last_lsn());
            self.shared.durable.store(state.durable, Ordering::Release);
        }
        Ok(())
    }

    /// Syncs the tail segment if it has unsynced bytes; returns the highest durable LSN.
    fn sync_tail(&mut self) -> Result<u64> {
        if let Some(tail) = self.tail.as_mut()
            && tail.offset > tail.synced
        {
            tail.file
                .sync_data()
                .map_err(|e| Error::io("sync segment", e))?;
            tail.synced = tail.offset;
            tail.writeback_from = tail.offset;
            self.last_sync = self.shared.options.clock.now();
            let mut state = self.shared.state.lock();
            state.unsynced = false;
            state.last_sync = self.last_sync;
            state.stats.syncs += 1;
            state.durable = state.durable.max(tail.next_lsn - 1);
            self.shared.durable.store(state.durable, Ordering::Release);
        }
        Ok(self.shared.state.lock().durable)
    }

    /// Starts a new segment whose first record will be `first_lsn`.
    ///
    /// Requires: the current tail, if any, is durable.
    fn rotate(&mut self, first_lsn: u64) -> Result<()> {
        self.rotate_truncating(first_lsn, false)
    }

    /// Starts a new segment whose first record will be `first_lsn`; with `truncating`, the
    /// new segment supersedes every record at or after `first_lsn`, and the index forgets
    /// them in the same critical section that adds the segment (after it is durable).
    ///
    /// Requires: the current tail, if any, is durable.
    fn rotate_truncating(&mut self, first_lsn: u64, truncating: bool) -> Result<()> {
        if let Some(tail) = &self.tail {
            assert_eq!(
                tail.offset, tail.synced,
                "rotating away from an unsynced segment"
            );
        }
        let spare = self.spares.take()?;
        let header = SegmentHeader {
            segment_id: self.next_segment_id,
            generation: self.log_state.generation,
            first_lsn,
            segment_size: self.shared.options.segment_size,
        };
        let file = install_segment(self.shared.fs.as_ref(), &self.shared.dir, &spare, &header)?;
        self.next_segment_id += 1;
        let purged = self.log_state.purged.map_or(0, |p| p.lsn.0);
        let dead = {
            // One critical section: readers never see the index with dead segments in it.
            let mut state = self.shared.state.lock();
            if truncating {
                state.index.truncate(first_lsn);
                state.durable = state.durable.min(first_lsn - 1);
                self.shared.durable.store(state.durable, Ordering::Release);
            }
            let dead = state.index.remove_dead(purged, true);
            state.index.segments.push(IndexedSegment {
                name: segment_name(header.segment_id),
                header,
                file: Arc::clone(&file),
                locs: Locs::default(),
            });
            state.index.check_invariants(purged);
            state.stats.segments_created += 1;
            state.stats.segments_recycled += dead.len() as u64;
            dead
        };
        self.tail = Some(Tail {
            seed: header.seed(),
            header,
            file,
            offset: SEGMENT_HEADER_SIZE,
            synced: SEGMENT_HEADER_SIZE,
            next_lsn: first_lsn,
            writeback_from: SEGMENT_HEADER_SIZE,
        });
        self.recycle(dead)
    }

    /// Recycles every segment other than the tail whose records are all purged or
    /// superseded by a truncation.
    fn recycle_dead(&mut self) -> Result<()> {
        let purged = self.log_state.purged.map_or(0, |p| p.lsn.0);
        let dead = {
            let mut state = self.shared.state.lock();
            let dead = state.index.remove_dead(purged, false);
            state.index.check_invariants(purged);
            state.stats.segments_recycled += dead.len() as u64;
            dead
        };
        self.recycle(dead)
    }

    fn recycle(&mut self, dead: Vec<IndexedSegment>) -> Result<()> {
        for segment in dead {
            self.spares
                .recycle(&segment.name, segment.header.segment_size)?;
        }
        Ok(())
    }

    fn control(&mut self, request: Request) -> Result<()> {
        match request {
            Request::Append(_) => unreachable!("appends go through write_appends"),
            Request::Truncate { from, completion } => {
                let result = self.truncate(from);
                let fatal = result
                    .as_ref()
                    .err()
                    .filter(|e| !matches!(e, Error::NoSpace { .. }));
                if let Some(e) = fatal {
                    let e = e.clone();
                    completion.complete(Err(e.clone()));
                    return Err(e);
                }
                completion.complete(result);
                Ok(())
            }
            Request::Purge { upto, completion } => {
                let mut next = self.log_state.clone();
                next.purged = Some(upto);
                match self.store_state(next).and_then(|()| self.recycle_dead()) {
                    Ok(()) => {
                        completion.complete(Ok(()));
                        Ok(())
                    }
                    Err(e) => {
                        completion.complete(Err(e.clone()));
                        Err(e)
                    }
                }
            }
            Request::SaveVote { vote, completion } => {
                let mut next = self.log_state.clone();
                next.vote = Some(vote.clone());
                match self.store_state(next) {
                    Ok(()) => {
                        self.shared.state.lock().vote = Some(vote);
                        completion.complete(Ok(()));
                        Ok(())
                    }
                    Err(e) => {
                        completion.complete(Err(e.clone()));
                        Err(e)
                    }
                }
            }
            Request::Sync { completion } => {
                completion.complete(Ok(self.sync_point()));
                Ok(())
            }
        }
    }

    /// What a [`crate::Wal::sync`] caller must sync, taken in queue order: everything
    /// queued before its request is written by now. The caller syncs it on its own thread
    /// and then calls [`Writer::synced`]; meanwhile the writer goes on with later appends.
    fn sync_point(&self) -> SyncPoint {
        match &self.tail {
            Some(tail) if tail.offset > tail.synced => SyncPoint::Tail {
                file: Arc::clone(&tail.file),
                segment_id: tail.header.segment_id,
                offset: tail.offset,
                last_lsn: tail.next_lsn - 1,
            },
            _ => SyncPoint::Durable,
        }
    }

    /// Records a sync made outside the writer through `offset` of segment `segment_id`,
    /// holding records through `last_lsn`; returns the highest durable LSN. If the tail
    /// moved on to another segment meanwhile, that segment switch synced this one first
    /// (and a truncation may have removed records through `last_lsn`), so only a sync of
    /// the current tail moves anything.
    pub(crate) fn synced(&mut self, segment_id: u64, offset: u64, last_lsn: u64) -> u64 {
        if let Some(tail) = self.tail.as_mut()
            && tail.header.segment_id == segment_id
        {
            tail.synced = tail.synced.max(offset);
            tail.writeback_from = tail.writeback_from.max(offset);
            self.last_sync = self.shared.options.clock.now();
            let mut state = self.shared.state.lock();
            state.unsynced = tail.offset > tail.synced;
            state.last_sync = self.last_sync;
            state.stats.syncs += 1;
            state.durable = state.durable.max(last_lsn);
            self.shared.durable.store(state.durable, Ordering::Release);
            return state.durable;
        }
        self.shared.state.lock().durable
    }

    /// Truncates by starting a segment whose first LSN is `from`; the index forgets the
    /// superseded records only once that segment is durable.
    fn truncate(&mut self, from: u64) -> Result<()> {
        let written_beyond = self
            .shared
            .state
            .lock()
            .index
            .last_lsn()
            .is_some_and(|l| l >= from);
        if !written_beyond {
            // Nothing at or after `from` was ever written (an earlier truncate in the queue
            // removed it, or it was purged): there is nothing to supersede.
            return Ok(());
        }
        self.sync_tail()?;
        if let Err(e) = self.rotate_truncating(from, true) {
            if matches!(e, Error::NoSpace { .. }) {
                // The truncation did not happen: the log is what the files say, and what was
                // queued after it was validated against a log that does not exist.
                for request in self.refuse_queue() {
                    request.fail(e.clone(), &self.shared.deferred);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    fn store_state(&mut self, next: LogState) -> Result<()> {
        next.store(self.shared.fs.as_ref(), &self.shared.dir)?;
        self.log_state = next;
        Ok(())
    }

    /// Takes everything queued after a refused append (the caller fails it) and resets the
    /// log's in-memory view to what the writer has written (LSNs handed out but refused are
    /// given out again; no reader could have seen them durable).
    fn refuse_queue(&mut self) -> Vec<Request> {
        let queued: Vec<Request> = {
            let mut state = self.shared.state.lock();
            let queued = drain_attached(&mut state, &self.shared.deferred);
            self.reset_view(&mut state);
            queued
        };
        self.shared.room.notify_all();
        queued
    }

    /// Makes the log's in-memory view (next LSN, last id, purge point, vote, the queue of
    /// unwritten records) what the writer has written and stored. Requires: the caller
    /// drains `state.requests`.
    fn reset_view(&self, state: &mut State) {
        state.queued_bytes = 0;
        state.unwritten.clear();
        let purged = self.log_state.purged;
        state.purged = purged;
        state.vote.clone_from(&self.log_state.vote);
        let floor = purged.map_or(0, |p| p.lsn.0);
        let written = state.index.last_lsn().filter(|&l| l > floor);
        let last = match written {
            Some(lsn) => state.index.log_id(lsn),
            None => purged,
        };
        state.next_lsn = last.map_or(1, |l: LogId| l.lsn.0 + 1);
        state.last = last;
    }

    pub(crate) fn poison(&mut self, error: &Error) {
        self.poison_with(Arc::new(error.clone()), false);
    }

    /// Poisons the log after a panic of its writer: nothing half done is written, and the
    /// lead the panicking leader held is given up.
    fn poison_panicked(&mut self, panic: &(dyn Any + Send)) {
        self.buf.clear();
        self.garbage.clear();
        // Anything a panic left here is answered (with the error) as it drops.
        self.group.clear();
        self.done.clear();
        self.placed = Placed::default();
        self.poison_with(Error::panicked("the log writer", panic), true);
    }

    /// Poisons the log with `cause` (an earlier poisoning's cause stays): fails everything
    /// queued and wakes every waiter, so that no one waits for work that will never be
    /// done. With `release_lead`, also gives up `State::leading` for a leader that can no
    /// longer do it.
    pub(crate) fn poison_with(&mut self, cause: Arc<Error>, release_lead: bool) {
        let (cause, queued): (Arc<Error>, Vec<Request>) = {
            let mut state = self.shared.state.lock();
            let cause = Arc::clone(state.poisoned.get_or_insert(cause));
            // Records whose append failed must not stay readable from the queue.
            self.reset_view(&mut state);
            if release_lead {
                state.leading = false;
            }
            (cause, drain_attached(&mut state, &self.shared.deferred))
        };
        self.shared.room.notify_all();
        // The background writer sees the poisoning and stops.
        self.shared.work.notify_all();
        for request in queued {
            request.fail(
                Error::Poisoned {
                    cause: Arc::clone(&cause),
                },
                &self.shared.deferred,
            );
        }
        self.shared.notifier.notify();
    }
}

/// Runs the completed callbacks; if one panicked, poisons the log with its panic (and runs
/// the callbacks of the requests that failed). Requires: the caller holds neither the
/// writer nor the state lock.
pub(crate) fn run_callbacks(shared: &Shared, writer: &Mutex<Writer>) {
    let mut panicked = shared.deferred.run();
    while let Some(cause) = panicked.take() {
        writer.lock().poison_with(cause, false);
        panicked = shared.deferred.run();
    }
}

/// Completes written appends, in LSN order; the first `durable_count` of them are durable.
/// Their batches go to `garbage`, freed after the waiters are woken: freeing thousands of
/// small payloads is then off the appenders' critical path. Returns whether a blocked
/// waiter may need waking.
fn complete_all(
    requests: impl ExactSizeIterator<Item = AppendRequest>,
    durable_count: usize,
    garbage: &mut Vec<Batch>,
    deferred: &Deferred,
) -> bool {
    assert!(
        durable_count <= requests.len(),
        "{durable_count} durable of {} appends",
        requests.len()
    );
    let mut wake = false;
    for (index, r) in requests.enumerate() {
        let durable = index < durable_count;
        let first = r.records.first().expect("non-empty").id.lsn;
        let last = r.records.last().expect("non-empty").id.lsn;
        wake |= r.completion.complete(
            Ok(Appended {
                first,
                last,
                durable,
            }),
            &r.records,
            deferred,
        );
        garbage.push(r.records);
    }
    wake
}

/// Takes everything queued, each callback's completion given the queue its call goes to (a
/// panic before the caller fails them then answers them as abandoned).
fn drain_attached(state: &mut State, deferred: &Arc<Deferred>) -> Vec<Request> {
    state
        .requests
        .drain(..)
        .map(|mut request| {
            if let Request::Append(r) = &mut request {
                r.completion.attach(deferred);
            }
            request
        })
        .collect()
}

/// Fails a group's appends in LSN order: those `done` before `request`, `request`, and the
/// `rest`.
fn fail_in_order(
    done: &mut Vec<AppendRequest>,
    request: AppendRequest,
    rest: impl IntoIterator<Item = AppendRequest>,
    error: &Error,
    deferred: &Deferred,
) {
    let in_order = done.drain(..).chain(std::iter::once(request)).chain(rest);
    fail_all(in_order, error, deferred);
}

fn fail_all(requests: impl IntoIterator<Item = AppendRequest>, error: &Error, deferred: &Deferred) {
    for r in requests {
        r.completion
            .complete(Err(error.clone()), &r.records, deferred);
    }
}
