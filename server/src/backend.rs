//! The one interface the request path goes through: [`Backend`]. The connection code sees
//! only this trait, so a replicated node (Raft in front of the Db) can stand behind it later
//! without the connection code changing; [`DbBackend`] implements it for the embedded Db.
//!
//! Every method answers in the wire's error type ([`ServerError`]): the backend knows best
//! how its failures map (a replicated one answers `NotLeader`, the embedded one never does).
//! Db calls that block (catalog changes wait for an fdatasync, stats take a lock held
//! across one) run on tokio's blocking pool, never on the reactor; point reads, commits and
//! point writes are the exceptions (see [`DbBackend`]'s `get`, `commit` and `add_point`):
//! they only queue, or read memory and the page cache (a full log queue can hold an
//! appender, as it holds any writer).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use popdb_db::{Commit, Db, DbStats, PointWrites, ReadView, TableDesc, TableOptions, WriteLead};
use popdb_protocol::{ErrorKind, ServerError};

use crate::convert::db_error;

/// What a point read finds: the value and its version, or nothing.
pub type Found = Option<(Vec<u8>, u64)>;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the read started (on a replicated node: after
    /// confirming leadership).
    Linearizable,
    /// May lag the newest committed state by at most this much (a follower read). The
    /// embedded Db is never stale, so it serves these like linearizable reads.
    Bounded {
        /// The most the read may lag.
        staleness_max: Duration,
    },
}

/// What `/health` and Status report of the backend's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Why writes are refused (the log is poisoned, or the Db opened read-only), if they are.
    pub writes_refused: Option<String>,
}

/// The request path's operations. Implementations are cheap to share (`Arc` inside).
pub trait Backend: Send + Sync + 'static {
    /// Applies a transaction (a batch is one without conditions) and returns its commit LSN.
    fn commit(&self, commit: Commit) -> impl Future<Output = Result<u64, ServerError>> + Send;

    /// [`Backend::commit`] answered through `done` instead of a future: called exactly
    /// once, on any thread (the Db's apply stage, or this one before `commit_with`
    /// returns), so that a connection can have many commits outstanding without a task
    /// each. `done` must be short and must not block.
    fn commit_with(
        &self,
        commit: Commit,
        done: impl FnOnce(Result<u64, ServerError>) + Send + 'static,
    );

    /// Adds a put (`value` `Some`) or a delete of one key to `points`: the point writes the
    /// server's connections read in one round of the event loop, logged together by
    /// [`Backend::write_points_leading`]. An error refuses this write alone; nothing of it
    /// is added.
    fn add_point(
        &self,
        points: &mut PointWrites,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ServerError>;

    /// Logs `points` together; `done` gets each write's result, in the order they were
    /// added, called once for all of them on any thread (as [`Backend::commit_with`]'s
    /// `done`). A backend whose log was idle may hand back the duty to write the queued
    /// group ([`WriteLead`]), which the caller runs once the reactor has read the other
    /// requests that are ready, so that they join the group.
    fn write_points_leading(
        &self,
        points: PointWrites,
        done: impl FnOnce(&mut dyn Iterator<Item = Result<u64, ServerError>>) + Send + 'static,
    ) -> Option<WriteLead>;

    /// A point read answered at once, without waiting on anything but memory and the page
    /// cache, if this backend can (the connection then answers it in place); `None` if it
    /// must wait (a replicated node confirming its leadership), and [`Backend::get`] is
    /// used instead.
    fn get_now(
        &self,
        read: ReadConsistency,
        table: &str,
        key: &[u8],
    ) -> Option<Result<Found, ServerError>>;

    /// Reads one key: its value and version.
    fn get(
        &self,
        read: ReadConsistency,
        table: String,
        key: Vec<u8>,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, u64)>, ServerError>> + Send;

    /// A read view of every table at the newest state `read` allows.
    fn read_view(
        &self,
        read: ReadConsistency,
    ) -> impl Future<Output = Result<ReadView, ServerError>> + Send;

    /// Creates a table.
    fn create_table(
        &self,
        name: String,
        options: TableOptions,
    ) -> impl Future<Output = Result<TableDesc, ServerError>> + Send;

    /// Drops a table; returns the LSN of the drop.
    fn drop_table(&self, name: String) -> impl Future<Output = Result<u64, ServerError>> + Send;

    /// The live tables.
    fn tables(&self) -> Vec<TableDesc>;

    /// One table.
    ///
    /// # Errors
    /// `UnknownTable`.
    fn describe(&self, name: &str) -> Result<TableDesc, ServerError>;

    /// Counters and positions. May wait on a lock the Db holds across a file sync.
    fn stats(&self) -> impl Future<Output = Result<DbStats, ServerError>> + Send;

    /// Whether writes are refused, and why.
    fn health(&self) -> impl Future<Output = Result<Health, ServerError>> + Send;

    /// Runs a checkpoint (at shutdown); returns its LSN.
    fn checkpoint(&self) -> impl Future<Output = Result<u64, ServerError>> + Send;
}

/// The embedded Db as a [`Backend`].
#[derive(Clone, Debug)]
pub struct DbBackend {
    db: Arc<Db>,
}

impl DbBackend {
    /// Serves `db`.
    pub fn new(db: Db) -> Self {
        Self { db: Arc::new(db) }
    }

    /// Closes the Db if no request holds it any more (syncing the log); otherwise drops
    /// this handle and the last holder closes it.
    ///
    /// # Errors
    /// The Db's close error.
    pub fn close(self) -> popdb_db::Result<()> {
        match Arc::try_unwrap(self.db) {
            Ok(db) => db.close(),
            Err(_) => Ok(()),
        }
    }

    /// Runs `f` on the blocking pool with the Db.
    async fn blocking<T, F>(&self, f: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> popdb_db::Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(result) => result.map_err(|e| db_error(&e)),
            Err(join) => Err(ServerError::new(
                ErrorKind::Internal,
                format!("the request's task failed: {join}"),
            )),
        }
    }
}

/// `done` as the Db's callback: its errors become the protocol's.
fn answer_db(
    done: impl FnOnce(Result<u64, ServerError>) + Send + 'static,
) -> impl FnOnce(popdb_db::Result<u64>) + Send + 'static {
    move |result| done(result.map_err(|e| db_error(&e)))
}

impl Backend for DbBackend {
    // A commit parks no thread: the Db queues it on the log and the log's writer thread
    // writes, syncs and applies it, then wakes this future (issue 7: a blocking-pool
    // thread per in-flight commit cost 30-50 us of CPU per write).
    async fn commit(&self, commit: Commit) -> Result<u64, ServerError> {
        self.db.commit_async(commit).await.map_err(|e| db_error(&e))
    }

    fn commit_with(
        &self,
        commit: Commit,
        done: impl FnOnce(Result<u64, ServerError>) + Send + 'static,
    ) {
        self.db.commit_with(commit, answer_db(done));
    }

    // Point writes are logged straight from the frames' bytes (no batch, no owned key or
    // value), one event-loop round's as one append with one callback.
    fn add_point(
        &self,
        points: &mut PointWrites,
        table: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ServerError> {
        self.db
            .add_point_write(points, table, key, value)
            .map_err(|e| db_error(&e))
    }

    fn write_points_leading(
        &self,
        points: PointWrites,
        done: impl FnOnce(&mut dyn Iterator<Item = Result<u64, ServerError>>) + Send + 'static,
    ) -> Option<WriteLead> {
        self.db.write_points_leading(points, move |results| {
            done(&mut results.into_iter().map(|r| r.map_err(|e| db_error(&e))));
        })
    }

    fn get_now(
        &self,
        _read: ReadConsistency,
        table: &str,
        key: &[u8],
    ) -> Option<Result<Found, ServerError>> {
        Some(self.db.get(table, key).map_err(|e| db_error(&e)))
    }

    // A point read runs on the reactor's worker itself. It takes no lock that a sync or a
    // writer holds (the published tables are read under a read lock held for an `Arc`
    // clone), and reads the memtable, the block cache, or one block through the page cache
    // (a `pread`, or a fault on the B+tree's map). Handing it to the blocking pool instead
    // costs two thread wake-ups per read, which measured as most of the server's CPU time
    // under pipelined GETs (popdb-bench server, issue 7). Accepted cost: a read that misses
    // the page cache stalls this worker's other tasks for one disk read.
    async fn get(
        &self,
        _read: ReadConsistency,
        table: String,
        key: Vec<u8>,
    ) -> Result<Option<(Vec<u8>, u64)>, ServerError> {
        self.db.get(&table, &key).map_err(|e| db_error(&e))
    }

    async fn read_view(&self, _read: ReadConsistency) -> Result<ReadView, ServerError> {
        self.blocking(Db::read_view).await
    }

    async fn create_table(
        &self,
        name: String,
        options: TableOptions,
    ) -> Result<TableDesc, ServerError> {
        self.blocking(move |db| db.create_table(&name, options))
            .await
    }

    async fn drop_table(&self, name: String) -> Result<u64, ServerError> {
        self.blocking(move |db| {
            db.drop_table(&name)?;
            // The drop's record is the newest the Db applied when it returns; the visible
            // LSN may already include later writes, which is still a correct "at or after".
            Ok(db.visible_lsn())
        })
        .await
    }

    fn tables(&self) -> Vec<TableDesc> {
        self.db.tables()
    }

    fn describe(&self, name: &str) -> Result<TableDesc, ServerError> {
        self.db.describe(name).map_err(|e| db_error(&e))
    }

    // `Db::stats` takes the lock that storing the state file holds across its sync: off
    // the reactor like every other Db call.
    async fn stats(&self) -> Result<DbStats, ServerError> {
        self.blocking(|db| Ok(db.stats())).await
    }

    async fn health(&self) -> Result<Health, ServerError> {
        self.blocking(|db| {
            let writes_refused = match db.poison_cause() {
                Some(cause) => Some(format!("the log is poisoned: {cause}")),
                None => db.stats().read_only,
            };
            Ok(Health { writes_refused })
        })
        .await
    }

    async fn checkpoint(&self) -> Result<u64, ServerError> {
        self.blocking(Db::checkpoint).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! A backend that is not the Db: what a replicated node will look like to the
    //! connection code.

    use parking_lot::Mutex;
    use popdb_db::{Commit, DbStats, PointWrites, ReadView, TableDesc, TableOptions, WriteLead};
    use popdb_protocol::{ErrorKind, ServerError};

    use super::{Backend, Found, Health, ReadConsistency};

    /// Refuses writes as a follower would, and reports what `/health` is told.
    #[derive(Debug, Default)]
    pub(crate) struct FakeBackend {
        pub(crate) writes_refused: Mutex<Option<String>>,
    }

    fn not_leader() -> ServerError {
        ServerError::new(
            ErrorKind::NotLeader {
                leader_hint: Some("10.0.0.2:7878".into()),
            },
            "this node follows",
        )
    }

    impl Backend for FakeBackend {
        async fn commit(&self, _commit: Commit) -> Result<u64, ServerError> {
            Err(not_leader())
        }

        fn commit_with(
            &self,
            _commit: Commit,
            done: impl FnOnce(Result<u64, ServerError>) + Send + 'static,
        ) {
            done(Err(not_leader()));
        }

        fn add_point(
            &self,
            _points: &mut PointWrites,
            _table: &str,
            _key: &[u8],
            _value: Option<&[u8]>,
        ) -> Result<(), ServerError> {
            Err(not_leader())
        }

        fn write_points_leading(
            &self,
            points: PointWrites,
            done: impl FnOnce(&mut dyn Iterator<Item = Result<u64, ServerError>>) + Send + 'static,
        ) -> Option<WriteLead> {
            done(&mut (0..points.len()).map(|_| Err(not_leader())));
            None
        }

        fn get_now(
            &self,
            _read: ReadConsistency,
            _table: &str,
            _key: &[u8],
        ) -> Option<Result<Found, ServerError>> {
            None
        }

        async fn get(
            &self,
            _read: ReadConsistency,
            _table: String,
            _key: Vec<u8>,
        ) -> Result<Option<(Vec<u8>, u64)>, ServerError> {
            Ok(Some((b"v".to_vec(), 7)))
        }

        async fn read_view(&self, _read: ReadConsistency) -> Result<ReadView, ServerError> {
            Err(not_leader())
        }

        async fn create_table(
            &self,
            _name: String,
            _options: TableOptions,
        ) -> Result<TableDesc, ServerError> {
            Err(not_leader())
        }

        async fn drop_table(&self, _name: String) -> Result<u64, ServerError> {
            Err(not_leader())
        }

        fn tables(&self) -> Vec<TableDesc> {
            Vec::new()
        }

        fn describe(&self, name: &str) -> Result<TableDesc, ServerError> {
            Err(ServerError::new(ErrorKind::UnknownTable, name))
        }

        async fn stats(&self) -> Result<DbStats, ServerError> {
            Ok(DbStats {
                visible_lsn: 7,
                durable_lsn: 7,
                checkpoint_lsn: None,
                log_pinned_by: "nothing".into(),
                wal: popdb_wal::WalStats::default(),
                tables: Vec::new(),
                background_error: None,
                read_only: None,
                lsn_lease: 0,
            })
        }

        async fn health(&self) -> Result<Health, ServerError> {
            Ok(Health {
                writes_refused: self.writes_refused.lock().clone(),
            })
        }

        async fn checkpoint(&self) -> Result<u64, ServerError> {
            Ok(7)
        }
    }
}
