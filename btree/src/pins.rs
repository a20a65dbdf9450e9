//! Which trees are still readable: every published root, read view, cursor and
//! checkpoint in progress holds a [`Pin`] on the LSN of the root it reads. Spec:
//! docs/format/btree.md (section 11, "Free-page reuse rule").
//!
//! A checkpoint of the root at LSN `r` frees the pages that only trees of roots below `r`
//! reach, because every later root descends from `r` and reaches no page `r`'s tree lacks.
//! So those pages may be written again once no pin is below `r`: [`Pins::oldest`] is the
//! bound the allocator checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The pinned LSNs and how many pins each has.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    counts: Mutex<BTreeMap<u64, usize>>,
}

/// One hold on the trees of roots at `lsn` and above; released on drop.
#[derive(Debug)]
pub(crate) struct Pin {
    lsn: u64,
    pins: Arc<Pins>,
}

impl Pins {
    /// A pin on `lsn` (the root's LSN, 0 for the empty tree before any batch).
    pub(crate) fn pin(self: &Arc<Self>, lsn: u64) -> Arc<Pin> {
        *self.lock().entry(lsn).or_default() += 1;
        Arc::new(Pin {
            lsn,
            pins: Arc::clone(self),
        })
    }

    /// The lowest pinned LSN, `None` if nothing is pinned.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.lock().keys().next().copied()
    }

    /// A panic cannot leave the counts half changed (each change is one map operation),
    /// so a poisoned lock is taken as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, usize>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut counts = self.pins.lock();
        if let Some(count) = counts.get_mut(&self.lsn) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.lsn);
            }
        }
    }
}
