//! popdb-client: PopDB's Rust client.
//!
//! - [`Client`]: async (tokio), one TCP connection, pipelining: any number of requests in
//!   flight (bounded), each with its request id, completed in whatever order the server
//!   answers; a timeout per request; one method per request kind (docs/protocol.md).
//! - [`BlockingClient`]: the same behind blocking calls, on a runtime it owns.
//! - [`Client::transaction`]: the interactive-transaction helper: reads recorded as
//!   conditions, writes buffered, one commit, retried only when that is safe.
//! - [`Error`]: every server error code typed, plus what the client observes; it keeps
//!   "certainly not applied" apart from "may have applied" ([`Error::may_have_applied`]).
//!
//! ```no_run
//! use popdb_client::{Client, ClientOptions, Engine, ScanOptions, TableOptions, TxnOptions};
//!
//! # async fn example() -> popdb_client::Result<()> {
//! let client = Client::connect("127.0.0.1:7878", ClientOptions::default()).await?;
//! client.create_table("hits", TableOptions::new(Engine::Lsm)).await?;
//! let lsn = client.put("hits", b"/index.html", b"0").await?;
//! let value = client.get("hits", b"/index.html").await?;
//! assert_eq!(value.map(|v| v.version), Some(lsn));
//! let all = client.scan("hits", ScanOptions::new().from("/")).collect().await?;
//! let committed = client
//!     .transaction(TxnOptions::default(), |txn| async move {
//!         let n = txn.get("hits", b"total").await?.map_or(0, |v| v.len());
//!         txn.put("hits", b"total", &vec![b'+'; n + 1]);
//!         Ok(n + 1)
//!     })
//!     .await?;
//! # let _ = (all, committed);
//! # Ok(())
//! # }
//! ```
//!
//! The crate depends on popdb-protocol and external crates only: a client application never
//! compiles an engine. The `popdb-cli` binary lives in src/bin/popdb-cli.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blocking;
mod client;
mod connection;
mod error;
mod options;
mod scan;
mod transaction;

pub use blocking::{BlockingClient, BlockingScan};
pub use client::{Client, WriteBatch};
pub use error::{Error, Result};
pub use options::ClientOptions;
pub use popdb_protocol::{
    Check, Commit, Compression, Condition, Direction, Engine, Entries, Entry, IdempotencyKey,
    Limit, Limits, Scan, Status, TableInfo, TableOptions, UnknownReason, Versioned, Write,
};
pub use scan::{ScanOptions, ScanStream};
pub use transaction::{Committed, Txn, TxnOptions};
