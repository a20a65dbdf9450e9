//! The errors the simulator returns, built in one place so that each failure has one shape.
//!
//! Injected and capacity errors carry the raw errno, as the kernel's would, because callers
//! match on it (`raw_os_error() == Some(28)` for ENOSPC). Namespace errors carry std's
//! `ErrorKind` plus the path, which is what callers match on and what a failing test needs to
//! print. Errors that exist only in the simulation (power loss, stale handles) are
//! `ErrorKind::Other` with a message that says which.

use std::io;
use std::path::Path;

/// EIO: an I/O error on the medium.
const EIO: i32 = 5;
/// EBADF: the handle was not opened for this kind of access.
const EBADF: i32 = 9;
/// EFBIG: the file would exceed the simulator's size bound.
const EFBIG: i32 = 27;
/// ENOSPC: the simulated medium is full.
const ENOSPC: i32 = 28;

/// An injected I/O error.
pub(super) fn eio() -> io::Error {
    io::Error::from_raw_os_error(EIO)
}

/// The medium (or its capacity budget) is full.
pub(super) fn enospc() -> io::Error {
    io::Error::from_raw_os_error(ENOSPC)
}

/// The handle lacks the access the operation needs.
pub(super) fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(EBADF)
}

/// The file would grow past the simulator's per-file bound.
pub(super) fn efbig() -> io::Error {
    io::Error::from_raw_os_error(EFBIG)
}

/// The operation during which an armed power loss struck.
pub(super) fn power_lost(op: &str) -> io::Error {
    io::Error::other(format!(
        "SimFs: simulated power loss during {op}; the file system is down until restart()"
    ))
}

/// Any operation after an armed power loss and before `restart()`.
pub(super) fn down() -> io::Error {
    io::Error::other("SimFs: the file system is down after a simulated power loss")
}

/// A handle opened before the last crash.
pub(super) fn stale_handle(path: &Path) -> io::Error {
    io::Error::other(format!(
        "SimFs: handle from before the crash used ({})",
        path.display()
    ))
}

/// An error of `kind` about `path`.
pub(super) fn at(kind: io::ErrorKind, path: &Path, what: &str) -> io::Error {
    io::Error::new(kind, format!("SimFs: {}: {what}", path.display()))
}

/// `path` (or one of its parents) does not exist.
pub(super) fn not_found(path: &Path) -> io::Error {
    at(io::ErrorKind::NotFound, path, "no such file or directory")
}
