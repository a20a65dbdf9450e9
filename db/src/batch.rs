//! What a caller writes: an atomic batch of puts and deletes across tables, and a
//! transaction (conditions plus a batch, with an optional idempotency key). Tables are
//! named here; the Db turns names into ids when it logs the record.

use crate::error::{Error, Result};
use crate::limits::{
    BATCH_SIZE_MAX, BATCH_WRITES_MAX, CONDITIONS_MAX, KEY_SIZE_MAX, VALUE_SIZE_MAX,
};
use crate::options::Durability;
use crate::record::{Check, IdempotencyKey};

/// Puts and deletes across tables, applied all or nothing at one LSN. The last write to a
/// key wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) writes: Vec<BatchWrite>,
}

/// One write of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BatchWrite {
    pub(crate) table: String,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` under `key` in `table`.
    pub fn put(
        &mut self,
        table: &str,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.writes.push(BatchWrite {
            table: table.to_string(),
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Deletes `key` from `table`.
    pub fn delete(&mut self, table: &str, key: impl Into<Vec<u8>>) -> &mut Self {
        self.writes.push(BatchWrite {
            table: table.to_string(),
            key: key.into(),
            value: None,
        });
        self
    }

    /// The number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Checks the batch against the Db's limits (docs/limits.md).
    pub(crate) fn check_limits(&self) -> Result<()> {
        limit("batch writes", self.writes.len(), BATCH_WRITES_MAX)?;
        let mut size = 0_usize;
        for write in &self.writes {
            limit("key size", write.key.len(), KEY_SIZE_MAX)?;
            let value = write.value.as_ref().map_or(0, Vec::len);
            limit("value size", value, VALUE_SIZE_MAX)?;
            size = size.saturating_add(write.key.len() + value);
        }
        limit("batch size", size, BATCH_SIZE_MAX)
    }
}

/// A condition of a transaction: `check` on table `table`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The table's name.
    pub table: String,
    /// What must hold.
    pub check: Check,
}

/// A transaction, submitted whole: if every condition holds in the state just before it
/// (in log order), every write applies; otherwise none does, and the commit fails with
/// [`Error::Conflict`] naming the first condition that failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// Applied all or nothing.
    pub writes: WriteBatch,
    /// With a key, a resend of this commit returns the first result instead of applying
    /// twice (the Db remembers the most recent keys, docs/limits.md).
    pub idempotency: Option<IdempotencyKey>,
    /// How the commit is made durable; `None` takes the Db's default.
    pub durability: Option<Durability>,
}

impl Commit {
    /// Checks the commit against the Db's limits (docs/limits.md).
    pub(crate) fn check_limits(&self) -> Result<()> {
        self.writes.check_limits()?;
        limit("conditions", self.conditions.len(), CONDITIONS_MAX)?;
        for condition in &self.conditions {
            match &condition.check {
                Check::Version { key, .. } | Check::Absent { key } | Check::Exists { key } => {
                    limit("key size", key.len(), KEY_SIZE_MAX)?;
                }
                Check::RangeUnchanged { start, end, .. } => {
                    // A bound may be a key with a zero byte appended (the successor of a key).
                    limit("key size", start.len(), KEY_SIZE_MAX + 1)?;
                    limit(
                        "key size",
                        end.as_ref().map_or(0, Vec::len),
                        KEY_SIZE_MAX + 1,
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn limit(name: &'static str, actual: usize, max: usize) -> Result<()> {
    if actual > max {
        return Err(Error::LimitExceeded {
            limit: name,
            actual: actual as u64,
            max: max as u64,
        });
    }
    Ok(())
}
