//! Power loss: what survives it, when an armed one strikes, and what it does to handles,
//! locks and the namespace.
//!
//! A crash is the moment the cache vanishes: for every file the medium keeps what the chosen
//! outcome picks of the changes since that file's last sync attempt, every directory keeps a
//! prefix of its unsynced entry changes, inodes nothing can reach any more are dropped, and
//! the epoch moves on so that every handle, view and lock from before is dead.

use std::io;
use std::sync::atomic::Ordering;

use super::errors;
use super::state::{Node, State};

/// How a crash treats data and directory changes that were not synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// Every unsynced change survives, as if the cache had been written back just in time.
    KeepAll,
    /// Every unsynced change is lost: only synced data and synced entries remain.
    LoseAllUnsynced,
    /// Chosen per file and per directory from the seed. A file keeps all, none, or (a third
    /// of the time) an independent random subset of its unsynced 512-byte sectors, at one of
    /// the lengths it had since its last sync. A directory keeps all, none, or a random
    /// prefix of its unsynced entry changes, in order.
    #[default]
    Random,
}

/// When an armed power loss strikes: the operation with this absolute index (as counted by
/// `op_count`), or the sync with this absolute index (as counted by `sync_count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CrashAt {
    Op(u64),
    Sync(u64),
}

impl State {
    /// Power loss with `mode`: settles every file and directory and kills every handle, view
    /// and lock from before. Leaves `down` as it was: the caller decides whether the file
    /// system comes straight back (`crash`) or stays down until `restart`.
    pub(super) fn power_loss(&mut self, mode: CrashMode) {
        // Inode order, so that the same seed gives the same outcome every run.
        for inode in self.inodes.values_mut() {
            match &mut inode.node {
                Node::File(file) => file.power_loss(&mut self.rng, mode),
                Node::Dir(dir) => dir.power_loss(&mut self.rng, mode),
            }
            inode.opens = 0;
        }
        self.recount_links();
        self.collect_garbage();
        self.locks.clear();
        self.crash_at = None;
        self.epoch += 1;
        self.epoch_cell.store(self.epoch, Ordering::Release);
        self.counters.crashes += 1;
    }

    /// An armed power loss strikes during operation `op` (whose changes, already made, are
    /// as volatile as any other): the file system goes down until `restart`.
    pub(super) fn crash_now(&mut self, op: &str) -> io::Error {
        let mode = self.armed_mode;
        self.power_loss(mode);
        self.down = true;
        errors::power_lost(op)
    }
}
