//! Interactive transactions (DESIGN.md, "Versions and transactions"): a client-side loop
//! that reads with versions, records every read as a condition, buffers writes, and submits
//! the whole as one commit (docs/protocol.md, section 5, Commit).
//!
//! - A point read records `Version` (the key had this version) or `Absent`.
//! - A scan records `RangeUnchanged` (no key of the range it covered has a version above
//!   its read view's LSN) plus a `Version` per returned key. The range condition alone
//!   already catches every change the per-key ones do; the per-key ones make a conflict
//!   name the key that changed, and are left out past the server's `conditions_max` rather
//!   than failing the commit.
//! - Reads see the transaction's own buffered writes for point reads; scans read the
//!   committed state only.
//!
//! Retry rules ([`Client::transaction`]), bounded by [`TxnOptions::retries_max`] in all:
//! a conflict re-runs the body (it certainly did not apply); `Overloaded` resends the same
//! commit after a backoff (it certainly did not apply); an unknown outcome (server
//! `UnknownOutcome` or `Internal`, a timeout, a lost connection) resends the same commit
//! unchanged only if it carries an idempotency key, since the server then returns the first
//! result instead of applying twice (after a lost connection, on a new one:
//! [`crate::ClientOptions::reconnect`]). Without a key, an unknown outcome is returned. Once
//! an attempt's outcome is unknown, only an acknowledgement or a conflict settles the
//! commit: a resend that fails without applying (the connection closed before it was sent,
//! the server read-only) returns the earlier unknown outcome, never its own error.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use popdb_protocol::{Check, Commit, Condition, Direction, Entry, IdempotencyKey, Write};

use crate::client::{Client, table_index};
use crate::error::{Error, Result};
use crate::scan::ScanOptions;

/// How [`Client::transaction`] retries.
#[derive(Clone, Debug)]
pub struct TxnOptions {
    /// Most retries in all (body re-runs after conflicts plus commit resends); 0 tries once.
    pub retries_max: u32,
    /// Whether each commit carries an idempotency key, which makes resending it after an
    /// unknown outcome safe. Without one, an unknown outcome is returned to the caller.
    pub idempotent: bool,
    /// The first retry's backoff; each later one doubles it, up to `backoff_max`.
    pub backoff: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
}

impl Default for TxnOptions {
    fn default() -> Self {
        Self {
            retries_max: 10,
            idempotent: true,
            backoff: Duration::from_millis(2),
            backoff_max: Duration::from_millis(200),
        }
    }
}

/// What a successful [`Client::transaction`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed<T> {
    /// What the body returned on the attempt that committed.
    pub value: T,
    /// The commit's LSN; `None` if the transaction neither read nor wrote, so nothing was
    /// sent.
    pub lsn: Option<u64>,
    /// Commits sent, resends included.
    pub attempts: u32,
}

/// An interactive transaction: reads recorded as conditions, writes buffered. A cheap
/// handle: clones share the same transaction.
#[derive(Clone, Debug)]
pub struct Txn {
    client: Client,
    state: Arc<Mutex<TxnState>>,
}

#[derive(Debug, Default)]
struct TxnState {
    tables: Vec<String>,
    /// Point reads: the condition each recorded, in read order.
    point: Vec<Condition>,
    /// Range conditions of scans, in read order.
    ranges: Vec<Condition>,
    /// `Version` conditions of the keys scans returned.
    scanned: Vec<Condition>,
    writes: Vec<Write>,
    /// The last buffered write per (table index, key): `None` is a delete.
    written: BTreeMap<(u16, Vec<u8>), Option<Vec<u8>>>,
}

impl Txn {
    pub(crate) fn new(client: Client) -> Txn {
        Txn {
            client,
            state: Arc::new(Mutex::new(TxnState::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TxnState> {
        // Every update of the state is a push or insert that leaves it whole.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads a key: the transaction's own buffered write if it has one, else the committed
    /// value, whose version (or absence) becomes a condition of the commit.
    pub async fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        {
            let mut state = self.lock();
            let index = table_index(&mut state.tables, table);
            if let Some(value) = state.written.get(&(index, key.to_vec())) {
                return Ok(value.clone());
            }
        }
        let read = self.client.get(table, key).await?;
        let mut state = self.lock();
        let index = table_index(&mut state.tables, table);
        let check = match &read {
            Some(versioned) => Check::Version {
                key: key.to_vec(),
                version: versioned.version,
            },
            None => Check::Absent { key: key.to_vec() },
        };
        let condition = Condition {
            table: index,
            check,
        };
        if !state.point.contains(&condition) {
            state.point.push(condition);
        }
        Ok(read.map(|versioned| versioned.value))
    }

    /// Scans committed state (not this transaction's buffered writes), following cursors;
    /// the range it covered and every returned key's version become conditions.
    pub async fn scan(&self, table: &str, options: ScanOptions) -> Result<Vec<Entry>> {
        let mut stream = self.client.scan(table, options.clone());
        let mut entries = Vec::new();
        while let Some(page) = stream.next_page().await? {
            entries.extend(page.entries);
        }
        let Some(since) = stream.read_lsn() else {
            return Ok(entries);
        };
        let (start, end) = covered_range(&options, &entries);
        let mut state = self.lock();
        let index = table_index(&mut state.tables, table);
        state.ranges.push(Condition {
            table: index,
            check: Check::RangeUnchanged { start, end, since },
        });
        for entry in &entries {
            state.scanned.push(Condition {
                table: index,
                check: Check::Version {
                    key: entry.key.clone(),
                    version: entry.version,
                },
            });
        }
        Ok(entries)
    }

    /// Buffers a put.
    pub fn put(&self, table: &str, key: &[u8], value: &[u8]) {
        self.write(table, key, Some(value.to_vec()));
    }

    /// Buffers a delete.
    pub fn delete(&self, table: &str, key: &[u8]) {
        self.write(table, key, None);
    }

    fn write(&self, table: &str, key: &[u8], value: Option<Vec<u8>>) {
        let mut state = self.lock();
        let index = table_index(&mut state.tables, table);
        state.written.insert((index, key.to_vec()), value.clone());
        state.writes.push(Write {
            table: index,
            key: key.to_vec(),
            value,
        });
    }

    /// Whether the transaction has read or written nothing.
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.point.is_empty() && state.ranges.is_empty() && state.writes.is_empty()
    }

    /// The commit this transaction stands for, with at most `conditions_max` conditions:
    /// point and range conditions always, then per-key scan conditions while they fit.
    pub fn to_commit(&self, idempotency: Option<IdempotencyKey>) -> Commit {
        let state = self.lock();
        let conditions_max = self.client.server().limits.conditions_max as usize;
        let mut conditions: Vec<Condition> = state.point.clone();
        conditions.extend(state.ranges.iter().cloned());
        let room = conditions_max.saturating_sub(conditions.len());
        conditions.extend(state.scanned.iter().take(room).cloned());
        Commit {
            idempotency,
            tables: state.tables.clone(),
            conditions,
            writes: state.writes.clone(),
        }
    }

    /// Submits the transaction once, with no retry; returns its LSN.
    ///
    /// # Errors
    /// As [`Client::commit`].
    pub async fn commit(&self, idempotency: Option<IdempotencyKey>) -> Result<u64> {
        self.client.commit(self.to_commit(idempotency)).await
    }
}

/// The range `[start, end)` a scan observed: its bounds, narrowed to the last returned key
/// when the scan stopped at its limit (keys past it were not read).
fn covered_range(options: &ScanOptions, entries: &[Entry]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut start = match &options.lower {
        Bound::Unbounded => Vec::new(),
        Bound::Included(key) => key.clone(),
        Bound::Excluded(key) => successor(key),
    };
    let mut end = match &options.upper {
        Bound::Unbounded => None,
        Bound::Included(key) => Some(successor(key)),
        Bound::Excluded(key) => Some(key.clone()),
    };
    let stopped_at_limit = options
        .limit
        .is_some_and(|limit| limit > 0 && entries.len() as u64 >= limit);
    if stopped_at_limit && let Some(last) = entries.last() {
        match options.direction {
            Direction::Forward => end = Some(successor(&last.key)),
            Direction::Backward => start.clone_from(&last.key),
        }
    }
    (start, end)
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl Client {
    /// Runs `body` as an interactive transaction and commits what it read and wrote,
    /// retrying as the module documentation says. `body` may run more than once: it must
    /// not have effects outside the transaction it is given.
    ///
    /// # Errors
    /// An error of `body` (returned as is, never retried); the last [`Error::Conflict`] once
    /// the retries are spent; an unknown outcome ([`Error::may_have_applied`]) if the commit
    /// had no idempotency key, the resends are spent, or a resend failed without applying
    /// after an attempt whose outcome is unknown; any other commit error.
    pub async fn transaction<T, F, Fut>(
        &self,
        options: TxnOptions,
        mut body: F,
    ) -> Result<Committed<T>>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retries = 0u32;
        let mut attempts = 0u32;
        loop {
            let txn = self.begin();
            let value = body(txn.clone()).await?;
            if txn.is_empty() {
                return Ok(Committed {
                    value,
                    lsn: None,
                    attempts,
                });
            }
            let key = options.idempotent.then(|| self.next_idempotency_key());
            let commit = txn.to_commit(key);
            // Resends of this same commit: after Overloaded, or after an unknown outcome when
            // it carries a key. Bounded by the retry budget shared with body re-runs.
            let mut in_doubt: Option<Error> = None;
            let result = loop {
                attempts += 1;
                let result = self.commit(commit.clone()).await;
                let resend = match &result {
                    Err(Error::Overloaded { .. }) => true,
                    Err(e) => e.may_have_applied() && commit.idempotency.is_some(),
                    Ok(_) => false,
                };
                if !resend || retries >= options.retries_max {
                    break settle(result, in_doubt);
                }
                if let Err(e) = result
                    && e.may_have_applied()
                {
                    in_doubt = Some(e);
                }
                retries += 1;
                tokio::time::sleep(backoff(&options, retries)).await;
            };
            match result {
                Ok(lsn) => {
                    return Ok(Committed {
                        value,
                        lsn: Some(lsn),
                        attempts,
                    });
                }
                Err(e) if e.is_conflict() && retries < options.retries_max => {
                    retries += 1;
                    tokio::time::sleep(backoff(&options, retries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The outcome of a commit whose last attempt gave `last`, after earlier attempts of the
/// same commit that may have applied (`in_doubt`, the latest of them). A resend that
/// certainly did not apply says nothing about the attempt before it: the connection closed
/// before the resend was sent, or the server refused it (read-only, not the leader). The
/// commit's outcome is then still unknown, and saying otherwise would let the caller
/// conclude it did not apply and run it again. Only an answer to the commit itself settles
/// it: acknowledged, or a conflict (which the server remembers under the idempotency key,
/// so a resend of an applied commit gets its first result, not a conflict).
fn settle(last: Result<u64>, in_doubt: Option<Error>) -> Result<u64> {
    match (last, in_doubt) {
        (Err(e), Some(earlier)) if !e.may_have_applied() && !e.is_conflict() => Err(earlier),
        (last, _) => last,
    }
}

/// The backoff before retry number `retry` (1-based).
fn backoff(options: &TxnOptions, retry: u32) -> Duration {
    let factor = 1u32 << retry.saturating_sub(1).min(16);
    options
        .backoff
        .saturating_mul(factor)
        .min(options.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8]) -> Entry {
        Entry {
            key: key.to_vec(),
            value: Vec::new(),
            version: 1,
        }
    }

    #[test]
    fn covered_range_unbounded_scan_covers_everything() {
        let options = ScanOptions::new();
        assert_eq!(covered_range(&options, &[entry(b"a")]), (Vec::new(), None));
    }

    #[test]
    fn covered_range_bounds_map_to_half_open_range() {
        let options = ScanOptions {
            lower: Bound::Excluded(b"a".to_vec()),
            upper: Bound::Included(b"m".to_vec()),
            ..ScanOptions::new()
        };
        assert_eq!(
            covered_range(&options, &[]),
            (b"a\0".to_vec(), Some(b"m\0".to_vec()))
        );
    }

    #[test]
    fn covered_range_limited_scan_is_narrowed_to_last_key() {
        let entries = [entry(b"b"), entry(b"c")];
        let forward = ScanOptions::new().from("a").to("z").limit(2);
        assert_eq!(
            covered_range(&forward, &entries),
            (b"a".to_vec(), Some(b"c\0".to_vec()))
        );
        let backward = ScanOptions::new().from("a").to("z").limit(2).reverse();
        let entries = [entry(b"y"), entry(b"x")];
        assert_eq!(
            covered_range(&backward, &entries),
            (b"x".to_vec(), Some(b"z".to_vec()))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let options = TxnOptions::default();
        assert_eq!(backoff(&options, 1), Duration::from_millis(2));
        assert_eq!(backoff(&options, 2), Duration::from_millis(4));
        assert_eq!(backoff(&options, 30), Duration::from_millis(200));
    }
}
