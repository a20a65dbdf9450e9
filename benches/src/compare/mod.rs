//! `popdb-bench compare` and its hidden `run-target`: PopDB's engines and Db against the
//! peers (RocksDB, LMDB, redb, fjall, sled; each behind its cargo feature) on db_bench's
//! workloads and YCSB's, each target in its own process, interleaved, reported as median
//! ratios.

mod callgrind;
mod charts;
mod concurrent;
mod driver;
mod peers;
mod popdb;
mod popdb_db;
mod report;
mod run_target;
mod target;
mod workload;
mod ycsb;

#[cfg(feature = "fjall")]
mod fjall;
#[cfg(feature = "lmdb")]
mod lmdb;
#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "rocksdb")]
mod rocksdb;
#[cfg(feature = "sled")]
mod sled;

pub use driver::{Compare, run as run_compare};
pub use run_target::{RunTarget, run as run_target};
pub use target::{Shape, TargetKind};
pub use workload::{Counts, Workload};
