//! The one way the level structure changes: a flush or a compaction has written and synced
//! its new SSTs; [`Shared::install`] syncs the directory (so the files exist after a crash),
//! logs one manifest edit naming what was added and removed (and a checkpoint's watermark),
//! then installs the new version, all under the manifest lock, so concurrent flushes and
//! compactions log and install in one order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::manifest::VersionEdit;
use crate::read_view::{Frozen, TreeState};
use crate::tree::Shared;
use crate::version::SstHandle;

/// A change to install.
pub(crate) struct Change<'a> {
    /// New SSTs, written and synced (or, for a move, reopened at their new level).
    pub(crate) added: Vec<Arc<SstHandle>>,
    /// Files the change removes, as (level, id).
    pub(crate) removed: Vec<(u8, u64)>,
    /// A checkpoint's watermark.
    pub(crate) watermark: Option<u64>,
    /// The oldest frozen memtables, now in `added`, to drop from the state.
    pub(crate) flushed: &'a [Arc<Frozen>],
    /// Whether `added` holds new directory entries to sync (not for a move).
    pub(crate) new_files: bool,
}

impl Shared {
    /// Makes `change` durable in the manifest and visible to new read views.
    pub(crate) fn install(&self, change: Change<'_>) -> Result<()> {
        if change.new_files && !change.added.is_empty() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("tree sync dir", e))?;
        }
        let mut manifest = self.manifest.lock();
        let edit = VersionEdit {
            added: change.added.iter().map(|f| f.meta.clone()).collect(),
            removed: change.removed.clone(),
            watermark: change.watermark,
            next_file_id: Some(self.next_file_id.load(Ordering::Acquire)),
        };
        manifest.log_edit(&edit)?;
        if let Some(lsn) = change.watermark {
            self.watermark.store(lsn, Ordering::Release);
        }
        let mut guard = self.state.write();
        let old = guard.clone();
        let flushed = change.flushed;
        assert!(
            old.frozen.len() >= flushed.len()
                && old
                    .frozen
                    .iter()
                    .zip(flushed)
                    .all(|(a, b)| Arc::ptr_eq(a, b)),
            "frozen memtables changed under the flush lock"
        );
        *guard = Arc::new(TreeState {
            mem: old.mem.clone(),
            frozen: old.frozen[flushed.len()..].to_vec(),
            version: Arc::new(old.version.edited(&change.removed, change.added)),
        });
        Ok(())
    }
}
