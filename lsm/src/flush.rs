//! Flushes: frozen memtables become L0 SSTs, oldest first, each recorded by one manifest edit
//! (a checkpoint's edit, and every flush of a tree that is not log-backed, also carries the
//! watermark). Runs under the flush lock; the edit is
//! logged and installed under the manifest lock, so flushes run beside a compaction.
//!
//! Order of durability: the SST is written and synced, the directory synced, then the edit
//! logged and synced; only then is the new version installed and the memtable released. A
//! crash anywhere before the edit is durable leaves an orphan file, deleted at the next
//! open, and the manifest as it was.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::install::Change;
use crate::output::Output;
use crate::read_view::Frozen;
use crate::stats::Counters;
use crate::tree::Shared;
use crate::version::SstHandle;

impl Shared {
    /// Flushes the oldest frozen memtable (its flushability was checked by the caller).
    /// A tree alone (not log-backed) is its own record: once its SSTs hold every write
    /// through the freeze point (flushes go oldest first), a reopen reads there, so the
    /// flush records it as the watermark, and compaction may drop the versions it shadows.
    /// A log-backed tree's watermark moves only at its owner's checkpoints, which its
    /// owner's replay and validation start from.
    pub(crate) fn flush_oldest(&self) -> Result<()> {
        let frozen = self.current().frozen[0].clone();
        let watermark = (!self.options.log_backed)
            .then_some(frozen.freeze_lsn)
            .filter(|&lsn| lsn > self.watermark.load(Ordering::Acquire));
        self.flush_prefix(&[frozen], watermark)
    }

    /// The flush half of a checkpoint at `lsn`: every frozen memtable holding a version at or
    /// below `lsn` is flushed, and the edit records `lsn` as the watermark.
    pub(crate) fn checkpoint_flush(&self, lsn: u64) -> Result<()> {
        let state = self.current();
        let count = state.frozen.iter().take_while(|f| f.min_lsn <= lsn).count();
        let prefix = &state.frozen[..count];
        let durable = self.durable_lsn();
        if let Some(needed) = prefix.iter().map(|f| f.freeze_lsn).max()
            && needed > durable
        {
            return Err(Error::NotDurable { needed, durable });
        }
        self.flush_prefix(prefix, Some(lsn))
    }

    /// Writes one L0 SST per memtable of `prefix` (the oldest frozen ones, in order), logs
    /// one edit naming them (and the watermark, for a checkpoint), and installs the result.
    fn flush_prefix(&self, prefix: &[Arc<Frozen>], watermark: Option<u64>) -> Result<()> {
        let mut added = Vec::with_capacity(prefix.len());
        for frozen in prefix {
            let id = self.next_file_id.fetch_add(1, Ordering::AcqRel);
            added.extend(self.write_frozen(frozen, id)?);
        }
        let bytes: u64 = added.iter().map(|f| f.meta.size).sum();
        self.install(Change {
            added,
            removed: Vec::new(),
            watermark,
            flushed: prefix,
            new_files: true,
        })?;
        Counters::add(&self.counters.bytes_flushed, bytes);
        Counters::add(&self.counters.flushes, prefix.len() as u64);
        Ok(())
    }

    /// Writes the versions of `frozen` at or below its freeze point to SST `id`; `None` if
    /// it holds none.
    fn write_frozen(&self, frozen: &Frozen, id: u64) -> Result<Option<Arc<SstHandle>>> {
        let mut output = Output::create(self, id, 0)?;
        for entry in frozen.mem.versions() {
            if entry.lsn() <= frozen.freeze_lsn {
                output.add(entry.encoded_key(), entry.raw_value())?;
            }
        }
        output.finish(self)
    }
}
