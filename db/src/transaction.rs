//! Interactive transactions, on the client side of [`Db::commit`]: read through a read
//! view, recording every read as a condition (a point read as "this version" or "absent",
//! a scan as "nothing in this range changed since the view" plus "this version" for each
//! key returned, which catches deletes), buffer the writes, commit, and retry from a fresh
//! view on conflict a bounded number of times.

use std::collections::HashSet;
use std::ops::Bound;

use crate::batch::{Commit, Condition, WriteBatch};
use crate::db::Db;
use crate::engine::Direction;
use crate::error::{Error, Result};
use crate::read::{Entry, ReadView, Scan};
use crate::record::{Check, IdempotencyKey};

/// A transaction in progress: see [`Db::transaction`].
#[derive(Debug)]
pub struct Transaction {
    view: ReadView,
    conditions: Vec<Condition>,
    writes: WriteBatch,
    /// (table, key) pairs already recorded as conditions.
    read: HashSet<(String, Vec<u8>)>,
    idempotency: Option<IdempotencyKey>,
}

impl Transaction {
    fn begin(db: &Db) -> Result<Self> {
        Ok(Self {
            view: db.read_view()?,
            conditions: Vec::new(),
            writes: WriteBatch::new(),
            read: HashSet::new(),
            idempotency: None,
        })
    }

    /// The LSN the transaction reads at.
    pub fn read_lsn(&self) -> u64 {
        self.view.lsn()
    }

    /// The value of `key` in `table` as this transaction sees it: its own last write to
    /// the key if any, else the read view's (recorded as a condition).
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some((_, _, value)) = self
            .writes
            .iter()
            .filter(|&(t, k, _)| t == table && k == key)
            .last()
        {
            return Ok(value.map(<[u8]>::to_vec));
        }
        let found = self.view.get(table, key)?;
        let check = match &found {
            Some((_, version)) => Check::Version {
                key: key.to_vec(),
                version: *version,
            },
            None => Check::Absent { key: key.to_vec() },
        };
        self.record(table, check);
        Ok(found.map(|(value, _)| value))
    }

    /// The entries of `table` that `scan` covers in the read view (the transaction's own
    /// writes are not merged in). Records that nothing in the range it covered changed,
    /// and the version of each key returned.
    ///
    /// # Errors
    /// As [`ReadView::scan`].
    pub fn scan(&mut self, table: &str, scan: &Scan) -> Result<Vec<Entry>> {
        let entries = self.view.scan(table, scan)?;
        let (lower, upper) = scan.bounds();
        let mut start = match lower {
            Bound::Included(key) => key,
            Bound::Excluded(key) => successor(key),
            Bound::Unbounded => Vec::new(),
        };
        let mut end = match upper {
            Bound::Included(key) => Some(successor(key)),
            Bound::Excluded(key) => Some(key),
            Bound::Unbounded => None,
        };
        if entries.len() >= scan.limit
            && let Some(last) = entries.last()
        {
            // The scan stopped at its limit: it saw only up to its last key.
            match scan.direction {
                Direction::Forward => end = Some(successor(last.key.clone())),
                Direction::Backward => start.clone_from(&last.key),
            }
        }
        let since = self.view.lsn();
        self.conditions.push(Condition {
            table: table.to_string(),
            check: Check::RangeUnchanged { start, end, since },
        });
        for entry in &entries {
            self.record(
                table,
                Check::Version {
                    key: entry.key.clone(),
                    version: entry.version,
                },
            );
        }
        Ok(entries)
    }

    /// Stores `value` under `key` in `table` when the transaction commits.
    pub fn put(&mut self, table: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.writes.put(table, key, value);
    }

    /// Deletes `key` from `table` when the transaction commits.
    pub fn delete(&mut self, table: &str, key: impl AsRef<[u8]>) {
        self.writes.delete(table, key);
    }

    /// Gives the commit an idempotency key (see [`Commit::idempotency`]).
    pub fn set_idempotency(&mut self, key: IdempotencyKey) {
        self.idempotency = Some(key);
    }

    fn record(&mut self, table: &str, check: Check) {
        let key = match &check {
            Check::Version { key, .. } | Check::Absent { key } | Check::Exists { key } => key,
            Check::RangeUnchanged { .. } => unreachable!("ranges are recorded by scan"),
        };
        if self.read.insert((table.to_string(), key.clone())) {
            self.conditions.push(Condition {
                table: table.to_string(),
                check,
            });
        }
    }

    fn into_commit(self) -> Commit {
        Commit {
            conditions: self.conditions,
            writes: self.writes,
            idempotency: self.idempotency,
            durability: None,
        }
    }
}

fn successor(mut key: Vec<u8>) -> Vec<u8> {
    key.push(0);
    key
}

impl Db {
    /// Runs `body` as a transaction: it reads through a fresh read view (every read becomes
    /// a condition) and buffers writes; then the Db commits it. On a conflict it runs
    /// `body` again from a new view, at most `retries` more times. Returns `body`'s result
    /// and the commit's LSN.
    ///
    /// ```
    /// # fn main() -> popdb_db::Result<()> {
    /// use popdb_db::{Db, DbOptions, EngineKind, TableOptions};
    /// # let temp = std::env::temp_dir().join(format!("popdb-doc-txn-{}", std::process::id()));
    /// let db = Db::open(&temp, DbOptions::default())?;
    /// db.create_table("counters", TableOptions::new(EngineKind::Lsm))?;
    /// let (next, _lsn) = db.transaction(3, |txn| {
    ///     let n = txn.get("counters", b"visits")?.map_or(0, |v| v[0]);
    ///     txn.put("counters", "visits", [n + 1]);
    ///     Ok(n + 1)
    /// })?;
    /// assert_eq!(next, 1);
    /// # drop(db);
    /// # std::fs::remove_dir_all(&temp).ok();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// `body`'s errors; [`Error::Conflict`] once the retries are spent; the commit's.
    pub fn transaction<T>(
        &self,
        retries: usize,
        mut body: impl FnMut(&mut Transaction) -> Result<T>,
    ) -> Result<(T, u64)> {
        let mut attempt = 0;
        loop {
            let mut txn = Transaction::begin(self)?;
            let value = body(&mut txn)?;
            match self.commit(txn.into_commit()) {
                Ok(lsn) => return Ok((value, lsn)),
                Err(Error::Conflict { .. }) if attempt < retries => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }
}
