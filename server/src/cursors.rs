//! The read views scan cursors continue from: a bounded table keyed by the view's LSN, each
//! entry kept for the cursor TTL after the page that last returned a cursor into it.
//! Scans at the same LSN share one view. Past `cursors_max` views, the one closest to
//! expiring is released early; its cursors then get `CursorExpired` (docs/protocol.md,
//! section 10, allows it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use popdb_db::ReadView;
use popdb_io::Clock;

/// The cursor table.
#[derive(Debug)]
pub struct Cursors {
    clock: Arc<dyn Clock>,
    ttl: Duration,
    max: usize,
    views: Mutex<HashMap<u64, Held>>,
}

#[derive(Debug)]
struct Held {
    view: Arc<ReadView>,
    expires: Duration,
}

impl Cursors {
    /// An empty table keeping at most `max` views, each for `ttl` after its last use.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration, max: usize) -> Self {
        assert!(max > 0, "a cursor table holds at least one view");
        Self {
            clock,
            ttl,
            max,
            views: Mutex::new(HashMap::new()),
        }
    }

    /// The view at `lsn`, if it is held and not expired.
    pub fn get(&self, lsn: u64) -> Option<Arc<ReadView>> {
        let now = self.clock.now();
        let mut views = self.views.lock();
        match views.get(&lsn) {
            Some(held) if held.expires > now => Some(Arc::clone(&held.view)),
            Some(_) => {
                views.remove(&lsn);
                None
            }
            None => None,
        }
    }

    /// Holds `view` (or renews the view held at its LSN) for another TTL.
    pub fn keep(&self, view: &Arc<ReadView>) {
        let now = self.clock.now();
        let expires = now + self.ttl;
        let mut views = self.views.lock();
        views.retain(|_, held| held.expires > now);
        if let Some(held) = views.get_mut(&view.lsn()) {
            held.expires = expires;
            return;
        }
        while views.len() >= self.max {
            let soonest = views
                .iter()
                .min_by_key(|(_, held)| held.expires)
                .map(|(&lsn, _)| lsn);
            match soonest {
                Some(lsn) => views.remove(&lsn),
                None => break,
            };
        }
        views.insert(
            view.lsn(),
            Held {
                view: Arc::clone(view),
                expires,
            },
        );
        drop(views);
        self.check_invariants();
    }

    /// Views held now (expired ones not yet released included).
    pub fn held_count(&self) -> usize {
        self.views.lock().len()
    }

    /// Checks the table's invariants; panics if one is broken (a bug).
    pub fn check_invariants(&self) {
        let views = self.views.lock();
        assert!(
            views.len() <= self.max,
            "{} views held, max {}",
            views.len(),
            self.max
        );
        for (lsn, held) in views.iter() {
            assert_eq!(*lsn, held.view.lsn(), "a view is filed under another LSN");
        }
    }
}
