//! [`BlockingClient`]: the async [`Client`] behind blocking calls, for programs without an
//! async runtime. It owns a small single-threaded tokio runtime; the connection's reader
//! and writer tasks run on it while a call blocks.

use std::future::Future;

use popdb_protocol::{Commit, Entry, Status, TableInfo, TableOptions, Versioned};

use crate::client::{Client, WriteBatch};
use crate::error::{Error, Result};
use crate::options::ClientOptions;
use crate::scan::ScanOptions;
use crate::transaction::{Committed, Txn, TxnOptions};

/// A blocking client: every method waits for its response. Not for use inside an async
/// runtime (see [`BlockingClient::connect`]).
#[derive(Debug)]
pub struct BlockingClient {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl BlockingClient {
    /// Connects to `addr` (`host:port`) and completes the handshake.
    ///
    /// # Errors
    /// As [`Client::connect`]; [`Error::Io`] if the runtime cannot start.
    ///
    /// # Panics
    /// If called from inside an async runtime, as every method of a `BlockingClient` would
    /// (tokio refuses to block a thread that drives async tasks): use [`Client`] there.
    pub fn connect(addr: &str, options: ClientOptions) -> Result<BlockingClient> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                op: "starting the client runtime",
                source,
            })?;
        let client = runtime.block_on(Client::connect(addr, options))?;
        Ok(BlockingClient { runtime, client })
    }

    /// The async client underneath (use it inside [`BlockingClient::block_on`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs any future on this client's runtime: to pipeline many requests, for instance.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// See [`Client::ping`].
    pub fn ping(&self) -> Result<()> {
        self.block_on(self.client.ping())
    }

    /// See [`Client::status`].
    pub fn status(&self) -> Result<Status> {
        self.block_on(self.client.status())
    }

    /// See [`Client::create_table`].
    pub fn create_table(&self, name: &str, options: TableOptions) -> Result<TableInfo> {
        self.block_on(self.client.create_table(name, options))
    }

    /// See [`Client::drop_table`].
    pub fn drop_table(&self, name: &str) -> Result<u64> {
        self.block_on(self.client.drop_table(name))
    }

    /// See [`Client::list_tables`].
    pub fn list_tables(&self) -> Result<Vec<TableInfo>> {
        self.block_on(self.client.list_tables())
    }

    /// See [`Client::describe_table`].
    pub fn describe_table(&self, name: &str) -> Result<TableInfo> {
        self.block_on(self.client.describe_table(name))
    }

    /// See [`Client::get`].
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Versioned>> {
        self.block_on(self.client.get(table, key))
    }

    /// See [`Client::put`].
    pub fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<u64> {
        self.block_on(self.client.put(table, key, value))
    }

    /// See [`Client::delete`].
    pub fn delete(&self, table: &str, key: &[u8]) -> Result<u64> {
        self.block_on(self.client.delete(table, key))
    }

    /// See [`Client::batch`].
    pub fn batch(&self, batch: WriteBatch) -> Result<u64> {
        self.block_on(self.client.batch(batch))
    }

    /// See [`Client::commit`].
    pub fn commit(&self, commit: Commit) -> Result<u64> {
        self.block_on(self.client.commit(commit))
    }

    /// A scan that follows cursors, as a blocking iterator of entries.
    pub fn scan(&self, table: &str, options: ScanOptions) -> BlockingScan<'_> {
        BlockingScan {
            client: self,
            stream: self.client.scan(table, options),
            failed: false,
        }
    }

    /// See [`Client::transaction`].
    ///
    /// # Errors
    /// As [`Client::transaction`].
    pub fn transaction<T, F, Fut>(&self, options: TxnOptions, body: F) -> Result<Committed<T>>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.block_on(self.client.transaction(options, body))
    }
}

/// The entries of a scan, fetched page by page as the iterator advances. After an error it
/// ends.
#[derive(Debug)]
pub struct BlockingScan<'a> {
    client: &'a BlockingClient,
    stream: crate::scan::ScanStream,
    failed: bool,
}

impl Iterator for BlockingScan<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.client.block_on(self.stream.next());
        self.failed = next.is_err();
        next.transpose()
    }
}
