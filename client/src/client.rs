//! [`Client`]: one method per request kind (docs/protocol.md, section 5), each returning
//! the typed result or an [`Error`].
//!
//! A `Client` is a cheap handle: clones share one connection, and requests from any number
//! of tasks are pipelined on it. When the connection breaks, requests in flight fail with
//! [`Error::ConnectionLost`] (their outcome is unknown) and, with
//! [`ClientOptions::reconnect`], the next request opens a new connection; the client's id in
//! idempotency keys stays the same, so a commit resent on the new connection is still
//! recognized.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use popdb_protocol::{
    Commit, Entries, HandshakeOk, IdempotencyKey, PointRequest, Request, Response, Scan, Status,
    TableInfo, TableOptions, Versioned, Write,
};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::options::ClientOptions;
use crate::scan::{ScanOptions, ScanStream};

/// A connection to a PopDB server.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// This client's id in idempotency keys: random, so two clients never share one.
    id: u64,
    /// The next idempotency key's sequence number.
    sequence: Arc<AtomicU64>,
}

/// What every clone of a client shares.
struct Shared {
    addr: String,
    options: ClientOptions,
    /// The current connection. Lock order: `reconnecting` before `current`; `current` is
    /// held only to clone or replace the `Arc`.
    current: std::sync::Mutex<Arc<Connection>>,
    /// Held while a new connection is opened, so that concurrent callers open one.
    reconnecting: tokio::sync::Mutex<()>,
    /// Set by [`Client::close`]: no reconnecting after that.
    closed_by_user: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn current(&self) -> Arc<Connection> {
        // Replacing an `Arc` cannot leave it half-written, so poisoning carries nothing.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current connection, or a new one if it is closed and reconnecting is allowed.
    async fn connection(&self) -> Result<Arc<Connection>> {
        let connection = self.current();
        if !connection.is_closed()
            || !self.options.reconnect
            || self.closed_by_user.load(Ordering::Acquire)
        {
            return Ok(connection);
        }
        let _one = self.reconnecting.lock().await;
        let connection = self.current();
        if !connection.is_closed() {
            // Another caller reconnected while this one waited.
            return Ok(connection);
        }
        let fresh = Connection::connect(&self.addr, self.options.clone()).await?;
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        Ok(fresh)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl Client {
    /// Connects to `addr` (`host:port`) and completes the handshake.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails, [`Error::Unauthorized`] if the token is wrong
    /// or missing, [`Error::UnsupportedVersion`], [`Error::Timeout`] past
    /// [`ClientOptions::connect_timeout`].
    pub async fn connect(addr: &str, options: ClientOptions) -> Result<Client> {
        let connection = Connection::connect(addr, options.clone()).await?;
        let client_id = getrandom::u64().map_err(|e| Error::Io {
            op: "drawing a random client id",
            source: std::io::Error::other(e.to_string()),
        })?;
        let shared = Shared {
            addr: addr.to_owned(),
            options,
            current: std::sync::Mutex::new(connection),
            reconnecting: tokio::sync::Mutex::new(()),
            closed_by_user: std::sync::atomic::AtomicBool::new(false),
        };
        Ok(Client {
            shared: Arc::new(shared),
            id: client_id,
            sequence: Arc::new(AtomicU64::new(1)),
        })
    }

    /// What the server announced in the current connection's handshake: version, limits,
    /// in-flight bound, cursor lifetime.
    pub fn server(&self) -> HandshakeOk {
        self.shared.current().server().clone()
    }

    /// A fresh idempotency key: this client's id and its next sequence number.
    pub fn next_idempotency_key(&self) -> IdempotencyKey {
        IdempotencyKey {
            client: self.id,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Closes the connection for every clone of this client, for good: requests in flight
    /// fail with [`Error::ConnectionLost`], later ones with [`Error::Closed`].
    pub fn close(&self) {
        self.shared.closed_by_user.store(true, Ordering::Release);
        self.shared.current().close();
    }

    /// Whether the current connection is gone (closed by either side, or broken). With
    /// [`ClientOptions::reconnect`], the next request opens a new one unless
    /// [`Client::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.current().is_closed()
    }

    /// Sends any request and returns its response; an error response is returned as the
    /// matching [`Error`].
    pub async fn request(&self, request: &Request) -> Result<Response> {
        self.shared.connection().await?.call(request).await
    }

    /// Sends a Get, Put or Delete encoded from the caller's buffers (no owned [`Request`]
    /// in between: the per-request path copies the key and value once, into the output).
    async fn point(&self, request: PointRequest<'_>) -> Result<Response> {
        self.shared
            .connection()
            .await?
            .call_encoded(|id, out| request.encode(id, out))
            .await
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<()> {
        match self.request(&Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(unexpected("Pong", &other)),
        }
    }

    /// The server's state and statistics.
    pub async fn status(&self) -> Result<Status> {
        match self.request(&Request::Status).await? {
            Response::Status(status) => Ok(status),
            other => Err(unexpected("Status", &other)),
        }
    }

    /// Creates a table; returns it as the server describes it.
    ///
    /// # Errors
    /// [`Error::TableExists`], [`Error::BadRequest`] for a bad name or options.
    pub async fn create_table(&self, name: &str, options: TableOptions) -> Result<TableInfo> {
        let request = Request::CreateTable {
            name: name.to_owned(),
            options,
        };
        match self.request(&request).await? {
            Response::TableCreated { table, .. } => Ok(table),
            other => Err(unexpected("TableCreated", &other)),
        }
    }

    /// Drops a table and its data; returns the drop's LSN.
    ///
    /// # Errors
    /// [`Error::UnknownTable`].
    pub async fn drop_table(&self, name: &str) -> Result<u64> {
        let request = Request::DropTable {
            name: name.to_owned(),
        };
        written(self.request(&request).await?)
    }

    /// Every live table.
    pub async fn list_tables(&self) -> Result<Vec<TableInfo>> {
        match self.request(&Request::ListTables).await? {
            Response::Tables(tables) => Ok(tables),
            other => Err(unexpected("Tables", &other)),
        }
    }

    /// One table.
    ///
    /// # Errors
    /// [`Error::UnknownTable`].
    pub async fn describe_table(&self, name: &str) -> Result<TableInfo> {
        let request = Request::DescribeTable {
            name: name.to_owned(),
        };
        match self.request(&request).await? {
            Response::Table(table) => Ok(table),
            other => Err(unexpected("Table", &other)),
        }
    }

    /// Reads a key: its value and version, or `None` if it is absent.
    pub async fn get(&self, table: &str, key: &[u8]) -> Result<Option<Versioned>> {
        match self.point(PointRequest::Get { table, key }).await? {
            Response::Value(value) => Ok(value),
            other => Err(unexpected("Value", &other)),
        }
    }

    /// Writes a key; returns the write's LSN (the key's new version).
    pub async fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<u64> {
        written(self.point(PointRequest::Put { table, key, value }).await?)
    }

    /// Deletes a key (an absent key too); returns the delete's LSN.
    pub async fn delete(&self, table: &str, key: &[u8]) -> Result<u64> {
        written(self.point(PointRequest::Delete { table, key }).await?)
    }

    /// Applies puts and deletes across tables all or nothing; returns their LSN.
    pub async fn batch(&self, batch: WriteBatch) -> Result<u64> {
        let request = Request::Batch {
            tables: batch.tables,
            writes: batch.writes,
        };
        written(self.request(&request).await?)
    }

    /// One page of a scan, as the protocol defines it (section 10). [`Client::scan`] follows
    /// the cursors for you.
    pub async fn scan_page(&self, scan: Scan) -> Result<Entries> {
        match self.request(&Request::Scan(scan)).await? {
            Response::Entries(entries) => Ok(entries),
            other => Err(unexpected("Entries", &other)),
        }
    }

    /// A scan of `table` that follows continuation cursors page by page.
    pub fn scan(&self, table: &str, options: ScanOptions) -> ScanStream {
        ScanStream::new(self.clone(), table, options)
    }

    /// Submits a transaction whole; returns its LSN.
    ///
    /// # Errors
    /// [`Error::Conflict`] if a condition failed (certainly not applied). An error for which
    /// [`Error::may_have_applied`] holds leaves the outcome unknown: resend the same commit
    /// only if it carries an idempotency key.
    pub async fn commit(&self, commit: Commit) -> Result<u64> {
        match self.request(&Request::Commit(commit)).await? {
            Response::Committed { lsn } => Ok(lsn),
            other => Err(unexpected("Committed", &other)),
        }
    }

    /// Starts an interactive transaction ([`crate::Txn`]).
    pub fn begin(&self) -> crate::Txn {
        crate::Txn::new(self.clone())
    }
}

fn written(response: Response) -> Result<u64> {
    match response {
        Response::Written { lsn } => Ok(lsn),
        other => Err(unexpected("Written", &other)),
    }
}

fn unexpected(expected: &str, got: &Response) -> Error {
    Error::Protocol(format!("expected a {expected} response, got {got:?}"))
}

/// Puts and deletes across tables, built up and then applied all or nothing by
/// [`Client::batch`]. Tables are named once and referred to by index, as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    tables: Vec<String>,
    writes: Vec<Write>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> &mut Self {
        let table = table_index(&mut self.tables, table);
        self.writes.push(Write {
            table,
            key: key.to_vec(),
            value: Some(value.to_vec()),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, table: &str, key: &[u8]) -> &mut Self {
        let table = table_index(&mut self.tables, table);
        self.writes.push(Write {
            table,
            key: key.to_vec(),
            value: None,
        });
        self
    }

    /// Writes so far.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the batch has no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Bytes of keys and values so far (what the batch size limit counts).
    pub fn size(&self) -> usize {
        self.writes
            .iter()
            .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// The index of `name` in `tables`, appended if new.
///
/// # Panics
/// If more than `u16::MAX` distinct tables are named (the wire's index width; the server's
/// limit is far lower and refuses such a request anyway).
pub(crate) fn table_index(tables: &mut Vec<String>, name: &str) -> u16 {
    let index = if let Some(index) = tables.iter().position(|t| t == name) {
        index
    } else {
        tables.push(name.to_owned());
        tables.len() - 1
    };
    u16::try_from(index).expect("at most 65,536 tables in one request")
}
