//! The Db's log records: the payload of every `Normal` WAL record the Db writes, and how it
//! is encoded. Spec: docs/format/db-records.md.
//!
//! A record is one of: a write (an atomic batch, or a transaction when it carries
//! conditions or an idempotency key), a table creation, a table drop. Tables are named by
//! id inside records: a table's id is the LSN of the record that created it, so ids are
//! never reused and replay sends each write to the incarnation it was meant for.
//!
//! The encoding (format version 1) is a version byte, a record type byte, then the record's
//! fields in order: little-endian fixed-width integers, byte strings as a `u32` length and
//! the bytes, options as a tag byte. Fixed widths over varints: a record is decoded once per
//! replay and the bytes are dominated by keys and values, so decoding speed wins over a few
//! bytes of framing. Decoding checks structure only (lengths, tags, UTF-8, no trailing
//! bytes), never the Db's limits, which are checked before a record is logged; it never
//! panics and never reserves memory for more elements than the remaining bytes can hold.

#![deny(clippy::indexing_slicing)]

use crate::engine::{EngineKind, Write};
use crate::table::{Compression, TableOptions};

/// A decoded Db log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// Puts and deletes across tables, applied all or nothing, subject to conditions.
    Write(WriteRecord),
    /// Creates a table named `name`; its id is this record's LSN.
    CreateTable {
        /// The new table's name (validated by [`crate::table::validate_name`]).
        name: String,
        /// Its engine and options.
        options: TableOptions,
    },
    /// Drops the table with this id.
    DropTable {
        /// The table's id.
        id: u64,
    },
}

/// A batch or transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteRecord {
    /// When set, a resend of the same key returns the first result instead of applying.
    pub idempotency: Option<IdempotencyKey>,
    /// All must hold, in the state just before the record, for the writes to apply.
    pub conditions: Vec<Condition>,
    /// In order; the last write to a key of a table wins.
    pub writes: Vec<TableWrite>,
}

/// A client's name for one commit: a resend with the same key is the same commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey {
    /// The client's id (chosen by the client, e.g. random).
    pub client: u64,
    /// The client's sequence number of this commit.
    pub sequence: u64,
}

/// One put or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableWrite {
    /// The table's id.
    pub table: u64,
    /// The key.
    pub key: Vec<u8>,
    /// `Some` stores the value, `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// One condition of a transaction, on one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The table's id.
    pub table: u64,
    /// What must hold.
    pub check: Check,
}

/// What a condition requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The key exists with exactly this version.
    Version {
        /// The key.
        key: Vec<u8>,
        /// Its expected version.
        version: u64,
    },
    /// The key does not exist.
    Absent {
        /// The key.
        key: Vec<u8>,
    },
    /// The key exists (any version).
    Exists {
        /// The key.
        key: Vec<u8>,
    },
    /// No key in `[start, end)` (`end` `None`: unbounded) has a version above `since`.
    /// Catches keys written (inserted or updated) after `since`; a key deleted after it is
    /// caught by a key condition on it, which the interactive helper adds for every key it
    /// read.
    RangeUnchanged {
        /// First key of the range (inclusive).
        start: Vec<u8>,
        /// End of the range (exclusive); `None` for no end.
        end: Option<Vec<u8>>,
        /// The LSN the range was read at.
        since: u64,
    },
}

/// Why a record could not be decoded: the byte offset and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed Db log record at byte {offset}: {what}")]
pub struct DecodeError {
    /// Where in the payload.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// A decoded record whose keys and values borrow the payload: what the apply stage reads,
/// so that applying a record copies each key and value once, into the engine.
#[derive(Debug)]
pub(crate) enum RecordRef<'a> {
    /// Puts and deletes across tables, applied all or nothing, subject to conditions.
    Write(WriteRef<'a>),
    /// Creates a table named `name`; its id is this record's LSN.
    CreateTable { name: String, options: TableOptions },
    /// Drops the table with this id.
    DropTable { id: u64 },
}

/// A batch or transaction, its writes borrowed from the payload.
#[derive(Debug)]
pub(crate) struct WriteRef<'a> {
    pub(crate) idempotency: Option<IdempotencyKey>,
    /// Decoded owned: conditions are few and read once.
    pub(crate) conditions: Vec<Condition>,
    /// In record order; the last write to a key of a table wins.
    pub(crate) writes: Inline<Write<'a>>,
    /// The table of each write, run-length encoded: `(table, end)` says that the writes
    /// from the previous run's end up to `end` (exclusive) go to `table`. The runs' ends
    /// increase and the last is `writes.len()`.
    pub(crate) runs: Inline<(u64, usize)>,
}

/// A list that holds a single element inline: a record of one write to one table (a
/// server's SET, a YCSB update) decodes without allocating, where two vectors cost a
/// tenth of the apply stage's own work per record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Inline<T> {
    /// No element.
    #[default]
    Empty,
    /// One element, not on the heap.
    One([T; 1]),
    /// Two or more.
    Many(Vec<T>),
}

impl<T: Copy> Inline<T> {
    /// Appends `item`; `capacity` is the number of elements expected in all, reserved when
    /// the list first moves to the heap.
    pub(crate) fn push(&mut self, item: T, capacity: usize) {
        match self {
            Inline::Empty => *self = Inline::One([item]),
            Inline::One([first]) => {
                let mut many = Vec::with_capacity(capacity.max(2));
                many.push(*first);
                many.push(item);
                *self = Inline::Many(many);
            }
            Inline::Many(many) => many.push(item),
        }
    }

    fn last_mut(&mut self) -> Option<&mut T> {
        match self {
            Inline::Empty => None,
            Inline::One([only]) => Some(only),
            Inline::Many(many) => many.last_mut(),
        }
    }
}

impl<T> std::ops::Deref for Inline<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Inline::Empty => &[],
            Inline::One(one) => one,
            Inline::Many(many) => many,
        }
    }
}

impl<'a> WriteRef<'a> {
    /// The writes with their tables, in record order.
    pub(crate) fn table_writes(&self) -> impl Iterator<Item = (u64, Write<'a>)> + '_ {
        let mut start = 0;
        self.runs.iter().flat_map(move |&(table, end)| {
            let run = self.writes.get(start..end).unwrap_or_default();
            start = end;
            run.iter().map(move |&write| (table, write))
        })
    }
}

/// The bytes a write record without conditions or idempotency key has before its table
/// writes: header, flags, condition count, write count. A [`crate::WriteBatch`] reserves
/// them at the front of its buffer, so that such a record is its buffer.
pub(crate) const WRITE_PREFIX_SIZE: usize = HEADER_SIZE + 1 + LEN_SIZE + LEN_SIZE;
const _: () = assert!(
    WRITE_PREFIX_SIZE == 11,
    "version, type, flags, two u32 counts"
);

/// The only format version: the first byte of every record.
/// Bytes a put adds to a write record beside its key and value ([`put_table_write`]): the
/// table id, the kind and two lengths.
pub(crate) const TABLE_PUT_OVERHEAD: usize = 8 + 1 + LEN_SIZE + LEN_SIZE;

const FORMAT_VERSION: u8 = 1;

/// Record types: the second byte.
const TYPE_WRITE: u8 = 1;
const TYPE_CREATE_TABLE: u8 = 2;
const TYPE_DROP_TABLE: u8 = 3;

/// Bit 0 of a write's flags: an idempotency key follows. The other bits are reserved (zero).
const WRITE_FLAG_IDEMPOTENCY: u8 = 0x01;

/// Tags of a condition's check.
const CHECK_VERSION: u8 = 1;
const CHECK_ABSENT: u8 = 2;
const CHECK_EXISTS: u8 = 3;
const CHECK_RANGE_UNCHANGED: u8 = 4;

/// Tags of a table write.
const WRITE_DELETE: u8 = 0;
const WRITE_PUT: u8 = 1;

/// Tags of a table's engine.
const ENGINE_LSM: u8 = 1;
const ENGINE_BTREE: u8 = 2;

/// Tags of a table's compression.
const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

/// Bytes of the record header: version and type.
const HEADER_SIZE: usize = 2;
/// Bytes of a byte string's length.
const LEN_SIZE: usize = 4;
/// Bytes of a table name's length.
const NAME_LEN_SIZE: usize = 2;
/// The smallest condition: table id, check tag, an empty key (`Absent` or `Exists`).
const CONDITION_SIZE_MIN: usize = 8 + 1 + LEN_SIZE;
/// The smallest table write: table id, tag, an empty key (a delete).
const TABLE_WRITE_SIZE_MIN: usize = 8 + 1 + LEN_SIZE;

impl LogRecord {
    /// Appends the record's encoding to `out`, reserving its exact size first.
    ///
    /// # Panics
    /// If a key, a value or a count does not fit a `u32`, or a name a `u16`: the Db's
    /// limits keep every record far below those, so this is a bug in the caller.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let size = self.encoded_size();
        out.reserve(size);
        let start = out.len();
        out.push(FORMAT_VERSION);
        match self {
            LogRecord::Write(write) => {
                out.push(TYPE_WRITE);
                encode_write(write, out);
            }
            LogRecord::CreateTable { name, options } => {
                out.push(TYPE_CREATE_TABLE);
                encode_create_table(name, options, out);
            }
            LogRecord::DropTable { id } => {
                out.push(TYPE_DROP_TABLE);
                put_u64(out, *id);
            }
        }
        let written = out.len() - start;
        assert_eq!(written, size, "encoded {written} bytes, computed {size}");
    }

    /// The record's encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes a payload. Never panics, never allocates more than `bytes.len()` allows.
    /// Checks structure only: the Db's limits are checked before a record is logged.
    ///
    /// # Errors
    /// [`DecodeError`] on anything but a well-formed record of a known version.
    #[cfg_attr(
        not(any(test, feature = "internals")),
        expect(dead_code, reason = "the Db decodes borrowed records (RecordRef)")
    )]
    pub fn decode(bytes: &[u8]) -> Result<LogRecord, DecodeError> {
        Ok(match RecordRef::decode(bytes)? {
            RecordRef::Write(write) => LogRecord::Write(WriteRecord {
                idempotency: write.idempotency,
                writes: write
                    .table_writes()
                    .map(|(table, (key, value))| TableWrite {
                        table,
                        key: key.to_vec(),
                        value: value.map(<[u8]>::to_vec),
                    })
                    .collect(),
                conditions: write.conditions,
            }),
            RecordRef::CreateTable { name, options } => LogRecord::CreateTable { name, options },
            RecordRef::DropTable { id } => LogRecord::DropTable { id },
        })
    }

    /// The exact size of the record's encoding.
    fn encoded_size(&self) -> usize {
        HEADER_SIZE
            + match self {
                LogRecord::Write(write) => {
                    let idempotency = if write.idempotency.is_some() { 16 } else { 0 };
                    let conditions: usize = write.conditions.iter().map(condition_size).sum();
                    let writes: usize = write.writes.iter().map(table_write_size).sum();
                    1 + idempotency + 4 + conditions + 4 + writes
                }
                LogRecord::CreateTable { name, options } => {
                    let level = match options.compression {
                        Compression::None => 0,
                        Compression::Zstd(_) => 4,
                    };
                    NAME_LEN_SIZE + name.len() + 1 + 1 + level + 4 + 4
                }
                LogRecord::DropTable { .. } => 8,
            }
    }
}

impl<'a> RecordRef<'a> {
    /// Decodes a payload, borrowing keys and values from it. As [`LogRecord::decode`]
    /// (which is this, copied out): never panics, never allocates more than `bytes.len()`
    /// allows, checks structure only.
    ///
    /// # Errors
    /// [`DecodeError`] on anything but a well-formed record of a known version.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<RecordRef<'a>, DecodeError> {
        match decode_single_write(bytes) {
            Some(record) => Ok(record),
            None => Self::decode_any(bytes),
        }
    }

    /// [`RecordRef::decode`] without its shortcut for one write.
    fn decode_any(bytes: &'a [u8]) -> Result<RecordRef<'a>, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8("format version truncated")?;
        if version != FORMAT_VERSION {
            return Err(error(0, "unsupported format version"));
        }
        let type_at = r.pos;
        let record = match r.u8("record type truncated")? {
            TYPE_WRITE => RecordRef::Write(decode_write(&mut r)?),
            TYPE_CREATE_TABLE => decode_create_table(&mut r)?,
            TYPE_DROP_TABLE => RecordRef::DropTable {
                id: r.u64("dropped table id truncated")?,
            },
            _ => return Err(error(type_at, "unknown record type")),
        };
        if r.pos != bytes.len() {
            return Err(error(r.pos, "trailing bytes after the record"));
        }
        Ok(record)
    }
}

fn condition_size(condition: &Condition) -> usize {
    let check = match &condition.check {
        Check::Version { key, .. } => LEN_SIZE + key.len() + 8,
        Check::Absent { key } | Check::Exists { key } => LEN_SIZE + key.len(),
        Check::RangeUnchanged { start, end, .. } => {
            let end = end.as_ref().map_or(0, |end| LEN_SIZE + end.len());
            LEN_SIZE + start.len() + 1 + end + 8
        }
    };
    8 + 1 + check
}

fn table_write_size(write: &TableWrite) -> usize {
    let value = write
        .value
        .as_ref()
        .map_or(0, |value| LEN_SIZE + value.len());
    TABLE_WRITE_SIZE_MIN + write.key.len() + value
}

fn encode_write(write: &WriteRecord, out: &mut Vec<u8>) {
    encode_write_head(write.idempotency, &write.conditions, out);
    put_count(out, write.writes.len());
    for w in &write.writes {
        put_table_write(out, w.table, &w.key, w.value.as_deref());
    }
}

/// A write record's fields before its write count: flags, idempotency key, conditions.
fn encode_write_head(
    idempotency: Option<IdempotencyKey>,
    conditions: &[Condition],
    out: &mut Vec<u8>,
) {
    match idempotency {
        None => out.push(0),
        Some(key) => {
            out.push(WRITE_FLAG_IDEMPOTENCY);
            put_u64(out, key.client);
            put_u64(out, key.sequence);
        }
    }
    put_count(out, conditions.len());
    for condition in conditions {
        put_u64(out, condition.table);
        match &condition.check {
            Check::Version { key, version } => {
                out.push(CHECK_VERSION);
                put_bytes(out, key);
                put_u64(out, *version);
            }
            Check::Absent { key } => {
                out.push(CHECK_ABSENT);
                put_bytes(out, key);
            }
            Check::Exists { key } => {
                out.push(CHECK_EXISTS);
                put_bytes(out, key);
            }
            Check::RangeUnchanged { start, end, since } => {
                out.push(CHECK_RANGE_UNCHANGED);
                put_bytes(out, start);
                match end {
                    None => out.push(0),
                    Some(end) => {
                        out.push(1);
                        put_bytes(out, end);
                    }
                }
                put_u64(out, *since);
            }
        }
    }
}

/// Appends one table write (the layout of docs/format/db-records.md, "Table write").
///
/// # Panics
/// If the key or value does not fit a `u32` length (the Db's limits keep them far below).
pub(crate) fn put_table_write(out: &mut Vec<u8>, table: u64, key: &[u8], value: Option<&[u8]>) {
    put_u64(out, table);
    match value {
        None => {
            out.push(WRITE_DELETE);
            put_bytes(out, key);
        }
        Some(value) => {
            out.push(WRITE_PUT);
            put_bytes(out, key);
            put_bytes(out, value);
        }
    }
}

/// The payload of a write record whose table writes (`write_count` of them, encoded by
/// [`put_table_write`]) follow [`WRITE_PREFIX_SIZE`] reserved bytes in `buf`: the prefix is
/// filled in place when there is no condition and no idempotency key, and otherwise the
/// record is built around a copy of the writes.
///
/// # Panics
/// If `buf` is shorter than the prefix, or a count does not fit a `u32`.
pub(crate) fn write_payload(
    mut buf: Vec<u8>,
    write_count: usize,
    idempotency: Option<IdempotencyKey>,
    conditions: &[Condition],
) -> Vec<u8> {
    assert!(
        buf.len() >= WRITE_PREFIX_SIZE,
        "a write buffer of {} bytes lacks its {WRITE_PREFIX_SIZE}-byte prefix",
        buf.len()
    );
    if idempotency.is_none() && conditions.is_empty() {
        let count = u32::try_from(write_count)
            .unwrap_or_else(|_| panic!("a count of {write_count} does not fit a u32"));
        let [c0, c1, c2, c3] = count.to_le_bytes();
        let (prefix, _) = buf
            .split_first_chunk_mut::<WRITE_PREFIX_SIZE>()
            .expect("the length was checked above");
        // Version, type, flags (none), no condition, the write count.
        *prefix = [FORMAT_VERSION, TYPE_WRITE, 0, 0, 0, 0, 0, c0, c1, c2, c3];
        return buf;
    }
    let writes = buf.get(WRITE_PREFIX_SIZE..).unwrap_or_default();
    let head = 1 + idempotency.map_or(0, |_| 16) + LEN_SIZE;
    let conditions_size: usize = conditions.iter().map(condition_size).sum();
    let size = HEADER_SIZE + head + conditions_size + LEN_SIZE + writes.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[FORMAT_VERSION, TYPE_WRITE]);
    encode_write_head(idempotency, conditions, &mut out);
    put_count(&mut out, write_count);
    out.extend_from_slice(writes);
    assert_eq!(
        out.len(),
        size,
        "encoded {} bytes, computed {size}",
        out.len()
    );
    out
}

/// The payload of a write record of one put (`value` `Some`) or delete of `key` in table
/// `table`, with no condition and no idempotency key: the bytes [`write_payload`] makes of
/// a one-write batch, built in one exactly sized buffer.
///
/// # Panics
/// If the key or value does not fit a `u32` length (the Db's limits keep them far below).
pub(crate) fn single_write_payload(table: u64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let value_size = value.map_or(0, |value| LEN_SIZE + value.len());
    let size = WRITE_PREFIX_SIZE + TABLE_WRITE_SIZE_MIN + key.len() + value_size;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[FORMAT_VERSION, TYPE_WRITE, 0]);
    put_count(&mut out, 0);
    put_count(&mut out, 1);
    put_table_write(&mut out, table, key, value);
    assert_eq!(
        out.len(),
        size,
        "encoded {} bytes, computed {size}",
        out.len()
    );
    out
}

/// Calls `table_of` with the table field of each of the `count` table writes that follow
/// the prefix in `buf`, and stores what it returns there.
///
/// Requires: `buf` holds [`WRITE_PREFIX_SIZE`] bytes, then exactly `count` table writes
/// encoded by [`put_table_write`].
///
/// # Errors
/// The first error `table_of` returns (the fields before it are already replaced).
///
/// # Panics
/// If `buf` does not hold what it requires: a bug in its builder.
pub(crate) fn replace_tables<E>(
    buf: &mut [u8],
    count: usize,
    mut table_of: impl FnMut(u64) -> Result<u64, E>,
) -> Result<(), E> {
    let mut pos = WRITE_PREFIX_SIZE;
    for _ in 0..count {
        let field = buf
            .get_mut(pos..pos + 8)
            .and_then(|b| <&mut [u8; 8]>::try_from(b).ok())
            .expect("a table write's table field");
        *field = table_of(u64::from_le_bytes(*field))?.to_le_bytes();
        let tag = buf.get(pos + 8).copied().expect("a table write's tag");
        pos += 9;
        let strings = if tag == WRITE_PUT { 2 } else { 1 };
        for _ in 0..strings {
            let len = buf
                .get(pos..pos + LEN_SIZE)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .expect("a byte string's length");
            pos += LEN_SIZE + len as usize;
        }
    }
    assert_eq!(pos, buf.len(), "table writes end before their buffer");
    Ok(())
}

fn encode_create_table(name: &str, options: &TableOptions, out: &mut Vec<u8>) {
    let name_len = u16::try_from(name.len())
        .unwrap_or_else(|_| panic!("table name of {} bytes does not fit a u16", name.len()));
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(match options.engine {
        EngineKind::Lsm => ENGINE_LSM,
        EngineKind::Btree => ENGINE_BTREE,
    });
    match options.compression {
        Compression::None => out.push(COMPRESSION_NONE),
        Compression::Zstd(level) => {
            out.push(COMPRESSION_ZSTD);
            out.extend_from_slice(&level.to_le_bytes());
        }
    }
    out.extend_from_slice(&options.page_size.to_le_bytes());
    out.extend_from_slice(&options.bloom_bits_per_key.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    let count =
        u32::try_from(count).unwrap_or_else(|_| panic!("a count of {count} does not fit a u32"));
    out.extend_from_slice(&count.to_le_bytes());
}

/// A byte string: its `u32` length, then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len())
        .unwrap_or_else(|_| panic!("a string of {} bytes does not fit a u32", bytes.len()));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn decode_write<'a>(r: &mut Reader<'a>) -> Result<WriteRef<'a>, DecodeError> {
    let flags_at = r.pos;
    let flags = r.u8("write flags truncated")?;
    if flags & !WRITE_FLAG_IDEMPOTENCY != 0 {
        return Err(error(flags_at, "reserved write flags set"));
    }
    let idempotency = if flags & WRITE_FLAG_IDEMPOTENCY == 0 {
        None
    } else {
        Some(IdempotencyKey {
            client: r.u64("idempotency client truncated")?,
            sequence: r.u64("idempotency sequence truncated")?,
        })
    };
    let conditions_count = r.count(
        CONDITION_SIZE_MIN,
        "condition count truncated",
        "condition count exceeds what the remaining bytes can hold",
    )?;
    let mut conditions = Vec::with_capacity(conditions_count);
    for _ in 0..conditions_count {
        conditions.push(decode_condition(r)?);
    }
    let writes_count = r.count(
        TABLE_WRITE_SIZE_MIN,
        "write count truncated",
        "write count exceeds what the remaining bytes can hold",
    )?;
    // One loop, so that the table write's decoder is inlined once; a record of one write
    // keeps it inline, a larger one goes to the heap once.
    let mut one = None;
    let mut many = Vec::with_capacity(if writes_count > 1 { writes_count } else { 0 });
    let mut runs = Inline::Empty;
    for index in 0..writes_count {
        let (table, write) = decode_table_write(r)?;
        match runs.last_mut() {
            Some((last, end)) if *last == table => *end = index + 1,
            _ => runs.push((table, index + 1), 1),
        }
        if writes_count == 1 {
            one = Some(write);
        } else {
            many.push(write);
        }
    }
    let writes = match one {
        Some(write) => Inline::One([write]),
        None => Inline::Many(many),
    };
    Ok(WriteRef {
        idempotency,
        conditions,
        writes,
        runs,
    })
}

fn decode_condition(r: &mut Reader<'_>) -> Result<Condition, DecodeError> {
    let table = r.u64("condition table id truncated")?;
    let tag_at = r.pos;
    let check = match r.u8("check tag truncated")? {
        CHECK_VERSION => Check::Version {
            key: r.bytes("condition key length truncated", "condition key truncated")?,
            version: r.u64("condition version truncated")?,
        },
        CHECK_ABSENT => Check::Absent {
            key: r.bytes("condition key length truncated", "condition key truncated")?,
        },
        CHECK_EXISTS => Check::Exists {
            key: r.bytes("condition key length truncated", "condition key truncated")?,
        },
        CHECK_RANGE_UNCHANGED => decode_range_unchanged(r)?,
        _ => return Err(error(tag_at, "unknown check tag")),
    };
    Ok(Condition { table, check })
}

fn decode_range_unchanged(r: &mut Reader<'_>) -> Result<Check, DecodeError> {
    let start = r.bytes("range start length truncated", "range start truncated")?;
    let has_end_at = r.pos;
    let end = match r.u8("range end flag truncated")? {
        0 => None,
        1 => Some(r.bytes("range end length truncated", "range end truncated")?),
        _ => return Err(error(has_end_at, "range end flag is neither 0 nor 1")),
    };
    let since = r.u64("range since truncated")?;
    Ok(Check::RangeUnchanged { start, end, since })
}

/// The prefix of a write record with no idempotency key, no conditions and one table write:
/// every SET and DEL a server logs ([`single_write_payload`]).
const SINGLE_WRITE_PREFIX: [u8; WRITE_PREFIX_SIZE] = {
    let mut prefix = [0; WRITE_PREFIX_SIZE];
    prefix[0] = FORMAT_VERSION;
    prefix[1] = TYPE_WRITE;
    // Flags 0 and a condition count of 0 are already zero; then a write count of 1.
    prefix[HEADER_SIZE + 1 + LEN_SIZE] = 1;
    prefix
};

/// `bytes` decoded if it is a well-formed record of [`SINGLE_WRITE_PREFIX`]'s shape; `None`
/// for anything else, which the general decoder then decodes or reports. The apply stage
/// decodes every write the server logs: the general path's counts, bounds and run-length
/// bookkeeping cost about 320 instructions for one put, this about a third.
fn decode_single_write(bytes: &[u8]) -> Option<RecordRef<'_>> {
    let rest = bytes.strip_prefix(&SINGLE_WRITE_PREFIX)?;
    let (table, write, rest) = split_table_write(rest)?;
    rest.is_empty().then(|| {
        RecordRef::Write(WriteRef {
            idempotency: None,
            conditions: Vec::new(),
            writes: Inline::One([write]),
            runs: Inline::One([(table, 1)]),
        })
    })
}

fn decode_table_write<'a>(r: &mut Reader<'a>) -> Result<(u64, Write<'a>), DecodeError> {
    let table = r.u64("write table id truncated")?;
    let tag_at = r.pos;
    let is_put = match r.u8("write tag truncated")? {
        WRITE_DELETE => false,
        WRITE_PUT => true,
        _ => return Err(error(tag_at, "unknown write tag")),
    };
    let key = r.slice("write key length truncated", "write key truncated")?;
    let value = if is_put {
        Some(r.slice("write value length truncated", "write value truncated")?)
    } else {
        None
    };
    Ok((table, (key, value)))
}

/// The first table write of `bytes` and the bytes after it; `None` if `bytes` does not
/// start with a well-formed table write.
pub(crate) fn split_table_write(bytes: &[u8]) -> Option<(u64, Write<'_>, &[u8])> {
    let mut r = Reader { bytes, pos: 0 };
    let (table, write) = decode_table_write(&mut r).ok()?;
    Some((table, write, r.rest()))
}

fn decode_create_table<'a>(r: &mut Reader<'a>) -> Result<RecordRef<'a>, DecodeError> {
    let name_len = r.u16("table name length truncated")?;
    let name_at = r.pos;
    let name = r.take(usize::from(name_len), "table name truncated")?;
    let name = std::str::from_utf8(name)
        .map_err(|_| error(name_at, "table name is not valid UTF-8"))?
        .to_owned();
    let engine_at = r.pos;
    let engine = match r.u8("engine tag truncated")? {
        ENGINE_LSM => EngineKind::Lsm,
        ENGINE_BTREE => EngineKind::Btree,
        _ => return Err(error(engine_at, "unknown engine tag")),
    };
    let compression_at = r.pos;
    let compression = match r.u8("compression tag truncated")? {
        COMPRESSION_NONE => Compression::None,
        COMPRESSION_ZSTD => Compression::Zstd(i32::from_le_bytes(r.array("zstd level truncated")?)),
        _ => return Err(error(compression_at, "unknown compression tag")),
    };
    let options = TableOptions {
        engine,
        compression,
        page_size: r.u32("page size truncated")?,
        bloom_bits_per_key: r.u32("bloom bits per key truncated")?,
    };
    Ok(RecordRef::CreateTable { name, options })
}

fn error(offset: usize, what: &'static str) -> DecodeError {
    DecodeError { offset, what }
}

/// A cursor over a payload. Every read checks the remaining length first; `pos` never
/// passes the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// The next `len` bytes; `what` (naming the field) if fewer remain.
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let taken = self
            .rest()
            .get(..len)
            .ok_or_else(|| error(self.pos, what))?;
        self.pos += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, _) = self
            .rest()
            .split_first_chunk::<N>()
            .ok_or_else(|| error(self.pos, what))?;
        self.pos += N;
        Ok(*head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A byte string, copied out (see [`Reader::slice`]).
    fn bytes(
        &mut self,
        len_what: &'static str,
        what: &'static str,
    ) -> Result<Vec<u8>, DecodeError> {
        Ok(self.slice(len_what, what)?.to_vec())
    }

    /// A byte string: a `u32` length, then that many bytes (reported at the length).
    fn slice(
        &mut self,
        len_what: &'static str,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let len_at = self.pos;
        let len = self.u32(len_what)?;
        let len = usize::try_from(len).map_err(|_| error(len_at, what))?;
        if len > self.rest().len() {
            return Err(error(len_at, what));
        }
        self.take(len, what)
    }

    /// A `u32` element count, refused unless `count * size_min` bytes remain after it, so
    /// that reserving `count` elements is bounded by the input's length.
    fn count(
        &mut self,
        size_min: usize,
        len_what: &'static str,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let count_at = self.pos;
        let count = self.u32(len_what)?;
        usize::try_from(count)
            .ok()
            .filter(|&count| {
                count
                    .checked_mul(size_min)
                    .is_some_and(|size| size <= self.rest().len())
            })
            .ok_or_else(|| error(count_at, what))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    /// One-write records as the server logs them, a put or a delete, keys and values of a few
    /// sizes (empty included).
    fn single_writes() -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        for (table, key_len) in [(1, 0), (7, 1), (u64::MAX, 16), (300, 1000)] {
            let key = vec![0xAB; key_len];
            records.push(single_write_payload(table, &key, None));
            for value_len in [0, 1, 100, 5000] {
                let value = vec![0x5C; value_len];
                records.push(single_write_payload(table, &key, Some(&value)));
            }
        }
        records
    }

    #[test]
    fn single_write_shortcut_decodes_as_the_general_decoder() {
        for bytes in single_writes() {
            let fast = decode_single_write(&bytes).expect("a one-write record takes the shortcut");
            let general = RecordRef::decode_any(&bytes).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{general:?}"));
        }
    }

    #[test]
    fn single_write_shortcut_leaves_anything_else_to_the_general_decoder() {
        for bytes in single_writes() {
            for len in 0..bytes.len() {
                assert!(
                    decode_single_write(bytes.get(..len).unwrap()).is_none(),
                    "prefix of {len}"
                );
            }
            let mut trailing = bytes.clone();
            trailing.push(0);
            assert!(decode_single_write(&trailing).is_none());
            let mut bad_tag = bytes.clone();
            *bad_tag.get_mut(WRITE_PREFIX_SIZE + 8).unwrap() = 9;
            assert!(decode_single_write(&bad_tag).is_none());
            assert!(RecordRef::decode(&bad_tag).is_err());
        }
        let two = LogRecord::Write(WriteRecord {
            idempotency: None,
            writes: vec![
                TableWrite {
                    table: 1,
                    key: b"a".to_vec(),
                    value: None,
                },
                TableWrite {
                    table: 1,
                    key: b"b".to_vec(),
                    value: None,
                },
            ],
            conditions: Vec::new(),
        });
        let keyed = LogRecord::Write(WriteRecord {
            idempotency: Some(IdempotencyKey {
                client: 1,
                sequence: 2,
            }),
            writes: vec![TableWrite {
                table: 1,
                key: b"a".to_vec(),
                value: None,
            }],
            conditions: Vec::new(),
        });
        for record in [two, keyed] {
            let bytes = record.encode();
            assert!(decode_single_write(&bytes).is_none());
            assert_eq!(LogRecord::decode(&bytes).unwrap(), record);
        }
    }
}
