//! The puts and deletes every connection reads, logged together. A reader encodes each
//! one ([`Backend::add_point`]) and queues it here, with the connection's write group that
//! answers it; the first write queued schedules a task that, once the event loop has run
//! what else is ready and polled the sockets again (a yield defers it that far), hands
//! everything queued to the backend as one log append with one callback
//! ([`Backend::write_points_leading`]), and writes a small group itself if the log was idle.
//!
//! So a round of the event loop over its connections logs one append, whatever the number
//! of connections and of writes each sent: with one write in flight per connection (50
//! connections at pipeline 1), a write per connection each paid an append's costs (the
//! log's queue entry and lock, a boxed callback, the answer slot, the apply stage's call,
//! vectors of one) where one append now pays them for all. A connection's writes queue in
//! the order it read them, so they take LSNs in that order.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use popdb_db::{PointWrites, WriteLead, WriteOptions};
use popdb_protocol::{ErrorKind, ServerError};

use crate::backend::Backend;
use crate::connection::{Done, WriteGroup};
use crate::request::WriteReply;
use crate::server::Shared;

/// The most records the event loop writes to the log itself when it holds the lead; a
/// larger group goes to the log's writer thread. A small group written on the event loop
/// spares the two thread hand-offs (a quarter of the server's CPU per SET once, see
/// benches/README.md); a loop writing and applying groups of hundreds stops reading
/// meanwhile, and handing them off keeps both threads busy. (With one append per round, 50
/// connections at pipeline 1 make groups of up to 50: measured no faster with a bound of
/// 64 or 128.)
const REACTOR_GROUP_MAX: usize = 32;

/// Point writes queued by the server's connections, not yet handed to the backend.
pub(crate) struct PointQueue<B> {
    queued: Mutex<Queued<B>>,
}

struct Queued<B> {
    writes: PointWrites,
    /// Who asked for each write, in order.
    asked: Vec<Asked<B>>,
    /// A task will hand the queue to the backend.
    flush_scheduled: bool,
}

/// A queued write's asker: the group that answers it, and the request.
pub(crate) struct Asked<B> {
    pub(crate) group: Arc<WriteGroup<B>>,
    pub(crate) request_id: u64,
    pub(crate) op: usize,
    /// When the read that brought the request returned.
    pub(crate) started: Duration,
}

impl<B> Default for PointQueue<B> {
    fn default() -> Self {
        Self {
            queued: Mutex::new(Queued {
                writes: PointWrites::new(WriteOptions::default()),
                asked: Vec::new(),
                flush_scheduled: false,
            }),
        }
    }
}

impl<B> std::fmt::Debug for PointQueue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointQueue")
            .field("queued", &self.queued.lock().asked.len())
            .finish_non_exhaustive()
    }
}

impl<B> Queued<B> {
    /// What is queued, leaving the queue empty.
    fn take(&mut self) -> (PointWrites, Vec<Asked<B>>) {
        let writes = std::mem::replace(&mut self.writes, PointWrites::new(WriteOptions::default()));
        (writes, std::mem::take(&mut self.asked))
    }
}

impl<B: Backend> PointQueue<B> {
    /// Queues the write encoded in `scratch` (left empty, its buffer kept) for `asked`,
    /// whose group already counts it. If the queue has no room for it, what is queued is
    /// handed to the backend first. Must be called on the runtime.
    pub(crate) fn push(shared: &Arc<Shared<B>>, scratch: &mut PointWrites, asked: Asked<B>) {
        let mut queued = shared.points.queued.lock();
        // Handed over under the queue's lock, as `Flush` hands it over: what is taken from
        // the queue reaches the log in the order it was queued, so a connection's writes
        // take LSNs in the order it read them.
        let full = if queued.writes.has_room_for(scratch) {
            None
        } else {
            let (writes, asked) = queued.take();
            log(shared, writes, asked)
        };
        let refused = match queued.writes.append(scratch) {
            Ok(()) => {
                queued.asked.push(asked);
                None
            }
            // Cannot happen (an empty queue has room for anything); if it did, the write
            // is answered, and the scratch left empty for the next one.
            Err(error) => {
                *scratch = PointWrites::new(WriteOptions::default());
                Some((asked, error))
            }
        };
        let schedule = !queued.asked.is_empty() && !queued.flush_scheduled;
        queued.flush_scheduled |= schedule;
        drop(queued);
        if let Some(lead) = full {
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                lead.run_if_at_most(REACTOR_GROUP_MAX);
            });
        }
        if let Some((asked, error)) = refused {
            let error = ServerError::new(ErrorKind::Internal, error.to_string());
            answer(vec![asked], &mut std::iter::once(Err(error)));
        }
        if schedule {
            let flush = Flush(Arc::clone(shared));
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                drop(flush);
            });
        }
    }
}

/// Hands the queue to the backend when dropped: at the end of the task [`PointQueue::push`]
/// schedules, or when that task is dropped unrun (the runtime shutting down), so that no
/// queued write is left unlogged and unanswered.
struct Flush<B: Backend>(Arc<Shared<B>>);

impl<B: Backend> Drop for Flush<B> {
    fn drop(&mut self) {
        let lead = {
            let mut queued = self.0.points.queued.lock();
            queued.flush_scheduled = false;
            let (writes, asked) = queued.take();
            log(&self.0, writes, asked)
        };
        // The event loop's own thread writes and applies a small group, as Redis writes
        // its AOF buffer before it sleeps, sparing the hand-off to the log's writer thread
        // and the wakes back; a large one goes to that thread, whose work then overlaps the
        // event loop's reading and answering.
        if let Some(lead) = lead {
            lead.run_if_at_most(REACTOR_GROUP_MAX);
        }
    }
}

/// Hands `writes` to the backend; their answers go to their askers' groups. Called under
/// the queue's lock: the backend only queues them (a refusal's answers go to the groups,
/// which take no lock of the queue's), and any lead is run after the lock is released.
fn log<B: Backend>(
    shared: &Shared<B>,
    writes: PointWrites,
    asked: Vec<Asked<B>>,
) -> Option<WriteLead> {
    if asked.is_empty() {
        return None;
    }
    shared
        .backend
        .write_points_leading(writes, move |results| answer(asked, results))
}

/// Gives each asker its result, in order; a run of one connection's writes (a pass's, at
/// pipeline 16) goes to its group under one lock.
fn answer<B>(asked: Vec<Asked<B>>, results: &mut dyn Iterator<Item = Result<u64, ServerError>>) {
    let mut result = move || {
        // A backend that gave fewer results than writes (a bug) must still answer each,
        // or their groups would never be written.
        results.next().unwrap_or_else(|| {
            Err(ServerError::new(
                ErrorKind::Internal,
                "the backend gave no result for this write",
            ))
        })
    };
    let mut asked = asked.into_iter().peekable();
    while let Some(first) = asked.next() {
        let group = Arc::clone(&first.group);
        group.answer_with(|answers| {
            answers.push(first.done(result()));
            let mut count = 1;
            while let Some(next) = asked.next_if(|next| Arc::ptr_eq(&next.group, &group)) {
                answers.push(next.done(result()));
                count += 1;
            }
            count
        });
    }
}

impl<B> Asked<B> {
    fn done(self, result: Result<u64, ServerError>) -> Done {
        Done {
            request_id: self.request_id,
            op: self.op,
            started: self.started,
            reply: WriteReply::Written,
            result,
        }
    }
}
