//! Segment files on disk: their names, spare files made ready ahead of need, turning a
//! spare into a segment, and recycling purged segments into spares.
//!
//! A segment is created by writing its header into a spare, syncing it, renaming the spare
//! to the segment's name and syncing the directory, all before any record goes into it. So
//! a crash mid-creation leaves either no segment or an empty one, never records in a file
//! the directory may forget. Spares are not part of the log: losing one loses nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use popdb_io::{FileRef, FileSystem, FsRef, OpenOptions};

use crate::error::{Error, Result};
use crate::format::{SEGMENT_HEADER_SIZE, SegmentHeader};

/// The file name of segment `id`: 16 lowercase hex digits and `.wal`.
pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:016x}.wal")
}

/// The segment id a file name stands for, if it is a segment's name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then(|| u64::from_str_radix(hex, 16).ok())
    .flatten()
}

/// The spare number a file name stands for, if it is a ready spare's name.
pub(crate) fn parse_spare_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("spare-")?.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

fn spare_name(number: u64) -> String {
    format!("spare-{number:016x}.wal")
}

/// Whether a file name is a spare still being prepared (deleted at open).
pub(crate) fn is_spare_temp_name(name: &str) -> bool {
    name.starts_with("spare-")
        && std::path::Path::new(name)
            .extension()
            .is_some_and(|e| e == "tmp")
}

const ZERO_CHUNK: usize = 1 << 20;

/// A spare is zero-filled when at least one in this many of the recent group-commit writes
/// was synced.
const PREWRITE_SYNCED_SHARE: u64 = 16;

/// Spare segment files, kept ready by a background thread and taken by the writer.
pub(crate) struct Spares {
    inner: Arc<SparesInner>,
    thread: Option<JoinHandle<()>>,
}

struct SparesInner {
    fs: FsRef,
    dir: PathBuf,
    segment_size: u64,
    prewrite: bool,
    target: usize,
    next_number: AtomicU64,
    /// Group-commit writes since the last spare was prepared, and how many of them were
    /// synced: a spare is zero-filled only for a log whose writes sync (see
    /// [`SparesInner::wants_prewrite`]).
    groups: AtomicU64,
    synced_groups: AtomicU64,
    /// Spares zero-filled so far.
    prewritten: AtomicU64,
    state: Mutex<SpareState>,
    changed: Condvar,
}

struct SpareState {
    ready: Vec<String>,
    shutdown: bool,
    /// Set when preparation failed (say, ENOSPC); cleared when a spare is taken or
    /// recycled, which is when trying again can help.
    stalled: bool,
}

impl Spares {
    /// Starts the pool with the spares found at open and a thread that keeps `target` ready.
    pub(crate) fn start(
        fs: FsRef,
        dir: &Path,
        segment_size: u64,
        prewrite: bool,
        target: usize,
        found: Vec<(u64, String)>,
    ) -> Self {
        let next = found.iter().map(|(n, _)| n + 1).max().unwrap_or(1);
        let inner = Arc::new(SparesInner {
            fs,
            dir: dir.to_path_buf(),
            segment_size,
            prewrite,
            target,
            next_number: AtomicU64::new(next),
            groups: AtomicU64::new(0),
            synced_groups: AtomicU64::new(0),
            prewritten: AtomicU64::new(0),
            state: Mutex::new(SpareState {
                ready: found.into_iter().map(|(_, name)| name).collect(),
                shutdown: false,
                stalled: false,
            }),
            changed: Condvar::new(),
        });
        let thread = (target > 0).then(|| {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("popdb-wal-spares".to_string())
                .spawn(move || {
                    // A panic here (a bug) must not take the writer down with it: the
                    // writer prepares its own spares once this thread is gone.
                    let _ = catch_unwind(AssertUnwindSafe(|| inner.run()));
                })
                .expect("spawn the spare-segment thread")
        });
        Self { inner, thread }
    }

    /// Counts one group-commit write, synced or not, for the choice of whether the next
    /// spare is zero-filled.
    pub(crate) fn note_group(&self, synced: bool) {
        self.inner.groups.fetch_add(1, Ordering::Relaxed);
        if synced {
            self.inner.synced_groups.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spares zero-filled so far.
    #[cfg(test)]
    fn prewritten(&self) -> u64 {
        self.inner.prewritten.load(Ordering::Relaxed)
    }

    /// Takes a ready spare, or prepares one now if none is ready.
    ///
    /// # Errors
    /// `NoSpace` if the disk cannot hold another segment; `Io` otherwise.
    pub(crate) fn take(&self) -> Result<String> {
        let taken = {
            let mut state = self.inner.state.lock();
            let taken = state.ready.pop();
            state.stalled = false;
            self.inner.changed.notify_all();
            taken
        };
        match taken {
            Some(name) => Ok(name),
            None => self.inner.prepare(),
        }
    }

    /// Turns a segment no longer needed into a spare, or deletes it if enough are ready.
    /// Its old records cannot be mistaken for new ones: checksums are seeded with the
    /// segment's identity, which the next header changes.
    pub(crate) fn recycle(&self, segment: &str, segment_size: u64) -> Result<()> {
        let inner = &self.inner;
        let path = inner.dir.join(segment);
        let keep = segment_size == inner.segment_size && {
            let state = inner.state.lock();
            state.ready.len() < inner.target
        };
        if keep {
            let name = spare_name(inner.next_number.fetch_add(1, Ordering::Relaxed));
            inner
                .fs
                .rename(&path, &inner.dir.join(&name))
                .map_err(|e| Error::io("recycle segment", e))?;
            let mut state = inner.state.lock();
            state.ready.push(name);
            state.stalled = false;
        } else {
            inner
                .fs
                .remove_file(&path)
                .map_err(|e| Error::io("remove segment", e))?;
            inner.state.lock().stalled = false;
        }
        inner.changed.notify_all();
        Ok(())
    }

    /// Stops the background thread.
    pub(crate) fn stop(&mut self) {
        self.inner.state.lock().shutdown = true;
        self.inner.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread catches its own panics: a spare it failed to make is one the writer
            // makes itself when it takes one.
            let _ = thread.join();
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.stop();
    }
}

impl SparesInner {
    fn run(&self) {
        loop {
            {
                let mut state = self.state.lock();
                while !state.shutdown && (state.stalled || state.ready.len() >= self.target) {
                    self.changed.wait(&mut state);
                }
                if state.shutdown {
                    return;
                }
            }
            match self.prepare() {
                Ok(name) => {
                    let mut state = self.state.lock();
                    state.ready.push(name);
                }
                Err(_) => self.state.lock().stalled = true,
            }
        }
    }

    /// Creates one spare: reserved, optionally zero-filled, synced, then given its name.
    fn prepare(&self) -> Result<String> {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!("spare-{number:016x}.tmp"));
        let result = self.prepare_at(&temp);
        if let Err(e) = result {
            // Best effort: a leftover temp file is deleted at the next open anyway.
            let _ = self.fs.remove_file(&temp);
            return Err(e);
        }
        let name = spare_name(number);
        self.fs
            .rename(&temp, &self.dir.join(&name))
            .map_err(|e| Error::io("name spare", e))?;
        Ok(name)
    }

    /// Whether the spare being prepared is zero-filled: if the log prewrites at all, and at
    /// least one in [`PREWRITE_SYNCED_SHARE`] of the group-commit writes since the last
    /// spare was prepared was synced (or none was made yet). A log whose writes do not
    /// sync (a no-sync bulk load) would pay the zeros' CPU and disk bandwidth for a cheaper
    /// first fdatasync it hardly calls; the few syncs it makes land in reserved space.
    fn wants_prewrite(&self) -> bool {
        let groups = self.groups.swap(0, Ordering::Relaxed);
        let synced = self.synced_groups.swap(0, Ordering::Relaxed);
        self.prewrite && (groups == 0 || synced.saturating_mul(PREWRITE_SYNCED_SHARE) >= groups)
    }

    fn prepare_at(&self, temp: &Path) -> Result<()> {
        let no_space = |e: std::io::Error| {
            if e.raw_os_error() == Some(28) {
                Error::NoSpace {
                    needed: self.segment_size,
                    source: Arc::new(e),
                }
            } else {
                Error::io("prepare spare segment", e)
            }
        };
        let file = self
            .fs
            .open(temp, OpenOptions::create_new())
            .map_err(no_space)?;
        file.allocate(self.segment_size).map_err(no_space)?;
        if self.wants_prewrite() {
            self.prewritten.fetch_add(1, Ordering::Relaxed);
            let zeros = vec![0u8; ZERO_CHUNK];
            let mut offset = 0u64;
            while offset < self.segment_size {
                let n = (self.segment_size - offset).min(ZERO_CHUNK as u64) as usize;
                file.write_all_at(&zeros[..n], offset).map_err(no_space)?;
                offset += n as u64;
                if self.state.lock().shutdown {
                    return Err(Error::Closed);
                }
            }
        }
        file.sync_data()
            .map_err(|e| Error::io("sync spare segment", e))
    }
}

/// Turns spare `spare` into segment `header.segment_id`: writes and syncs the header,
/// renames, syncs the directory. Returns the open segment file.
pub(crate) fn install_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    spare: &str,
    header: &SegmentHeader,
) -> Result<FileRef> {
    let spare_path = dir.join(spare);
    let file = fs
        .open(&spare_path, OpenOptions::read_write())
        .map_err(|e| Error::io("open spare", e))?;
    let mut block = vec![0u8; SEGMENT_HEADER_SIZE as usize];
    block[..crate::format::SEGMENT_HEADER_FIELDS].copy_from_slice(&header.encode());
    file.write_all_at(&block, 0)
        .map_err(|e| Error::io("write segment header", e))?;
    file.sync_data()
        .map_err(|e| Error::io("sync segment header", e))?;
    let name = segment_name(header.segment_id);
    fs.rename(&spare_path, &dir.join(name))
        .map_err(|e| Error::io("name segment", e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync log directory", e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        assert_eq!(parse_segment_name(&segment_name(0xabc)), Some(0xabc));
        assert_eq!(parse_segment_name("0000000000000ABC.wal"), None);
        assert_eq!(parse_segment_name("abc.wal"), None);
        assert_eq!(parse_spare_name(&spare_name(7)), Some(7));
        assert!(is_spare_temp_name("spare-0000000000000007.tmp"));
    }

    /// Spares are zero-filled for a log whose writes sync, and only reserved after a run of
    /// writes that did not.
    #[test]
    fn spares_are_zero_filled_only_after_synced_writes() {
        let fs: FsRef = Arc::new(popdb_io::SimFs::new(1));
        let dir = Path::new("/log");
        fs.create_dir_all(dir).expect("create the log directory");
        // No background thread (target 0): every take prepares its spare on the spot.
        let spares = Spares::start(Arc::clone(&fs), dir, 1 << 20, true, 0, Vec::new());
        spares.take().expect("take a spare");
        assert_eq!(
            spares.prewritten(),
            1,
            "with no writes yet, a spare is zero-filled"
        );

        for _ in 0..100 {
            spares.note_group(false);
        }
        spares.note_group(true);
        spares.take().expect("take a spare");
        assert_eq!(
            spares.prewritten(),
            1,
            "1 synced write in 101 is a no-sync load"
        );

        for i in 0..32 {
            spares.note_group(i % 8 == 0);
        }
        spares.take().expect("take a spare");
        assert_eq!(spares.prewritten(), 2, "1 synced write in 8 asks for zeros");

        let never = Spares::start(fs, dir, 1 << 20, false, 0, Vec::new());
        never.note_group(true);
        never.take().expect("take a spare");
        assert_eq!(
            never.prewritten(),
            0,
            "a log that does not prewrite never does"
        );
    }
}
