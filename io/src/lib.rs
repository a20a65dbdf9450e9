//! popdb-io: the one seam through which every PopDB byte reaches a disk.
//!
//! Every crate that touches files does so through [`FileSystem`] and [`File`], so that
//! every durability claim can be tested under injected faults:
//!
//! - [`RealFs`]: the production file system: positional reads and writes, `fdatasync`,
//!   `fallocate`, directory sync, an exclusive directory lock, read-only maps, and an
//!   io_uring path for batched writes linked to their sync, detected at run time with a
//!   silent fallback to `pwrite`.
//! - [`SimFs`]: a deterministic simulated file system that models power loss (unsynced
//!   writes lost whole, in part at sector granularity, or kept; unsynced directory
//!   operations lost), injected errors (EIO, ENOSPC, short writes, failed fsync with the
//!   Linux behaviour), and read bit flips.
//!
//! Also here: an injectable [`Clock`], [`AlignedBuf`] for direct I/O, and the crc32
//! helpers every format uses.

// Unsafe code only in the modules listed in io/UNSAFE.md (which names the other crates that
// hold some, each with its own inventory).
#![deny(unsafe_code)]

mod aligned;
mod checksum;
mod clock;
mod fs;
mod real;
mod sim;

pub use aligned::AlignedBuf;
pub use checksum::{Crc32, crc32};
pub use clock::{Clock, ManualClock, SystemClock};
pub use fs::{
    DirLock, File, FileRef, FileSystem, FsRef, MapView, Mapping, OpenOptions, WriteOp,
    create_dir_durably,
};
pub use real::RealFs;
pub use sim::{CrashMode, Fault, FaultError, FaultOp, SimFs, SimOptions, SimStats};
