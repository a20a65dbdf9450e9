//! Leveled compaction: picks the level most over its target (L0 by file count, deeper levels
//! by bytes), merges the chosen files with the overlapping files of the next level, and
//! replaces them with new files there. Runs under the compaction lock, one at a time, beside
//! flushes; its edit is logged and installed under the manifest lock.
//!
//! Once the tree is quiet (every write applied is in an SST: its memtables are empty, as a
//! checkpoint leaves them) and nothing else is due, L0 is also compacted if it holds more
//! than a `level_size_ratio`-th of the last level's bytes: below its file trigger L0 can hold
//! most of a second copy of a small tree (after the tree is rewritten whole), which costs
//! disk space and a probe per file on every read. While writes flow that is left to the file
//! trigger, so writes do not pay for it.
//!
//! What a compaction keeps, per user key, given the watermark `w` (the horizon): every
//! version above `w`; the newest version at or below `w`; nothing older. That newest version
//! is dropped too when it is a tombstone and no deeper level may hold the key. So a read at
//! any LSN from `w` up finds what it found before; read views older than `w` keep the input
//! files, which are deleted only when the last view holding them goes. Versions keep their
//! LSNs: a compaction never rewrites a sequence number.
//!
//! Durability: outputs are written and synced, the directory synced, then one edit logs the
//! outputs and the removal of the inputs. A crash before the edit is durable leaves orphan
//! outputs (deleted at open) and the inputs in place.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cursor::Cursor;
use crate::error::Result;
use crate::install::Change;
use crate::internal_key::KIND_DELETE;
use crate::merge::{Direction, Merge};
use crate::options::{LEVELS_COUNT, TreeOptions};
use crate::output::Output;
use crate::read_view::TreeState;
use crate::stats::Counters;
use crate::tree::{CompactionState, Shared};
use crate::version::{SstHandle, Version};

/// A chosen compaction: files of `level` and the overlapping files of `level + 1`.
#[derive(Debug)]
pub(crate) struct Pick {
    pub(crate) level: usize,
    pub(crate) inputs: Vec<Arc<SstHandle>>,
    pub(crate) next_inputs: Vec<Arc<SstHandle>>,
}

impl Shared {
    /// The compaction the level structure most needs, if any level is over its target.
    /// `cursors` are the levels' compaction cursors (`None`: start each level at its first
    /// file, as a probe outside maintenance does).
    pub(crate) fn pick_compaction(
        &self,
        version: &Version,
        cursors: Option<&[Vec<u8>; LEVELS_COUNT]>,
    ) -> Option<Pick> {
        let options = &self.options;
        let mut best: Option<(f64, usize)> = None;
        let l0_score = version.levels[0].len() as f64 / options.l0_compaction_trigger as f64;
        if l0_score >= 1.0 {
            best = Some((l0_score, 0));
        }
        let sizes: [u64; LEVELS_COUNT] = std::array::from_fn(|l| version.level_bytes(l));
        let targets = level_targets(options, &sizes);
        let deeper = sizes.iter().zip(&targets).enumerate();
        for (level, (size, target)) in deeper.skip(1).take(LEVELS_COUNT - 2) {
            let score = *size as f64 / *target as f64;
            if score >= 1.0 && best.is_none_or(|(b, _)| score > b) {
                best = Some((score, level));
            }
        }
        let (_, level) = best?;
        Some(pick_level(version, level, cursors))
    }

    /// The compaction a quiet tree does for space: all of L0 into L1, when L0 holds more than
    /// a `level_size_ratio`-th of the last level's bytes (the share the dynamic targets give
    /// the levels above the last; see [`level_targets`]).
    pub(crate) fn pick_space_compaction(&self, version: &Version) -> Option<Pick> {
        let l0 = version.level_bytes(0);
        let last = (1..LEVELS_COUNT)
            .rev()
            .map(|l| version.level_bytes(l))
            .find(|&bytes| bytes > 0)?;
        (l0 > last / self.options.level_size_ratio).then(|| pick_level(version, 0, None))
    }

    /// Runs `pick`: a trivial move when one file of L1+ overlaps nothing below, else a merge.
    pub(crate) fn compact(&self, compaction: &mut CompactionState, pick: &Pick) -> Result<()> {
        let state = self.current();
        let next_level = pick.level + 1;
        let (added, moved) = if pick.level > 0 && pick.next_inputs.is_empty() {
            (self.reopen_at_level(&pick.inputs[0], next_level)?, true)
        } else {
            (self.merge_inputs(&state, pick)?, false)
        };
        let removed: Vec<(u8, u64)> = pick
            .inputs
            .iter()
            .chain(&pick.next_inputs)
            .map(|f| (f.meta.level, f.meta.id))
            .collect();
        self.count_compaction(pick, &added, moved);
        self.install(Change {
            added,
            removed,
            watermark: None,
            flushed: &[],
            new_files: !moved,
        })?;
        if !moved {
            for file in pick.inputs.iter().chain(&pick.next_inputs) {
                file.mark_obsolete();
            }
        }
        let (_, high) = user_range(&pick.inputs);
        compaction.compact_cursor[pick.level] = high.to_vec();
        Ok(())
    }

    fn count_compaction(&self, pick: &Pick, added: &[Arc<SstHandle>], moved: bool) {
        let c = &self.counters;
        Counters::add(&c.compactions, 1);
        if moved {
            Counters::add(&c.trivial_moves, 1);
            return;
        }
        let read: u64 = pick
            .inputs
            .iter()
            .chain(&pick.next_inputs)
            .map(|f| f.meta.size)
            .sum();
        let written: u64 = added.iter().map(|f| f.meta.size).sum();
        Counters::add(&c.bytes_compacted_read, read);
        Counters::add(&c.bytes_compacted_written, written);
    }

    /// The same file, described at `level`. The old handle is not marked obsolete: the file
    /// stays.
    fn reopen_at_level(&self, file: &SstHandle, level: usize) -> Result<Vec<Arc<SstHandle>>> {
        let mut meta = file.meta.clone();
        meta.level = level as u8;
        let handle = SstHandle::open(&self.fs, &self.dir, meta, &self.options.block_cache)?;
        Ok(vec![Arc::new(handle)])
    }

    /// Merges the inputs into new files of the next level, cut at user-key boundaries once a
    /// file reaches the target size.
    fn merge_inputs(&self, state: &TreeState, pick: &Pick) -> Result<Vec<Arc<SstHandle>>> {
        let output_level = pick.level + 1;
        let horizon = self.watermark.load(Ordering::Acquire);
        let mut cursors: Vec<Cursor<'_>> = Vec::new();
        if pick.level == 0 {
            cursors.extend(pick.inputs.iter().rev().map(|f| Cursor::sst(f)));
        } else {
            cursors.push(Cursor::level(&pick.inputs));
        }
        cursors.push(Cursor::level(&pick.next_inputs));
        let mut merge = Merge::new(cursors, Direction::Forward, None)?;
        let mut outputs = Vec::new();
        let mut output: Option<Output> = None;
        let mut user: Vec<u8> = Vec::new();
        let mut last_lsn = None;
        let mut kept_base = false;
        while merge.valid() {
            let key = merge.key();
            let (this_user, lsn, kind) = split(key);
            if this_user != user.as_slice() || last_lsn.is_none() {
                user.clear();
                user.extend_from_slice(this_user);
                last_lsn = None;
                kept_base = false;
                if let Some(out) =
                    output.take_if(|o| o.bytes_added() >= self.options.target_file_size)
                {
                    outputs.extend(out.finish(self)?);
                }
            }
            let duplicate = last_lsn == Some(lsn);
            last_lsn = Some(lsn);
            let keep = if duplicate {
                false
            } else if lsn > horizon {
                true
            } else if kept_base {
                false
            } else {
                kept_base = true;
                kind != KIND_DELETE || deeper_may_hold(&state.version, output_level, this_user)
            };
            if keep {
                if output.is_none() {
                    let id = self.next_file_id.fetch_add(1, Ordering::AcqRel);
                    output = Some(Output::create(self, id, output_level as u8)?);
                }
                let out = output.as_mut().expect("created above");
                out.add(key, merge.value())?;
            }
            merge.advance()?;
        }
        if let Some(out) = output {
            outputs.extend(out.finish(self)?);
        }
        Ok(outputs)
    }
}

/// The byte target of every level of `version` (index 0 unused). The deepest non-empty
/// level, `last`, keeps its static target ([`TreeOptions::level_target`]): past it, data moves
/// into a new, deeper level. A level above it targets `ratio` times less than the level
/// below holds, counted from `last`'s actual size, within `[target_file_size, static
/// target]`: so the levels above the last hold about a tenth of the data between them, and
/// old versions shadowed there are rewritten away soon, which keeps space amplification near
/// 1.1 whatever the tree's size (the idea of RocksDB's dynamic level sizing, with L1 fixed as
/// the level L0 compacts into).
fn level_targets(options: &TreeOptions, sizes: &[u64; LEVELS_COUNT]) -> [u64; LEVELS_COUNT] {
    let mut targets = [0; LEVELS_COUNT];
    for (level, target) in targets.iter_mut().enumerate().skip(1) {
        *target = options.level_target(level);
    }
    let Some(last) = (1..LEVELS_COUNT).rev().find(|&l| sizes[l] > 0) else {
        return targets;
    };
    let mut below = sizes[last];
    for level in (1..last).rev() {
        below /= options.level_size_ratio;
        let ceiling = options.level_target(level);
        targets[level] = below.max(options.target_file_size).min(ceiling);
    }
    targets
}

/// Compacts `level`: all of L0, or the file of a deeper level after its cursor; with the
/// overlapping files of the next level.
fn pick_level(version: &Version, level: usize, cursors: Option<&[Vec<u8>; LEVELS_COUNT]>) -> Pick {
    let inputs = if level == 0 {
        version.levels[0].clone()
    } else {
        let cursor = cursors
            .map(|c| c[level].as_slice())
            .filter(|c| !c.is_empty());
        vec![next_file_of(version, level, cursor)]
    };
    let (low, high) = user_range(&inputs);
    let next_inputs = version.levels[level + 1]
        .iter()
        .filter(|f| f.largest_user_key() >= low && f.smallest_user_key() <= high)
        .cloned()
        .collect();
    Pick {
        level,
        inputs,
        next_inputs,
    }
}

/// The file of `level` after `cursor` (a user key), wrapping around.
fn next_file_of(version: &Version, level: usize, cursor: Option<&[u8]>) -> Arc<SstHandle> {
    let files = &version.levels[level];
    files
        .iter()
        .find(|f| cursor.is_none_or(|c| f.smallest_user_key() > c))
        .unwrap_or(&files[0])
        .clone()
}

/// The user key, LSN and kind tag of an encoded internal key.
fn split(key: &[u8]) -> (&[u8], u64, u8) {
    let at = key.len().saturating_sub(8);
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&key[at..]);
    let t = u64::from_le_bytes(raw);
    (&key[..at], t >> 8, t as u8)
}

/// Whether a level below `level` has a file whose range includes `user_key`.
fn deeper_may_hold(version: &Version, level: usize, user_key: &[u8]) -> bool {
    (level + 1..LEVELS_COUNT).any(|l| version.file_for(l, user_key).is_some())
}

/// The smallest and largest user key of `files`.
fn user_range(files: &[Arc<SstHandle>]) -> (&[u8], &[u8]) {
    let low = files
        .iter()
        .map(|f| f.smallest_user_key())
        .min()
        .unwrap_or_default();
    let high = files
        .iter()
        .map(|f| f.largest_user_key())
        .max()
        .unwrap_or_default();
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::{level_targets, split};
    use crate::TreeOptions;

    #[test]
    fn level_targets_follow_the_last_level() {
        const MIB: u64 = 1024 * 1024;
        let options = TreeOptions::default();
        // 580 MiB in L2: L1 targets a tenth (58 MiB), raised to the file size (64 MiB).
        let targets = level_targets(&options, &[0, 10 * MIB, 580 * MIB, 0, 0, 0, 0]);
        assert_eq!(targets[1], 64 * MIB);
        assert_eq!(
            targets[2],
            options.level_target(2),
            "the last level keeps its static target"
        );
        // 20 GiB in L3: L2 2 GiB (within its 2.5 GiB static target), L1 capped at 256 MiB.
        let targets = level_targets(&options, &[0, 0, 0, 20 * 1024 * MIB, 0, 0, 0]);
        assert_eq!(targets[2], 2 * 1024 * MIB);
        assert_eq!(targets[1], 20 * 1024 * MIB / 100);
        // An empty tree: the static targets.
        let targets = level_targets(&options, &[0; 7]);
        assert_eq!(targets[1], options.level_target(1));
        // A file size above a level's static target never inverts the bounds.
        let odd = TreeOptions {
            target_file_size: 1024 * MIB,
            ..TreeOptions::default()
        };
        let targets = level_targets(&odd, &[0, 0, 5 * MIB, 0, 0, 0, 0]);
        assert_eq!(targets[1], odd.level_target(1));
    }
    use crate::{InternalKey, ValueKind};

    #[test]
    fn split_reads_user_key_lsn_and_kind() {
        let k = InternalKey::new(b"abc", 77, ValueKind::Delete);
        assert_eq!(split(k.encoded()), (&b"abc"[..], 77, 0));
    }

    #[test]
    fn user_key_of_strips_the_trailer() {
        let k = InternalKey::new(b"", 3, ValueKind::Put);
        assert_eq!(crate::version::user_key_of(k.encoded()), b"");
    }
}
