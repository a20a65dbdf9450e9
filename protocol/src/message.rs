//! The typed messages: every [`Request`] a client sends and every [`Response`] a server
//! answers with, and the values inside them. These types mirror the wire layouts of
//! docs/protocol.md, sections 5 and 6, field for field (tables named once per batch or
//! commit and referred to by index, for instance), so that encoding and decoding are straight
//! copies. Encoding: encode.rs; decoding: decode.rs.

use std::ops::Bound;

use crate::error_code::ServerError;
use crate::limits::Limits;

/// A request: the body of a frame whose opcode has bit 7 clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The first request on a connection: agree on a version and authenticate.
    Handshake {
        /// The oldest protocol version the client speaks.
        version_min: u8,
        /// The newest protocol version the client speaks.
        version_max: u8,
        /// The shared secret, if the client has one.
        token: Option<Vec<u8>>,
    },
    /// Answered with [`Response::Pong`].
    Ping,
    /// Answered with [`Response::Status`].
    Status,
    /// Creates a table.
    CreateTable {
        /// The new table's name.
        name: String,
        /// Its engine and options.
        options: TableOptions,
    },
    /// Drops a table and its data.
    DropTable {
        /// The table's name.
        name: String,
    },
    /// Lists the live tables.
    ListTables,
    /// Describes one table.
    DescribeTable {
        /// The table's name.
        name: String,
    },
    /// Reads one key.
    Get {
        /// The table's name.
        table: String,
        /// The key.
        key: Vec<u8>,
    },
    /// Writes one key.
    Put {
        /// The table's name.
        table: String,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Deletes one key (absent keys too).
    Delete {
        /// The table's name.
        table: String,
        /// The key.
        key: Vec<u8>,
    },
    /// Puts and deletes across tables, applied all or nothing.
    Batch {
        /// The tables the writes name, by index.
        tables: Vec<String>,
        /// The writes, in order; the last write to a key of a table wins.
        writes: Vec<Write>,
    },
    /// Reads a range of keys.
    Scan(Scan),
    /// A transaction: conditions, then writes applied only if every condition holds.
    Commit(Commit),
}

/// Which engine a table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The write-optimized LSM tree.
    Lsm,
    /// The read-optimized copy-on-write B+tree.
    Btree,
}

/// How an LSM table compresses its data blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Blocks stored as built.
    None,
    /// zstd at this level (the Db accepts 1 to 22).
    Zstd {
        /// The level.
        level: i32,
    },
}

/// A table's engine and options. The decoder checks their shape only; the Db checks the
/// values (page size, bloom bits, zstd level) and answers [`crate::ErrorCode::BadRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableOptions {
    /// The engine.
    pub engine: Engine,
    /// LSM only: data block compression.
    pub compression: Compression,
    /// B+tree only: the page size, a power of two from 4 KiB to 64 KiB.
    pub page_size: u32,
    /// LSM only: bloom filter bits per key, 0 to 32.
    pub bloom_bits_per_key: u32,
}

impl TableOptions {
    /// The Db's defaults for `engine`: no compression, 4 KiB pages, 10 bloom bits per key.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            compression: Compression::None,
            page_size: 4096,
            bloom_bits_per_key: 10,
        }
    }
}

/// One put or delete of a batch or commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// Index of the table in the request's `tables`.
    pub table: u16,
    /// The key.
    pub key: Vec<u8>,
    /// `Some` stores the value, `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// Order of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending keys.
    Forward,
    /// Descending keys.
    Backward,
}

/// Where a scan resumes: the last key a response returned, at the read view it was read
/// from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The last key returned; the next response starts strictly after it in the scan's
    /// direction.
    pub key: Vec<u8>,
    /// The LSN of the read view the scan reads; every page of one scan reads it.
    pub lsn: u64,
}

/// A range scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The table's name.
    pub table: String,
    /// The smallest key (whatever the direction).
    pub lower: Bound<Vec<u8>>,
    /// The largest key (whatever the direction).
    pub upper: Bound<Vec<u8>>,
    /// The order of the entries.
    pub direction: Direction,
    /// Most entries in the response; 0 asks for the server's maximum.
    pub limit: u32,
    /// `Some` continues an earlier scan with the same table, bounds and direction.
    pub cursor: Option<Cursor>,
}

/// A client's name for one commit: a resend with the same key returns the first result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey {
    /// The client's id (chosen by the client, e.g. at random).
    pub client: u64,
    /// The client's sequence number of this commit.
    pub sequence: u64,
}

/// One condition of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// Index of the table in the commit's `tables`.
    pub table: u16,
    /// What must hold.
    pub check: Check,
}

/// What a condition requires, in the state just before the commit applies.
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
    /// The key exists, at any version.
    Exists {
        /// The key.
        key: Vec<u8>,
    },
    /// No key in `[start, end)` (`end` `None`: no end) has a version above `since`.
    RangeUnchanged {
        /// First key of the range, inclusive.
        start: Vec<u8>,
        /// End of the range, exclusive.
        end: Option<Vec<u8>>,
        /// The LSN the range was read at.
        since: u64,
    },
}

/// A transaction, submitted whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// When set, a resend with the same key returns the first result instead of applying.
    pub idempotency: Option<IdempotencyKey>,
    /// The tables the conditions and writes name, by index.
    pub tables: Vec<String>,
    /// All must hold for the writes to apply.
    pub conditions: Vec<Condition>,
    /// In order; the last write to a key of a table wins.
    pub writes: Vec<Write>,
}

/// A Get, Put or Delete borrowed from the caller's buffers. It encodes to exactly the frame
/// of the [`Request`] it mirrors, without copying the table name, key and value into one
/// first: a client's per-request path encodes these straight into its output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointRequest<'a> {
    /// As [`Request::Get`].
    Get {
        /// The table's name.
        table: &'a str,
        /// The key.
        key: &'a [u8],
    },
    /// As [`Request::Put`].
    Put {
        /// The table's name.
        table: &'a str,
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// As [`Request::Delete`].
    Delete {
        /// The table's name.
        table: &'a str,
        /// The key.
        key: &'a [u8],
    },
}

impl From<PointRequest<'_>> for Request {
    fn from(point: PointRequest<'_>) -> Self {
        match point {
            PointRequest::Get { table, key } => Request::Get {
                table: table.to_owned(),
                key: key.to_vec(),
            },
            PointRequest::Put { table, key, value } => Request::Put {
                table: table.to_owned(),
                key: key.to_vec(),
                value: value.to_vec(),
            },
            PointRequest::Delete { table, key } => Request::Delete {
                table: table.to_owned(),
                key: key.to_vec(),
            },
        }
    }
}

/// A Value or Written response borrowed from the caller's (or the frame's) bytes: the
/// answers to gets, puts and deletes, which a server encodes and a client decodes once per
/// request. It encodes to exactly the frame of the [`Response`] it mirrors, without a
/// [`Response`] being built (and its value copied) first, and decodes without copying the
/// value out of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointResponse<'a> {
    /// As [`Response::Value`]: the value and its version, or `None` if the key is absent.
    Value(Option<(&'a [u8], u64)>),
    /// As [`Response::Written`].
    Written {
        /// The commit LSN.
        lsn: u64,
    },
}

impl From<PointResponse<'_>> for Response {
    fn from(point: PointResponse<'_>) -> Self {
        match point {
            PointResponse::Value(found) => {
                Response::Value(found.map(|(value, version)| Versioned {
                    value: value.to_vec(),
                    version,
                }))
            }
            PointResponse::Written { lsn } => Response::Written { lsn },
        }
    }
}

/// A response: the body of a frame whose opcode has bit 7 set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The handshake succeeded.
    Handshake(HandshakeOk),
    /// Answers [`Request::Ping`].
    Pong,
    /// Answers [`Request::Status`].
    Status(Status),
    /// Answers [`Request::CreateTable`].
    TableCreated {
        /// The LSN of the creation (also the table's id).
        lsn: u64,
        /// The new table.
        table: TableInfo,
    },
    /// Answers [`Request::ListTables`]: every live table, by name.
    Tables(Vec<TableInfo>),
    /// Answers [`Request::DescribeTable`].
    Table(TableInfo),
    /// Answers [`Request::Get`]: the value and its version, or `None` if the key is absent.
    Value(Option<Versioned>),
    /// Answers [`Request::Put`], [`Request::Delete`], [`Request::Batch`] and
    /// [`Request::DropTable`]: the write is committed at `lsn`.
    Written {
        /// The commit LSN.
        lsn: u64,
    },
    /// Answers [`Request::Scan`].
    Entries(Entries),
    /// Answers [`Request::Commit`]: every condition held and the writes are committed.
    Committed {
        /// The commit LSN.
        lsn: u64,
    },
    /// Any request failed.
    Error(ServerError),
}

/// What the server tells a client that completed its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeOk {
    /// The protocol version the connection speaks from now on.
    pub version: u8,
    /// The server's software version, for people ("popdb 0.1.0").
    pub server_version: String,
    /// The limits the server enforces on requests (and keeps its responses within).
    pub limits: Limits,
    /// Most requests the server reads ahead of its responses on one connection; past it,
    /// it stops reading until responses drain.
    pub in_flight_max: u32,
    /// How long a scan cursor stays valid after the response that returned it.
    pub cursor_ttl_ms: u32,
}

/// A table as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// The table's id: never reused.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its engine and options.
    pub options: TableOptions,
}

/// A value with its version (the LSN that wrote it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// The LSN that wrote it.
    pub version: u64,
}

/// One entry of a scan response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The LSN that wrote it.
    pub version: u64,
}

/// A page of a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entries {
    /// The LSN of the read view the entries come from.
    pub read_lsn: u64,
    /// The entries, in the scan's direction.
    pub entries: Vec<Entry>,
    /// `Some` if the scan may have more entries: send the same scan with this cursor.
    /// `None`: the scan is complete.
    pub cursor: Option<Cursor>,
}

/// The server's state, typed, plus free-form statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The newest LSN reads see.
    pub visible_lsn: u64,
    /// The newest LSN known durable.
    pub durable_lsn: u64,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// Live tables.
    pub tables_count: u32,
    /// Open client connections.
    pub connections_count: u32,
    /// Writes are refused (disk full, or the log is poisoned).
    pub read_only: bool,
    /// Free-form name and value pairs, for people and dashboards.
    pub stats: Vec<(String, String)>,
}
