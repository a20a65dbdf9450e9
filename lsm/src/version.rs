//! The level structure as readers see it: a [`Version`] is an immutable set of open SSTs per
//! level, built from the manifest's state. A new version is installed after each flush or
//! compaction; read views keep the one they started with, so the files they read are never
//! deleted under them.
//!
//! An SST removed by a compaction is marked obsolete and deleted when its last
//! [`SstHandle`] drops, that is, when no version and no read view can reach it any more. A
//! crash before then leaves the file behind; the next open deletes it as an orphan.
//!
//! Invariants ([`Version::check_invariants`]): L0 files are ordered by id, oldest first, and a
//! higher id holds newer data for any key; files of L1 and deeper are ordered by key range and
//! do not overlap, so at most one file per level can hold a user key.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use popdb_io::{FsRef, OpenOptions};

use crate::block_cache::BlockCache;
use crate::error::{Corruption, CorruptionKind, Error, Result};

use crate::internal_key::compare_internal;
use crate::manifest::FileMeta;
use crate::options::LEVELS_COUNT;
use crate::sst_reader::{SstReadOptions, SstReader};

/// The name of SST `id` in the tree's directory.
pub(crate) fn sst_file_name(id: u64) -> String {
    format!("{id:016x}.sst")
}

/// The id named by an SST file name, if `name` is one.
pub(crate) fn parse_sst_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".sst")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// An open SST and its manifest entry.
pub(crate) struct SstHandle {
    pub(crate) meta: FileMeta,
    pub(crate) reader: SstReader,
    fs: FsRef,
    path: PathBuf,
    obsolete: AtomicBool,
    /// The cache the reader reads through, to drop the file's blocks when it is deleted.
    cache: Option<Arc<BlockCache>>,
}

impl SstHandle {
    /// Opens SST `meta.id` in `dir`, reading through `cache`.
    pub(crate) fn open(
        fs: &FsRef,
        dir: &Path,
        meta: FileMeta,
        cache: &Arc<BlockCache>,
    ) -> Result<Self> {
        let path = dir.join(sst_file_name(meta.id));
        let file = fs.open(&path, OpenOptions::read_only()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                // The manifest names a file that is not there: the directory and the manifest
                // disagree, which no crash of ours produces.
                Error::Corruption(Corruption {
                    file_id: Some(meta.id),
                    file_name: None,
                    offset: 0,
                    what: "sst named by the manifest",
                    kind: CorruptionKind::Missing,
                })
            } else {
                Error::io("sst open", e)
            }
        })?;
        let options = SstReadOptions {
            file_id: Some(meta.id),
            cache: Some(cache.clone()),
        };
        let reader = SstReader::open_with(file, options)?;
        Ok(Self {
            meta,
            reader,
            fs: fs.clone(),
            path,
            obsolete: AtomicBool::new(false),
            cache: Some(cache.clone()),
        })
    }

    /// The user key of the file's smallest entry.
    pub(crate) fn smallest_user_key(&self) -> &[u8] {
        user_key_of(&self.meta.smallest)
    }

    /// The user key of the file's largest entry.
    pub(crate) fn largest_user_key(&self) -> &[u8] {
        user_key_of(&self.meta.largest)
    }

    /// Whether the file's user-key range includes `user_key`.
    pub(crate) fn may_hold(&self, user_key: &[u8]) -> bool {
        self.smallest_user_key() <= user_key && user_key <= self.largest_user_key()
    }

    /// Marks the file for deletion once the last handle drops: a logged edit removed it.
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, AtomicOrdering::Release);
    }
}

impl Drop for SstHandle {
    fn drop(&mut self) {
        if self.obsolete.load(AtomicOrdering::Acquire) {
            // A failure leaves an orphan, which the next open deletes; nothing depends on
            // the file being gone now.
            let _ = self.fs.remove_file(&self.path);
            if let (Some(cache), Some(number)) = (&self.cache, self.reader.cache_file_number()) {
                cache.erase_file(number);
            }
        }
    }
}

impl std::fmt::Debug for SstHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstHandle")
            .field("id", &self.meta.id)
            .field("level", &self.meta.level)
            .field("size", &self.meta.size)
            .finish_non_exhaustive()
    }
}

/// The user key of an encoded internal key written by this tree.
pub(crate) fn user_key_of(internal: &[u8]) -> &[u8] {
    &internal[..internal.len().saturating_sub(8)]
}

/// The open SSTs of every level at one moment.
#[derive(Debug, Default)]
pub(crate) struct Version {
    pub(crate) levels: [Vec<Arc<SstHandle>>; LEVELS_COUNT],
}

impl Version {
    /// The L1+ file of `level` whose range may hold `user_key`.
    pub(crate) fn file_for(&self, level: usize, user_key: &[u8]) -> Option<&Arc<SstHandle>> {
        let files = &self.levels[level];
        let i = files.partition_point(|f| f.largest_user_key() < user_key);
        files.get(i).filter(|f| f.smallest_user_key() <= user_key)
    }

    /// Bytes of the SSTs of `level`.
    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|f| f.meta.size).sum()
    }

    /// A copy of this version with `removed` gone and `added` in place, each level kept in
    /// its order.
    pub(crate) fn edited(&self, removed: &[(u8, u64)], added: Vec<Arc<SstHandle>>) -> Self {
        let mut levels = self.levels.clone();
        for (level, id) in removed {
            let files = &mut levels[*level as usize];
            let before = files.len();
            files.retain(|f| f.meta.id != *id);
            assert_eq!(before, files.len() + 1, "removed file {id} not in L{level}");
        }
        for file in added {
            levels[file.meta.level as usize].push(file);
        }
        levels[0].sort_by_key(|f| f.meta.id);
        for files in &mut levels[1..] {
            files.sort_by(|a, b| compare_internal(&a.meta.smallest, &b.meta.smallest));
        }
        let version = Self { levels };
        version.check_invariants();
        version
    }

    /// Asserts the level invariants (module docs). O(files).
    pub(crate) fn check_invariants(&self) {
        for pair in self.levels[0].windows(2) {
            assert!(pair[0].meta.id < pair[1].meta.id, "L0 out of id order");
        }
        for (level, files) in self.levels.iter().enumerate() {
            for file in files {
                assert_eq!(file.meta.level as usize, level, "file in the wrong level");
                assert!(
                    compare_internal(&file.meta.smallest, &file.meta.largest) != Ordering::Greater,
                    "file {} has smallest > largest",
                    file.meta.id
                );
            }
            if level == 0 {
                continue;
            }
            for pair in files.windows(2) {
                assert!(
                    pair[0].largest_user_key() < pair[1].smallest_user_key(),
                    "L{level} files {} and {} overlap",
                    pair[0].meta.id,
                    pair[1].meta.id
                );
            }
        }
    }
}
