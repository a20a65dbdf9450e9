//! popdb-db: PopDB as an embedded database. So far: the engine layer, the one place that
//! knows both engines ([`Engine`], [`EngineView`], [`Cursor`]), with an adapter for each
//! (`popdb-lsm` for write-heavy tables, `popdb-btree` for read-heavy ones) and the
//! conformance suite both must pass (`db/tests/engine_conformance.rs`). The catalog, the
//! shared log, the apply stage, transactions and recovery come next (docs/architecture.md).
//!
//! The engines take writes stamped with an LSN and say up to which LSN their files hold
//! (their watermark); a reopened engine reads at its watermark and the Db replays its log
//! from there, with the same LSNs.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod engine;
mod engine_btree;
mod engine_lsm;
mod error;
pub mod limits;
mod outcome;
mod record;
mod state_file;
mod table;

pub use engine::{
    Cursor, Direction, Engine, EngineKind, EngineOptions, EngineView, Write, open_engine,
};
pub use error::{Error, Result};
pub use outcome::Outcome;
pub use record::{Check, IdempotencyKey};
pub use table::{Compression, TableDesc, TableOptions, validate_name};

/// The decoders of the Db's log records and state file, for the fuzz crate and the codec
/// tests. Not a stable API.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::record::{Condition, DecodeError, LogRecord, TableWrite, WriteRecord};
    pub use crate::state_file::{
        CURRENT_FILE, CURRENT_TEMP_FILE, CheckpointImage, DbState, STATE_FILE, STATE_SIZE_MAX,
        STATE_TEMP_FILE, decode_current, generation_dir_name, load_current, store_current,
    };
}
