//! One directory: its entries as reads see them, its entries as the medium holds them, and
//! the ordered log of entry changes since its last `sync_dir`.
//!
//! A crash keeps a prefix of the log, in order, as a journaling file system does: an entry
//! change is never durable while an earlier one in the same directory is lost. Directories
//! are independent, so a rename across two directories is two log records, one in each, and
//! a crash may keep either, both or neither until both parents are synced (the contract in
//! `fs.rs`). A rename within one directory is one record and so atomic.
//!
//! Invariant (checked by [`DirNode::check_invariants`]): `entries` equals `durable` with the
//! whole log replayed.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use super::crash::CrashMode;
use super::rng::Rng;
use super::state::Ino;

/// One change to a directory's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DirOp {
    /// `name` now points at `ino` (created, linked, or moved here), replacing any entry.
    Link { name: OsString, ino: Ino },
    /// `name` is gone.
    Unlink { name: OsString },
    /// `from` moved to `to` within this directory, replacing any entry at `to`.
    Rename { from: OsString, to: OsString },
}

/// A directory.
#[derive(Debug, Default)]
pub(super) struct DirNode {
    /// The entries as reads see them.
    entries: BTreeMap<OsString, Ino>,
    /// The entries on the medium.
    durable: BTreeMap<OsString, Ino>,
    /// Changes since the last `sync_dir`, oldest first.
    log: Vec<DirOp>,
}

impl DirNode {
    /// The entry called `name`.
    pub(super) fn get(&self, name: &OsStr) -> Option<Ino> {
        self.entries.get(name).copied()
    }

    /// The entries as reads see them, by name.
    pub(super) fn entries(&self) -> &BTreeMap<OsString, Ino> {
        &self.entries
    }

    /// The entries on the medium, by name.
    pub(super) fn durable(&self) -> &BTreeMap<OsString, Ino> {
        &self.durable
    }

    /// Whether the directory has no entries (as reads see it).
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entry changes are not yet durable.
    pub(super) fn unsynced_count(&self) -> usize {
        self.log.len()
    }

    /// Points `name` at `ino`; returns the inode it pointed at before, if any.
    pub(super) fn link(&mut self, name: &OsStr, ino: Ino) -> Option<Ino> {
        let name = name.to_os_string();
        self.log.push(DirOp::Link {
            name: name.clone(),
            ino,
        });
        self.entries.insert(name, ino)
    }

    /// Removes `name`; returns the inode it pointed at.
    pub(super) fn unlink(&mut self, name: &OsStr) -> Option<Ino> {
        let removed = self.entries.remove(name);
        if removed.is_some() {
            self.log.push(DirOp::Unlink {
                name: name.to_os_string(),
            });
        }
        removed
    }

    /// Moves `from` to `to` in one step; returns the inode `to` pointed at before, if any.
    /// The caller has checked that `from` exists.
    pub(super) fn rename(&mut self, from: &OsStr, to: &OsStr) -> Option<Ino> {
        let ino = self
            .entries
            .remove(from)
            .expect("rename source checked to exist by the caller");
        self.log.push(DirOp::Rename {
            from: from.to_os_string(),
            to: to.to_os_string(),
        });
        self.entries.insert(to.to_os_string(), ino)
    }

    /// `sync_dir`: every change so far is durable.
    pub(super) fn sync(&mut self) {
        self.durable.clone_from(&self.entries);
        self.log.clear();
    }

    /// Power loss: a prefix of the log, chosen by `mode` and `rng`, reaches the medium; the
    /// rest is lost, and the entries become what the medium holds.
    pub(super) fn power_loss(&mut self, rng: &mut Rng, mode: CrashMode) {
        if self.log.is_empty() {
            return;
        }
        let kept = match mode {
            CrashMode::KeepAll => self.log.len(),
            CrashMode::LoseAllUnsynced => 0,
            // All, none or any prefix, a third each, so that the extremes are common.
            CrashMode::Random => match rng.below(3) {
                0 => self.log.len(),
                1 => 0,
                _ => rng.index(self.log.len() + 1),
            },
        };
        for op in &self.log[..kept] {
            replay(&mut self.durable, op);
        }
        self.log.clear();
        self.entries.clone_from(&self.durable);
    }

    /// Every inode this directory can lead to after some crash: current, durable, and
    /// linked by a log record.
    pub(super) fn referenced(&self) -> impl Iterator<Item = Ino> + '_ {
        let logged = self.log.iter().filter_map(|op| match op {
            DirOp::Link { ino, .. } => Some(*ino),
            DirOp::Unlink { .. } | DirOp::Rename { .. } => None,
        });
        self.entries
            .values()
            .chain(self.durable.values())
            .copied()
            .chain(logged)
    }

    /// Panics unless `entries` equals `durable` with the log replayed. O(entries + log).
    pub(super) fn check_invariants(&self) {
        let mut replayed = self.durable.clone();
        for op in &self.log {
            replay(&mut replayed, op);
        }
        assert_eq!(
            replayed, self.entries,
            "directory entries differ from the durable entries plus the log"
        );
    }
}

/// Applies one logged change to a set of entries.
fn replay(entries: &mut BTreeMap<OsString, Ino>, op: &DirOp) {
    match op {
        DirOp::Link { name, ino } => {
            entries.insert(name.clone(), *ino);
        }
        DirOp::Unlink { name } => {
            entries.remove(name);
        }
        DirOp::Rename { from, to } => {
            // A logged rename always had its source at the time, and every earlier record
            // is replayed first, so the source is present here too.
            let ino = entries
                .remove(from)
                .expect("replayed rename has its source: earlier records replay first");
            entries.insert(to.clone(), ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(map: &BTreeMap<OsString, Ino>) -> Vec<&str> {
        map.keys().map(|k| k.to_str().unwrap()).collect()
    }

    #[test]
    fn dir_crash_keeps_a_prefix_in_order() {
        let mut seen_partial = false;
        for seed in 0..100 {
            let mut d = DirNode::default();
            d.link(OsStr::new("a"), 1);
            d.link(OsStr::new("b"), 2);
            d.rename(OsStr::new("a"), OsStr::new("c"));
            d.unlink(OsStr::new("b"));
            d.check_invariants();
            d.power_loss(&mut Rng::new(seed), CrashMode::Random);
            d.check_invariants();
            let got = names(d.entries());
            let prefixes: [&[&str]; 5] = [&[], &["a"], &["a", "b"], &["b", "c"], &["c"]];
            assert!(
                prefixes.contains(&got.as_slice()),
                "not a prefix outcome: {got:?}"
            );
            seen_partial |= got == ["a", "b"] || got == ["b", "c"] || got == ["a"];
        }
        assert!(seen_partial, "no partial prefix in 100 seeds");
    }

    #[test]
    fn dir_sync_then_crash_keeps_everything() {
        let mut d = DirNode::default();
        d.link(OsStr::new("a"), 1);
        d.sync();
        d.unlink(OsStr::new("a"));
        d.power_loss(&mut Rng::new(0), CrashMode::LoseAllUnsynced);
        assert_eq!(names(d.entries()), ["a"]);
    }
}
