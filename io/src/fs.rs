//! The file-system trait: what PopDB asks of a disk, and nothing more.
//!
//! Paths and errors are std's (`&Path`, [`std::io::Error`]). Implementations are
//! [`crate::RealFs`] (production) and [`crate::SimFs`] (tests, with injected faults).
//!
//! Durability contract (what callers may rely on, and what the simulator enforces):
//! - Bytes written to a file are durable only after a successful [`File::sync_data`] or
//!   [`File::sync_all`] of that file. Until then a crash may keep them, lose them, or keep
//!   any subset of their 512-byte sectors.
//! - A created, renamed, linked or removed directory entry is durable only after
//!   [`FileSystem::sync_dir`] of its parent directory.
//! - A failed sync is never retried as if it could succeed: after it, the unsynced data may
//!   be gone from the medium while reads from the cache still return it (the Linux
//!   behaviour). [`File::evict_cache`] makes later reads come from the medium.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

/// A shared handle to a file system.
pub type FsRef = Arc<dyn FileSystem>;

/// A shared handle to an open file.
pub type FileRef = Arc<dyn File>;

/// How to open a file. Mirrors the subset of [`std::fs::OpenOptions`] that PopDB uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Fail with `AlreadyExists` if the file exists (implies `create`).
    pub create_new: bool,
    /// Truncate the file to zero length when opening.
    pub truncate: bool,
}

impl OpenOptions {
    /// Read-only access to an existing file.
    pub fn read_only() -> Self {
        Self {
            read: true,
            ..Self::default()
        }
    }

    /// Read and write access to an existing file.
    pub fn read_write() -> Self {
        Self {
            read: true,
            write: true,
            ..Self::default()
        }
    }

    /// Read and write access, creating the file if it does not exist.
    pub fn create() -> Self {
        Self {
            read: true,
            write: true,
            create: true,
            ..Self::default()
        }
    }

    /// Read and write access to a new file; fails if the file exists.
    pub fn create_new() -> Self {
        Self {
            read: true,
            write: true,
            create: true,
            create_new: true,
            truncate: false,
        }
    }
}

/// One positional write of a batch (see [`File::write_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct WriteOp<'a> {
    /// Byte offset in the file.
    pub offset: u64,
    /// The bytes to write there.
    pub bytes: &'a [u8],
}

/// A file system: files, directories, and the directory lock.
///
/// Implementations are thread-safe; a file may be shared by many threads.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens (or creates, per `options`) the file at `path`.
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileRef>;

    /// Removes a file. The removal is durable after [`FileSystem::sync_dir`] of the parent.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing `to` if it exists. Durable after
    /// [`FileSystem::sync_dir`] of both parents.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Creates a hard link `to` pointing at `from`'s file.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// The names (not paths) of the entries in directory `dir`, in no particular order.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;

    /// Creates `dir` and any missing parents. Durable after syncing each parent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Removes an empty directory.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;

    /// Whether `path` names an existing file or directory.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Makes the directory's entries (creates, renames, links, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes an exclusive lock on directory `dir` (one process per data directory). The
    /// lock is held until the returned guard drops.
    ///
    /// # Errors
    /// `WouldBlock` when another holder has it; the message names the holder (its pid)
    /// where the implementation can tell.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
}

/// An open file. All offsets are absolute; there is no shared cursor.
pub trait File: Send + Sync + fmt::Debug {
    /// The file's current length in bytes (as reads see it).
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes at `offset`; returns how many were written.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    /// Makes the file's data (and the size, where it changed) durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;

    /// Sets the file's length, truncating or extending with zeros.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Reserves space so that the file is at least `len` bytes long (`fallocate`), without
    /// changing existing bytes. Writes into reserved space cannot fail with ENOSPC on
    /// media that honour the reservation.
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Drops this file's clean cached pages so that later reads come from the medium.
    /// After a failed sync, this is how a reader stops trusting data that the cache still
    /// holds but the medium may have lost.
    ///
    /// Best effort on real files: the kernel keeps pages that are mapped, dirty, locked or
    /// under writeback. Callers evict before mapping, as the WAL's recovery does (it never
    /// maps); a process that saw a failed sync reopens its files in recovery anyway.
    fn evict_cache(&self) -> io::Result<()>;

    /// As [`File::evict_cache`], for the `len` bytes at `offset` only (implementations may
    /// drop more, up to the whole file, which is the default). A reader that trusts the
    /// cache for the rest, because everything it reaches there was synced successfully,
    /// evicts only what it must read from the medium.
    fn evict_cache_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        self.evict_cache()
    }

    /// A hint to start writing `len` bytes at `offset` back to the medium now, so that a
    /// later sync has less to wait for. It makes nothing durable and may do nothing; clean
    /// cached pages of the range may be dropped.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// A read-only view of `len` bytes at `offset`. The view shows the file's bytes as reads
    /// would, including writes made through this file system after the view was taken,
    /// and stays valid while any clone of it is held (even if the file is truncated, which
    /// callers must not do under a live view). After a simulated crash, views from before
    /// it show the bytes they last showed until the file system restarts (threads racing
    /// the crash may still read them), and must not be used after that.
    ///
    /// # Errors
    /// `InvalidInput` if the range is not inside the file.
    fn map(&self, offset: u64, len: usize) -> io::Result<Mapping>;

    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before offset {}", offset + buf.len() as u64),
                    ));
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`, continuing after short writes.
    ///
    /// # Errors
    /// `WriteZero` if the medium accepts no more bytes.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("wrote 0 bytes at offset {offset}"),
                    ));
                }
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes each op in order and then, if `sync` is set, syncs the data, as one
    /// submission where the implementation can (io_uring links the writes to the
    /// `fdatasync`). On error nothing is known about which writes reached the medium.
    fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> io::Result<()> {
        for op in writes {
            self.write_all_at(op.bytes, op.offset)?;
        }
        if sync { self.sync_data() } else { Ok(()) }
    }
}

/// The bytes behind a [`Mapping`].
pub trait MapView: Send + Sync + fmt::Debug {
    /// The mapped bytes.
    fn bytes(&self) -> &[u8];
}

/// A read-only view of a file range; cheap to clone, valid while held.
///
/// A map of a real file is read without a virtual call: readers dereference a mapping once
/// or twice per entry they step over (a B+tree cursor), where a call through
/// `dyn MapView` cost more than the bounds check beside it. Other implementations (the
/// simulated file system, which copies and may crash the view) go through [`MapView`].
#[derive(Clone, Debug)]
pub struct Mapping(Repr);

#[derive(Clone, Debug)]
enum Repr {
    /// A live `mmap` of a real file ([`crate::RealFs`]).
    Mmap(Arc<memmap2::Mmap>),
    /// An empty range, which needs no memory behind it.
    Empty,
    /// Any other implementation's view.
    View(Arc<dyn MapView>),
}

impl Mapping {
    /// Wraps an implementation's view.
    pub fn new(view: Arc<dyn MapView>) -> Self {
        Self(Repr::View(view))
    }

    /// A live map of a real file.
    pub(crate) fn mmap(map: memmap2::Mmap) -> Self {
        Self(Repr::Mmap(Arc::new(map)))
    }

    /// The view of an empty range.
    pub(crate) fn empty() -> Self {
        Self(Repr::Empty)
    }
}

impl Deref for Mapping {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Mmap(map) => map,
            Repr::Empty => &[],
            Repr::View(view) => view.bytes(),
        }
    }
}

/// An exclusive lock on a directory, released on drop.
pub struct DirLock {
    _guard: Box<dyn Send + Sync>,
}

impl DirLock {
    /// Wraps an implementation's guard; dropping the guard releases the lock.
    pub fn new(guard: Box<dyn Send + Sync>) -> Self {
        Self { _guard: guard }
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirLock")
    }
}

/// Creates `dir` and any missing ancestors, syncing the parent of each one created (parents
/// first), so that a crash cannot take away a directory whose files were made durable.
///
/// # Errors
/// The first failing `exists`, `create_dir_all` or `sync_dir`.
pub fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at.filter(|p| !p.as_os_str().is_empty()) {
        if fs.exists(path)? {
            break;
        }
        missing.push(path);
        at = path.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}
