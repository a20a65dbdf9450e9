//! One file's bytes in three versions: what the medium holds (survives power loss), what the
//! medium would hold if every unsynced change landed, and, after a failed sync, the stale page
//! cache that reads still return. Plus the record of what changed since the last sync attempt,
//! at 512-byte sector granularity, which is what a crash or a failed sync chooses from.
//!
//! Invariant (checked by [`FileContent::check_invariants`]): every byte where `staged` and
//! `medium` differ (a missing byte counts as zero) lies in a dirty sector, and whenever the
//! two lengths differ, the length history is not empty. So a crash that keeps every dirty
//! sector and the last length reproduces `staged` exactly, and one that keeps none leaves
//! `medium` as it was.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::crash::CrashMode;
use super::rng::Rng;

/// The unit a power loss keeps or loses whole: a disk sector.
pub(super) const SECTOR_SIZE: u64 = 512;

/// A file's content.
#[derive(Default)]
pub(super) struct FileContent {
    /// What the medium holds: the bytes a crash cannot take away.
    medium: Vec<u8>,
    /// `medium` with every change since the last sync attempt applied.
    staged: Vec<u8>,
    /// After a failed sync, the page cache that still shows the data the medium may have
    /// lost; reads come from here until evicted. `None` means reads come from `staged`.
    stale_cache: Option<Vec<u8>>,
    /// Sector ranges `[start, end)` changed since the last sync attempt; unsorted and
    /// possibly overlapping (merged when settled), so a write is O(1) to record.
    dirty: Vec<(u64, u64)>,
    /// Lengths `staged` took since the last sync attempt, in order. A crash keeps the file
    /// at one of these or at `medium`'s length: size changes may or may not survive.
    lens: Vec<u64>,
    /// Bumped (under the machine's lock) by every change that may alter what reads see, so
    /// a map view can tell without the lock whether its latest copy is still current.
    version: Arc<AtomicU64>,
}

/// How one file fares in a crash or failed sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Keep,
    Lose,
    Sectors,
}

impl FileContent {
    /// The length reads see.
    pub(super) fn len(&self) -> u64 {
        self.view().len() as u64
    }

    /// The bytes reads see.
    fn view(&self) -> &[u8] {
        self.stale_cache.as_deref().unwrap_or(&self.staged)
    }

    /// The bytes that would survive a crash right now if it lost every unsynced change.
    pub(super) fn medium(&self) -> &[u8] {
        &self.medium
    }

    /// Whether anything changed since the last sync attempt.
    pub(super) fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.lens.is_empty()
    }

    /// Copies bytes at `offset` into `buf`; returns how many (0 at or past the end).
    pub(super) fn read(&self, buf: &mut [u8], offset: u64) -> usize {
        let view = self.view();
        let Ok(start) = usize::try_from(offset) else {
            return 0;
        };
        if start >= view.len() {
            return 0;
        }
        let count = buf.len().min(view.len() - start);
        buf[..count].copy_from_slice(&view[start..start + count]);
        count
    }

    /// The bytes reads see in `len` bytes at `offset`: shorter than `len` (possibly empty)
    /// where the file ends first.
    pub(super) fn range(&self, offset: u64, len: usize) -> &[u8] {
        let view = self.view();
        let start = usize::try_from(offset).map_or(view.len(), |at| at.min(view.len()));
        let end = start + len.min(view.len() - start);
        &view[start..end]
    }

    /// The counter every change to what reads see bumps (see [`Self::version`]).
    pub(super) fn version_cell(&self) -> &Arc<AtomicU64> {
        &self.version
    }

    /// The current value of the version counter.
    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Records that what reads see may have changed.
    fn touch(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes all of `buf` at `offset`, extending the file (with zeros in any hole) as
    /// needed. The caller has checked size bounds and capacity.
    pub(super) fn write(&mut self, buf: &[u8], offset: u64) {
        if buf.is_empty() {
            // pwrite of zero bytes changes nothing, not even the length.
            return;
        }
        self.touch();
        let start = offset as usize;
        let end = start + buf.len();
        let old_len = self.staged.len();
        for target in self.versions_mut() {
            if target.len() < end {
                target.resize(end, 0);
            }
            target[start..end].copy_from_slice(buf);
        }
        self.mark(offset, end as u64);
        if self.staged.len() != old_len {
            self.lens.push(self.staged.len() as u64);
        }
    }

    /// Truncates or extends (with zeros) to `len`.
    pub(super) fn set_len(&mut self, len: u64) {
        self.touch();
        let old_len = self.staged.len() as u64;
        for target in self.versions_mut() {
            target.resize(len as usize, 0);
        }
        // Bytes past the medium's end read as zero on both sides, so only the part of the
        // changed range that overlaps the medium can differ from it.
        let medium_len = self.medium.len() as u64;
        self.mark(old_len.min(len), old_len.max(len).min(medium_len));
        if len != old_len {
            self.lens.push(len);
        }
    }

    /// A successful sync: every change since the last sync attempt is now on the medium.
    /// A stale cache stays: it is what the kernel still shows until it is evicted.
    pub(super) fn sync(&mut self) {
        self.keep_all();
        self.dirty.clear();
        self.lens.clear();
    }

    /// A failed sync, as Linux does it: each change since the last sync attempt reached the
    /// medium or not (chosen by `rng`), reads keep returning the cached bytes, and the file
    /// counts as clean, so no later sync will write the lost changes again.
    pub(super) fn fail_sync(&mut self, rng: &mut Rng) {
        if !self.is_dirty() {
            return;
        }
        let view = match self.stale_cache.take() {
            Some(stale) => stale,
            None => self.staged.clone(),
        };
        self.settle(rng, CrashMode::Random);
        self.stale_cache = Some(view);
    }

    /// Power loss: the medium keeps what `mode` (and `rng`) choose of the unsynced changes,
    /// and the cache is gone.
    pub(super) fn power_loss(&mut self, rng: &mut Rng, mode: CrashMode) {
        self.touch();
        self.settle(rng, mode);
        self.stale_cache = None;
    }

    /// Drops the stale cache so that reads show the medium plus the changes made since the
    /// last sync attempt (dirty pages cannot be dropped; clean ones can).
    pub(super) fn evict(&mut self) {
        if self.stale_cache.take().is_some() {
            self.touch();
        }
    }

    /// Applies an outcome to the medium and starts a new sync epoch from it.
    fn settle(&mut self, rng: &mut Rng, mode: CrashMode) {
        if !self.is_dirty() {
            return;
        }
        let outcome = match mode {
            CrashMode::KeepAll => Outcome::Keep,
            CrashMode::LoseAllUnsynced => Outcome::Lose,
            // A third each, so that tests over a handful of seeds see all three; a pure
            // per-sector coin would almost never keep or lose a long write whole.
            CrashMode::Random => match rng.below(3) {
                0 => Outcome::Keep,
                1 => Outcome::Lose,
                _ => Outcome::Sectors,
            },
        };
        match outcome {
            Outcome::Keep => self.keep_all(),
            Outcome::Lose => {}
            Outcome::Sectors => self.settle_sectors(rng),
        }
        // `staged` becomes the medium again. By the module invariant only dirty sectors can
        // differ, so copying those back is enough.
        self.staged.resize(self.medium.len(), 0);
        for &(start, end) in &merged(&mut self.dirty) {
            for sector in start..end {
                copy_sector(&mut self.staged, &self.medium, sector);
            }
        }
        self.dirty.clear();
        self.lens.clear();
    }

    /// The medium takes every change: `staged`'s length and its dirty sectors. Costs the
    /// changed sectors, not the file size, so syncing a large file after each small append
    /// stays cheap.
    fn keep_all(&mut self) {
        self.medium.resize(self.staged.len(), 0);
        for &(start, end) in &merged(&mut self.dirty) {
            for sector in start..end {
                copy_sector(&mut self.medium, &self.staged, sector);
            }
        }
    }

    /// The medium keeps one of the lengths the file had and an independent coin's worth of
    /// each dirty sector: any subset, not just a prefix.
    fn settle_sectors(&mut self, rng: &mut Rng) {
        let choices = self.lens.len() + 1;
        let pick = rng.index(choices);
        let len = if pick == 0 {
            self.medium.len()
        } else {
            self.lens[pick - 1] as usize
        };
        let mut next = std::mem::take(&mut self.medium);
        next.resize(len, 0);
        for (start, end) in merged(&mut self.dirty) {
            for sector in start..end {
                if rng.coin() {
                    copy_sector(&mut next, &self.staged, sector);
                }
            }
        }
        self.medium = next;
    }

    /// `staged` and, when present, the stale cache: every version a write must reach.
    fn versions_mut(&mut self) -> impl Iterator<Item = &mut Vec<u8>> {
        std::iter::once(&mut self.staged).chain(self.stale_cache.as_mut())
    }

    /// Marks the sectors touching bytes `[start, end)` dirty.
    fn mark(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (first, past) = (start / SECTOR_SIZE, end.div_ceil(SECTOR_SIZE));
        // Sequential appends and rewrites of the tail sector extend the last range instead
        // of adding one, so the list stays short between syncs.
        match self.dirty.last_mut() {
            Some(last) if first <= last.1 && last.0 <= past => {
                *last = (last.0.min(first), last.1.max(past));
            }
            _ => self.dirty.push((first, past)),
        }
    }

    /// Panics if the invariant in the module docs is broken. O(file size).
    pub(super) fn check_invariants(&mut self) {
        let dirty = merged(&mut self.dirty);
        let is_dirty = |at: usize| {
            let sector = at as u64 / SECTOR_SIZE;
            dirty.iter().any(|&(s, e)| s <= sector && sector < e)
        };
        let longest = self.staged.len().max(self.medium.len());
        for at in 0..longest {
            let staged = self.staged.get(at).copied().unwrap_or(0);
            let medium = self.medium.get(at).copied().unwrap_or(0);
            assert!(
                staged == medium || is_dirty(at),
                "byte {at} differs from the medium ({staged} != {medium}) in a clean sector"
            );
        }
        assert!(
            self.staged.len() == self.medium.len() || !self.lens.is_empty(),
            "length changed ({} -> {}) without a length record",
            self.medium.len(),
            self.staged.len()
        );
        assert_eq!(
            self.lens
                .last()
                .copied()
                .unwrap_or(self.medium.len() as u64),
            self.staged.len() as u64,
            "the last recorded length is not the staged length"
        );
    }
}

/// Copies one sector from `source` into `target`, within `target`'s length; bytes of the
/// sector past `source`'s end become zero (that is what the changed file held there).
fn copy_sector(target: &mut [u8], source: &[u8], sector: u64) {
    let start = (sector * SECTOR_SIZE) as usize;
    let end = (start + SECTOR_SIZE as usize).min(target.len());
    if start >= end {
        return;
    }
    let copied_end = end.min(source.len()).max(start);
    target[start..copied_end].copy_from_slice(&source[start..copied_end]);
    target[copied_end..end].fill(0);
}

/// Sorts and merges `ranges` in place (so later merges are cheap) and returns a copy.
fn merged(ranges: &mut Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(start, end) in ranges.iter() {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    ranges.clone_from(&out);
    out
}

impl fmt::Debug for FileContent {
    // The bytes themselves would drown any test failure message; sizes say enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileContent")
            .field("medium_len", &self.medium.len())
            .field("staged_len", &self.staged.len())
            .field("stale_cache_len", &self.stale_cache.as_ref().map(Vec::len))
            .field("dirty_ranges", &self.dirty.len())
            .field("version", &self.version())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_with(bytes: &[u8]) -> FileContent {
        let mut c = FileContent::default();
        c.write(bytes, 0);
        c.sync();
        c
    }

    #[test]
    fn content_sync_makes_staged_durable() {
        let mut c = content_with(b"hello");
        assert_eq!(c.medium(), b"hello");
        assert!(!c.is_dirty());
        c.check_invariants();
    }

    #[test]
    fn content_shrink_then_grow_marks_the_zeroed_bytes_dirty() {
        let mut c = content_with(&[7; 2000]);
        c.set_len(10);
        c.set_len(1500);
        c.check_invariants();
        let mut rng = Rng::new(3);
        c.power_loss(&mut rng, CrashMode::KeepAll);
        assert_eq!(c.medium().len(), 1500);
        assert!(c.medium()[10..].iter().all(|&b| b == 0));
        c.check_invariants();
    }

    #[test]
    fn content_hole_past_medium_reads_zero_after_partial_crash() {
        for seed in 0..50 {
            let mut c = content_with(&[1; 100]);
            c.write(&[2; 10], 3000);
            c.check_invariants();
            c.power_loss(&mut Rng::new(seed), CrashMode::Random);
            let medium = c.medium();
            assert!(
                medium.len() == 100 || medium.len() == 3010,
                "len {}",
                medium.len()
            );
            assert!(medium[..100].iter().all(|&b| b == 1));
            assert!(medium[100..medium.len().min(3000)].iter().all(|&b| b == 0));
            c.check_invariants();
        }
    }

    #[test]
    fn content_failed_sync_keeps_cache_until_evicted() {
        let mut c = content_with(&[0; 1024]);
        c.write(&[9; 1024], 0);
        c.fail_sync(&mut Rng::new(0));
        let mut buf = [0u8; 1024];
        assert_eq!(c.read(&mut buf, 0), 1024);
        assert_eq!(buf, [9; 1024], "cache still shows the unsynced data");
        assert!(!c.is_dirty(), "a failed sync leaves the file clean");
        c.evict();
        c.read(&mut buf, 0);
        assert_eq!(&buf[..], c.medium());
        c.check_invariants();
    }

    #[test]
    fn content_merged_joins_overlaps_and_neighbours() {
        let mut r = vec![(5, 7), (0, 2), (1, 3), (3, 4), (9, 10)];
        assert_eq!(merged(&mut r), vec![(0, 4), (5, 7), (9, 10)]);
    }
}
