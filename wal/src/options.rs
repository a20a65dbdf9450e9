//! How a log is opened: segment size, sync policy, limits.

use std::sync::Arc;
use std::time::Duration;

use popdb_io::{Clock, SystemClock};

use crate::format::{RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, UNIT_HEADER_SIZE};

/// When appended records are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every group-commit write is followed by an fdatasync before appenders hear back,
    /// unless every append in it asked [`Durability::NoSync`]; such a write stays unsynced
    /// until the next sync (no timer runs under `Always`). The default.
    Always,
    /// Writes are synced when the last sync is at least this old (checked at each write
    /// and by a timer), or at once if an append in them asks [`Durability::Sync`];
    /// appenders hear back after the write, told whether it is durable.
    Interval(Duration),
    /// Never synced by the log (only at segment switches, for appends that ask
    /// [`Durability::Sync`], and by [`crate::Wal::sync`]); a crash may lose the tail, and the
    /// LSNs of records lost in it are handed out again (an LSN is a position in the log, as
    /// a Raft index is).
    Never,
}

/// Whether one append must be durable before it completes, whatever the log's
/// [`SyncPolicy`] does for the others.
///
/// A group-commit write is synced if any append in it asks [`Durability::Sync`], or if the
/// policy wants it: under [`SyncPolicy::Always`] when any append in it is
/// [`Durability::Policy`], under [`SyncPolicy::Interval`] when the interval is due. One
/// fdatasync covers the whole tail of the segment, so it also makes durable every record
/// written before it, [`Durability::NoSync`] ones included. [`crate::Appended::durable`]
/// says, for each append, whether its group was synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// As the log's SyncPolicy says (the default).
    #[default]
    Policy,
    /// Synced before it completes, whatever the policy; group-committed with whatever else is
    /// queued (one fdatasync for the group).
    Sync,
    /// Written (handed to the OS) before it completes, and not synced for its own sake: it
    /// becomes durable with the next sync (a later Sync request's group, the policy's
    /// interval, a segment switch, Wal::sync).
    ///
    /// Under [`SyncPolicy::Always`] such an append completes after the write, with `durable:
    /// false` unless another append in its group needed the sync. Under
    /// [`SyncPolicy::Interval`] it is synced with its group when the interval is due: the
    /// interval bounds how long any written byte stays unsynced, and skipping that sync would
    /// only hand it to the timer a moment later.
    NoSync,
}

/// Options of [`crate::Wal::open`]. Every field has a documented default.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size of each segment file, fixed when the segment is created. Default 64 MiB;
    /// between [`crate::format::SEGMENT_SIZE_MIN`] and [`crate::format::SEGMENT_SIZE_MAX`].
    pub segment_size: u64,
    /// When appends are made durable. Default [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Largest record payload accepted, in bytes. Default 16 MiB; must leave room for a
    /// unit in a segment.
    pub record_size_max: u32,
    /// Bytes of appended records that may wait for the writer; appenders block beyond it.
    /// Default 256 MiB.
    pub queue_bytes_max: u64,
    /// Spare segments kept ready (pre-written, so the first syncs into them cost the cheap
    /// overwrite fdatasync). Default 1.
    pub spare_segments: usize,
    /// Whether spares are filled with zeros before use (true, the default) or only
    /// reserved with fallocate. Zero-filled blocks make the first sync into each block the
    /// cheap overwrite fdatasync (about 50 us here, against about 100 us into merely
    /// reserved space). Under [`SyncPolicy::Never`] spares are only reserved whatever this
    /// says: most appends there wait for no sync, and filling would double the bytes
    /// written. Appends that ask [`Durability::Sync`] under `Never` then pay the dearer
    /// first sync into reserved space; a log that syncs most appends should use `Always`
    /// and ask [`Durability::NoSync`] for the others. Under the other policies a spare is
    /// filled only if at least 1 in 16 of the group-commit writes since the last spare was
    /// prepared was synced: a no-sync bulk load into an `Always` log (as the Db's are)
    /// does not pay for zeros it would not sync into.
    pub prewrite_segments: bool,
    /// The clock that times [`SyncPolicy::Interval`].
    pub clock: Arc<dyn Clock>,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            sync: SyncPolicy::Always,
            record_size_max: 16 << 20,
            queue_bytes_max: 256 << 20,
            spare_segments: 1,
            prewrite_segments: true,
            clock: Arc::new(SystemClock::new()),
        }
    }
}

impl WalOptions {
    /// Checks the options against each other; a message says what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        use crate::format::{SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&self.segment_size) {
            return Err(format!(
                "segment_size {} is outside {SEGMENT_SIZE_MIN}..={SEGMENT_SIZE_MAX}",
                self.segment_size
            ));
        }
        if u64::from(self.record_size_max) > self.record_capacity() {
            return Err(format!(
                "record_size_max {} does not fit a segment of {} bytes (at most {})",
                self.record_size_max,
                self.segment_size,
                self.record_capacity()
            ));
        }
        if self.queue_bytes_max == 0 {
            return Err("queue_bytes_max must be positive".to_string());
        }
        Ok(())
    }

    /// The largest payload a single record could have in an empty segment.
    pub(crate) fn record_capacity(&self) -> u64 {
        self.segment_size - SEGMENT_HEADER_SIZE - (UNIT_HEADER_SIZE + RECORD_HEADER_SIZE) as u64
    }
}
