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

/// Where a completed request's result goes.
///
/// Dropped without being completed (a panic unwound through the thread that held it), it
/// completes with [`abandoned`]: no waiter or callback is left without an answer when the
/// thread that owed it one is gone.
pub(crate) struct Completion<T: Send + 'static>(Option<Sink<T>>);

enum Sink<T> {
    Slot(Arc<Slot<T>>),
    /// A caller's callback, run later by [`Deferred::run`], never under the writer's lock.
    Callback(Box<dyn FnOnce(Result<T>) + Send>, Arc<Deferred>),
}

/// Where a completed append's result goes: a [`Completion`]'s sinks, or a callback that
/// also reads the records appended (the log's own copy, shared, not cloned). Completes
/// with [`abandoned`] if dropped, as [`Completion`] does.
pub(crate) struct AppendCompletion(Option<AppendSink>);

enum AppendSink {
    Plain(Sink<Appended>),
    /// Run later by [`Deferred::run`], as [`Sink::Callback`].
    Reading(RecordsCallback, Arc<Deferred>),
}

/// A callback of [`AppendCompletion::reading`].
pub(crate) type RecordsCallback = Box<dyn FnOnce(Result<Appended>, &[Record]) + Send>;

/// A queued callback: it gets the error that overrides its own result if the log was
/// poisoned by a panicking callback before it ran.
type DeferredCall = Box<dyn FnOnce(Option<Error>) + Send>;

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

impl<T: Send + 'static> Sink<T> {
    fn complete(self, result: Result<T>) {
        match self {
            Sink::Slot(slot) => slot.fill(result),
            Sink::Callback(callback, deferred) => {
                deferred.push(Box::new(move |overridden: Option<Error>| {
                    callback(overridden.map_or(result, Err));
                }));
            }
        }
    }
}

impl<T: Send + 'static> Completion<T> {
    pub(crate) fn slot(slot: Arc<Slot<T>>) -> Self {
        Self(Some(Sink::Slot(slot)))
    }

    pub(crate) fn complete(mut self, result: Result<T>) {
        if let Some(sink) = self.0.take() {
            sink.complete(result);
        }
    }
}

impl<T: Send + 'static> Drop for Completion<T> {
    fn drop(&mut self) {
        if let Some(sink) = self.0.take() {
            let notifier = match &sink {
                Sink::Slot(slot) => Some(Arc::clone(&slot.notifier)),
                Sink::Callback(..) => None,
            };
            sink.complete(Err(abandoned()));
            // The writer wakes waiters once per group; a dropped request has no group.
            if let Some(notifier) = notifier {
                notifier.notify();
            }
        }
    }
}

impl AppendCompletion {
    pub(crate) fn slot(slot: Arc<Slot<Appended>>) -> Self {
        Self(Some(AppendSink::Plain(Sink::Slot(slot))))
    }

    pub(crate) fn callback(
        callback: Box<dyn FnOnce(Result<Appended>) + Send>,
        deferred: Arc<Deferred>,
    ) -> Self {
        Self(Some(AppendSink::Plain(Sink::Callback(callback, deferred))))
    }

    pub(crate) fn reading(callback: RecordsCallback, deferred: Arc<Deferred>) -> Self {
        Self(Some(AppendSink::Reading(callback, deferred)))
    }

    /// Drops a completion whose append was refused before it was queued: its caller got
    /// the error, and a callback is never called for a refused append.
    pub(crate) fn refuse(mut self) {
        self.0 = None;
    }

    /// Completes an append of `records`.
    pub(crate) fn complete(mut self, result: Result<Appended>, records: &Batch) {
        match self.0.take() {
            Some(AppendSink::Plain(sink)) => sink.complete(result),
            Some(AppendSink::Reading(callback, deferred)) => {
                let records = Arc::clone(records);
                deferred.push(Box::new(move |overridden: Option<Error>| {
                    callback(overridden.map_or(result, Err), &records);
                }));
            }
            None => {}
        }
    }
}

impl Drop for AppendCompletion {
    fn drop(&mut self) {
        match self.0.take() {
            Some(AppendSink::Plain(sink)) => drop(Completion(Some(sink))),
            Some(AppendSink::Reading(callback, deferred)) => {
                // The records went with the request that was dropped.
                deferred.push(Box::new(move |_| callback(Err(abandoned()), &[])));
            }
            None => {}
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
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| callback(overridden))) {
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
