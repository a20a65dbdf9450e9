//! Decoding: a [`Frame`]'s message into a [`Request`] or [`Response`]. The decoder checks
//! the header (version, flags, opcode), the structure (lengths, tags, UTF-8, indexes, no
//! trailing bytes) and the [`Limits`], and never panics. It reserves memory only for what
//! the frame's remaining bytes can hold: every length and count is checked against its
//! limit and against the bytes left before anything is allocated. Spec: docs/protocol.md,
//! sections 5 to 8.

#![deny(clippy::indexing_slicing)]

use std::ops::Bound;

use crate::error::DecodeError;
use crate::error_code::{ErrorCode, ErrorKind, ServerError, UnknownReason};
use crate::format::{
    BOUND_EXCLUDED, BOUND_INCLUDED, BOUND_UNBOUNDED, CHECK_ABSENT, CHECK_EXISTS,
    CHECK_RANGE_UNCHANGED, CHECK_VERSION, COMPRESSION_NONE, COMPRESSION_ZSTD, CONDITION_SIZE_MIN,
    DIRECTION_BACKWARD, DIRECTION_FORWARD, ENGINE_BTREE, ENGINE_LSM, ENTRY_SIZE_MIN, HEADER_SIZE,
    NAME_SIZE_MIN, PROTOCOL_VERSION, STAT_SIZE_MIN, TABLE_INFO_SIZE_MIN, WRITE_DELETE, WRITE_PUT,
    WRITE_SIZE_MIN, op,
};
use crate::frame::Frame;
use crate::limits::{AUTH_TOKEN_MAX, Limit, Limits, STATS_MAX, TABLE_NAME_MAX};
use crate::message::{
    Check, Commit, Compression, Condition, Cursor, Direction, Engine, Entries, Entry, HandshakeOk,
    IdempotencyKey, PointRequest, PointResponse, Request, Response, Scan, Status, TableInfo,
    TableOptions, Write,
};

type Result<T> = std::result::Result<T, DecodeError>;

impl Request {
    /// Decodes the request in `frame`, enforcing `limits`.
    ///
    /// # Errors
    /// [`DecodeError`]: the version, flags or opcode are not a version 1 request, a limit is
    /// passed, or the body is malformed.
    pub fn decode(frame: &Frame<'_>, limits: &Limits) -> Result<Request> {
        // One reader of gets, puts and deletes, so the in-place and the owned decodings
        // cannot drift apart.
        if let Some(point) = PointRequest::decode(frame, limits)? {
            return Ok(point.into());
        }
        check_header(frame)?;
        let mut r = Reader::new(frame.body, limits);
        let request = match frame.header.opcode {
            op::HANDSHAKE => Request::Handshake {
                version_min: r.u8("version_min")?,
                version_max: r.u8("version_max")?,
                token: r.option("token tag", |r| {
                    r.bytes("auth token", Limit::AuthToken, u64::from(AUTH_TOKEN_MAX))
                })?,
            },
            op::PING => Request::Ping,
            op::STATUS => Request::Status,
            op::CREATE_TABLE => Request::CreateTable {
                name: r.name()?,
                options: r.table_options()?,
            },
            op::DROP_TABLE => Request::DropTable { name: r.name()? },
            op::LIST_TABLES => Request::ListTables,
            op::DESCRIBE_TABLE => Request::DescribeTable { name: r.name()? },
            op::BATCH => {
                let tables = r.names()?;
                let writes = r.writes(tables.len())?;
                Request::Batch { tables, writes }
            }
            op::SCAN => Request::Scan(r.scan()?),
            op::COMMIT => Request::Commit(r.commit()?),
            opcode => return Err(DecodeError::UnknownOpcode { opcode }),
        };
        r.finish()?;
        Ok(request)
    }
}

impl<'a> PointRequest<'a> {
    /// Decodes a Get, Put or Delete in `frame` without copying its table name, key or value
    /// out of the frame; `Ok(None)` for any other opcode (decode those with
    /// [`Request::decode`]). For a frame it accepts it checks exactly what
    /// [`Request::decode`] checks and fails with the same error: a server's per-request path
    /// reads point requests in place instead of allocating for every field.
    ///
    /// # Errors
    /// As [`Request::decode`].
    pub fn decode(frame: &Frame<'a>, limits: &Limits) -> Result<Option<PointRequest<'a>>> {
        if !matches!(frame.header.opcode, op::GET | op::PUT | op::DELETE) {
            return Ok(None);
        }
        check_header(frame)?;
        let mut r = Reader::new(frame.body, limits);
        let request = match frame.header.opcode {
            op::GET => PointRequest::Get {
                table: r.name_ref()?,
                key: r.key_ref()?,
            },
            op::PUT => PointRequest::Put {
                table: r.name_ref()?,
                key: r.key_ref()?,
                value: r.value_ref()?,
            },
            _ => PointRequest::Delete {
                table: r.name_ref()?,
                key: r.key_ref()?,
            },
        };
        r.finish()?;
        Ok(Some(request))
    }
}

impl<'a> PointResponse<'a> {
    /// Decodes a Value or Written response in `frame` without copying the value out of the
    /// frame; `Ok(None)` for any other opcode (decode those with [`Response::decode`]). For
    /// a frame it accepts it checks exactly what [`Response::decode`] checks and fails with
    /// the same error.
    ///
    /// # Errors
    /// As [`Response::decode`].
    pub fn decode(frame: &Frame<'a>, limits: &Limits) -> Result<Option<PointResponse<'a>>> {
        if !matches!(frame.header.opcode, op::VALUE | op::WRITTEN) {
            return Ok(None);
        }
        check_header(frame)?;
        let mut r = Reader::new(frame.body, limits);
        let response = if frame.header.opcode == op::VALUE {
            PointResponse::Value(
                r.option("value tag", |r| Ok((r.value_ref()?, r.u64("version")?)))?,
            )
        } else {
            PointResponse::Written { lsn: r.u64("lsn")? }
        };
        r.finish()?;
        Ok(Some(response))
    }
}

impl Response {
    /// Decodes the response in `frame`, enforcing `limits` (a client passes the limits the
    /// server announced, or the defaults before the handshake).
    ///
    /// # Errors
    /// [`DecodeError`]: the version, flags or opcode are not a version 1 response, a limit
    /// is passed, or the body is malformed.
    pub fn decode(frame: &Frame<'_>, limits: &Limits) -> Result<Response> {
        // One reader of values and write answers, so the in-place and the owned decodings
        // cannot drift apart.
        if let Some(point) = PointResponse::decode(frame, limits)? {
            return Ok(point.into());
        }
        check_header(frame)?;
        let mut r = Reader::new(frame.body, limits);
        let response = match frame.header.opcode {
            op::HANDSHAKE_OK => Response::Handshake(r.handshake_ok()?),
            op::PONG => Response::Pong,
            op::STATUS_OK => Response::Status(r.status()?),
            op::TABLE_CREATED => Response::TableCreated {
                lsn: r.u64("lsn")?,
                table: r.table_info()?,
            },
            op::TABLES => {
                let count = r.count_u32(
                    "table count",
                    Limit::Tables,
                    limits.tables_max,
                    TABLE_INFO_SIZE_MIN,
                )?;
                let mut tables = Vec::with_capacity(count);
                for _ in 0..count {
                    tables.push(r.table_info()?);
                }
                Response::Tables(tables)
            }
            op::TABLE => Response::Table(r.table_info()?),
            op::ENTRIES => Response::Entries(r.entries()?),
            op::COMMITTED => Response::Committed { lsn: r.u64("lsn")? },
            op::ERROR => Response::Error(r.error()?),
            opcode => return Err(DecodeError::UnknownOpcode { opcode }),
        };
        r.finish()?;
        Ok(response)
    }
}

/// Version 1 frames carry version 1 and no flags.
fn check_header(frame: &Frame<'_>) -> Result<()> {
    if frame.header.version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: frame.header.version,
        });
    }
    if frame.header.flags != 0 {
        return Err(DecodeError::ReservedFlags {
            flags: frame.header.flags,
        });
    }
    Ok(())
}

fn malformed<T>(offset: usize, what: &'static str) -> Result<T> {
    Err(DecodeError::Malformed { offset, what })
}

fn limit_exceeded<T>(limit: Limit, found: u64, max: u64, offset: usize) -> Result<T> {
    Err(DecodeError::LimitExceeded {
        limit,
        found,
        max,
        offset,
    })
}

/// Reads fields from a frame's body, front to back.
struct Reader<'a, 'l> {
    body: &'a [u8],
    /// Bytes of `body` consumed.
    pos: usize,
    limits: &'l Limits,
}

impl<'a, 'l> Reader<'a, 'l> {
    fn new(body: &'a [u8], limits: &'l Limits) -> Self {
        Self {
            body,
            pos: 0,
            limits,
        }
    }

    /// The frame offset of the next byte.
    fn offset(&self) -> usize {
        HEADER_SIZE + self.pos
    }

    fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(len);
        let Some(bytes) = end.and_then(|end| self.body.get(self.pos..end)) else {
            return malformed(self.offset(), what);
        };
        self.pos += len;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let bytes = self.take(N, what)?;
        Ok(bytes
            .first_chunk::<N>()
            .copied()
            .expect("take returned N bytes"))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool> {
        let at = self.offset();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => malformed(at, what),
        }
    }

    /// A tag byte (0 absent, 1 present), then the value if present.
    fn option<T>(
        &mut self,
        what: &'static str,
        decode: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.bool(what)? {
            decode(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A u32 length, at most `max` (else `limit`), then that many bytes, copied out.
    fn bytes(&mut self, what: &'static str, limit: Limit, max: u64) -> Result<Vec<u8>> {
        Ok(self.bytes_ref(what, limit, max)?.to_vec())
    }

    /// [`Reader::bytes`], borrowed from the frame.
    fn bytes_ref(&mut self, what: &'static str, limit: Limit, max: u64) -> Result<&'a [u8]> {
        let at = self.offset();
        let len = self.u32(what)?;
        if u64::from(len) > max {
            return limit_exceeded(limit, u64::from(len), max, at);
        }
        self.take(len as usize, what)
    }

    fn key(&mut self) -> Result<Vec<u8>> {
        Ok(self.key_ref()?.to_vec())
    }

    fn key_ref(&mut self) -> Result<&'a [u8]> {
        self.bytes_ref("key", Limit::KeySize, u64::from(self.limits.key_size_max))
    }

    /// A range bound or range condition end: a key's successor may be one byte longer.
    fn bound_key(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let max = u64::from(self.limits.key_size_max) + 1;
        self.bytes(what, Limit::KeySize, max)
    }

    fn value(&mut self) -> Result<Vec<u8>> {
        Ok(self.value_ref()?.to_vec())
    }

    fn value_ref(&mut self) -> Result<&'a [u8]> {
        self.bytes_ref(
            "value",
            Limit::ValueSize,
            u64::from(self.limits.value_size_max),
        )
    }

    /// A u16 length and that many bytes of UTF-8.
    fn text(&mut self, what: &'static str) -> Result<String> {
        let len = self.u16(what)?;
        self.utf8(usize::from(len), what)
    }

    /// A table name: a text of at most [`TABLE_NAME_MAX`] bytes.
    fn name(&mut self) -> Result<String> {
        Ok(self.name_ref()?.to_owned())
    }

    /// [`Reader::name`], borrowed from the frame.
    fn name_ref(&mut self) -> Result<&'a str> {
        let at = self.offset();
        let len = self.u16("table name")?;
        let max = u64::from(TABLE_NAME_MAX);
        if u64::from(len) > max {
            return limit_exceeded(Limit::TableName, u64::from(len), max, at);
        }
        self.utf8_ref(usize::from(len), "table name")
    }

    /// `len` bytes of UTF-8, copied out.
    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String> {
        Ok(self.utf8_ref(len, what)?.to_owned())
    }

    /// `len` bytes of UTF-8, borrowed from the frame.
    fn utf8_ref(&mut self, len: usize, what: &'static str) -> Result<&'a str> {
        let at = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(_) => malformed(at, "text is not valid UTF-8"),
        }
    }

    /// A count: at most `max` (else `limit`), and no more elements of at least `size_min`
    /// bytes than the rest of the body can hold; both checked before the caller reserves.
    fn check_count(
        &self,
        count: u64,
        at: usize,
        limit: Limit,
        max: u32,
        size_min: usize,
    ) -> Result<usize> {
        if count > u64::from(max) {
            return limit_exceeded(limit, count, u64::from(max), at);
        }
        let count = count as usize;
        if count.saturating_mul(size_min) > self.remaining() {
            return malformed(at, "count exceeds what the remaining bytes can hold");
        }
        Ok(count)
    }

    fn count_u32(
        &mut self,
        what: &'static str,
        limit: Limit,
        max: u32,
        size_min: usize,
    ) -> Result<usize> {
        let at = self.offset();
        let count = self.u32(what)?;
        self.check_count(u64::from(count), at, limit, max, size_min)
    }

    fn count_u16(
        &mut self,
        what: &'static str,
        limit: Limit,
        max: u32,
        size_min: usize,
    ) -> Result<usize> {
        let at = self.offset();
        let count = self.u16(what)?;
        self.check_count(u64::from(count), at, limit, max, size_min)
    }

    fn finish(&self) -> Result<()> {
        if self.remaining() > 0 {
            return malformed(self.offset(), "trailing bytes after the message");
        }
        Ok(())
    }

    fn names(&mut self) -> Result<Vec<String>> {
        let tables_max = self.limits.tables_max;
        let count = self.count_u16("table count", Limit::Tables, tables_max, NAME_SIZE_MIN)?;
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            names.push(self.name()?);
        }
        Ok(names)
    }

    fn table_index(&mut self, tables_count: usize) -> Result<u16> {
        let at = self.offset();
        let index = self.u16("table index")?;
        if usize::from(index) >= tables_count {
            return malformed(at, "table index is not below the table count");
        }
        Ok(index)
    }

    fn writes(&mut self, tables_count: usize) -> Result<Vec<Write>> {
        let writes_max = self.limits.batch_writes_max;
        let count = self.count_u32(
            "write count",
            Limit::BatchWrites,
            writes_max,
            WRITE_SIZE_MIN,
        )?;
        let size_max = u64::from(self.limits.batch_size_max);
        let mut size = 0u64;
        let mut writes = Vec::with_capacity(count);
        for _ in 0..count {
            let at = self.offset();
            let table = self.table_index(tables_count)?;
            let tag_at = self.offset();
            let value = match self.u8("write tag")? {
                WRITE_DELETE => None,
                WRITE_PUT => Some(()),
                _ => return malformed(tag_at, "unknown write tag"),
            };
            let key = self.key()?;
            let value = match value {
                Some(()) => Some(self.value()?),
                None => None,
            };
            size += (key.len() + value.as_ref().map_or(0, Vec::len)) as u64;
            if size > size_max {
                return limit_exceeded(Limit::BatchSize, size, size_max, at);
            }
            writes.push(Write { table, key, value });
        }
        Ok(writes)
    }

    fn table_options(&mut self) -> Result<TableOptions> {
        let at = self.offset();
        let engine = match self.u8("engine")? {
            ENGINE_LSM => Engine::Lsm,
            ENGINE_BTREE => Engine::Btree,
            _ => return malformed(at, "unknown engine tag"),
        };
        let at = self.offset();
        let compression = match self.u8("compression")? {
            COMPRESSION_NONE => Compression::None,
            COMPRESSION_ZSTD => Compression::Zstd {
                level: self.i32("zstd level")?,
            },
            _ => return malformed(at, "unknown compression tag"),
        };
        Ok(TableOptions {
            engine,
            compression,
            page_size: self.u32("page size")?,
            bloom_bits_per_key: self.u32("bloom bits per key")?,
        })
    }

    fn table_info(&mut self) -> Result<TableInfo> {
        Ok(TableInfo {
            id: self.u64("table id")?,
            name: self.name()?,
            options: self.table_options()?,
        })
    }

    fn bound(&mut self) -> Result<Bound<Vec<u8>>> {
        let at = self.offset();
        match self.u8("bound tag")? {
            BOUND_UNBOUNDED => Ok(Bound::Unbounded),
            BOUND_INCLUDED => Ok(Bound::Included(self.bound_key("bound")?)),
            BOUND_EXCLUDED => Ok(Bound::Excluded(self.bound_key("bound")?)),
            _ => malformed(at, "unknown bound tag"),
        }
    }

    fn cursor(&mut self) -> Result<Option<Cursor>> {
        self.option("cursor tag", |r| {
            Ok(Cursor {
                key: r.key()?,
                lsn: r.u64("cursor lsn")?,
            })
        })
    }

    fn scan(&mut self) -> Result<Scan> {
        let table = self.name()?;
        let lower = self.bound()?;
        let upper = self.bound()?;
        let at = self.offset();
        let direction = match self.u8("direction")? {
            DIRECTION_FORWARD => Direction::Forward,
            DIRECTION_BACKWARD => Direction::Backward,
            _ => return malformed(at, "unknown direction"),
        };
        let at = self.offset();
        let limit = self.u32("scan limit")?;
        let max = self.limits.scan_limit_max;
        if limit > max {
            return limit_exceeded(Limit::ScanLimit, u64::from(limit), u64::from(max), at);
        }
        Ok(Scan {
            table,
            lower,
            upper,
            direction,
            limit,
            cursor: self.cursor()?,
        })
    }

    fn commit(&mut self) -> Result<Commit> {
        let idempotency = self.option("idempotency tag", |r| {
            Ok(IdempotencyKey {
                client: r.u64("idempotency client")?,
                sequence: r.u64("idempotency sequence")?,
            })
        })?;
        let tables = self.names()?;
        let conditions_max = self.limits.conditions_max;
        let count = self.count_u32(
            "condition count",
            Limit::Conditions,
            conditions_max,
            CONDITION_SIZE_MIN,
        )?;
        let mut conditions = Vec::with_capacity(count);
        for _ in 0..count {
            conditions.push(self.condition(tables.len())?);
        }
        let writes = self.writes(tables.len())?;
        Ok(Commit {
            idempotency,
            tables,
            conditions,
            writes,
        })
    }

    fn condition(&mut self, tables_count: usize) -> Result<Condition> {
        let table = self.table_index(tables_count)?;
        let at = self.offset();
        let check = match self.u8("condition tag")? {
            CHECK_VERSION => Check::Version {
                key: self.key()?,
                version: self.u64("condition version")?,
            },
            CHECK_ABSENT => Check::Absent { key: self.key()? },
            CHECK_EXISTS => Check::Exists { key: self.key()? },
            CHECK_RANGE_UNCHANGED => Check::RangeUnchanged {
                start: self.bound_key("range start")?,
                end: self.option("range end tag", |r| r.bound_key("range end"))?,
                since: self.u64("range since")?,
            },
            _ => return malformed(at, "unknown condition tag"),
        };
        Ok(Condition { table, check })
    }

    fn handshake_ok(&mut self) -> Result<HandshakeOk> {
        let version = self.u8("version")?;
        let server_version = self.text("server version")?;
        let at = self.offset();
        let limits = Limits {
            frame_size_max: self.u32("frame size max")?,
            key_size_max: self.u32("key size max")?,
            value_size_max: self.u32("value size max")?,
            batch_writes_max: self.u32("batch writes max")?,
            batch_size_max: self.u32("batch size max")?,
            conditions_max: self.u32("conditions max")?,
            scan_limit_max: self.u32("scan limit max")?,
            tables_max: self.u32("tables max")?,
        };
        if (limits.frame_size_max as usize) < HEADER_SIZE {
            return malformed(at, "frame size max is below the header size");
        }
        Ok(HandshakeOk {
            version,
            server_version,
            limits,
            in_flight_max: self.u32("in flight max")?,
            cursor_ttl_ms: self.u32("cursor ttl")?,
        })
    }

    fn status(&mut self) -> Result<Status> {
        let visible_lsn = self.u64("visible lsn")?;
        let durable_lsn = self.u64("durable lsn")?;
        let uptime_ms = self.u64("uptime")?;
        let tables_count = self.u32("tables count")?;
        let connections_count = self.u32("connections count")?;
        let read_only = self.bool("read-only flag")?;
        let count = self.count_u16("stat count", Limit::Stats, STATS_MAX, STAT_SIZE_MIN)?;
        let mut stats = Vec::with_capacity(count);
        for _ in 0..count {
            stats.push((self.text("stat name")?, self.text("stat value")?));
        }
        Ok(Status {
            visible_lsn,
            durable_lsn,
            uptime_ms,
            tables_count,
            connections_count,
            read_only,
            stats,
        })
    }

    fn entries(&mut self) -> Result<Entries> {
        let read_lsn = self.u64("read lsn")?;
        let scan_max = self.limits.scan_limit_max;
        let count = self.count_u32("entry count", Limit::ScanLimit, scan_max, ENTRY_SIZE_MIN)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(Entry {
                key: self.key()?,
                value: self.value()?,
                version: self.u64("version")?,
            });
        }
        Ok(Entries {
            read_lsn,
            entries,
            cursor: self.cursor()?,
        })
    }

    fn error(&mut self) -> Result<ServerError> {
        let at = self.offset();
        let Some(code) = ErrorCode::from_u16(self.u16("error code")?) else {
            return malformed(at, "unknown error code");
        };
        let kind = match code {
            ErrorCode::BadRequest => ErrorKind::BadRequest,
            ErrorCode::FrameTooLarge => ErrorKind::FrameTooLarge,
            ErrorCode::LimitExceeded => {
                let at = self.offset();
                let Some(limit) = Limit::from_code(self.u16("limit code")?) else {
                    return malformed(at, "unknown limit code");
                };
                ErrorKind::LimitExceeded { limit }
            }
            ErrorCode::UnsupportedVersion => ErrorKind::UnsupportedVersion {
                min: self.u8("version min")?,
                max: self.u8("version max")?,
            },
            ErrorCode::Unauthorized => ErrorKind::Unauthorized,
            ErrorCode::UnknownTable => ErrorKind::UnknownTable,
            ErrorCode::TableExists => ErrorKind::TableExists,
            ErrorCode::Conflict => ErrorKind::Conflict {
                condition_index: self.u32("condition index")?,
            },
            ErrorCode::UnknownOutcome => {
                let at = self.offset();
                let Some(reason) = UnknownReason::from_u8(self.u8("unknown reason")?) else {
                    return malformed(at, "unknown outcome reason");
                };
                ErrorKind::UnknownOutcome { reason }
            }
            ErrorCode::Overloaded => ErrorKind::Overloaded,
            ErrorCode::ReadOnly => ErrorKind::ReadOnly,
            ErrorCode::CursorExpired => ErrorKind::CursorExpired,
            ErrorCode::Internal => ErrorKind::Internal,
            ErrorCode::NotLeader => ErrorKind::NotLeader {
                leader_hint: self.option("leader hint tag", |r| r.text("leader hint"))?,
            },
        };
        Ok(ServerError {
            kind,
            message: self.text("error message")?,
        })
    }
}
