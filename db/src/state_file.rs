//! The Db's state file: `<generation dir>/STATE`, replaced atomically (write `STATE.tmp`,
//! fdatasync, rename, sync the directory). It holds what the log alone cannot give
//! recovery: the last completed checkpoint's image (its LSN, the catalog and the
//! idempotency keys as of it), an intent for a checkpoint in progress (with the LSNs of
//! the records in its window that aborted), and the LSN lease. Also the `CURRENT` pointer
//! at the top of the data directory, naming the live generation. Spec:
//! docs/format/layout.md.

use std::path::Path;

use popdb_io::FileSystem;

use crate::error::Result;
use crate::outcome::Outcome;
use crate::record::IdempotencyKey;
use crate::table::TableDesc;

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
    pub fn encode(&self) -> Vec<u8> {
        todo!("state file codec")
    }

    /// Decodes a state file. Never panics.
    ///
    /// # Errors
    /// `Corruption` naming the file and what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<DbState> {
        let _ = bytes;
        todo!("state file codec")
    }

    /// Reads `dir/STATE`; `None` if there is none. A leftover `STATE.tmp` is ignored (a
    /// crash during [`DbState::store`] leaves the previous state whole).
    ///
    /// # Errors
    /// `Io`, or `Corruption` as in [`DbState::decode`].
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<DbState>> {
        let _ = (fs, dir);
        todo!("state file load")
    }

    /// Durably replaces `dir/STATE` with this state.
    ///
    /// # Errors
    /// `Io`.
    pub fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        let _ = (fs, dir);
        todo!("state file store")
    }
}

/// Reads `CURRENT` in the data directory `dir`: the live generation's number; `None` if
/// there is no pointer yet.
///
/// # Errors
/// `Io`, or `Corruption` if it is not a generation pointer.
pub fn load_current(fs: &dyn FileSystem, dir: &Path) -> Result<Option<u64>> {
    let _ = (fs, dir);
    todo!("CURRENT load")
}

/// Durably points `CURRENT` in `dir` at generation `generation`.
///
/// # Errors
/// `Io`.
pub fn store_current(fs: &dyn FileSystem, dir: &Path, generation: u64) -> Result<()> {
    let _ = (fs, dir, generation);
    todo!("CURRENT store")
}

/// The directory name of generation `generation`: `gen-` and 6 or more decimal digits.
pub fn generation_dir_name(generation: u64) -> String {
    format!("gen-{generation:06}")
}
