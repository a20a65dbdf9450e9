//! popdb-db: PopDB as an embedded database. Tables on either engine (`popdb-lsm` for
//! write-heavy tables, `popdb-btree` for read-heavy ones) under one write-ahead log
//! (`popdb-wal`), atomic batches across tables, transactions validated in log order,
//! Db-wide checkpoints and recovery. DESIGN.md's "The write path", "Checkpoints and
//! recovery" and "Versions and transactions" are its specification; docs/format/layout.md
//! describes its files.
//!
//! ```
//! # fn main() -> popdb_db::Result<()> {
//! use popdb_db::{Check, Commit, Condition, Db, DbOptions, EngineKind, Error, TableOptions, WriteBatch};
//! # let temp = std::env::temp_dir().join(format!("popdb-doc-lib-{}", std::process::id()));
//! let db = Db::open(&temp, DbOptions::default())?;
//! db.create_table("routes", TableOptions::new(EngineKind::Btree))?;
//! db.create_table("hits", TableOptions::new(EngineKind::Lsm))?;
//!
//! // One atomic batch across two tables: one log record, one LSN.
//! let mut batch = WriteBatch::new();
//! batch.put("routes", "/a", "origin-1").put("hits", "/a", "0");
//! let lsn = db.write(batch)?;
//!
//! // A transaction whose condition no longer holds is refused whole.
//! let mut writes = WriteBatch::new();
//! writes.put("routes", "/a", "origin-2");
//! let stale = Commit {
//!     conditions: vec![Condition {
//!         table: "routes".into(),
//!         check: Check::Version { key: b"/a".to_vec(), version: lsn - 1 },
//!     }],
//!     writes,
//!     ..Commit::default()
//! };
//! assert!(matches!(db.commit(stale), Err(Error::Conflict { condition: 0, .. })));
//! assert_eq!(db.get("routes", b"/a")?, Some((b"origin-1".to_vec(), lsn)));
//! # drop(db);
//! # std::fs::remove_dir_all(&temp).ok();
//! # Ok(())
//! # }
//! ```
//!
//! The engine layer underneath ([`Engine`], [`EngineView`], [`Cursor`]) is the one place
//! that knows both engines; `db/tests/engine_conformance.rs` runs both against one model.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
mod background;
mod batch;
mod check;
mod db;
mod engine;
mod engine_btree;
mod engine_lsm;
mod error;
#[cfg(feature = "internals")]
mod fuzz_ops;
mod idempotency;
pub mod limits;
mod options;
mod outcome;
mod points;
mod read;
mod record;
mod recovery;
mod state_file;
mod table;
mod tables;
mod transaction;

pub use apply::Applied;
pub use batch::{Commit, Condition, WriteBatch};
pub use check::{CheckReport, TableCheck, check};
pub use db::{CommitTicket, Db, DbStats, TableStats, WriteLead};
pub use engine::{
    Cursor, Direction, Engine, EngineKind, EngineOptions, EngineView, EngineWork, Write,
    open_engine,
};
pub use error::{Error, Result};
pub use options::{DbOptions, Durability, WriteOptions};
pub use outcome::Outcome;
pub use points::{POINT_WRITES_BYTES_MAX, PointWrites};
pub use popdb_wal::RecordKind;
pub use read::{Entry, ReadView, Scan, ScanCursor};
pub use record::{Check, IdempotencyKey};
pub use recovery::DbRecovery;
pub use table::{Compression, TableDesc, TableOptions, validate_name};
pub use transaction::Transaction;

/// The decoders of the Db's log records and state file, for the fuzz crate and the codec
/// tests. Not a stable API.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::fuzz_ops::{OPS_MAX, fuzz_db_transactions, fuzz_engine_ops};
    pub use crate::record::{Condition, DecodeError, LogRecord, TableWrite, WriteRecord};
    pub use crate::state_file::{
        CURRENT_FILE, CURRENT_TEMP_FILE, CheckpointImage, DbState, STATE_FILE, STATE_SIZE_MAX,
        STATE_TEMP_FILE, decode_current, generation_dir_name, load_current, store_current,
    };
}
