//! The simulated file system: [`SimFs`] models power loss (unsynced writes kept, lost, or
//! torn at sector granularity; unsynced directory changes lost as a suffix) and injects
//! faults (EIO, ENOSPC, short writes, failed syncs with the Linux behaviour, read bit
//! flips), deterministically from a seed. The model is documented on [`SimFs`].
//!
//! Files, one job each:
//! - `sim_fs.rs`: the public type, its controls and helpers, the `FileSystem` impl.
//! - `file.rs`: open handles and map views.
//! - `namespace.rs`: the directory operations.
//! - `state.rs`: the machine: inodes, paths, the per-operation gate, space, garbage.
//! - `content.rs`: one file's bytes (medium, staged, stale cache) and dirty sectors.
//! - `dir.rs`: one directory's entries and its log of unsynced changes.
//! - `crash.rs`: crash modes and power loss.
//! - `faults.rs`: injected faults.
//! - `errors.rs`: the errors returned.
//! - `rng.rs`: the seeded random source.
#![forbid(unsafe_code)]

mod content;
mod crash;
mod dir;
mod errors;
mod faults;
mod file;
mod namespace;
mod rng;
mod sim_fs;
mod state;

#[cfg(test)]
mod tests;

pub use crash::CrashMode;
pub use faults::{Fault, FaultError, FaultOp};
pub use sim_fs::{SimFs, SimOptions, SimStats};
