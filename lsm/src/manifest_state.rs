//! The level structure the manifest records: [`FileMeta`] (one SST's entry), [`VersionEdit`]
//! (one atomic change) and [`ManifestState`] (every level's files, the watermark and the next
//! file id), with the rules every edit must keep. Spec: docs/format/manifest.md ("Edits and
//! the rules they keep").
//!
//! Invariants of a [`ManifestState`] ([`ManifestState::check_invariants`]), established by
//! [`ManifestState::check_edit`] before any edit is applied:
//! - exactly [`LEVELS_MAX`] levels; every file sits in the level its `level` field names;
//! - file ids are unique across levels, at least 1, and below `next_file_id`;
//! - every file is well formed ([`FileMeta`]'s rules);
//! - L0 is ordered by id, ascending; each level of L1 and deeper is ordered by smallest key
//!   (`compare_internal`) and its files share no user key: the largest user key of a file is
//!   below the smallest user key of the next, so at most one file per level can hold a key;
//! - `next_file_id` and the watermark never decrease; a watermark is an LSN, at least 1.
//!
//! Checking costs O(files) per edit (a set of the ids), which an edit's rarity (one per
//! flush or compaction step) affords; applying keeps each level sorted by insertion.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

use crate::error::{Error, Result};
use crate::internal_key::{LSN_MAX, ValueKind, compare_internal};

/// Levels of the tree: L0 (flushed memtables, which may overlap) and L1 to L6 (each one sorted
/// run of files sharing no user key).
pub const LEVELS_MAX: usize = 7;
/// Bytes of an internal key's trailer (`lsn << 8 | kind`).
const TRAILER_SIZE: usize = 8;

const _: () = assert!(LEVELS_MAX <= u8::MAX as usize);

/// One SST's entry in the level structure. The SST's file name is `format!("{id:016x}.sst")`.
///
/// # Invariants
/// Checked by [`ManifestState::check_edit`] for every added file: `id >= 1`;
/// `level < LEVELS_MAX`; `entry_count >= 1` (an empty SST has no keys to record);
/// `smallest` and `largest` are well-formed internal keys with `smallest <= largest`
/// (`compare_internal`); `1 <= smallest_lsn <= largest_lsn <= LSN_MAX`, and the LSNs of both
/// keys lie in that range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// The SST's id, unique in the tree and never reused.
    pub id: u64,
    /// The level the file belongs to.
    pub level: u8,
    /// Bytes of the file.
    pub size: u64,
    /// The encoded internal key of the smallest entry in the file.
    pub smallest: Vec<u8>,
    /// The encoded internal key of the largest entry in the file.
    pub largest: Vec<u8>,
    /// The smallest LSN of any entry in the file.
    pub smallest_lsn: u64,
    /// The largest LSN of any entry in the file.
    pub largest_lsn: u64,
    /// Entries in the file (every version and tombstone counts).
    pub entry_count: u64,
}

impl FileMeta {
    /// The user key of the smallest entry. Requires a well-formed `smallest` (checked when
    /// the file entered a state); shorter bytes give an empty key rather than a panic.
    pub fn smallest_user_key(&self) -> &[u8] {
        user_key(&self.smallest)
    }

    /// The user key of the largest entry, as [`Self::smallest_user_key`].
    pub fn largest_user_key(&self) -> &[u8] {
        user_key(&self.largest)
    }

    /// Checks the file's own rules (the type's invariants).
    fn check(&self) -> Result<(), InvalidEdit> {
        let invalid = |why: &'static str| Err(InvalidEdit::InvalidFile { id: self.id, why });
        if self.level as usize >= LEVELS_MAX {
            return Err(InvalidEdit::LevelOutOfRange { level: self.level });
        }
        if self.id == 0 {
            return invalid("id 0 is never handed out");
        }
        if self.entry_count == 0 {
            return invalid("entry_count is 0");
        }
        if self.smallest_lsn == 0 || self.smallest_lsn > self.largest_lsn {
            return invalid("smallest_lsn is 0 or above largest_lsn");
        }
        if self.largest_lsn > LSN_MAX {
            return invalid("largest_lsn is above LSN_MAX");
        }
        let (Some(smallest_lsn), Some(largest_lsn)) = (
            internal_key_lsn(&self.smallest),
            internal_key_lsn(&self.largest),
        ) else {
            return invalid("a key is not a well-formed internal key");
        };
        if compare_internal(&self.smallest, &self.largest) == Ordering::Greater {
            return invalid("smallest key is above largest key");
        }
        let in_range = |lsn: u64| (self.smallest_lsn..=self.largest_lsn).contains(&lsn);
        if !in_range(smallest_lsn) || !in_range(largest_lsn) {
            return invalid("a key's LSN is outside [smallest_lsn, largest_lsn]");
        }
        Ok(())
    }
}

/// One atomic change to the level structure: files removed, files added, and optionally a new
/// watermark and next file id. Applied in that order: removals, additions, then the scalars.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// Files added, each to the level its `level` names.
    pub added: Vec<FileMeta>,
    /// Files removed: `(level, file id)`.
    pub removed: Vec<(u8, u64)>,
    /// A checkpoint's watermark LSN; never decreases.
    pub watermark: Option<u64>,
    /// File ids below this are used (never reused); never decreases.
    pub next_file_id: Option<u64>,
}

/// The whole level structure: what replaying every edit of a manifest gives.
///
/// [`ManifestState::default`] is the empty tree: [`LEVELS_MAX`] empty levels, no watermark,
/// `next_file_id = 1`. The invariants are in the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestState {
    /// The files of each level: [`LEVELS_MAX`] levels; L0 ordered by id ascending, L1 and
    /// deeper ordered by smallest key (`compare_internal`) and sharing no user key.
    pub levels: Vec<Vec<FileMeta>>,
    /// The last checkpoint's watermark, if any checkpoint was recorded.
    pub watermark: Option<u64>,
    /// File ids below this are used; starts at 1.
    pub next_file_id: u64,
}

impl Default for ManifestState {
    fn default() -> Self {
        Self {
            levels: vec![Vec::new(); LEVELS_MAX],
            watermark: None,
            next_file_id: 1,
        }
    }
}

impl ManifestState {
    /// Checks `edit` and applies it.
    ///
    /// # Errors
    /// [`Error::InvalidEdit`] if the edit breaks a rule ([`Self::check_edit`]); the state is
    /// then unchanged. An invalid edit read from disk is reported as corruption by the
    /// manifest's reader.
    pub fn apply(&mut self, edit: &VersionEdit) -> Result<()> {
        self.check_edit(edit).map_err(Error::InvalidEdit)?;
        self.apply_checked(edit);
        Ok(())
    }

    /// Checks `edit` against this state without applying it: every level in range, every
    /// removed file present at its level (and removed once), every added file well formed,
    /// new (not present after the removals, added once) and below `next_file_id` after the
    /// edit, the watermark and `next_file_id` not decreasing, and no two files of a level of
    /// L1 or deeper sharing a user key after the edit. A file removed and added in one edit
    /// (a move to another level) is allowed.
    pub fn check_edit(&self, edit: &VersionEdit) -> Result<(), InvalidEdit> {
        let next_file_id = self.check_scalars(edit)?;
        let mut removed: HashSet<u64> = HashSet::with_capacity(edit.removed.len());
        for &(level, id) in &edit.removed {
            if level as usize >= LEVELS_MAX {
                return Err(InvalidEdit::LevelOutOfRange { level });
            }
            let present = self.level(level).iter().any(|f| f.id == id);
            if !present || !removed.insert(id) {
                return Err(InvalidEdit::RemovedFileMissing { level, id });
            }
        }
        let mut live: HashSet<u64> = self
            .levels
            .iter()
            .flatten()
            .map(|f| f.id)
            .filter(|id| !removed.contains(id))
            .collect();
        for file in &edit.added {
            file.check()?;
            if file.id >= next_file_id {
                return Err(InvalidEdit::FileIdNotBelowNext {
                    id: file.id,
                    next_file_id,
                });
            }
            if !live.insert(file.id) {
                return Err(InvalidEdit::AddedFilePresent { id: file.id });
            }
        }
        self.check_overlaps(edit, &removed)
    }

    /// Asserts every invariant in the module docs. O(files).
    ///
    /// # Panics
    /// If one is broken: a bug, since every edit was checked before it was applied.
    pub fn check_invariants(&self) {
        assert_eq!(self.levels.len(), LEVELS_MAX, "level count");
        assert!(self.next_file_id >= 1, "next_file_id is 0");
        if let Some(w) = self.watermark {
            assert!((1..=LSN_MAX).contains(&w), "watermark {w} out of range");
        }
        let mut ids = HashSet::new();
        for (level, files) in self.levels.iter().enumerate() {
            for file in files {
                assert_eq!(file.level as usize, level, "file {} in L{level}", file.id);
                assert_eq!(file.check(), Ok(()), "file {} malformed", file.id);
                assert!(ids.insert(file.id), "file id {} twice", file.id);
                assert!(
                    file.id < self.next_file_id,
                    "file id {} not below next_file_id {}",
                    file.id,
                    self.next_file_id
                );
            }
            for pair in files.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                if level == 0 {
                    assert!(a.id < b.id, "L0 ids {} then {}", a.id, b.id);
                } else {
                    assert_eq!(
                        compare_internal(&a.smallest, &b.smallest),
                        Ordering::Less,
                        "L{level} files {} and {} out of order",
                        a.id,
                        b.id
                    );
                    assert!(
                        a.largest_user_key() < b.smallest_user_key(),
                        "L{level} files {} and {} share user keys",
                        a.id,
                        b.id
                    );
                }
            }
        }
    }

    /// How many files all levels hold.
    pub fn files_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// The files of `level` (none for a level out of range).
    fn level(&self, level: u8) -> &[FileMeta] {
        self.levels.get(level as usize).map_or(&[], Vec::as_slice)
    }

    /// Checks the watermark and `next_file_id`; returns `next_file_id` after the edit.
    fn check_scalars(&self, edit: &VersionEdit) -> Result<u64, InvalidEdit> {
        if let Some(to) = edit.watermark {
            if to == 0 || to > LSN_MAX {
                return Err(InvalidEdit::InvalidWatermark { watermark: to });
            }
            if let Some(from) = self.watermark
                && to < from
            {
                return Err(InvalidEdit::WatermarkDecreased { from, to });
            }
        }
        match edit.next_file_id {
            Some(to) if to < self.next_file_id => Err(InvalidEdit::NextFileIdDecreased {
                from: self.next_file_id,
                to,
            }),
            Some(to) => Ok(to),
            None => Ok(self.next_file_id),
        }
    }

    /// Checks that no level of L1 or deeper that the edit adds to would hold two files
    /// sharing a user key.
    fn check_overlaps(
        &self,
        edit: &VersionEdit,
        removed: &HashSet<u64>,
    ) -> Result<(), InvalidEdit> {
        let mut touched: Vec<u8> = edit
            .added
            .iter()
            .map(|f| f.level)
            .filter(|&l| l > 0)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for level in touched {
            let mut files: Vec<&FileMeta> = self
                .level(level)
                .iter()
                .filter(|f| !removed.contains(&f.id))
                .chain(edit.added.iter().filter(|f| f.level == level))
                .collect();
            files.sort_by(|a, b| compare_internal(&a.smallest, &b.smallest));
            for pair in files.windows(2) {
                if pair[0].largest_user_key() >= pair[1].smallest_user_key() {
                    return Err(InvalidEdit::Overlap {
                        level,
                        id: pair[0].id,
                        other_id: pair[1].id,
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies an edit that [`Self::check_edit`] accepted.
    ///
    /// # Panics
    /// If a removed file is missing: the edit was not checked (a bug).
    pub(crate) fn apply_checked(&mut self, edit: &VersionEdit) {
        for &(level, id) in &edit.removed {
            let files = &mut self.levels[level as usize];
            let at = files
                .iter()
                .position(|f| f.id == id)
                .unwrap_or_else(|| panic!("removed file {id} not in L{level}: edit unchecked"));
            files.remove(at);
        }
        for file in &edit.added {
            let files = &mut self.levels[file.level as usize];
            let at = if file.level == 0 {
                files.partition_point(|f| f.id < file.id)
            } else {
                files.partition_point(|f| {
                    compare_internal(&f.smallest, &file.smallest) == Ordering::Less
                })
            };
            files.insert(at, file.clone());
        }
        if let Some(w) = edit.watermark {
            self.watermark = Some(w);
        }
        if let Some(n) = edit.next_file_id {
            self.next_file_id = n;
        }
    }
}

/// Why an edit cannot be applied. From a caller, a bug; read from disk, corruption.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidEdit {
    /// A level at or past [`LEVELS_MAX`].
    LevelOutOfRange {
        /// The level named.
        level: u8,
    },
    /// A removed file is not at the level named (or is removed twice).
    RemovedFileMissing {
        /// The level named.
        level: u8,
        /// The file id.
        id: u64,
    },
    /// An added file's id is already in the tree (after the edit's removals) or added twice.
    AddedFilePresent {
        /// The file id.
        id: u64,
    },
    /// An added file's id is not below `next_file_id` after the edit.
    FileIdNotBelowNext {
        /// The file id.
        id: u64,
        /// `next_file_id` after the edit.
        next_file_id: u64,
    },
    /// An added file breaks [`FileMeta`]'s own rules.
    InvalidFile {
        /// The file id.
        id: u64,
        /// Which rule.
        why: &'static str,
    },
    /// Two files of a level of L1 or deeper would share a user key.
    Overlap {
        /// The level.
        level: u8,
        /// One file (the one with the smaller smallest key).
        id: u64,
        /// The other.
        other_id: u64,
    },
    /// `next_file_id` would go down.
    NextFileIdDecreased {
        /// The current value.
        from: u64,
        /// The value in the edit.
        to: u64,
    },
    /// The watermark would go down.
    WatermarkDecreased {
        /// The current watermark.
        from: u64,
        /// The watermark in the edit.
        to: u64,
    },
    /// A watermark that is no LSN: 0, or above [`LSN_MAX`].
    InvalidWatermark {
        /// The watermark in the edit.
        watermark: u64,
    },
    /// The encoded edit is larger than one frame may be.
    TooLarge {
        /// Bytes of the encoded edit.
        size: u64,
        /// The most a frame's body may hold.
        max: u64,
    },
}

impl fmt::Display for InvalidEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The user key of an encoded internal key; empty for bytes too short to hold a trailer.
fn user_key(internal: &[u8]) -> &[u8] {
    internal
        .get(..internal.len().saturating_sub(TRAILER_SIZE))
        .unwrap_or_default()
}

/// The LSN of a well-formed encoded internal key (a trailer with a known kind), else `None`.
fn internal_key_lsn(internal: &[u8]) -> Option<u64> {
    let split = internal.len().checked_sub(TRAILER_SIZE)?;
    let trailer: [u8; TRAILER_SIZE] = internal.get(split..)?.try_into().ok()?;
    let trailer = u64::from_le_bytes(trailer);
    ValueKind::from_tag(trailer as u8)?;
    Some(trailer >> 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InternalKey;

    /// A file of `level` holding user keys `lo..=hi` (one byte each) at LSNs 1 and 2.
    fn file(id: u64, level: u8, lo: u8, hi: u8) -> FileMeta {
        FileMeta {
            id,
            level,
            size: 100,
            smallest: InternalKey::new(&[lo], 2, ValueKind::Put)
                .encoded()
                .to_vec(),
            largest: InternalKey::new(&[hi], 1, ValueKind::Put)
                .encoded()
                .to_vec(),
            smallest_lsn: 1,
            largest_lsn: 2,
            entry_count: 2,
        }
    }

    fn add(files: Vec<FileMeta>, next_file_id: u64) -> VersionEdit {
        VersionEdit {
            added: files,
            next_file_id: Some(next_file_id),
            ..VersionEdit::default()
        }
    }

    fn refused(state: &ManifestState, edit: &VersionEdit) -> InvalidEdit {
        let mut copy = state.clone();
        let Err(Error::InvalidEdit(why)) = copy.apply(edit) else {
            panic!("edit accepted: {edit:?}");
        };
        assert_eq!(&copy, state, "a refused edit changed the state");
        why
    }

    fn base() -> ManifestState {
        let mut s = ManifestState::default();
        let files = vec![
            file(2, 0, 5, 9),
            file(1, 0, 0, 3),
            file(3, 1, 10, 19),
            file(4, 1, 30, 39),
        ];
        s.apply(&add(files, 5)).unwrap();
        s.check_invariants();
        s
    }

    #[test]
    fn state_default_is_the_empty_tree() {
        let s = ManifestState::default();
        assert_eq!(s.levels.len(), LEVELS_MAX);
        assert_eq!((s.watermark, s.next_file_id, s.files_count()), (None, 1, 0));
        s.check_invariants();
    }

    #[test]
    fn state_apply_keeps_levels_sorted() {
        let mut s = base();
        assert_eq!(s.levels[0].iter().map(|f| f.id).collect::<Vec<_>>(), [1, 2]);
        s.apply(&add(vec![file(5, 1, 20, 29), file(6, 1, 0, 9)], 7))
            .unwrap();
        let l1: Vec<u64> = s.levels[1].iter().map(|f| f.id).collect();
        assert_eq!(l1, [6, 3, 5, 4]);
        s.check_invariants();
    }

    #[test]
    fn state_move_removes_and_adds_one_id() {
        let mut s = base();
        let moved = VersionEdit {
            removed: vec![(0, 1)],
            added: vec![file(1, 2, 0, 3)],
            ..VersionEdit::default()
        };
        s.apply(&moved).unwrap();
        assert!(s.levels[0].iter().all(|f| f.id != 1));
        assert_eq!(s.levels[2][0].id, 1);
        s.check_invariants();
    }

    #[test]
    fn state_refuses_each_broken_rule() {
        let s = base();
        let remove = |level, id| VersionEdit {
            removed: vec![(level, id)],
            ..VersionEdit::default()
        };
        assert_eq!(
            refused(&s, &remove(7, 1)),
            InvalidEdit::LevelOutOfRange { level: 7 }
        );
        let missing = InvalidEdit::RemovedFileMissing { level: 1, id: 1 };
        assert_eq!(refused(&s, &remove(1, 1)), missing);
        let twice = VersionEdit {
            removed: vec![(0, 1), (0, 1)],
            ..VersionEdit::default()
        };
        assert_eq!(
            refused(&s, &twice),
            InvalidEdit::RemovedFileMissing { level: 0, id: 1 }
        );
        assert_eq!(
            refused(&s, &add(vec![file(4, 0, 0, 0)], 9)),
            InvalidEdit::AddedFilePresent { id: 4 }
        );
        let dup = add(vec![file(7, 0, 0, 0), file(7, 0, 1, 1)], 9);
        assert_eq!(refused(&s, &dup), InvalidEdit::AddedFilePresent { id: 7 });
        let high = InvalidEdit::FileIdNotBelowNext {
            id: 5,
            next_file_id: 5,
        };
        let no_next = VersionEdit {
            added: vec![file(5, 0, 0, 0)],
            ..VersionEdit::default()
        };
        assert_eq!(refused(&s, &no_next), high);
        let overlap = add(vec![file(5, 1, 19, 25)], 6);
        assert_eq!(
            refused(&s, &overlap),
            InvalidEdit::Overlap {
                level: 1,
                id: 3,
                other_id: 5
            }
        );
        let among_added = add(vec![file(5, 3, 0, 5), file(6, 3, 5, 9)], 7);
        assert_eq!(
            refused(&s, &among_added),
            InvalidEdit::Overlap {
                level: 3,
                id: 5,
                other_id: 6
            }
        );
        assert_eq!(
            refused(&s, &add(vec![], 4)),
            InvalidEdit::NextFileIdDecreased { from: 5, to: 4 }
        );
        let mut bad_level = file(5, 9, 0, 0);
        bad_level.level = 9;
        assert_eq!(
            refused(&s, &add(vec![bad_level], 6)),
            InvalidEdit::LevelOutOfRange { level: 9 }
        );
    }

    #[test]
    fn state_refuses_watermarks_that_are_no_lsn_or_go_down() {
        let mut s = base();
        let mark = |w| VersionEdit {
            watermark: Some(w),
            ..VersionEdit::default()
        };
        assert_eq!(
            refused(&s, &mark(0)),
            InvalidEdit::InvalidWatermark { watermark: 0 }
        );
        let above = LSN_MAX + 1;
        assert_eq!(
            refused(&s, &mark(above)),
            InvalidEdit::InvalidWatermark { watermark: above }
        );
        s.apply(&mark(10)).unwrap();
        s.apply(&mark(10)).unwrap();
        assert_eq!(
            refused(&s, &mark(9)),
            InvalidEdit::WatermarkDecreased { from: 10, to: 9 }
        );
        assert_eq!(s.watermark, Some(10));
    }

    type Damage = fn(&mut FileMeta);

    #[test]
    fn state_refuses_malformed_files() {
        let s = base();
        let cases: [(&str, Damage); 9] = [
            ("id 0", |f| f.id = 0),
            ("no entries", |f| f.entry_count = 0),
            ("lsn 0", |f| f.smallest_lsn = 0),
            ("lsns inverted", |f| f.smallest_lsn = 3),
            ("lsn past max", |f| f.largest_lsn = LSN_MAX + 1),
            ("short key", |f| f.smallest = vec![1, 2]),
            ("bad kind", |f| f.largest[1] = 7),
            ("keys inverted", |f| {
                std::mem::swap(&mut f.smallest, &mut f.largest);
            }),
            ("key lsn outside", |f| f.largest_lsn = 1),
        ];
        for (name, damage) in cases {
            let mut f = file(6, 2, 50, 60);
            damage(&mut f);
            let why = refused(&s, &add(vec![f], 9));
            assert!(
                matches!(why, InvalidEdit::InvalidFile { .. }),
                "{name}: {why:?}"
            );
        }
    }
}
