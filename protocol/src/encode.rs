//! Encoding: every message into a caller's `Vec<u8>` as one whole frame, header included.
//! Straight copies of the fields in the order of docs/protocol.md, sections 5 and 6; no
//! allocation but the output's growth. The encoder checks only that lengths fit their wire
//! widths ([`EncodeError`]); limits are the receiver's business, so a client can be tested
//! against a server's refusals.

use std::ops::Bound;

use crate::error::EncodeError;
use crate::error_code::{ErrorKind, ServerError};
use crate::format::{
    BOUND_EXCLUDED, BOUND_INCLUDED, BOUND_UNBOUNDED, CHECK_ABSENT, CHECK_EXISTS,
    CHECK_RANGE_UNCHANGED, CHECK_VERSION, COMPRESSION_NONE, COMPRESSION_ZSTD, DIRECTION_BACKWARD,
    DIRECTION_FORWARD, ENGINE_BTREE, ENGINE_LSM, HEADER_SIZE, PROTOCOL_VERSION, WRITE_DELETE,
    WRITE_PUT, op,
};
use crate::message::{
    Check, Commit, Compression, Condition, Cursor, Direction, Engine, Entries, HandshakeOk,
    PointRequest, PointResponse, Request, Response, Scan, Status, TableInfo, TableOptions, Write,
};

impl Request {
    /// Appends this request to `out` as a frame with `request_id`.
    ///
    /// # Errors
    /// [`EncodeError`] if a field does not fit its wire width; `out` is then unchanged.
    pub fn encode(&self, request_id: u64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let mut w = Writer::begin(out, self.opcode(), request_id);
        let result = encode_request(self, &mut w).and_then(|()| w.finish());
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// This request as a new frame with `request_id`.
    ///
    /// # Errors
    /// As [`Request::encode`].
    pub fn to_frame(&self, request_id: u64) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(request_id, &mut out)?;
        Ok(out)
    }

    /// The frame opcode of this request.
    pub fn opcode(&self) -> u8 {
        match self {
            Request::Handshake { .. } => op::HANDSHAKE,
            Request::Ping => op::PING,
            Request::Status => op::STATUS,
            Request::CreateTable { .. } => op::CREATE_TABLE,
            Request::DropTable { .. } => op::DROP_TABLE,
            Request::ListTables => op::LIST_TABLES,
            Request::DescribeTable { .. } => op::DESCRIBE_TABLE,
            Request::Get { .. } => op::GET,
            Request::Put { .. } => op::PUT,
            Request::Delete { .. } => op::DELETE,
            Request::Batch { .. } => op::BATCH,
            Request::Scan(_) => op::SCAN,
            Request::Commit(_) => op::COMMIT,
        }
    }
}

impl PointRequest<'_> {
    /// Appends this request to `out` as a frame with `request_id`: the bytes
    /// [`Request::encode`] writes for the owned request it mirrors.
    ///
    /// # Errors
    /// As [`Request::encode`].
    pub fn encode(&self, request_id: u64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let (opcode, table, key, value) = match *self {
            PointRequest::Get { table, key } => (op::GET, table, key, None),
            PointRequest::Put { table, key, value } => (op::PUT, table, key, Some(value)),
            PointRequest::Delete { table, key } => (op::DELETE, table, key, None),
        };
        let mut w = Writer::begin(out, opcode, request_id);
        let result = w.point(table, key, value).and_then(|()| w.finish());
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

impl PointResponse<'_> {
    /// Appends this response to `out` as a frame answering `request_id`: the bytes
    /// [`Response::encode`] writes for the owned response it mirrors.
    ///
    /// # Errors
    /// As [`Response::encode`].
    pub fn encode(&self, request_id: u64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = match *self {
            PointResponse::Value(found) => {
                let mut w = Writer::begin(out, op::VALUE, request_id);
                encode_value(found, &mut w).and_then(|()| w.finish())
            }
            PointResponse::Written { lsn } => {
                let mut w = Writer::begin(out, op::WRITTEN, request_id);
                w.u64(lsn);
                w.finish()
            }
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

impl Response {
    /// Appends this response to `out` as a frame answering `request_id`.
    ///
    /// # Errors
    /// [`EncodeError`] if a field does not fit its wire width; `out` is then unchanged.
    pub fn encode(&self, request_id: u64, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let mut w = Writer::begin(out, self.opcode(), request_id);
        let result = encode_response(self, &mut w).and_then(|()| w.finish());
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// This response as a new frame answering `request_id`.
    ///
    /// # Errors
    /// As [`Response::encode`].
    pub fn to_frame(&self, request_id: u64) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(request_id, &mut out)?;
        Ok(out)
    }

    /// The frame opcode of this response.
    pub fn opcode(&self) -> u8 {
        match self {
            Response::Handshake(_) => op::HANDSHAKE_OK,
            Response::Pong => op::PONG,
            Response::Status(_) => op::STATUS_OK,
            Response::TableCreated { .. } => op::TABLE_CREATED,
            Response::Tables(_) => op::TABLES,
            Response::Table(_) => op::TABLE,
            Response::Value(_) => op::VALUE,
            Response::Written { .. } => op::WRITTEN,
            Response::Entries(_) => op::ENTRIES,
            Response::Committed { .. } => op::COMMITTED,
            Response::Error(_) => op::ERROR,
        }
    }
}

fn encode_request(request: &Request, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    match request {
        Request::Handshake {
            version_min,
            version_max,
            token,
        } => {
            w.u8(*version_min);
            w.u8(*version_max);
            w.option(token.as_deref(), |w, token| w.bytes("auth token", token))?;
        }
        Request::Ping | Request::Status | Request::ListTables => {}
        Request::CreateTable { name, options } => {
            w.name(name)?;
            w.table_options(options);
        }
        Request::DropTable { name } | Request::DescribeTable { name } => w.name(name)?,
        Request::Get { table, key } | Request::Delete { table, key } => {
            w.point(table, key, None)?;
        }
        Request::Put { table, key, value } => w.point(table, key, Some(value))?,
        Request::Batch { tables, writes } => {
            w.names(tables)?;
            w.writes(writes)?;
        }
        Request::Scan(scan) => w.scan(scan)?,
        Request::Commit(commit) => w.commit(commit)?,
    }
    Ok(())
}

/// The body of a Value response, owned or borrowed: a tag, then the value and its version.
fn encode_value(found: Option<(&[u8], u64)>, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    w.option(found, |w, (value, version)| {
        w.bytes("value", value)?;
        w.u64(version);
        Ok(())
    })
}

fn encode_response(response: &Response, w: &mut Writer<'_>) -> Result<(), EncodeError> {
    match response {
        Response::Handshake(ok) => w.handshake_ok(ok)?,
        Response::Pong => {}
        Response::Status(status) => w.status(status)?,
        Response::TableCreated { lsn, table } => {
            w.u64(*lsn);
            w.table_info(table)?;
        }
        Response::Tables(tables) => {
            w.count_u32("table count", tables.len())?;
            for table in tables {
                w.table_info(table)?;
            }
        }
        Response::Table(table) => w.table_info(table)?,
        Response::Value(versioned) => encode_value(
            versioned.as_ref().map(|v| (v.value.as_slice(), v.version)),
            w,
        )?,
        Response::Written { lsn } | Response::Committed { lsn } => w.u64(*lsn),
        Response::Entries(entries) => w.entries(entries)?,
        Response::Error(error) => w.error(error)?,
    }
    Ok(())
}

/// Appends fields to a frame under construction.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Where the frame starts in `out`.
    start: usize,
}

impl<'a> Writer<'a> {
    /// Writes the header with a zero length, patched by [`Writer::finish`].
    fn begin(out: &'a mut Vec<u8>, opcode: u8, request_id: u64) -> Self {
        let start = out.len();
        out.reserve(HEADER_SIZE);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(PROTOCOL_VERSION);
        out.push(opcode);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&request_id.to_le_bytes());
        debug_assert_eq!(out.len() - start, HEADER_SIZE);
        Self { out, start }
    }

    /// Patches the length field.
    fn finish(self) -> Result<(), EncodeError> {
        let length = self.out.len() - self.start - 4;
        let length = u32::try_from(length).map_err(|_| EncodeError::TooLong {
            what: "frame",
            len: length,
            bits: 32,
        })?;
        let field = self
            .out
            .get_mut(self.start..self.start + 4)
            .expect("the header was written at start");
        field.copy_from_slice(&length.to_le_bytes());
        Ok(())
    }

    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    fn count_u32(&mut self, what: &'static str, len: usize) -> Result<(), EncodeError> {
        let len = u32::try_from(len).map_err(|_| EncodeError::TooLong {
            what,
            len,
            bits: 32,
        })?;
        self.u32(len);
        Ok(())
    }

    fn count_u16(&mut self, what: &'static str, len: usize) -> Result<(), EncodeError> {
        let len = u16::try_from(len).map_err(|_| EncodeError::TooLong {
            what,
            len,
            bits: 16,
        })?;
        self.u16(len);
        Ok(())
    }

    /// A u32 length and the bytes.
    fn bytes(&mut self, what: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
        self.count_u32(what, bytes.len())?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// A u16 length and the UTF-8 bytes.
    fn text(&mut self, what: &'static str, text: &str) -> Result<(), EncodeError> {
        self.count_u16(what, text.len())?;
        self.out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    /// A table name: text.
    fn name(&mut self, name: &str) -> Result<(), EncodeError> {
        self.text("table name", name)
    }

    /// A tag byte (0 absent, 1 present) and the value if present.
    fn option<T>(
        &mut self,
        value: Option<T>,
        encode: impl FnOnce(&mut Self, T) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        match value {
            None => {
                self.u8(0);
                Ok(())
            }
            Some(value) => {
                self.u8(1);
                encode(self, value)
            }
        }
    }

    /// The body of a Get, Put or Delete: the table name, the key, and a Put's value.
    fn point(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), EncodeError> {
        self.name(table)?;
        self.bytes("key", key)?;
        if let Some(value) = value {
            self.bytes("value", value)?;
        }
        Ok(())
    }

    fn names(&mut self, names: &[String]) -> Result<(), EncodeError> {
        self.count_u16("table count", names.len())?;
        for name in names {
            self.name(name)?;
        }
        Ok(())
    }

    fn writes(&mut self, writes: &[Write]) -> Result<(), EncodeError> {
        self.count_u32("write count", writes.len())?;
        for write in writes {
            self.u16(write.table);
            match &write.value {
                None => {
                    self.u8(WRITE_DELETE);
                    self.bytes("key", &write.key)?;
                }
                Some(value) => {
                    self.u8(WRITE_PUT);
                    self.bytes("key", &write.key)?;
                    self.bytes("value", value)?;
                }
            }
        }
        Ok(())
    }

    fn table_options(&mut self, options: &TableOptions) {
        self.u8(match options.engine {
            Engine::Lsm => ENGINE_LSM,
            Engine::Btree => ENGINE_BTREE,
        });
        match options.compression {
            Compression::None => self.u8(COMPRESSION_NONE),
            Compression::Zstd { level } => {
                self.u8(COMPRESSION_ZSTD);
                self.out.extend_from_slice(&level.to_le_bytes());
            }
        }
        self.u32(options.page_size);
        self.u32(options.bloom_bits_per_key);
    }

    fn table_info(&mut self, table: &TableInfo) -> Result<(), EncodeError> {
        self.u64(table.id);
        self.name(&table.name)?;
        self.table_options(&table.options);
        Ok(())
    }

    fn bound(&mut self, bound: &Bound<Vec<u8>>) -> Result<(), EncodeError> {
        match bound {
            Bound::Unbounded => self.u8(BOUND_UNBOUNDED),
            Bound::Included(key) => {
                self.u8(BOUND_INCLUDED);
                self.bytes("bound", key)?;
            }
            Bound::Excluded(key) => {
                self.u8(BOUND_EXCLUDED);
                self.bytes("bound", key)?;
            }
        }
        Ok(())
    }

    fn cursor(&mut self, cursor: Option<&Cursor>) -> Result<(), EncodeError> {
        self.option(cursor, |w, cursor| {
            w.bytes("cursor key", &cursor.key)?;
            w.u64(cursor.lsn);
            Ok(())
        })
    }

    fn scan(&mut self, scan: &Scan) -> Result<(), EncodeError> {
        self.name(&scan.table)?;
        self.bound(&scan.lower)?;
        self.bound(&scan.upper)?;
        self.u8(match scan.direction {
            Direction::Forward => DIRECTION_FORWARD,
            Direction::Backward => DIRECTION_BACKWARD,
        });
        self.u32(scan.limit);
        self.cursor(scan.cursor.as_ref())
    }

    fn commit(&mut self, commit: &Commit) -> Result<(), EncodeError> {
        self.option(commit.idempotency.as_ref(), |w, key| {
            w.u64(key.client);
            w.u64(key.sequence);
            Ok(())
        })?;
        self.names(&commit.tables)?;
        self.count_u32("condition count", commit.conditions.len())?;
        for condition in &commit.conditions {
            self.condition(condition)?;
        }
        self.writes(&commit.writes)
    }

    fn condition(&mut self, condition: &Condition) -> Result<(), EncodeError> {
        self.u16(condition.table);
        match &condition.check {
            Check::Version { key, version } => {
                self.u8(CHECK_VERSION);
                self.bytes("condition key", key)?;
                self.u64(*version);
            }
            Check::Absent { key } => {
                self.u8(CHECK_ABSENT);
                self.bytes("condition key", key)?;
            }
            Check::Exists { key } => {
                self.u8(CHECK_EXISTS);
                self.bytes("condition key", key)?;
            }
            Check::RangeUnchanged { start, end, since } => {
                self.u8(CHECK_RANGE_UNCHANGED);
                self.bytes("range start", start)?;
                self.option(end.as_deref(), |w, end| w.bytes("range end", end))?;
                self.u64(*since);
            }
        }
        Ok(())
    }

    fn handshake_ok(&mut self, ok: &HandshakeOk) -> Result<(), EncodeError> {
        self.u8(ok.version);
        self.text("server version", &ok.server_version)?;
        let limits = &ok.limits;
        for value in [
            limits.frame_size_max,
            limits.key_size_max,
            limits.value_size_max,
            limits.batch_writes_max,
            limits.batch_size_max,
            limits.conditions_max,
            limits.scan_limit_max,
            limits.tables_max,
        ] {
            self.u32(value);
        }
        self.u32(ok.in_flight_max);
        self.u32(ok.cursor_ttl_ms);
        Ok(())
    }

    fn status(&mut self, status: &Status) -> Result<(), EncodeError> {
        self.u64(status.visible_lsn);
        self.u64(status.durable_lsn);
        self.u64(status.uptime_ms);
        self.u32(status.tables_count);
        self.u32(status.connections_count);
        self.bool(status.read_only);
        self.count_u16("stat count", status.stats.len())?;
        for (name, value) in &status.stats {
            self.text("stat name", name)?;
            self.text("stat value", value)?;
        }
        Ok(())
    }

    fn entries(&mut self, entries: &Entries) -> Result<(), EncodeError> {
        self.u64(entries.read_lsn);
        self.count_u32("entry count", entries.entries.len())?;
        for entry in &entries.entries {
            self.bytes("key", &entry.key)?;
            self.bytes("value", &entry.value)?;
            self.u64(entry.version);
        }
        self.cursor(entries.cursor.as_ref())
    }

    fn error(&mut self, error: &ServerError) -> Result<(), EncodeError> {
        self.u16(error.kind.code().to_u16());
        match &error.kind {
            ErrorKind::LimitExceeded { limit } => self.u16(limit.code()),
            ErrorKind::UnsupportedVersion { min, max } => {
                self.u8(*min);
                self.u8(*max);
            }
            ErrorKind::Conflict { condition_index } => self.u32(*condition_index),
            ErrorKind::UnknownOutcome { reason } => self.u8(reason.to_u8()),
            ErrorKind::NotLeader { leader_hint } => {
                self.option(leader_hint.as_deref(), |w, hint| {
                    w.text("leader hint", hint)
                })?;
            }
            ErrorKind::BadRequest
            | ErrorKind::FrameTooLarge
            | ErrorKind::Unauthorized
            | ErrorKind::UnknownTable
            | ErrorKind::TableExists
            | ErrorKind::Overloaded
            | ErrorKind::ReadOnly
            | ErrorKind::CursorExpired
            | ErrorKind::Internal => {}
        }
        self.text("error message", &error.message)
    }
}
