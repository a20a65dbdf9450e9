//! How an appender learns its outcome: by blocking, by awaiting, or by a callback.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::ids::{Lsn, Record};
use crate::wal::Batch;

/// The outcome of an accepted append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// LSN of the first record appended.
    pub first: Lsn,
    /// LSN of the last record appended.
    pub last: Lsn,
    /// Whether the records were durable when the append completed: true if their group
    /// was synced (always for [`crate::Durability::Sync`], and for
    /// [`crate::Durability::Policy`] under [`crate::SyncPolicy::Always`]), or if they were
    /// written before a segment switch in the same group. False means not yet: they become
    /// durable with the next sync ([`crate::Wal::durable_lsn`] tells when).
    pub durable: bool,
}

/// Where a completed request's result goes: the slot its caller waits on.
///
/// Dropped without being completed (a panic unwound through the thread that held it), it
/// completes with [`abandoned`]: no waiter is left without an answer when the thread that
/// owed it one is gone.
pub(crate) struct Completion<T>(Option<Arc<Slot<T>>>);

/// Where a completed append's result goes: a slot, or a callback (one that may also read
/// the records appended: the log's own copy, shared, not cloned), run later by
/// [`Deferred::run`], never under the writer's lock. Completes with [`abandoned`] if
/// dropped, as [`Completion`] does, once a writer has taken it from the log's queue (see
/// [`AppendCompletion::attach`]); one still in the queue is dropped only with the log.
pub(crate) struct AppendCompletion(Option<AppendSink>);

enum AppendSink {
    Slot(Arc<Slot<Appended>>),
    Callback(PlainCallback, Option<Arc<Deferred>>),
    Reading(RecordsCallback, Option<Arc<Deferred>>),
}

/// A callback of [`AppendCompletion::callback`].
pub(crate) type PlainCallback = Box<dyn FnOnce(Result<Appended>) + Send>;

/// A callback of [`AppendCompletion::reading`].
pub(crate) type RecordsCallback = Box<dyn FnOnce(Result<Appended>, &[Record]) + Send>;

/// A queued callback with its result: an enum rather than a boxed closure, so that
/// completing an append allocates nothing.
enum DeferredCall {
    Plain(PlainCallback, Result<Appended>),
    /// `None`: the records went with a request dropped unanswered.
    Reading(RecordsCallback, Result<Appended>, Option<Batch>),
}

impl DeferredCall {
    /// Calls the callback; `overridden` replaces its result if a panicking callback
    /// poisoned the log before it ran.
    fn call(self, overridden: Option<Error>) {
        match self {
            DeferredCall::Plain(callback, result) => callback(overridden.map_or(result, Err)),
            DeferredCall::Reading(callback, result, records) => callback(
                overridden.map_or(result, Err),
                records.as_deref().unwrap_or_default(),
            ),
        }
    }
}

/// The error of a request dropped unanswered: only a panic unwinding through the thread
/// that held it drops one.
fn abandoned() -> Error {
    Error::Poisoned {
        cause: Arc::new(Error::Panicked {
            what: "the log writer",
            message: "it was unwound before answering this request".to_string(),
        }),
    }
}

/// Fills `slot` with the error of a request dropped unanswered, and wakes its waiter (the
/// writer wakes waiters once per group; a dropped request has no group).
fn abandon_slot<T>(slot: &Slot<T>) {
    slot.fill(Err(abandoned()));
    slot.notifier.notify();
}

impl<T> Completion<T> {
    pub(crate) fn slot(slot: Arc<Slot<T>>) -> Self {
        Self(Some(slot))
    }

    pub(crate) fn complete(mut self, result: Result<T>) {
        if let Some(slot) = self.0.take() {
            slot.fill(result);
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            abandon_slot(&slot);
        }
    }
}

impl AppendCompletion {
    pub(crate) fn slot(slot: Arc<Slot<Appended>>) -> Self {
        Self(Some(AppendSink::Slot(slot)))
    }

    pub(crate) fn callback(callback: PlainCallback) -> Self {
        Self(Some(AppendSink::Callback(callback, None)))
    }

    pub(crate) fn reading(callback: RecordsCallback) -> Self {
        Self(Some(AppendSink::Reading(callback, None)))
    }

    /// Gives a callback's completion the queue its call goes to if it is dropped
    /// uncompleted (see the type's docs). Whoever takes the append from the log's queue
    /// does this (a writer taking its group, or failing what is queued), on the thread that
    /// then completes it: an appender taking the
    /// queue's reference count as it queued the append, and the writer dropping it, wrote
    /// the one count every append shares from two threads once per append.
    pub(crate) fn attach(&mut self, deferred: &Arc<Deferred>) {
        if let Some(AppendSink::Callback(_, queue) | AppendSink::Reading(_, queue)) = &mut self.0 {
            queue.get_or_insert_with(|| Arc::clone(deferred));
        }
    }

    /// Drops a completion whose append was refused before it was queued: its caller got
    /// the error, and a callback is never called for a refused append.
    pub(crate) fn refuse(mut self) {
        self.0 = None;
    }

    /// Completes an append of `records`. Returns whether it filled a slot, whose waiter
    /// may be blocked (callbacks need no wake-up).
    pub(crate) fn complete(
        mut self,
        result: Result<Appended>,
        records: &Batch,
        deferred: &Deferred,
    ) -> bool {
        match self.0.take() {
            Some(AppendSink::Slot(slot)) => {
                slot.fill(result);
                true
            }
            Some(AppendSink::Callback(callback, _)) => {
                deferred.push(DeferredCall::Plain(callback, result));
                false
            }
            Some(AppendSink::Reading(callback, _)) => {
                deferred.push(DeferredCall::Reading(
                    callback,
                    result,
                    Some(Arc::clone(records)),
                ));
                false
            }
            None => false,
        }
    }
}

impl Drop for AppendCompletion {
    fn drop(&mut self) {
        match self.0.take() {
            Some(AppendSink::Slot(slot)) => abandon_slot(&slot),
            Some(AppendSink::Callback(callback, Some(deferred))) => {
                deferred.push(DeferredCall::Plain(callback, Err(abandoned())));
            }
            Some(AppendSink::Reading(callback, Some(deferred))) => {
                deferred.push(DeferredCall::Reading(callback, Err(abandoned()), None));
            }
            // Never taken from the log's queue (writers attach the queue to whatever they
            // take), so dropped with the log itself: with no thread left to run its call,
            // the callback goes with it.
            Some(AppendSink::Callback(_, None) | AppendSink::Reading(_, None)) | None => {}
        }
    }
}

/// Callbacks waiting to run, in completion order (LSN order for appends).
///
/// They run after the leader has given up the lead and released the writer, so a callback
/// may call back into the log (even block on it) without deadlocking it. A panicking
/// callback is caught (and counted) instead of killing a leader that holds the log, and
/// poisons the log: what it left half done may be what later callbacks build on (the Db
/// applies its records in them), so every later callback gets [`Error::Poisoned`] naming
/// the panic instead of its own result.
#[derive(Default)]
pub(crate) struct Deferred {
    queue: Mutex<VecDeque<DeferredCall>>,
    /// Held by the one thread running callbacks, so they run one at a time, in order.
    running: Mutex<()>,
    panics: AtomicU64,
    /// Set by the first callback that panicked.
    failed: Mutex<Option<Arc<Error>>>,
    /// Whether `failed` is set, read without its lock.
    has_failed: AtomicBool,
}

impl Deferred {
    fn push(&self, callback: DeferredCall) {
        self.queue.lock().push_back(callback);
    }

    /// Runs queued callbacks unless another thread is already running them (it will run
    /// these too). Returns the cause if a callback panicked in this run and the log must
    /// now be poisoned with it (only the first panic returns it). Requires: the caller
    /// holds neither the writer nor the state lock.
    #[must_use = "a panicking callback must poison the log"]
    pub(crate) fn run(&self) -> Option<Arc<Error>> {
        let mut first_panic = None;
        loop {
            {
                let Some(_running) = self.running.try_lock() else {
                    return first_panic;
                };
                while let Some(callback) = self.queue.lock().pop_front() {
                    let overridden = if self.has_failed.load(Ordering::Acquire) {
                        self.failed.lock().as_ref().map(|cause| Error::Poisoned {
                            cause: Arc::clone(cause),
                        })
                    } else {
                        None
                    };
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| callback.call(overridden)))
                    {
                        self.panics.fetch_add(1, Ordering::Relaxed);
                        let mut failed = self.failed.lock();
                        if failed.is_none() {
                            let cause = Error::panicked("a completion callback", &*panic);
                            *failed = Some(Arc::clone(&cause));
                            self.has_failed.store(true, Ordering::Release);
                            first_panic = Some(cause);
                        }
                    }
                }
            }
            // A callback queued after the last pop but before the lock was released would
            // otherwise wait for the next group.
            if self.queue.lock().is_empty() {
                return first_panic;
            }
        }
    }

    /// Callbacks that panicked so far.
    pub(crate) fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }
}

/// Wakes every blocked waiter at once. The writer completes a whole group and then calls
/// [`Notifier::notify`] once: parking_lot requeues the sleepers onto the mutex and each
/// wakes the next, so the writer pays one wake-up per group, not one per appender.
#[derive(Default)]
pub(crate) struct Notifier {
    epoch: Mutex<u64>,
    cv: Condvar,
}

impl Notifier {
    pub(crate) fn notify(&self) {
        *self.epoch.lock() += 1;
        self.cv.notify_all();
    }
}

pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    notifier: Arc<Notifier>,
}

struct SlotState<T> {
    result: Option<Result<T>>,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    pub(crate) fn new(notifier: &Arc<Notifier>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState {
                result: None,
                waker: None,
            }),
            notifier: Arc::clone(notifier),
        })
    }

    /// Stores the result and wakes an awaiting task. Blocked waiters are woken by the
    /// writer's [`Notifier::notify`] after the group.
    fn fill(&self, result: Result<T>) {
        let mut state = self.state.lock();
        assert!(state.result.is_none(), "a request completed twice");
        state.result = Some(result);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    pub(crate) fn take(&self) -> Option<Result<T>> {
        self.state.lock().result.take()
    }

    pub(crate) fn is_filled(&self) -> bool {
        self.state.lock().result.is_some()
    }
}

/// A pending result: `wait()` blocks for it, `.await` yields until it arrives.
pub struct Ticket<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Ticket<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Self {
        Self { slot }
    }

    /// Blocks until the result arrives.
    pub fn wait(self) -> Result<T> {
        loop {
            if let Some(result) = self.slot.take() {
                return result;
            }
            let notifier = &self.slot.notifier;
            let mut epoch = notifier.epoch.lock();
            // Checked again under the notifier's lock: the writer fills slots before it
            // takes that lock to notify, so a fill cannot slip between check and sleep.
            if let Some(result) = self.slot.take() {
                return result;
            }
            notifier.cv.wait(&mut epoch);
        }
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut state = self.slot.state.lock();
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}
