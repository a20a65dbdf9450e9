//! [`SimFile`]: an open handle on a simulated file, and [`SimMapView`], the bytes behind a
//! simulated map.
//!
//! A handle names an inode, not a path, so it follows renames and outlives removal, as on
//! Linux. It belongs to the epoch it was opened in: after a crash every use fails, and
//! dropping it no longer touches the new epoch's open counts.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// A snapshot: see [`super::SimFs`] on maps.
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
        let mut bytes = state.file(self.ino).snapshot(offset, len);
        match gate {
            Gate::Fault(FaultError::BitFlip) => flip_bit(&mut state, &mut bytes),
            Gate::Fault(error) => return Err(error.to_error()),
            Gate::Run | Gate::Crash => {}
        }
        let view = SimMapView {
            bytes,
            epoch: self.epoch,
            epoch_cell: Arc::clone(&state.epoch_cell),
        };
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

/// The bytes of a simulated map: a copy taken when the map was made.
pub(super) struct SimMapView {
    bytes: Vec<u8>,
    epoch: u64,
    epoch_cell: Arc<AtomicU64>,
}

impl MapView for SimMapView {
    /// # Panics
    /// If a crash happened since the view was made: the contract says such views must not
    /// be used, and `bytes` has no way to return an error, so misuse is loud.
    fn bytes(&self) -> &[u8] {
        let now = self.epoch_cell.load(Ordering::Acquire);
        assert_eq!(
            now, self.epoch,
            "SimFs: a Mapping from before a simulated crash was used (epoch {} < {now})",
            self.epoch
        );
        &self.bytes
    }
}

impl fmt::Debug for SimMapView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimMapView")
            .field("len", &self.bytes.len())
            .field("epoch", &self.epoch)
            .finish()
    }
}
