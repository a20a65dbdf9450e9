//! [`RealFs`]: directories, entries and the directory lock on the real file system, and the
//! per-file-system io_uring ring that every file it opens shares.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::file::RealFile;
use super::lock;
use super::uring::Uring;
use crate::fs::{DirLock, FileRef, FileSystem, OpenOptions};

/// The real file system.
///
/// [`crate::File::write_batch`] goes through one io_uring ring per `RealFs` when the kernel
/// allows it (detected on first use; see [`RealFs::io_uring_active`]) and through a `pwrite`
/// loop plus `fdatasync` otherwise. Both paths have the same contract.
#[derive(Debug)]
pub struct RealFs {
    /// Shared with every file this file system opens; batches on all of them take turns on
    /// the one ring.
    uring: Arc<Uring>,
}

impl RealFs {
    /// The real file system, using io_uring for batched writes where the kernel allows it.
    pub fn new() -> Self {
        Self {
            uring: Arc::new(Uring::new(true)),
        }
    }

    /// The real file system with io_uring turned off: batched writes always take the
    /// `pwrite` loop. Tests use it to run both paths on one machine.
    pub fn without_io_uring() -> Self {
        Self {
            uring: Arc::new(Uring::new(false)),
        }
    }

    /// Whether batched writes go through io_uring. The first call (or the first batch) tries
    /// to set the ring up; the answer can turn from `true` to `false` later if the ring fails
    /// in a way that leaves it unusable, never the other way.
    pub fn io_uring_active(&self) -> bool {
        self.uring.active()
    }

    /// Why batched writes do not go through io_uring, or `None` when they do.
    pub fn io_uring_unavailable_reason(&self) -> Option<String> {
        self.uring.unavailable_reason()
    }

    /// How many batches have completed through io_uring (successfully or with an I/O error)
    /// since this file system was made. Lets tests and metrics tell which path ran.
    pub fn io_uring_batch_count(&self) -> u64 {
        self.uring.batch_count()
    }
}

impl Default for RealFs {
    fn default() -> Self {
        Self::new()
    }
}

impl FileSystem for RealFs {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileRef> {
        let file = fs::OpenOptions::new()
            .read(options.read)
            .write(options.write)
            .create(options.create && !options.create_new)
            .create_new(options.create_new)
            .truncate(options.truncate)
            .open(path)?;
        Ok(Arc::new(RealFile::new(file, Arc::clone(&self.uring))))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        lock::lock_dir(dir)
    }
}
