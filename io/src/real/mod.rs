//! The production file system: std files with positional I/O, plus the Linux calls std lacks
//! (`fallocate`, `posix_fadvise`, `flock`) through `rustix`, read-only maps through `memmap2`,
//! and batched writes linked to their `fdatasync` through `io-uring`.
//!
//! The two modules that hold `unsafe` code (`map`, `uring`) are listed in `io/UNSAFE.md`, with
//! the invariants they rely on; a test keeps that list equal to a grep of the sources.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "this is the seam: the only place PopDB calls std::fs"
)]

mod file;
mod file_system;
mod lock;
mod map;
mod uring;

pub use file_system::RealFs;
