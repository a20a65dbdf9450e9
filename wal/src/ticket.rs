//! How an appender learns its outcome: by blocking, by awaiting, or by a callback.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::ids::Lsn;

/// The outcome of an accepted append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// LSN of the first record appended.
    pub first: Lsn,
    /// LSN of the last record appended.
    pub last: Lsn,
    /// Whether the records are durable (always true under [`crate::SyncPolicy::Always`]).
    pub durable: bool,
}

/// Where a completed request's result goes.
pub(crate) enum Completion<T> {
    Slot(Arc<Slot<T>>),
    Callback(Box<dyn FnOnce(Result<T>) + Send>),
}

impl<T> Completion<T> {
    pub(crate) fn complete(self, result: Result<T>) {
        match self {
            Completion::Slot(slot) => slot.fill(result),
            Completion::Callback(callback) => callback(result),
        }
    }
}

pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    filled: Condvar,
}

struct SlotState<T> {
    result: Option<Result<T>>,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState {
                result: None,
                waker: None,
            }),
            filled: Condvar::new(),
        })
    }

    fn fill(&self, result: Result<T>) {
        let mut state = self.state.lock();
        assert!(state.result.is_none(), "a request completed twice");
        state.result = Some(result);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        self.filled.notify_all();
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
        let mut state = self.slot.state.lock();
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            self.slot.filled.wait(&mut state);
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
