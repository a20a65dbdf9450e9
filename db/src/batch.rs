//! What a caller writes: an atomic batch of puts and deletes across tables, and a
//! transaction (conditions plus a batch, with an optional idempotency key). Tables are
//! named here; the Db turns names into ids when it logs the record.

use crate::error::{Error, Result};
use crate::limits::{
    BATCH_SIZE_MAX, BATCH_WRITES_MAX, CONDITIONS_MAX, KEY_SIZE_MAX, VALUE_SIZE_MAX,
};
use crate::options::Durability;
use crate::record::{
    Check, IdempotencyKey, Inline, TABLE_PUT_OVERHEAD, WRITE_PREFIX_SIZE, put_table_write,
};

/// Puts and deletes across tables, applied all or nothing at one LSN. The last write to a
/// key wins.
///
/// The batch is kept as the log record it becomes (as RocksDB's `WriteBatch` keeps its
/// `rep`): each write is encoded into one buffer as it is added, in the layout of a write
/// record's table writes (docs/format/db-records.md), with room for the record's header in
/// front. Committing it resolves table names to ids in place and logs the buffer as it is;
/// no key or value is copied again before the engines copy it in.
///
/// # Invariants
/// `buf` holds [`WRITE_PREFIX_SIZE`] reserved bytes, then one encoded table write for each
/// write within the per-write limits, in the order added; a write's table field holds the
/// index of its table's name in `tables` until the Db resolves it. `count` counts every
/// write added, `size` their key and value bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteBatch {
    buf: Vec<u8>,
    /// The names of the tables written, in order of first use.
    tables: TableNames,
    count: usize,
    size: usize,
    /// The first write over a per-write limit (key or value size): it is counted but not
    /// encoded, and the batch is refused when committed.
    refused: Option<Refused>,
}

/// A per-write limit a write went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Refused {
    limit: &'static str,
    actual: usize,
    max: usize,
}

impl Default for WriteBatch {
    fn default() -> Self {
        Self {
            buf: vec![0; WRITE_PREFIX_SIZE],
            tables: TableNames::default(),
            count: 0,
            size: 0,
            refused: None,
        }
    }
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for (table, key, value) in self.iter() {
            list.entry(&(table, key, value));
        }
        list.finish()
    }
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `puts` puts whose keys and values total `bytes`: a
    /// caller that knows its writes' size spares the buffer's regrowth and copies.
    pub fn with_capacity(puts: usize, bytes: usize) -> Self {
        let capacity = bytes
            .saturating_add(puts.saturating_mul(TABLE_PUT_OVERHEAD))
            .saturating_add(WRITE_PREFIX_SIZE);
        // One allocation: the default's prefix would be reallocated by the reservation.
        let mut buf = Vec::with_capacity(capacity);
        buf.resize(WRITE_PREFIX_SIZE, 0);
        Self {
            buf,
            ..Self::default_empty()
        }
    }

    /// The default batch without its buffer's allocation, for constructors that make their
    /// own buffer.
    fn default_empty() -> Self {
        Self {
            buf: Vec::new(),
            tables: TableNames::default(),
            count: 0,
            size: 0,
            refused: None,
        }
    }

    /// Stores `value` under `key` in `table`.
    pub fn put(
        &mut self,
        table: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.add(table, key.as_ref(), Some(value.as_ref()));
        self
    }

    /// Deletes `key` from `table`.
    pub fn delete(&mut self, table: &str, key: impl AsRef<[u8]>) -> &mut Self {
        self.add(table, key.as_ref(), None);
        self
    }

    /// The number of writes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn add(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) {
        let value_len = value.map_or(0, <[u8]>::len);
        self.count += 1;
        self.size = self.size.saturating_add(key.len() + value_len);
        let over = if key.len() > KEY_SIZE_MAX {
            Some(("key size", key.len(), KEY_SIZE_MAX))
        } else if value_len > VALUE_SIZE_MAX {
            Some(("value size", value_len, VALUE_SIZE_MAX))
        } else {
            None
        };
        if let Some((limit, actual, max)) = over {
            // Never encoded: a key or value may not even fit the record's u32 lengths.
            self.refused.get_or_insert(Refused { limit, actual, max });
            return;
        }
        let index = self.table_index(table);
        put_table_write(&mut self.buf, index, key, value);
    }

    /// The index of `table` in `tables`, added if new. Batches name few tables, and
    /// consecutive writes mostly the same one: the last name added is compared first.
    fn table_index(&mut self, table: &str) -> u64 {
        let found = match self.tables.len().checked_sub(1) {
            Some(last) if self.tables.last_is(table) => Some(last),
            _ => self.tables.iter().position(|t| t == table),
        };
        let index = found.unwrap_or_else(|| self.tables.push(table));
        index as u64
    }

    /// The writes in order: table, key, and the value (`None` for a delete). Writes over a
    /// per-write limit are not among them.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u8], Option<&[u8]>)> + '_ {
        let mut rest = self.buf.get(WRITE_PREFIX_SIZE..).unwrap_or_default();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (table, write, tail) =
                crate::record::split_table_write(rest).expect("the batch encoded it");
            rest = tail;
            let name = usize::try_from(table)
                .ok()
                .and_then(|index| self.tables.get(index))
                .expect("a batch's table field indexes its names");
            Some((name, write.0, write.1))
        })
    }

    /// Checks the batch against the Db's limits (docs/limits.md).
    pub(crate) fn check_limits(&self) -> Result<()> {
        limit("batch writes", self.count, BATCH_WRITES_MAX)?;
        if let Some(refused) = self.refused {
            return limit(refused.limit, refused.actual, refused.max);
        }
        limit("batch size", self.size, BATCH_SIZE_MAX)
    }

    /// The names of the tables written, in order of first use.
    pub(crate) fn tables(&self) -> &TableNames {
        &self.tables
    }

    /// The encoded writes behind [`WRITE_PREFIX_SIZE`] reserved bytes (see the type's
    /// invariants), and their count. Requires: [`WriteBatch::check_limits`] passed, so
    /// every write is encoded.
    pub(crate) fn into_encoded(self) -> (Vec<u8>, usize) {
        assert!(self.refused.is_none(), "a refused batch is never encoded");
        (self.buf, self.count)
    }
}

/// The names of a batch's tables, in order of first use, kept in one string: a batch of
/// one table allocates for its name alone, not for a vector of strings as well.
///
/// # Invariants
/// `ends` increase; name `i` is `joined[ends[i - 1]..ends[i]]` (from 0 for the first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TableNames {
    joined: String,
    ends: Inline<usize>,
}

impl TableNames {
    /// The number of names.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Name `index`, if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(previous) => *self.ends.get(previous)?,
            None => 0,
        };
        self.joined.get(start..end)
    }

    /// Whether the last name added is `name`: a byte comparison with the end of `joined`,
    /// which every write of a one-table batch makes.
    fn last_is(&self, name: &str) -> bool {
        let start = match self.ends.len().checked_sub(2) {
            Some(previous) => self.ends.get(previous).copied().unwrap_or(usize::MAX),
            None => 0,
        };
        self.joined.as_bytes().get(start..) == Some(name.as_bytes())
    }

    /// The names in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|index| self.get(index))
    }

    /// Adds `name` (not among the names yet); returns its index.
    fn push(&mut self, name: &str) -> usize {
        self.joined.push_str(name);
        let end = self.joined.len();
        self.ends.push(end, 2);
        self.len() - 1
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

/// `LimitExceeded` naming `name` when `actual` is above `max`.
pub(crate) fn limit(name: &'static str, actual: usize, max: usize) -> Result<()> {
    if actual > max {
        return Err(Error::LimitExceeded {
            limit: name,
            actual: actual as u64,
            max: max as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use popdb_testkit::Rng;

    use super::*;
    use crate::record::{
        self, Condition as RecordCondition, LogRecord, RecordRef, TableWrite, WriteRecord,
    };

    const NAMES: [&str; 3] = ["a", "bb", "ccc"];

    /// A random batch over up to three tables, and the record it must become when table
    /// `NAMES[i]` has id `100 + i`.
    fn random_batch(rng: &mut Rng) -> (WriteBatch, Vec<TableWrite>) {
        let mut batch = WriteBatch::new();
        let mut writes = Vec::new();
        for _ in 0..rng.below(40) {
            let table = rng.index(NAMES.len());
            let key = rng.bytes(12, b"xyz");
            let value = (!rng.chance(4)).then(|| rng.bytes(30, b"0123456789"));
            match &value {
                Some(value) => batch.put(NAMES[table], &key, value),
                None => batch.delete(NAMES[table], &key),
            };
            writes.push(TableWrite {
                table: 100 + table as u64,
                key,
                value,
            });
        }
        (batch, writes)
    }

    /// What the Db logs for `batch` with these conditions and key.
    fn payload(
        batch: WriteBatch,
        idempotency: Option<IdempotencyKey>,
        conditions: &[RecordCondition],
    ) -> Vec<u8> {
        let ids: Vec<u64> = batch
            .tables()
            .iter()
            .map(|name| 100 + NAMES.iter().position(|n| *n == name).unwrap() as u64)
            .collect();
        let (mut buf, count) = batch.into_encoded();
        record::replace_tables(&mut buf, count, |index| {
            Ok::<u64, ()>(ids[usize::try_from(index).unwrap()])
        })
        .unwrap();
        record::write_payload(buf, count, idempotency, conditions)
    }

    /// The batch's buffer becomes exactly the bytes the record encoder writes for the same
    /// writes, with and without conditions and an idempotency key; it lists its writes in
    /// order; and the borrowed decoder reads them back with their tables.
    #[test]
    fn batch_encoding_matches_the_record_encoder() {
        let mut rng = Rng(6);
        for _ in 0..500 {
            let (batch, writes) = random_batch(&mut rng);
            assert_eq!(batch.len(), writes.len());
            let listed: Vec<(u64, Vec<u8>, Option<Vec<u8>>)> = batch
                .iter()
                .map(|(name, key, value)| {
                    let index = NAMES.iter().position(|n| *n == name).unwrap();
                    (100 + index as u64, key.to_vec(), value.map(<[u8]>::to_vec))
                })
                .collect();
            let expected: Vec<(u64, Vec<u8>, Option<Vec<u8>>)> = writes
                .iter()
                .map(|w| (w.table, w.key.clone(), w.value.clone()))
                .collect();
            assert_eq!(listed, expected);
            let idempotency = rng.chance(2).then(|| IdempotencyKey {
                client: rng.next(),
                sequence: rng.next(),
            });
            let conditions: Vec<RecordCondition> = (0..rng.below(3))
                .map(|_| RecordCondition {
                    table: 100 + rng.below(3),
                    check: if rng.chance(2) {
                        Check::Absent {
                            key: rng.bytes(8, b"xyz"),
                        }
                    } else {
                        Check::RangeUnchanged {
                            start: rng.bytes(8, b"xyz"),
                            end: rng.chance(2).then(|| rng.bytes(8, b"xyz")),
                            since: rng.next(),
                        }
                    },
                })
                .collect();
            let record = LogRecord::Write(WriteRecord {
                idempotency,
                conditions: conditions.clone(),
                writes: writes.clone(),
            });
            let bytes = payload(batch, idempotency, &conditions);
            assert_eq!(bytes, record.encode());
            let Ok(RecordRef::Write(decoded)) = RecordRef::decode(&bytes) else {
                panic!("the payload does not decode as a write");
            };
            let read: Vec<(u64, Vec<u8>, Option<Vec<u8>>)> = decoded
                .table_writes()
                .map(|(table, (key, value))| (table, key.to_vec(), value.map(<[u8]>::to_vec)))
                .collect();
            assert_eq!(read, expected);
            let tables: Vec<u64> = writes.iter().map(|w| w.table).collect();
            let mut runs = decoded.runs.iter().map(|&(_, end)| end);
            assert!(runs.clone().is_sorted());
            assert_eq!(runs.next_back().unwrap_or(0), tables.len());
        }
    }

    /// The one-write record the Db logs without a batch is byte for byte the record of a
    /// batch of that write, and decodes to it (with its one write and one run held inline).
    #[test]
    fn single_write_payload_matches_a_one_write_batch() {
        let mut rng = Rng(9);
        for _ in 0..300 {
            let table = rng.index(NAMES.len());
            let key = rng.bytes(12, b"xyz");
            let value = (!rng.chance(3)).then(|| rng.bytes(30, b"0123456789"));
            let mut batch = WriteBatch::new();
            match &value {
                Some(value) => batch.put(NAMES[table], &key, value),
                None => batch.delete(NAMES[table], &key),
            };
            let id = 100 + table as u64;
            let single = record::single_write_payload(id, &key, value.as_deref());
            assert_eq!(single, payload(batch, None, &[]));
            let Ok(RecordRef::Write(decoded)) = RecordRef::decode(&single) else {
                panic!("the payload does not decode as a write");
            };
            assert!(matches!(decoded.writes, Inline::One(_)));
            assert_eq!(&*decoded.runs, &[(id, 1)]);
            assert_eq!(&*decoded.writes, &[(key.as_slice(), value.as_deref())]);
        }
    }

    /// A batch's table names come back in order of first use, each once, however the
    /// writes interleave them.
    #[test]
    fn batch_table_names_are_kept_in_order_of_first_use() {
        let mut batch = WriteBatch::new();
        assert_eq!(batch.tables().len(), 0);
        assert_eq!(batch.tables().get(0), None);
        for name in ["bb", "a", "bb", "ccc", "a", "ccc"] {
            batch.put(name, "k", "v");
        }
        let names: Vec<&str> = batch.tables().iter().collect();
        assert_eq!(names, ["bb", "a", "ccc"]);
        assert_eq!(batch.tables().get(3), None);
        let tables: Vec<&str> = batch.iter().map(|(table, _, _)| table).collect();
        assert_eq!(tables, ["bb", "a", "bb", "ccc", "a", "ccc"]);
    }

    fn exceeded(result: Result<()>) -> (&'static str, u64, u64) {
        match result {
            Err(Error::LimitExceeded { limit, actual, max }) => (limit, actual, max),
            other => panic!("expected a limit error: {other:?}"),
        }
    }

    /// Each limit is named with its actual size; the first write over a per-write limit is
    /// the one named (as a check of every write in order would); the write count is checked
    /// first and the batch size last.
    #[test]
    fn batch_limits_name_the_first_write_over_a_limit() {
        let key_max = KEY_SIZE_MAX as u64;
        let value_max = VALUE_SIZE_MAX as u64;
        let mut batch = WriteBatch::new();
        batch.put("t", vec![1; KEY_SIZE_MAX], vec![2; VALUE_SIZE_MAX]);
        batch.check_limits().unwrap();
        batch.put("t", b"k", vec![2; VALUE_SIZE_MAX + 1]);
        batch.delete("t", vec![1; KEY_SIZE_MAX + 3]);
        assert_eq!(batch.len(), 3);
        assert_eq!(
            exceeded(batch.check_limits()),
            ("value size", value_max + 1, value_max)
        );
        // The writes over a limit are counted but not encoded.
        assert_eq!(batch.iter().count(), 1);

        let mut batch = WriteBatch::new();
        batch.delete("t", vec![1; KEY_SIZE_MAX + 3]);
        batch.put("t", b"k", vec![2; VALUE_SIZE_MAX + 1]);
        assert_eq!(
            exceeded(batch.check_limits()),
            ("key size", key_max + 3, key_max)
        );
        for _ in 0..BATCH_WRITES_MAX {
            batch.delete("t", b"k");
        }
        assert_eq!(
            exceeded(batch.check_limits()),
            (
                "batch writes",
                BATCH_WRITES_MAX as u64 + 2,
                BATCH_WRITES_MAX as u64
            )
        );

        let mut batch = WriteBatch::new();
        let values = BATCH_SIZE_MAX / VALUE_SIZE_MAX;
        for i in 0..values {
            batch.put("t", (i as u64).to_le_bytes(), vec![3; VALUE_SIZE_MAX]);
        }
        assert_eq!(
            exceeded(batch.check_limits()),
            (
                "batch size",
                (BATCH_SIZE_MAX + values * 8) as u64,
                BATCH_SIZE_MAX as u64
            )
        );
    }

    /// Batches built the same way are equal; the table names and the order of the writes
    /// both matter.
    #[test]
    fn batch_equality_follows_the_writes() {
        let build = |first: &str, second: &str| {
            let mut batch = WriteBatch::new();
            batch.put(first, "k", "v").delete(second, "k");
            batch
        };
        assert_eq!(build("a", "b"), build("a", "b"));
        assert_ne!(build("a", "b"), build("b", "a"));
        assert_ne!(build("a", "b"), build("a", "a"));
        assert_eq!(format!("{:?}", WriteBatch::new()), "[]");
        assert!(WriteBatch::new().is_empty());
    }

    #[test]
    fn batch_with_capacity_holds_the_same_writes() {
        // 100 puts of a 4-byte key and a 30-byte value: no regrowth.
        let mut sized = WriteBatch::with_capacity(100, 100 * 34);
        let reserved = sized.buf.capacity();
        let mut grown = WriteBatch::new();
        for i in 0..100u32 {
            let key = i.to_le_bytes();
            sized.put("t", key, [7u8; 30]);
            grown.put("t", key, [7u8; 30]);
        }
        assert_eq!(sized.buf.capacity(), reserved, "the buffer never regrew");
        assert_eq!(sized, grown);
        assert_eq!(sized.len(), 100);
        assert!(WriteBatch::with_capacity(1, 64).is_empty());
    }
}
