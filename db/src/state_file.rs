//! The Db's state file: `<generation dir>/STATE`, replaced atomically (write `STATE.tmp`,
//! fdatasync, rename, sync the directory). It holds what the log alone cannot give
//! recovery: the last completed checkpoint's image (its LSN, the catalog and the
//! idempotency keys as of it), an intent for a checkpoint in progress (with the LSNs of
//! the records in its window that aborted), and the LSN lease. Also the `CURRENT` pointer
//! at the top of the data directory, naming the live generation. Spec:
//! docs/format/layout.md.
//!
//! Invariants, asserted by the encoder and validated by the decoder (so that a state the
//! decoder accepts re-encodes to the same bytes): every checkpoint LSN is at least 1; an
//! intent's LSN is above the done checkpoint's; an image's aborts are strictly ascending,
//! in `[1, lsn]` (and above the done LSN, for an intent); its tables have strictly
//! ascending ids in `[1, lsn]`, unique valid names and valid options; its idempotency keys
//! are unique, at most [`IDEMPOTENCY_KEYS_MAX`], with outcome LSNs in `[1, lsn]`.

#![deny(clippy::indexing_slicing)]

use std::collections::{BTreeSet, HashSet};
use std::fmt::Display;
use std::io;
use std::path::Path;

use popdb_io::{FileSystem, OpenOptions};

use crate::engine::EngineKind;
use crate::error::{Error, Result};
use crate::limits::{IDEMPOTENCY_KEYS_MAX, TABLES_MAX};
use crate::outcome::Outcome;
use crate::record::IdempotencyKey;
use crate::table::{Compression, TableDesc, TableOptions, validate_name};

/// The state file's name in a generation directory.
pub const STATE_FILE: &str = "STATE";
/// The file a new state is written to before it is renamed over [`STATE_FILE`].
pub const STATE_TEMP_FILE: &str = "STATE.tmp";
/// The pointer to the live generation, at the top of the data directory.
pub const CURRENT_FILE: &str = "CURRENT";
/// The file a new pointer is written to before it is renamed over [`CURRENT_FILE`].
pub const CURRENT_TEMP_FILE: &str = "CURRENT.tmp";

/// Everything the state file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbState {
    /// LSNs up to this one may have been seen by a reader: the log must continue above it.
    /// 0 when none was ever leased.
    pub lsn_lease: u64,
    /// The last completed checkpoint: every table's files hold every record through its
    /// LSN. `None` before the first.
    pub done: Option<CheckpointImage>,
    /// A checkpoint begun (its intent durable) and not yet recorded as done.
    pub intent: Option<CheckpointImage>,
}

/// The Db as of one checkpoint LSN, apart from the tables' own files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointImage {
    /// The checkpoint's LSN.
    pub lsn: u64,
    /// The LSNs, in ascending order, of the write records in (previous checkpoint, `lsn`]
    /// that aborted (a failed condition, an unknown table). Only aborts are recorded.
    pub aborts: Vec<u64>,
    /// The tables live at `lsn`, in ascending id order.
    pub tables: Vec<TableDesc>,
    /// The idempotency keys remembered at `lsn`, oldest first (at most
    /// [`crate::limits::IDEMPOTENCY_KEYS_MAX`]).
    pub idempotency: Vec<(IdempotencyKey, Outcome)>,
}

impl DbState {
    /// The encoding of the whole file.
    ///
    /// # Panics
    /// If the state breaks an invariant of the module header (a bug of the caller), or
    /// encodes to more than [`STATE_SIZE_MAX`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let done_lsn = self.done.as_ref().map(|d| d.lsn);
        let mut b = Vec::with_capacity(FIXED_SIZE);
        b.extend_from_slice(&STATE_MAGIC);
        b.extend_from_slice(&STATE_VERSION.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // total_len, set below
        b.extend_from_slice(&self.lsn_lease.to_le_bytes());
        b.push(u8::from(self.done.is_some()));
        b.push(u8::from(self.intent.is_some()));
        if let Some(done) = &self.done {
            encode_image(&mut b, done, None);
        }
        if let Some(intent) = &self.intent {
            encode_image(&mut b, intent, done_lsn);
        }
        let total = b.len() + CRC_SIZE;
        assert!(
            total as u64 <= STATE_SIZE_MAX,
            "state file of {total} bytes is above the {STATE_SIZE_MAX}-byte limit"
        );
        let total = u32::try_from(total).expect("STATE_SIZE_MAX fits in a u32");
        b.get_mut(TOTAL_LEN_OFFSET..LEASE_OFFSET)
            .expect("the header was written above")
            .copy_from_slice(&total.to_le_bytes());
        let crc = popdb_io::crc32(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a state file. Never panics, and allocates no more than the length of `bytes`
    /// justifies (every count is checked against the bytes left before anything is
    /// reserved).
    ///
    /// # Errors
    /// `Corruption` naming the file and what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<DbState> {
        let body = decode_frame(bytes)?;
        let mut r = Reader {
            bytes: body,
            at: LEASE_OFFSET,
        };
        let lsn_lease = r.u64("lsn_lease")?;
        let has_done = r.flag("has_done")?;
        let has_intent = r.flag("has_intent")?;
        let done = if has_done {
            Some(decode_image(&mut r, None, "done")?)
        } else {
            None
        };
        let done_lsn = done.as_ref().map(|d| d.lsn);
        let intent = if has_intent {
            Some(decode_image(&mut r, done_lsn, "intent")?)
        } else {
            None
        };
        if r.at != body.len() {
            return Err(r.bad(format!(
                "{} bytes between the last field and the checksum",
                body.len() - r.at
            )));
        }
        Ok(DbState {
            lsn_lease,
            done,
            intent,
        })
    }

    /// Reads `dir/STATE`; `None` if there is none. A leftover `STATE.tmp` is ignored (a
    /// crash during [`DbState::store`] leaves the previous state whole).
    ///
    /// # Errors
    /// `Io`, or `Corruption` as in [`DbState::decode`] (also for a file longer than
    /// [`STATE_SIZE_MAX`], refused before it is read).
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<DbState>> {
        match read_whole(fs, &dir.join(STATE_FILE), STATE_FILE, STATE_SIZE_MAX)? {
            Some(bytes) => DbState::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Durably replaces `dir/STATE` with this state: write `STATE.tmp` (created or
    /// truncated), fdatasync it, rename it over `STATE`, fsync `dir`. A crash at any point
    /// leaves the old state or the new one. `dir` itself must already be durable.
    ///
    /// # Errors
    /// `Io`.
    ///
    /// # Panics
    /// As [`DbState::encode`].
    pub fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        replace_durably(fs, dir, STATE_TEMP_FILE, STATE_FILE, &self.encode())
    }
}

/// Reads `CURRENT` in the data directory `dir`: the live generation's number; `None` if
/// there is no pointer yet. A leftover `CURRENT.tmp` is ignored.
///
/// # Errors
/// `Io`, or `Corruption` if it is not a generation pointer (exactly
/// `generation_dir_name(n)` and a newline).
pub fn load_current(fs: &dyn FileSystem, dir: &Path) -> Result<Option<u64>> {
    match read_whole(fs, &dir.join(CURRENT_FILE), CURRENT_FILE, CURRENT_SIZE_MAX)? {
        Some(bytes) => decode_current(&bytes).map(Some),
        None => Ok(None),
    }
}

/// Durably points `CURRENT` in `dir` at generation `generation`: write `CURRENT.tmp`,
/// fdatasync it, rename it over `CURRENT`, fsync `dir`. A crash at any point leaves the old
/// pointer (or none) or the new one. The generation's directory must be durable first.
///
/// # Errors
/// `Io`.
pub fn store_current(fs: &dyn FileSystem, dir: &Path, generation: u64) -> Result<()> {
    let text = encode_current(generation);
    replace_durably(fs, dir, CURRENT_TEMP_FILE, CURRENT_FILE, text.as_bytes())
}

/// The directory name of generation `generation`: `gen-` and 6 or more decimal digits.
pub fn generation_dir_name(generation: u64) -> String {
    format!("gen-{generation:06}")
}

/// The largest state file accepted (and written), in bytes: 1 GiB, room for about 130
/// million aborts in one checkpoint window besides full catalogs and key lists. Also keeps
/// `total_len` within a `u32`.
pub const STATE_SIZE_MAX: u64 = 1 << 30;

const STATE_MAGIC: [u8; 8] = *b"POPDBSTA";
const STATE_VERSION: u32 = 1;

// Offsets of the fixed fields (docs/format/layout.md, "STATE").
const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const TOTAL_LEN_OFFSET: usize = VERSION_OFFSET + 4;
const LEASE_OFFSET: usize = TOTAL_LEN_OFFSET + 4;
const HAS_DONE_OFFSET: usize = LEASE_OFFSET + 8;
const HAS_INTENT_OFFSET: usize = HAS_DONE_OFFSET + 1;
/// Where the first image starts (when there is one).
const IMAGES_OFFSET: usize = HAS_INTENT_OFFSET + 1;
const CRC_SIZE: usize = 4;
/// The smallest file: no images.
const FIXED_SIZE: usize = IMAGES_OFFSET + CRC_SIZE;
const _: () = assert!(FIXED_SIZE == 30);
const _: () = assert!(STATE_SIZE_MAX <= u32::MAX as u64);

/// The smallest table entry: id, name length, a 1-byte name, engine, compression, zstd
/// level, page size, bloom bits.
const TABLE_SIZE_MIN: usize = 8 + 2 + 1 + 1 + 1 + 4 + 4 + 4;
/// The smallest idempotency entry: client, sequence, outcome tag, LSN.
const KEY_SIZE_MIN: usize = 8 + 8 + 1 + 8;

const ENGINE_LSM: u8 = 1;
const ENGINE_BTREE: u8 = 2;
const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;
const OUTCOME_COMMITTED: u8 = 1;
const OUTCOME_CONDITION_FAILED: u8 = 2;
const OUTCOME_UNKNOWN_TABLE: u8 = 3;

/// `gen-` + 20 digits (`u64::MAX`) + `\n` is 25 bytes; anything longer is not a pointer.
const CURRENT_SIZE_MAX: u64 = 32;
const CURRENT_PREFIX: &str = "gen-";
const GENERATION_DIGITS_MIN: usize = 6;

/// Appends one image. `after`: the done checkpoint's LSN, for an intent.
fn encode_image(b: &mut Vec<u8>, image: &CheckpointImage, after: Option<u64>) {
    assert!(image.lsn >= 1, "checkpoint lsn is 0");
    if let Some(after) = after {
        assert!(
            image.lsn > after,
            "intent lsn {} is not above done lsn {after}",
            image.lsn
        );
    }
    b.extend_from_slice(&image.lsn.to_le_bytes());

    b.extend_from_slice(&count_u32(image.aborts.len(), "aborts").to_le_bytes());
    let mut last = after.unwrap_or(0);
    for &lsn in &image.aborts {
        assert!(lsn > last, "abort {lsn} not above {last}");
        assert!(
            lsn <= image.lsn,
            "abort {lsn} above checkpoint {}",
            image.lsn
        );
        b.extend_from_slice(&lsn.to_le_bytes());
        last = lsn;
    }

    assert!(
        image.tables.len() <= TABLES_MAX,
        "{} tables, above {TABLES_MAX}",
        image.tables.len()
    );
    b.extend_from_slice(&count_u32(image.tables.len(), "tables").to_le_bytes());
    let mut last_id = 0;
    let mut names = BTreeSet::new();
    for table in &image.tables {
        assert!(
            table.id > last_id,
            "table id {} not above {last_id}",
            table.id
        );
        assert!(
            table.id <= image.lsn,
            "table id {} above checkpoint",
            table.id
        );
        assert!(names.insert(table.name.as_str()), "duplicate table name");
        encode_table(b, table);
        last_id = table.id;
    }

    assert!(
        image.idempotency.len() <= IDEMPOTENCY_KEYS_MAX,
        "{} idempotency keys, above {IDEMPOTENCY_KEYS_MAX}",
        image.idempotency.len()
    );
    b.extend_from_slice(&count_u32(image.idempotency.len(), "keys").to_le_bytes());
    let mut keys = HashSet::with_capacity(image.idempotency.len());
    for (key, outcome) in &image.idempotency {
        assert!(keys.insert(*key), "duplicate idempotency key {key:?}");
        let lsn = outcome_lsn(outcome);
        assert!(
            (1..=image.lsn).contains(&lsn),
            "outcome lsn {lsn} outside [1, {}]",
            image.lsn
        );
        encode_key(b, *key, *outcome);
    }
}

fn encode_table(b: &mut Vec<u8>, table: &TableDesc) {
    assert!(
        validate_name(&table.name).is_ok(),
        "invalid table name {:?}",
        table.name
    );
    assert!(
        table.options.validate().is_ok(),
        "invalid table options {:?}",
        table.options
    );
    let name_len = u16::try_from(table.name.len()).expect("a valid name is at most 64 bytes");
    b.extend_from_slice(&table.id.to_le_bytes());
    b.extend_from_slice(&name_len.to_le_bytes());
    b.extend_from_slice(table.name.as_bytes());
    let options = &table.options;
    b.push(match options.engine {
        EngineKind::Lsm => ENGINE_LSM,
        EngineKind::Btree => ENGINE_BTREE,
    });
    let (tag, level) = match options.compression {
        Compression::None => (COMPRESSION_NONE, 0),
        Compression::Zstd(level) => (COMPRESSION_ZSTD, level),
    };
    b.push(tag);
    b.extend_from_slice(&level.to_le_bytes());
    b.extend_from_slice(&options.page_size.to_le_bytes());
    b.extend_from_slice(&options.bloom_bits_per_key.to_le_bytes());
}

fn encode_key(b: &mut Vec<u8>, key: IdempotencyKey, outcome: Outcome) {
    b.extend_from_slice(&key.client.to_le_bytes());
    b.extend_from_slice(&key.sequence.to_le_bytes());
    match outcome {
        Outcome::Committed { lsn } => {
            b.push(OUTCOME_COMMITTED);
            b.extend_from_slice(&lsn.to_le_bytes());
        }
        Outcome::ConditionFailed { lsn, condition } => {
            b.push(OUTCOME_CONDITION_FAILED);
            b.extend_from_slice(&lsn.to_le_bytes());
            b.extend_from_slice(&condition.to_le_bytes());
        }
        Outcome::UnknownTable { lsn, table } => {
            b.push(OUTCOME_UNKNOWN_TABLE);
            b.extend_from_slice(&lsn.to_le_bytes());
            b.extend_from_slice(&table.to_le_bytes());
        }
    }
}

fn outcome_lsn(outcome: &Outcome) -> u64 {
    match *outcome {
        Outcome::Committed { lsn }
        | Outcome::ConditionFailed { lsn, .. }
        | Outcome::UnknownTable { lsn, .. } => lsn,
    }
}

fn count_u32(count: usize, what: &str) -> u32 {
    u32::try_from(count).unwrap_or_else(|_| panic!("{count} {what} do not fit a u32 count"))
}

/// Checks magic, version, length and checksum, in that order; returns the bytes before
/// the checksum. The magic and version come before the checksum so that a file of another
/// kind, or of a newer version (which may place its checksum elsewhere), is named as such.
fn decode_frame(bytes: &[u8]) -> Result<&[u8]> {
    let magic = bytes.get(MAGIC_OFFSET..VERSION_OFFSET).ok_or_else(|| {
        corrupt(
            0,
            format!("truncated: {} bytes, shorter than the magic", bytes.len()),
        )
    })?;
    if magic != STATE_MAGIC {
        return Err(corrupt(0, "bad magic: not a Db state file"));
    }
    let mut r = Reader {
        bytes,
        at: VERSION_OFFSET,
    };
    let version = r.u32("format_version")?;
    if version != STATE_VERSION {
        let why = if version > STATE_VERSION {
            "is newer than this build reads"
        } else {
            "is not one this build reads"
        };
        return Err(corrupt(
            VERSION_OFFSET,
            format!("format version {version} {why} (it reads {STATE_VERSION})"),
        ));
    }
    let total = r.u32("total_len")? as usize;
    if total < FIXED_SIZE {
        return Err(corrupt(
            TOTAL_LEN_OFFSET,
            format!("total length {total} is below the smallest file ({FIXED_SIZE})"),
        ));
    }
    if bytes.len() < total {
        return Err(corrupt(
            bytes.len(),
            format!(
                "truncated: {} of the {total} bytes the header records",
                bytes.len()
            ),
        ));
    }
    if bytes.len() > total {
        return Err(corrupt(
            total,
            format!(
                "{} bytes after the {total} the header records",
                bytes.len() - total
            ),
        ));
    }
    let (body, crc) = bytes.split_at(total - CRC_SIZE);
    let stored = u32::from_le_bytes(crc.try_into().expect("split 4 bytes from the end"));
    let computed = popdb_io::crc32(body);
    if stored != computed {
        return Err(corrupt(
            body.len(),
            format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    Ok(body)
}

/// Decodes one image. `after`: the done checkpoint's LSN, for an intent.
fn decode_image(
    r: &mut Reader<'_>,
    after: Option<u64>,
    which: &'static str,
) -> Result<CheckpointImage> {
    let at = r.at;
    let lsn = r.u64("checkpoint lsn")?;
    if lsn == 0 {
        return Err(corrupt(at, format!("{which} checkpoint lsn is 0")));
    }
    if let Some(after) = after
        && lsn <= after
    {
        return Err(corrupt(
            at,
            format!("intent lsn {lsn} is not above done lsn {after}"),
        ));
    }
    Ok(CheckpointImage {
        lsn,
        aborts: decode_aborts(r, lsn, after, which)?,
        tables: decode_tables(r, lsn, which)?,
        idempotency: decode_keys(r, lsn, which)?,
    })
}

fn decode_aborts(
    r: &mut Reader<'_>,
    lsn: u64,
    after: Option<u64>,
    which: &'static str,
) -> Result<Vec<u64>> {
    let count = r.count("abort count", 8, usize::MAX)?;
    let mut aborts = Vec::with_capacity(count);
    let mut last = after.unwrap_or(0);
    for _ in 0..count {
        let at = r.at;
        let abort = r.u64("abort lsn")?;
        if abort <= last {
            return Err(corrupt(
                at,
                format!(
                    "{which} abort {abort} is not above {last} (unsorted, 0, or not after done)"
                ),
            ));
        }
        if abort > lsn {
            return Err(corrupt(
                at,
                format!("{which} abort {abort} is above its checkpoint lsn {lsn}"),
            ));
        }
        aborts.push(abort);
        last = abort;
    }
    Ok(aborts)
}

fn decode_tables(r: &mut Reader<'_>, lsn: u64, which: &'static str) -> Result<Vec<TableDesc>> {
    let count = r.count("table count", TABLE_SIZE_MIN, TABLES_MAX)?;
    let mut tables: Vec<TableDesc> = Vec::with_capacity(count);
    let mut names = BTreeSet::new();
    for _ in 0..count {
        let at = r.at;
        let table = decode_table(r)?;
        let last = tables.last().map_or(0, |t| t.id);
        if table.id <= last {
            return Err(corrupt(
                at,
                format!(
                    "{which} table id {} is not above {last} (unsorted or 0)",
                    table.id
                ),
            ));
        }
        if table.id > lsn {
            return Err(corrupt(
                at,
                format!(
                    "{which} table id {} is above its checkpoint lsn {lsn}",
                    table.id
                ),
            ));
        }
        if !names.insert(table.name.clone()) {
            return Err(corrupt(
                at,
                format!("{which} table name {:?} appears twice", table.name),
            ));
        }
        tables.push(table);
    }
    Ok(tables)
}

fn decode_table(r: &mut Reader<'_>) -> Result<TableDesc> {
    let id = r.u64("table id")?;
    let name_at = r.at;
    let name_len = usize::from(r.u16("table name length")?);
    let name = std::str::from_utf8(r.take(name_len, "table name")?)
        .map_err(|_| corrupt(name_at, "table name is not UTF-8"))?;
    validate_name(name).map_err(|e| corrupt(name_at, refusal(e)))?;
    let engine_at = r.at;
    let engine = match r.u8("engine")? {
        ENGINE_LSM => EngineKind::Lsm,
        ENGINE_BTREE => EngineKind::Btree,
        tag => return Err(corrupt(engine_at, format!("bad engine tag {tag}"))),
    };
    let tag_at = r.at;
    let tag = r.u8("compression")?;
    let level = r.i32("zstd level")?;
    let compression = match tag {
        COMPRESSION_NONE if level == 0 => Compression::None,
        COMPRESSION_NONE => {
            return Err(corrupt(
                tag_at,
                format!("zstd level {level} without compression (must be 0)"),
            ));
        }
        COMPRESSION_ZSTD => Compression::Zstd(level),
        tag => return Err(corrupt(tag_at, format!("bad compression tag {tag}"))),
    };
    let options = TableOptions {
        engine,
        compression,
        page_size: r.u32("page size")?,
        bloom_bits_per_key: r.u32("bloom bits per key")?,
    };
    options
        .validate()
        .map_err(|e| corrupt(engine_at, refusal(e)))?;
    Ok(TableDesc {
        id,
        name: name.to_string(),
        options,
    })
}

fn decode_keys(
    r: &mut Reader<'_>,
    lsn: u64,
    which: &'static str,
) -> Result<Vec<(IdempotencyKey, Outcome)>> {
    let count = r.count("idempotency key count", KEY_SIZE_MIN, IDEMPOTENCY_KEYS_MAX)?;
    let mut entries = Vec::with_capacity(count);
    let mut seen = HashSet::with_capacity(count);
    for _ in 0..count {
        let at = r.at;
        let key = IdempotencyKey {
            client: r.u64("idempotency client")?,
            sequence: r.u64("idempotency sequence")?,
        };
        let tag_at = r.at;
        let tag = r.u8("outcome")?;
        let outcome_lsn = r.u64("outcome lsn")?;
        let outcome = match tag {
            OUTCOME_COMMITTED => Outcome::Committed { lsn: outcome_lsn },
            OUTCOME_CONDITION_FAILED => Outcome::ConditionFailed {
                lsn: outcome_lsn,
                condition: r.u32("outcome condition")?,
            },
            OUTCOME_UNKNOWN_TABLE => Outcome::UnknownTable {
                lsn: outcome_lsn,
                table: r.u64("outcome table")?,
            },
            tag => return Err(corrupt(tag_at, format!("bad outcome tag {tag}"))),
        };
        if !(1..=lsn).contains(&outcome_lsn) {
            return Err(corrupt(
                tag_at,
                format!("{which} outcome lsn {outcome_lsn} is outside [1, {lsn}]"),
            ));
        }
        if !seen.insert(key) {
            return Err(corrupt(
                at,
                format!(
                    "{which} idempotency key ({}, {}) appears twice",
                    key.client, key.sequence
                ),
            ));
        }
        entries.push((key, outcome));
    }
    Ok(entries)
}

fn encode_current(generation: u64) -> String {
    format!("{}\n", generation_dir_name(generation))
}

/// Parses the bytes of a `CURRENT` file: exactly `generation_dir_name(n)` and a newline,
/// nothing else. Never panics.
///
/// # Errors
/// `Corruption` in `CURRENT` saying what is wrong.
pub fn decode_current(bytes: &[u8]) -> Result<u64> {
    let bad = |what: String| Error::corruption(CURRENT_FILE, what);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("not a generation pointer: not UTF-8".to_string()))?;
    let digits = text
        .strip_prefix(CURRENT_PREFIX)
        .and_then(|t| t.strip_suffix('\n'))
        .ok_or_else(|| bad(format!("not a generation pointer: {text:?}")))?;
    if digits.len() < GENERATION_DIGITS_MIN || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad(format!(
            "not a generation pointer: {text:?} (want gen-, 6 or more digits, a newline)"
        )));
    }
    let generation: u64 = digits
        .parse()
        .map_err(|_| bad(format!("generation {digits} does not fit a u64")))?;
    if encode_current(generation) != text {
        return Err(bad(format!(
            "generation pointer {text:?} is not in canonical form"
        )));
    }
    Ok(generation)
}

/// Reads the whole of `path`, refusing one longer than `size_max`; `None` if there is no
/// such file. Evicts the file's cached pages first, so that bytes a failed sync lost are
/// not read back from the cache.
fn read_whole(
    fs: &dyn FileSystem,
    path: &Path,
    name: &str,
    size_max: u64,
) -> Result<Option<Vec<u8>>> {
    let file = match fs.open(path, OpenOptions::read_only()) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
    };
    file.evict_cache()
        .map_err(|e| Error::io(format!("evict the cache of {}", path.display()), e))?;
    let len = file
        .len()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if len > size_max {
        return Err(Error::corruption(
            name,
            format!("{len} bytes, longer than any valid one ({size_max})"),
        ));
    }
    let mut bytes = vec![0u8; usize::try_from(len).expect("size_max fits in memory")];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(Some(bytes))
}

/// Durably replaces `dir/name` with `bytes`: write `dir/temp` (created or truncated),
/// fdatasync it, rename it over `dir/name`, fsync `dir`.
fn replace_durably(
    fs: &dyn FileSystem,
    dir: &Path,
    temp: &str,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    let temp = dir.join(temp);
    let target = dir.join(name);
    let options = OpenOptions {
        truncate: true,
        ..OpenOptions::create()
    };
    let file = fs
        .open(&temp, options)
        .map_err(|e| Error::io(format!("create {}", temp.display()), e))?;
    file.write_all_at(bytes, 0)
        .map_err(|e| Error::io(format!("write {}", temp.display()), e))?;
    file.sync_data()
        .map_err(|e| Error::io(format!("sync {}", temp.display()), e))?;
    drop(file);
    fs.rename(&temp, &target)
        .map_err(|e| Error::io(format!("rename {} to {name}", temp.display()), e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io(format!("sync directory {}", dir.display()), e))
}

/// What a validator refused, without the "invalid argument" its error carries (here the
/// value comes from the file, not from a caller).
fn refusal(e: Error) -> String {
    match e {
        Error::InvalidArgument(what) => what,
        other => other.to_string(),
    }
}

/// A `Corruption` of the state file at byte `at`.
fn corrupt(at: usize, what: impl Display) -> Error {
    Error::corruption(STATE_FILE, format!("{what} (at byte {at})"))
}

/// Reads fields in order; every read names its field, so that running out of bytes says
/// which one was cut short.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, what: impl Display) -> Error {
        corrupt(self.at, what)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n);
        let Some(s) = end.and_then(|end| self.bytes.get(self.at..end)) else {
            return Err(self.bad(format!(
                "truncated: {field} needs {n} bytes, {} left",
                self.remaining()
            )));
        };
        self.at += n;
        Ok(s)
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        Ok(self
            .take(N, field)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A `0`/`1` flag byte.
    fn flag(&mut self, field: &str) -> Result<bool> {
        let at = self.at;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(corrupt(at, format!("{field} flag is {v}, not 0 or 1"))),
        }
    }

    /// A `u32` count of entries of at least `entry_size_min` bytes each: refused if above
    /// `max`, or if that many entries cannot fit in the bytes left (so that reserving room
    /// for them is justified by the input's length).
    fn count(&mut self, field: &str, entry_size_min: usize, max: usize) -> Result<usize> {
        let at = self.at;
        let count = self.u32(field)? as usize;
        if count > max {
            return Err(corrupt(
                at,
                format!("{field} {count} is above the limit {max}"),
            ));
        }
        if count > self.remaining() / entry_size_min {
            return Err(corrupt(
                at,
                format!(
                    "truncated: {field} {count} needs at least {} bytes, {} left",
                    count.saturating_mul(entry_size_min),
                    self.remaining()
                ),
            ));
        }
        Ok(count)
    }
}
