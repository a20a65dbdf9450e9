//! A tree's spare page buffers: the images of in-memory leaves that were dropped, kept for
//! the next leaves an apply builds.
//!
//! Every apply builds a new image for each leaf it changes, and a checkpoint drops, all at
//! once, every in-memory leaf it wrote (tens of thousands after a random fill's interval).
//! The next interval then makes about as many new leaves again. Allocating each as a fresh
//! zeroed page cost a tenth of a random fill's instructions, so the buffers go back here
//! and are handed out again, their stale bytes left in place (a [`crate::LeafBuilder`]
//! writes every byte of a page it hands over, see its module header).
//!
//! The pool is the tree's, not a thread's: an owner that checkpoints on another thread
//! than it applies on (the Db does) drops the leaves on one thread and builds them on the
//! other.
//!
//! Bound: at most `max(SPARE_PAGES_MIN, nodes the last checkpoint wrote)` buffers. A
//! checkpoint sets the bound before it drops the leaves it wrote, so the pool holds at most
//! the memory those leaves held, which the owner's memory budget allowed (it triggers
//! checkpoints on `Stats::dirty_pages`); each leaf built since takes one back out, so the
//! pool and the dirty leaves together stay within it. A smaller bound trims the pool.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The fewest buffers the pool may keep whatever the last checkpoint wrote: enough for the
/// leaves a few batches replace (4 MiB at 4 KiB pages).
pub(crate) const SPARE_PAGES_MIN: usize = 1024;

/// Spare page buffers of one page size, bounded (see the module header).
#[derive(Debug)]
pub(crate) struct SparePages {
    page_bytes: usize,
    inner: Mutex<Spares>,
}

#[derive(Debug)]
struct Spares {
    pages: Vec<Box<[u8]>>,
    limit: usize,
}

impl SparePages {
    /// An empty pool for pages of `page_bytes` bytes, bounded by [`SPARE_PAGES_MIN`].
    pub(crate) fn new(page_bytes: usize) -> Self {
        Self {
            page_bytes,
            inner: Mutex::new(Spares {
                pages: Vec::new(),
                limit: SPARE_PAGES_MIN,
            }),
        }
    }

    /// A page buffer: a spare one, holding a dropped leaf's bytes, or else a zeroed one.
    pub(crate) fn take(&self) -> Vec<u8> {
        match self.lock().pages.pop() {
            Some(page) => page.into_vec(),
            None => vec![0; self.page_bytes],
        }
    }

    /// Keeps `page`, the image of a leaf being dropped, for the next [`SparePages::take`];
    /// frees it if the pool is full or it is of another size.
    pub(crate) fn put(&self, page: Box<[u8]>) {
        if page.len() != self.page_bytes {
            return;
        }
        let mut spares = self.lock();
        if spares.pages.len() < spares.limit {
            spares.pages.push(page);
        }
    }

    /// Bounds the pool by `max(SPARE_PAGES_MIN, nodes)`, `nodes` being the in-memory nodes
    /// a checkpoint is writing, and frees the buffers past it.
    pub(crate) fn set_limit(&self, nodes: u64) {
        let limit = usize::try_from(nodes).map_or(usize::MAX, |n| n.max(SPARE_PAGES_MIN));
        let trimmed = {
            let mut spares = self.lock();
            spares.limit = limit;
            let keep = spares.pages.len().min(limit);
            spares.pages.split_off(keep)
        };
        // Freed outside the lock: the writer may be taking buffers meanwhile.
        drop(trimmed);
    }

    /// The buffers the pool holds.
    pub(crate) fn len(&self) -> usize {
        self.lock().pages.len()
    }

    fn lock(&self) -> MutexGuard<'_, Spares> {
        // A panic while the lock was held left the vector whole: any buffer in it is fine.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_after_put_returns_the_spare_with_its_bytes() {
        let spares = SparePages::new(64);
        spares.put(vec![0xa5; 64].into_boxed_slice());
        assert_eq!(spares.len(), 1);
        assert_eq!(spares.take(), vec![0xa5; 64]);
        assert_eq!(
            spares.take(),
            vec![0; 64],
            "an empty pool hands out zeroed pages"
        );
        assert_eq!(spares.len(), 0);
    }

    #[test]
    fn put_of_another_size_or_past_the_limit_frees_the_page() {
        let spares = SparePages::new(64);
        spares.put(vec![1; 32].into_boxed_slice());
        assert_eq!(spares.len(), 0);
        for _ in 0..SPARE_PAGES_MIN + 10 {
            spares.put(vec![1; 64].into_boxed_slice());
        }
        assert_eq!(spares.len(), SPARE_PAGES_MIN);
    }

    #[test]
    fn set_limit_raises_the_bound_and_trims_to_a_lower_one() {
        let spares = SparePages::new(8);
        spares.set_limit(3_000);
        for _ in 0..2_500 {
            spares.put(vec![2; 8].into_boxed_slice());
        }
        assert_eq!(spares.len(), 2_500);
        spares.set_limit(2_000);
        assert_eq!(spares.len(), 2_000);
        spares.set_limit(0);
        assert_eq!(spares.len(), SPARE_PAGES_MIN, "never below the minimum");
    }
}
