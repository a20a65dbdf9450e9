//! [`SimFile`]: an open handle on a simulated file, and [`SimMapView`], the bytes behind a
//! simulated map.
//!
//! A handle names an inode, not a path, so it follows renames and outlives removal, as on
//! Linux. It belongs to the epoch it was opened in: after a crash every use fails, and
//! dropping it no longer touches the new epoch's open counts. A map view does the same: it
//! holds its inode open (as an `mmap` does) until it drops or a crash kills it. Between an
//! armed crash and the restart, a view from before still shows the bytes it last showed: the
//! dying process's memory, which its other threads may be reading when one thread's I/O
//! strikes the crash.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use elsa::sync::FrozenVec;
use parking_lot::{Mutex, MutexGuard};

use super::errors;
use super::faults::FaultError;
use super::state::{Gate, Ino, OpKind, State};
use crate::fs::{File, MapView, Mapping};

/// An open simulated file.
pub(super) struct SimFile {
    shared: Arc<Mutex<State>>,
    ino: Ino,
    /// The epoch this handle was opened in.
    epoch: u64,
    /// The (normalized) path it was opened by, for messages and fault matching.
    path: PathBuf,
    read: bool,
    write: bool,
}

/// What access an operation needs from the handle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    Any,
}

impl SimFile {
    pub(super) fn new(
        shared: Arc<Mutex<State>>,
        ino: Ino,
        epoch: u64,
        path: PathBuf,
        (read, write): (bool, bool),
    ) -> Self {
        Self {
            shared,
            ino,
            epoch,
            path,
            read,
            write,
        }
    }

    /// Locks the machine and passes the checks every handle operation shares: the handle is
    /// from this epoch, has the access needed, and the gate lets the operation through.
    fn enter(&self, kind: OpKind, access: Access) -> io::Result<(MutexGuard<'_, State>, Gate)> {
        let mut state = self.shared.lock();
        if state.down {
            return Err(errors::down());
        }
        if state.epoch != self.epoch {
            return Err(errors::stale_handle(&self.path));
        }
        let allowed = match access {
            Access::Read => self.read,
            Access::Write => self.write,
            Access::Any => true,
        };
        if !allowed {
            return Err(errors::ebadf());
        }
        let gate = state.gate(kind, &[&self.path])?;
        Ok((state, gate))
    }

    /// The sync both `sync_data` and `sync_all` are: the file's data and length.
    fn sync(&self) -> io::Result<()> {
        let (mut state, gate) = self.enter(OpKind::Sync, Access::Any)?;
        match gate {
            Gate::Run => {
                state.file_mut(self.ino).sync();
                Ok(())
            }
            Gate::Fault(error) => {
                state.fail_sync(self.ino);
                Err(error.to_error())
            }
            // Interrupted before it finished: the crash decides what reached the medium.
            Gate::Crash => Err(state.crash_now("sync")),
        }
    }

    /// `set_len` and `allocate`.
    fn resize(&self, len: u64, grow_only: bool) -> io::Result<()> {
        let (mut state, gate) = self.enter(OpKind::Allocate, Access::Write)?;
        match gate {
            Gate::Run => state.resize(self.ino, len, grow_only),
            Gate::Fault(error) => Err(error.to_error()),
            Gate::Crash => {
                // Made, then torn by the crash like any unsynced change; its own error (if
                // any) is moot next to the power loss.
                let _ = state.resize(self.ino, len, grow_only);
                Err(state.crash_now("set_len/allocate"))
            }
        }
    }
}

impl File for SimFile {
    fn len(&self) -> io::Result<u64> {
        let (state, _) = self.enter(OpKind::Inspect, Access::Any)?;
        Ok(state.file(self.ino).len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let (mut state, gate) = self.enter(OpKind::Read, Access::Read)?;
        match gate {
            Gate::Fault(FaultError::BitFlip) => {
                let count = state.file(self.ino).read(buf, offset);
                flip_bit(&mut state, &mut buf[..count]);
                Ok(count)
            }
            Gate::Fault(error) => Err(error.to_error()),
            Gate::Run | Gate::Crash => Ok(state.file(self.ino).read(buf, offset)),
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let (mut state, gate) = self.enter(OpKind::Write, Access::Write)?;
        match gate {
            Gate::Run => state.write(self.ino, buf, offset),
            Gate::Fault(FaultError::ShortWrite) => {
                // Nonempty but short, so a retry loop makes progress; a 1-byte write can
                // only be short by writing nothing.
                let count = if buf.len() >= 2 {
                    1 + state.rng.index(buf.len() - 1)
                } else {
                    0
                };
                state.write(self.ino, &buf[..count], offset)
            }
            Gate::Fault(error) => Err(error.to_error()),
            Gate::Crash => {
                // The write reached the cache; the crash decides which sectors of it the
                // medium got.
                let _ = state.write(self.ino, buf, offset);
                Err(state.crash_now("write"))
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.resize(len, false)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.resize(len, true)
    }

    fn evict_cache(&self) -> io::Result<()> {
        let (mut state, _) = self.enter(OpKind::Inspect, Access::Any)?;
        state.file_mut(self.ino).evict();
        Ok(())
    }

    /// A live view that copies on demand: see [`super::SimFs`] on maps.
    fn map(&self, offset: u64, len: usize) -> io::Result<Mapping> {
        let (mut state, gate) = self.enter(OpKind::Read, Access::Read)?;
        let file_len = state.file(self.ino).len();
        let in_file = offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= file_len);
        if !in_file {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "map of {len} bytes at offset {offset} is outside the file of {file_len} bytes"
                ),
            ));
        }
        let content = state.file(self.ino);
        let mut bytes = content.range(offset, len).to_vec();
        let seen = content.version();
        let version = Arc::clone(content.version_cell());
        match gate {
            Gate::Fault(FaultError::BitFlip) => flip_bit(&mut state, &mut bytes),
            Gate::Fault(error) => return Err(error.to_error()),
            Gate::Run | Gate::Crash => {}
        }
        // The view keeps the inode alive, as a mapping does on Linux, so that it can still
        // follow writes through other handles after every handle and name is gone.
        state.inode_mut(self.ino).opens += 1;
        let epoch_cell = Arc::clone(&state.epoch_cell);
        // Released before the view exists: should it be dropped early, its `Drop` locks.
        drop(state);
        let view = SimMapView {
            shared: Arc::clone(&self.shared),
            ino: self.ino,
            offset,
            len,
            epoch: self.epoch,
            epoch_cell,
            version,
            seen: AtomicU64::new(seen),
            copies: FrozenVec::new(),
        };
        view.copies.push(bytes.into_boxed_slice());
        Ok(Mapping::new(Arc::new(view)))
    }
}

/// Flips one random bit of `bytes` (none if it is empty).
fn flip_bit(state: &mut State, bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    let at = state.rng.index(bytes.len());
    let bit = state.rng.below(8);
    bytes[at] ^= 1 << bit;
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        // A handle from an older epoch was already forgotten by the crash.
        if state.epoch == self.epoch {
            state.inode_mut(self.ino).opens -= 1;
        }
    }
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("ino", &self.ino)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// The bytes behind a simulated map: the range as reads see it, copied again whenever the
/// file changed since the last copy this view handed out.
///
/// `bytes()` returns a borrow of `&self`, so a copy cannot be replaced while a caller may
/// still hold the old one; the copies go into an append-only store instead and live as
/// long as the view. A test-tool trade-off: memory grows by one copy of the range for each
/// distinct content of the range the view was read at (a read after a write that left the
/// range as it was adds nothing).
pub(super) struct SimMapView {
    shared: Arc<Mutex<State>>,
    ino: Ino,
    offset: u64,
    len: usize,
    /// The epoch the view was made in; it is dead in any later one.
    epoch: u64,
    epoch_cell: Arc<AtomicU64>,
    /// The file's version counter ([`super::content::FileContent::version`]).
    version: Arc<AtomicU64>,
    /// The file's version when the newest copy was taken.
    seen: AtomicU64,
    /// Every copy handed out, oldest first; never empty. Only the last is current.
    copies: FrozenVec<Box<[u8]>>,
}

impl SimMapView {
    /// The bytes of a view used after a crash, given the machine's state: while the machine
    /// is still down from the crash that struck the view's epoch, the newest copy, frozen
    /// (the process is dying, and its threads that race the crash read its memory as it
    /// was); after a restart or a later crash, a panic, since only a test that kept a dead
    /// process's view can get there.
    fn after_crash(&self, state: &State) -> &[u8] {
        if state.down && state.epoch == self.epoch + 1 {
            return self.latest();
        }
        panic!(
            "SimFs: a Mapping from before a simulated crash was used after the restart (epoch {} < {})",
            self.epoch, state.epoch
        );
    }

    /// The newest copy.
    fn latest(&self) -> &[u8] {
        let last = self.copies.len() - 1;
        self.copies
            .get(last)
            .expect("a view holds at least one copy")
    }

    /// Under the machine's lock: the range as reads see it now, copied if it differs from
    /// the newest copy. Not counted and never faulted: a mapping reads the page cache
    /// without a system call.
    fn refresh(&self) -> &[u8] {
        let state = self.shared.lock();
        // A crash may have struck since the lock-free check; it bumps the epoch under this
        // lock, so this check is exact.
        if state.epoch != self.epoch {
            return self.after_crash(&state);
        }
        let content = state.file(self.ino);
        let version = content.version();
        let latest = self.latest();
        if self.seen.load(Ordering::Acquire) == version {
            // Another thread refreshed while this one waited for the lock.
            return latest;
        }
        let current = content.range(self.offset, self.len);
        let bytes = if current == latest {
            latest
        } else {
            self.copies.push_get(current.into())
        };
        self.seen.store(version, Ordering::Release);
        bytes
    }
}

impl MapView for SimMapView {
    /// The range as a read would return it now, including writes made after the map was
    /// taken. If the file was truncated into the range (which callers must not do under a
    /// live view) the slice is what a read returns: shorter, or empty.
    ///
    /// After an armed crash and until the restart, the bytes the view last showed.
    ///
    /// # Panics
    /// If used after the restart that followed a crash since the view was made: the
    /// contract says such views must not be used, and `bytes` has no way to return an
    /// error, so misuse is loud.
    fn bytes(&self) -> &[u8] {
        if self.epoch_cell.load(Ordering::Acquire) != self.epoch {
            return self.after_crash(&self.shared.lock());
        }
        // Lock-free when nothing changed: the writer bumps `version` under the lock after
        // changing the bytes, and a refresh stores `seen` after pushing its copy.
        if self.version.load(Ordering::Acquire) == self.seen.load(Ordering::Acquire) {
            return self.latest();
        }
        self.refresh()
    }
}

impl Drop for SimMapView {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        // A view from an older epoch was already forgotten by the crash.
        if state.epoch == self.epoch {
            state.inode_mut(self.ino).opens -= 1;
        }
    }
}

impl fmt::Debug for SimMapView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimMapView")
            .field("ino", &self.ino)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("epoch", &self.epoch)
            .field("copies", &self.copies.len())
            .finish()
    }
}
