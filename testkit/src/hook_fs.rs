//! A file system that reports file operations to a hook before doing them on the file
//! system it wraps, so a test can inject a fault (a panic, say) into one chosen operation
//! without writing its own forwarding wrapper.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use popdb_io::{DirLock, File, FileRef, FileSystem, FsRef, Mapping, OpenOptions, WriteOp};

/// The operations a [`HookFs`] reports to its hook; the rest pass straight through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsOp {
    /// [`FileSystem::open`], before the file is opened.
    Open,
    /// [`File::write_at`].
    WriteAt,
    /// [`File::write_batch`].
    WriteBatch,
    /// [`File::sync_data`].
    SyncData,
    /// [`File::sync_all`].
    SyncAll,
}

type Hook = Arc<dyn Fn(&Path, FsOp) + Send + Sync>;

/// Wraps a file system; calls its hook with the path and the operation before each
/// [`FsOp`], on the thread doing it.
pub struct HookFs {
    inner: FsRef,
    hook: Hook,
}

impl HookFs {
    /// `inner`, reporting to `hook`.
    pub fn new(inner: FsRef, hook: impl Fn(&Path, FsOp) + Send + Sync + 'static) -> Self {
        Self {
            inner,
            hook: Arc::new(hook),
        }
    }
}

impl fmt::Debug for HookFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookFs")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

struct HookFile {
    file: FileRef,
    path: PathBuf,
    hook: Hook,
}

impl fmt::Debug for HookFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HookFile {
    fn report(&self, op: FsOp) {
        (self.hook)(&self.path, op);
    }
}

impl FileSystem for HookFs {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileRef> {
        (self.hook)(path, FsOp::Open);
        let file = self.inner.open(path, options)?;
        Ok(Arc::new(HookFile {
            file,
            path: path.to_path_buf(),
            hook: Arc::clone(&self.hook),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.hard_link(from, to)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.inner.read_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        self.inner.lock_dir(dir)
    }
}

impl File for HookFile {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.report(FsOp::WriteAt);
        self.file.write_at(buf, offset)
    }
    fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> io::Result<()> {
        self.report(FsOp::WriteBatch);
        self.file.write_batch(writes, sync)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.report(FsOp::SyncData);
        self.file.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.report(FsOp::SyncAll);
        self.file.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.file.allocate(len)
    }
    fn evict_cache(&self) -> io::Result<()> {
        self.file.evict_cache()
    }
    fn evict_cache_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.file.evict_cache_range(offset, len)
    }
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        self.file.start_writeback(offset, len)
    }
    fn map(&self, offset: u64, len: usize) -> io::Result<Mapping> {
        self.file.map(offset, len)
    }
}
