//! [`SimFs`]: the public face of the simulator: the [`FileSystem`] implementation, the
//! controls a test drives (crashes, faults, capacity), and the helpers it asserts with.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::crash::{CrashAt, CrashMode};
use super::errors;
use super::faults::Fault;
use super::file::SimFile;
use super::state::{Node, State, normalize};
use crate::fs::{DirLock, FileRef, FileSystem, OpenOptions};

/// Knobs of a [`SimFs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimOptions {
    /// Total bytes all live files (named, open or mapped) may hold; growth past it fails with
    /// ENOSPC. `None` (the default) is unbounded.
    pub capacity_bytes: Option<u64>,
}

/// A snapshot of a [`SimFs`]'s counters and contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Counted operations so far (see [`SimFs::op_count`]).
    pub ops_count: u64,
    /// Syncs so far (see [`SimFs::sync_count`]).
    pub syncs_count: u64,
    /// Crashes so far, manual and armed.
    pub crashes_count: u64,
    /// Injected faults that fired.
    pub faults_fired_count: u64,
    /// Live files (named, open or mapped).
    pub files_count: u64,
    /// Directories, the root included.
    pub dirs_count: u64,
    /// Bytes held by live files (what the capacity is compared with).
    pub used_size: u64,
    /// Files with changes since their last sync attempt.
    pub dirty_files_count: u64,
    /// Directory entry changes not yet made durable by `sync_dir`.
    pub unsynced_dir_ops_count: u64,
    /// Open file handles and live map views made since the last crash (a crash forgets
    /// the older ones, as a reboot closes every descriptor). Nonzero once their owner is
    /// gone means a leaked file descriptor or mapping.
    pub open_handles_count: u64,
    /// Directory locks held (see [`FileSystem::lock_dir`]).
    pub dir_locks_count: u64,
    /// Whether an armed crash struck and [`SimFs::restart`] has not been called.
    pub down: bool,
}

/// A deterministic simulated file system for tests: it models power loss and injects faults.
///
/// # Model
/// - Files are inodes with three versions of their bytes: the medium (survives a crash),
///   the medium plus every change since the last sync attempt, and the page cache reads
///   return. `sync_data` and `sync_all` (the same here) make the file's current bytes and
///   length durable. They do not make its name durable.
/// - Directory entry changes (create, rename, link, remove, create_dir) are volatile until
///   `sync_dir` of the directory they change; a crash keeps a random prefix of each
///   directory's unsynced changes. A rename across directories is a change in each.
/// - A crash ([`SimFs::crash`], [`SimFs::crash_with`]) keeps, per file, all, none, or any
///   subset of the unsynced 512-byte sectors, at one of the lengths the file had since it
///   was last synced (see [`CrashMode`]). Afterwards the file system holds exactly what
///   survived, and every handle, map and lock from before is dead: handles return an
///   `ErrorKind::Other` error, locks are released, and a map view panics when read (see
///   below). Callers reopen files through the same `SimFs`.
/// - A failed sync (an injected [`crate::FaultError::Eio`] or `Enospc`) is Linux's: each
///   unsynced sector reaches the medium or not, reads keep returning the cached bytes until
///   [`crate::File::evict_cache`], and the file counts as clean, so a later successful sync
///   covers only later writes and never brings the lost bytes back.
/// - The capacity ([`SimOptions::capacity_bytes`], [`SimFs::set_capacity`]) bounds the sum
///   of the lengths of live files. Files are never sparse: `set_len` and `allocate` that
///   grow a file take space at once, so writes within a file's length never fail with
///   ENOSPC. A write that would cross the capacity writes what fits and returns a short
///   count (ENOSPC if nothing fits).
///
/// # Crashing at an exact operation
/// [`SimFs::set_crash_after_ops`] and [`SimFs::set_crash_after_syncs`] arm a power loss that
/// strikes during a future operation: the operation makes its changes (volatile, like any
/// unsynced change; a sync is treated as not having run), the crash settles them, and the
/// operation fails. The file system is then down: every operation fails until
/// [`SimFs::restart`]. A manual crash is its own restart point: [`SimFs::crash`] loses power
/// and comes straight back up. Counted operations (those that change something or sync:
/// writes, set_len, allocate, syncs, sync_dir, creating or truncating opens,
/// create_dir_all, rename, hard_link, remove_file, remove_dir) are numbered by
/// [`SimFs::op_count`], so a test can run a workload once to count them and then crash at
/// each index in turn.
///
/// # Maps
/// A view shows the range as reads would, including writes, `set_len`s and cache evictions
/// made after it was taken, through any handle (like a `MAP_SHARED` mapping). There is no
/// real shared memory (no `unsafe` here): a view copies the range when it is read after
/// the file changed, and keeps every copy it handed out for as long as it lives, since a
/// caller may still hold an older slice. Memory therefore grows by one copy of the range
/// per distinct content the view was read at; fine for tests, and the reason to drop views
/// that are no longer needed. Those re-reads are not counted and never faulted; a
/// [`crate::FaultError::BitFlip`] on `map` itself flips a bit in the first copy only. If
/// the file is truncated into the range (callers must not do that under a live view), the
/// view returns what a read would: fewer bytes, or none. A view holds its file open, as a
/// mapping does on Linux (so it counts in [`SimStats::files_count`] and the used size
/// until it drops). Reading a view after a crash panics, since the contract forbids it and
/// `Mapping` cannot return errors.
///
/// # Determinism and other limits
/// Outcomes depend only on the seed and the order of operations; threads that race make
/// that order, and so the outcome, vary. Paths are lexical (no symlinks; a relative path is
/// taken from the root). `lock_dir` creates no `LOCK` file, unlike `RealFs`. Clones share
/// one simulated machine.
#[derive(Clone)]
pub struct SimFs {
    shared: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system (just the root directory) whose random outcomes follow `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_options(seed, SimOptions::default())
    }

    /// An empty file system with `options`.
    pub fn with_options(seed: u64, options: SimOptions) -> Self {
        Self {
            shared: Arc::new(Mutex::new(State::new(seed, options.capacity_bytes))),
        }
    }

    /// Power loss with [`CrashMode::Random`], then straight back up. See [`Self::crash_with`].
    pub fn crash(&self) {
        self.crash_with(CrashMode::Random);
    }

    /// Power loss with `mode`, then straight back up: unsynced changes settle as `mode`
    /// says, every handle, map and lock from before is dead, any armed crash is disarmed,
    /// and a file system that was down is up again.
    pub fn crash_with(&self, mode: CrashMode) {
        let mut state = self.shared.lock();
        state.power_loss(mode);
        state.down = false;
    }

    /// Arms a power loss during a future counted operation: `count` more counted operations
    /// complete, and the one after them (index `op_count() + count`) is struck. See the
    /// type docs for what that does; replaces any armed crash.
    pub fn set_crash_after_ops(&self, count: u64) {
        let mut state = self.shared.lock();
        state.crash_at = Some(CrashAt::Op(state.counters.ops + count));
    }

    /// Arms a power loss during a future sync (`sync_data`, `sync_all` or `sync_dir`):
    /// `count` more syncs complete and the one after them is struck. Replaces any armed
    /// crash.
    pub fn set_crash_after_syncs(&self, count: u64) {
        let mut state = self.shared.lock();
        state.crash_at = Some(CrashAt::Sync(state.counters.syncs + count));
    }

    /// The mode armed crashes use ([`CrashMode::Random`] unless set).
    pub fn set_armed_crash_mode(&self, mode: CrashMode) {
        self.shared.lock().armed_mode = mode;
    }

    /// Disarms any armed crash.
    pub fn disarm_crash(&self) {
        self.shared.lock().crash_at = None;
    }

    /// Whether an armed crash struck and [`Self::restart`] has not been called yet.
    pub fn is_down(&self) -> bool {
        self.shared.lock().down
    }

    /// Powers the file system back on after an armed crash struck (a no-op when it is up).
    /// The state is what survived; handles from before stay dead.
    pub fn restart(&self) {
        self.shared.lock().down = false;
    }

    /// How many counted operations have run (see the type docs), including failed ones and
    /// the one an armed crash struck. Never reset.
    pub fn op_count(&self) -> u64 {
        self.shared.lock().counters.ops
    }

    /// How many syncs (`sync_data`, `sync_all`, `sync_dir`) have run, failed ones included.
    /// Never reset.
    pub fn sync_count(&self) -> u64 {
        self.shared.lock().counters.syncs
    }

    /// Arms `fault`.
    ///
    /// # Panics
    /// If `fault.error` never happens to `fault.op` operations (see
    /// [`crate::FaultError::applies_to`]).
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.inject(fault);
    }

    /// Disarms every injected fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Sets the capacity (see [`SimOptions::capacity_bytes`]). Lowering it below what is
    /// used makes every later growth fail; nothing already written is taken away.
    pub fn set_capacity(&self, capacity_bytes: Option<u64>) {
        self.shared.lock().capacity = capacity_bytes;
    }

    /// The names in directory `dir` as reads see them, sorted. Like every helper below it
    /// is not counted, never faulted, and works while the file system is down.
    pub fn file_names(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.shared.lock();
        let norm = normalize(dir);
        let ino = state.lookup(&norm)?;
        Self::names(&state, ino, &norm.path, false)
    }

    /// The names in directory `dir` that are on the medium, sorted: what a crash that loses
    /// every unsynced directory change would leave.
    pub fn durable_file_names(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.shared.lock();
        let norm = normalize(dir);
        let ino = state.lookup_durable(&norm)?;
        Self::names(&state, ino, &norm.path, true)
    }

    fn names(state: &State, ino: u64, path: &Path, durable: bool) -> io::Result<Vec<String>> {
        if !state.is_dir(ino) {
            return Err(errors::at(io::ErrorKind::NotADirectory, path, "a file"));
        }
        let dir = state.dir(ino);
        let entries = if durable {
            dir.durable()
        } else {
            dir.entries()
        };
        Ok(entries
            .keys()
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    /// The bytes on the medium of the file `path` names now: what a crash that loses every
    /// unsynced change to it would leave (whether the name itself is durable is a separate
    /// question; see [`Self::durable_file_names`]).
    pub fn read_durable(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.shared.lock();
        let norm = normalize(path);
        let ino = state.lookup(&norm)?;
        if state.is_dir(ino) {
            return Err(errors::at(io::ErrorKind::IsADirectory, &norm.path, "a dir"));
        }
        Ok(state.file(ino).medium().to_vec())
    }

    /// The counters and a summary of the contents.
    pub fn stats(&self) -> SimStats {
        let state = self.shared.lock();
        let mut stats = SimStats {
            ops_count: state.counters.ops,
            syncs_count: state.counters.syncs,
            crashes_count: state.counters.crashes,
            faults_fired_count: state.counters.faults_fired,
            used_size: state.used_size(),
            dir_locks_count: state.locks.len() as u64,
            down: state.down,
            ..SimStats::default()
        };
        for inode in state.inodes.values() {
            stats.open_handles_count += u64::from(inode.opens);
            match &inode.node {
                Node::File(file) if inode.links > 0 || inode.opens > 0 => {
                    stats.files_count += 1;
                    stats.dirty_files_count += u64::from(file.is_dirty());
                }
                Node::File(_) => {}
                Node::Dir(dir) => {
                    stats.dirs_count += 1;
                    stats.unsynced_dir_ops_count += dir.unsynced_count() as u64;
                }
            }
        }
        stats
    }

    /// Panics if an internal invariant is broken: link counts, directory logs, and that every
    /// byte differing from the medium is in a sector a crash may choose. O(total size);
    /// simulations call it after each step.
    pub fn check_invariants(&self) {
        self.shared.lock().check_invariants();
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileRef> {
        let (ino, epoch) = {
            let mut state = self.shared.lock();
            let ino = state.open(path, options)?;
            (ino, state.epoch)
        };
        // Made after the lock is released: should it be dropped early, its `Drop` locks.
        let access = (options.read, options.write);
        let shared = Arc::clone(&self.shared);
        let file = SimFile::new(shared, ino, epoch, normalize(path).path, access);
        Ok(Arc::new(file))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.shared.lock().remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.lock().rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.lock().hard_link(from, to)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.shared.lock().read_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.lock().create_dir_all(dir)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.lock().remove_dir(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.shared.lock().exists(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.lock().sync_dir(dir)
    }

    /// Exclusive per normalized path within this `SimFs`; released when the guard drops or
    /// by a crash. A refused caller gets `WouldBlock` naming the holder's lock number.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let (norm, id) = self.shared.lock().lock_dir(dir)?;
        let guard = LockGuard {
            shared: Arc::clone(&self.shared),
            path: norm.path,
            id,
        };
        Ok(DirLock::new(Box::new(guard)))
    }
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `try_lock`, so that printing from inside a locked section cannot deadlock.
        let mut out = f.debug_struct("SimFs");
        match self.shared.try_lock() {
            Some(state) => out
                .field("epoch", &state.epoch)
                .field("down", &state.down)
                .field("counters", &state.counters)
                .finish(),
            None => out.finish_non_exhaustive(),
        }
    }
}

/// Holds one directory lock; dropping it releases the lock unless a crash already did (and
/// someone else may hold it now, hence the id check).
struct LockGuard {
    shared: Arc<Mutex<State>>,
    path: PathBuf,
    id: u64,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.locks.get(&self.path) == Some(&self.id) {
            state.locks.remove(&self.path);
        }
    }
}
