//! How a log is opened: segment size, sync policy, limits.

use std::sync::Arc;
use std::time::Duration;

use popdb_io::{Clock, SystemClock};

use crate::format::{RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, UNIT_HEADER_SIZE};

/// When appended records are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every group-commit write is followed by an fdatasync before appenders hear back.
    /// The default.
    Always,
    /// Writes are synced when the last sync is at least this old (checked at each write
    /// and by a timer); appenders hear back after the write, told whether it is durable.
    Interval(Duration),
    /// Never synced by the log (only at segment switches, and by [`crate::Wal::sync`]); a
    /// crash may lose the tail, and the LSNs of records lost in it are handed out again
    /// (an LSN is a position in the log, as a Raft index is).
    Never,
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
    /// reserved space). Under [`SyncPolicy::Never`] no append waits for a sync, so spares
    /// are only reserved whatever this says: filling them would double the bytes written.
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
