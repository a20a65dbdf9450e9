//! Drives the background work of many trees from one thread: flushes and compactions are
//! step functions ([`Tree::maintenance_step`]); the scheduler calls them round robin until
//! every tree is idle, then sleeps until a tree signals new work (a memtable froze, or the
//! owner's log became durable enough to flush one) or the scheduler is shut down. Tests skip the scheduler and call the steps themselves.
//!
//! Shutdown is clean: [`Scheduler::shutdown`] (or dropping the scheduler) lets the step in
//! progress finish, then joins the thread. A tree whose step fails is poisoned by the step
//! and skipped from then on; the failure is counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::tree::{Progress, Shared, Tree};

/// One background thread doing the flushes and compactions of the trees registered with it.
#[derive(Debug)]
pub struct Scheduler {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

/// The scheduler's side that trees hold, to wake it.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    trees: Mutex<Vec<Weak<Shared>>>,
    /// Set when there may be work; the thread clears it before a round.
    work: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    steps: AtomicU64,
    failures: AtomicU64,
}

impl Inner {
    /// Wakes the thread: a tree may have work.
    pub(crate) fn notify(&self) {
        *self.work.lock() = true;
        self.wake.notify_one();
    }
}

impl Scheduler {
    /// Starts the background thread.
    ///
    /// # Panics
    /// If the thread cannot be spawned.
    pub fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("popdb-lsm-maintenance".into())
            .spawn(move || run(&for_thread))
            .expect("spawning the maintenance thread");
        Self {
            inner,
            thread: Some(thread),
        }
    }

    /// Hands `tree`'s background work to this scheduler: from now on the tree wakes it when
    /// work appears. The scheduler holds the tree weakly; a dropped tree leaves it.
    pub fn register(&self, tree: &Tree) {
        self.inner.trees.lock().push(Arc::downgrade(&tree.shared));
        tree.shared.set_scheduler(Arc::downgrade(&self.inner));
        self.inner.notify();
    }

    /// Maintenance steps taken that did something.
    pub fn steps(&self) -> u64 {
        self.inner.steps.load(Ordering::Relaxed)
    }

    /// Steps that failed (each poisons its tree).
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Stops after the step in progress and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.notify();
        if let Some(thread) = self.thread.take() {
            // A panic in a step is a bug already reported on that thread.
            let _ = thread.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(inner: &Inner) {
    loop {
        {
            let mut work = inner.work.lock();
            while !*work && !inner.stop.load(Ordering::Acquire) {
                inner.wake.wait(&mut work);
            }
            *work = false;
        }
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        // Round robin until a whole round finds nothing to do.
        loop {
            let trees: Vec<Arc<Shared>> = {
                let mut trees = inner.trees.lock();
                trees.retain(|t| t.strong_count() > 0);
                trees.iter().filter_map(Weak::upgrade).collect()
            };
            let mut busy = false;
            for tree in &trees {
                if inner.stop.load(Ordering::Acquire) {
                    return;
                }
                if tree.is_poisoned() {
                    continue;
                }
                match tree.maintenance_step() {
                    Ok(Progress::Idle) => {}
                    Ok(_) => {
                        busy = true;
                        inner.steps.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        inner.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if !busy {
                break;
            }
        }
    }
}
