//! How an appender learns its outcome: by blocking, by awaiting, or by a callback.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
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
pub(crate) enum Completion<T> {
    Slot(Arc<Slot<T>>),
    /// A caller's callback, run later by [`Deferred::run`], never under the writer's lock.
    Callback(Box<dyn FnOnce(Result<T>) + Send>, Arc<Deferred>),
}

/// Where a completed append's result goes: a [`Completion`], or a callback that also
/// reads the records appended (the log's own copy, shared, not cloned).
pub(crate) enum AppendCompletion {
    Plain(Completion<Appended>),
    /// Run later by [`Deferred::run`], as [`Completion::Callback`].
    Reading(RecordsCallback, Arc<Deferred>),
}

/// A callback of [`AppendCompletion::Reading`].
pub(crate) type RecordsCallback = Box<dyn FnOnce(Result<Appended>, &[Record]) + Send>;

impl AppendCompletion {
    /// Completes an append of `records`.
    pub(crate) fn complete(self, result: Result<Appended>, records: &Batch) {
        match self {
            AppendCompletion::Plain(completion) => completion.complete(result),
            AppendCompletion::Reading(callback, deferred) => {
                let records = Arc::clone(records);
                deferred.push(Box::new(move || callback(result, &records)));
            }
        }
    }
}

impl<T: Send + 'static> Completion<T> {
    pub(crate) fn complete(self, result: Result<T>) {
        match self {
            Completion::Slot(slot) => slot.fill(result),
            Completion::Callback(callback, deferred) => {
                deferred.push(Box::new(move || callback(result)));
            }
        }
    }
}

/// Callbacks waiting to run, in completion order (LSN order for appends).
///
/// They run after the leader has given up the lead and released the writer, so a callback
/// may call back into the log (even block on it) without deadlocking it, and a panicking
/// callback is caught (and counted) instead of killing a leader that holds the log.
#[derive(Default)]
pub(crate) struct Deferred {
    queue: Mutex<VecDeque<Box<dyn FnOnce() + Send>>>,
    /// Held by the one thread running callbacks, so they run one at a time, in order.
    running: Mutex<()>,
    panics: AtomicU64,
}

impl Deferred {
    fn push(&self, callback: Box<dyn FnOnce() + Send>) {
        self.queue.lock().push_back(callback);
    }

    /// Runs queued callbacks unless another thread is already running them (it will run
    /// these too). Requires: the caller holds neither the writer nor the state lock.
    pub(crate) fn run(&self) {
        loop {
            {
                let Some(_running) = self.running.try_lock() else {
                    return;
                };
                while let Some(callback) = self.queue.lock().pop_front() {
                    if catch_unwind(AssertUnwindSafe(callback)).is_err() {
                        self.panics.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // A callback queued after the last pop but before the lock was released would
            // otherwise wait for the next group.
            if self.queue.lock().is_empty() {
                return;
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
