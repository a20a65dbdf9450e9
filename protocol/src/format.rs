//! The wire format's constants: the frame header's layout, the protocol version, opcodes and
//! the tags inside message bodies. Spec: docs/protocol.md (this file mirrors its sections 3
//! and 5; a change here is a change there).

/// The only protocol version this crate speaks: byte 4 of every frame.
pub const PROTOCOL_VERSION: u8 = 1;

/// Offset of `length` (u32): the bytes of the frame after this field (header rest + body).
pub(crate) const LENGTH_OFFSET: usize = 0;
/// Offset of `version` (u8).
pub(crate) const VERSION_OFFSET: usize = LENGTH_OFFSET + 4;
/// Offset of `opcode` (u8).
pub(crate) const OPCODE_OFFSET: usize = VERSION_OFFSET + 1;
/// Offset of `flags` (u16).
pub(crate) const FLAGS_OFFSET: usize = OPCODE_OFFSET + 1;
/// Offset of `request_id` (u64).
pub(crate) const REQUEST_ID_OFFSET: usize = FLAGS_OFFSET + 2;
/// Size of the frame header; the body starts here.
pub const HEADER_SIZE: usize = REQUEST_ID_OFFSET + 8;
/// Bytes of the header counted by `length` (all but the length field itself).
pub(crate) const LENGTH_COUNTED: usize = HEADER_SIZE - 4;

const _: () = assert!(HEADER_SIZE == 16);
const _: () = assert!(
    REQUEST_ID_OFFSET.is_multiple_of(8),
    "the request id is 8-byte aligned"
);

/// Request opcodes (bit 7 clear).
pub(crate) mod op {
    pub const HANDSHAKE: u8 = 0x01;
    pub const PING: u8 = 0x02;
    pub const STATUS: u8 = 0x03;
    pub const CREATE_TABLE: u8 = 0x04;
    pub const DROP_TABLE: u8 = 0x05;
    pub const LIST_TABLES: u8 = 0x06;
    pub const DESCRIBE_TABLE: u8 = 0x07;
    pub const GET: u8 = 0x08;
    pub const PUT: u8 = 0x09;
    pub const DELETE: u8 = 0x0a;
    pub const BATCH: u8 = 0x0b;
    pub const SCAN: u8 = 0x0c;
    pub const COMMIT: u8 = 0x0d;

    /// Response opcodes (bit 7 set).
    pub const HANDSHAKE_OK: u8 = 0x81;
    pub const PONG: u8 = 0x82;
    pub const STATUS_OK: u8 = 0x83;
    pub const TABLE_CREATED: u8 = 0x84;
    pub const TABLES: u8 = 0x85;
    pub const TABLE: u8 = 0x86;
    pub const VALUE: u8 = 0x87;
    pub const WRITTEN: u8 = 0x88;
    pub const ENTRIES: u8 = 0x89;
    pub const COMMITTED: u8 = 0x8a;
    pub const ERROR: u8 = 0xff;

    /// Bit 7 of an opcode: set on responses.
    pub const RESPONSE_BIT: u8 = 0x80;
}

/// Engine tags (the same values as the Db's log records, docs/format/db-records.md).
pub(crate) const ENGINE_LSM: u8 = 1;
pub(crate) const ENGINE_BTREE: u8 = 2;

/// Compression tags.
pub(crate) const COMPRESSION_NONE: u8 = 0;
pub(crate) const COMPRESSION_ZSTD: u8 = 1;

/// Bound tags.
pub(crate) const BOUND_UNBOUNDED: u8 = 0;
pub(crate) const BOUND_INCLUDED: u8 = 1;
pub(crate) const BOUND_EXCLUDED: u8 = 2;

/// Direction tags.
pub(crate) const DIRECTION_FORWARD: u8 = 0;
pub(crate) const DIRECTION_BACKWARD: u8 = 1;

/// Write tags.
pub(crate) const WRITE_DELETE: u8 = 0;
pub(crate) const WRITE_PUT: u8 = 1;

/// Condition tags (the same values as the Db's log records).
pub(crate) const CHECK_VERSION: u8 = 1;
pub(crate) const CHECK_ABSENT: u8 = 2;
pub(crate) const CHECK_EXISTS: u8 = 3;
pub(crate) const CHECK_RANGE_UNCHANGED: u8 = 4;

/// Smallest encodings, which every count is checked against before anything is reserved.
/// A table name: its u16 length (the name may not be empty, but the decoder checks that
/// after the count).
pub(crate) const NAME_SIZE_MIN: usize = 2;
/// A write: table index u16, tag u8, key length u32.
pub(crate) const WRITE_SIZE_MIN: usize = 2 + 1 + 4;
/// A condition: table index u16, tag u8, key length u32.
pub(crate) const CONDITION_SIZE_MIN: usize = 2 + 1 + 4;
/// A scan entry: key length u32, value length u32, version u64.
pub(crate) const ENTRY_SIZE_MIN: usize = 4 + 4 + 8;
/// A table description: id u64, name length u16, engine u8, compression u8, page size u32,
/// bloom bits u32.
pub(crate) const TABLE_INFO_SIZE_MIN: usize = 8 + 2 + 1 + 1 + 4 + 4;
/// A stat: two text lengths.
pub(crate) const STAT_SIZE_MIN: usize = 2 + 2;
