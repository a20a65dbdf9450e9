//! Every knob of a `wal` run, resolved once from the mode and the command line, so that the
//! JSON output can record all of them and a change of default cannot change a result
//! silently.

use std::time::Duration;

use anyhow::{Result, ensure};
use popdb_wal::{SyncPolicy, WalOptions};
use serde_json::{Value, json};

use crate::WalArgs;

/// How long and how large a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Quick,
    Smoke,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        }
    }
}

/// The resolved settings of a `wal` run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    /// Pairs of samples per comparison.
    pub pairs: usize,
    /// Length of each synced sample.
    pub sample: Duration,
    /// Payload bytes per record, in every benchmark.
    pub record_size: usize,
    /// Appender thread counts of the synced WAL runs, ascending, starting with 1.
    pub threads: Vec<usize>,
    /// Payload bytes written by each bulk sample (both sides).
    pub bulk_bytes: u64,
    /// Payload bytes per bulk batch (one `submit` on the WAL side, one write on the raw
    /// side).
    pub bulk_batch_bytes: u64,
    /// Size of the file the raw fdatasync loop overwrites (written and synced first).
    pub raw_file_bytes: u64,
    /// WAL segment size.
    pub segment_size: u64,
    /// Whether WAL spares are zero-filled before use.
    pub prewrite_segments: bool,
    /// Spare segments the WAL keeps ready.
    pub spare_segments: usize,
    /// Largest WAL record payload.
    pub record_size_max: u32,
    /// WAL queue budget.
    pub queue_bytes_max: u64,
    /// Longest wait for the WAL's spare segment before a sample starts.
    pub spare_wait: Duration,
    /// Whether `RealFs` may use io_uring (`--no-io-uring` turns it off).
    pub io_uring: bool,
    /// The `--only` filter on comparison names.
    pub only: Option<String>,
    /// Pause between samples, after the last one's files are removed and everything is
    /// written back.
    pub settle: Duration,
}

impl Settings {
    pub fn from_args(args: &WalArgs) -> Result<Settings> {
        let mode = if args.smoke {
            Mode::Smoke
        } else if args.quick {
            Mode::Quick
        } else {
            Mode::Full
        };
        let defaults = WalOptions::default();
        let (pairs, seconds, bulk_mib, segment_size, record_size_max) = match mode {
            Mode::Full => (5, 2.0, 256, defaults.segment_size, defaults.record_size_max),
            Mode::Quick => (5, 0.3, 64, defaults.segment_size, defaults.record_size_max),
            // Small segments so that the tiny bulk sample still crosses boundaries (and a
            // record limit that fits them).
            Mode::Smoke => (1, 0.05, 16, 4 << 20, 256 << 10),
        };
        let pairs = args.pairs.unwrap_or(pairs);
        let seconds = args.seconds.unwrap_or(seconds);
        let bulk_mib = args.bulk_mib.unwrap_or(bulk_mib);
        let record_size = args.record_size.unwrap_or(100);
        let mut threads = args.threads.clone().unwrap_or_else(|| vec![1, 4, 16, 64]);
        threads.push(1);
        threads.sort_unstable();
        threads.dedup();
        ensure!(pairs >= 1, "--pairs must be at least 1");
        ensure!(
            seconds.is_finite() && seconds > 0.0,
            "--seconds must be positive"
        );
        ensure!(bulk_mib >= 1, "--bulk-mib must be at least 1");
        ensure!(
            (1..=1 << 20).contains(&record_size),
            "--record-size must be 1..=1048576"
        );
        ensure!(
            threads.iter().all(|&t| (1..=1024).contains(&t)),
            "--threads must be 1..=1024"
        );
        Ok(Settings {
            mode,
            pairs,
            sample: Duration::from_secs_f64(seconds),
            record_size,
            threads,
            bulk_bytes: bulk_mib << 20,
            bulk_batch_bytes: 1 << 20,
            raw_file_bytes: segment_size,
            segment_size,
            prewrite_segments: true,
            spare_segments: 1,
            record_size_max,
            queue_bytes_max: defaults.queue_bytes_max,
            spare_wait: Duration::from_mins(1),
            io_uring: !args.no_io_uring,
            only: args.only.clone(),
            settle: match mode {
                Mode::Full | Mode::Quick => Duration::from_millis(200),
                Mode::Smoke => Duration::ZERO,
            },
        })
    }

    /// The WAL's options for a run with `sync`, every field set explicitly.
    pub fn wal_options(&self, sync: SyncPolicy) -> WalOptions {
        WalOptions {
            segment_size: self.segment_size,
            sync,
            record_size_max: self.record_size_max,
            queue_bytes_max: self.queue_bytes_max,
            spare_segments: self.spare_segments,
            prewrite_segments: self.prewrite_segments,
            clock: std::sync::Arc::new(popdb_io::SystemClock::new()),
        }
    }

    /// Records per bulk batch.
    pub fn bulk_batch_records(&self) -> usize {
        (self.bulk_batch_bytes as usize / self.record_size).max(1)
    }

    /// Every option, for the JSON output.
    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode.name(),
            "pairs": self.pairs,
            "sample_seconds": self.sample.as_secs_f64(),
            "record_size": self.record_size,
            "threads": self.threads,
            "bulk_bytes": self.bulk_bytes,
            "bulk_batch_bytes": self.bulk_batch_bytes,
            "bulk_batch_records": self.bulk_batch_records(),
            "raw_file_bytes": self.raw_file_bytes,
            "spare_wait_seconds": self.spare_wait.as_secs_f64(),
            "settle_seconds": self.settle.as_secs_f64(),
            "io_uring_allowed": self.io_uring,
            "only": self.only,
            "between_samples": "remove the sample directory, fsync its parent, sync(2), \
                sleep settle_seconds",
            "wal": {
                "segment_size": self.segment_size,
                "sync_synced_runs": "Always",
                "sync_bulk_runs": "Never",
                "record_size_max": self.record_size_max,
                "queue_bytes_max": self.queue_bytes_max,
                "spare_segments": self.spare_segments,
                "prewrite_segments": self.prewrite_segments,
                "clock": "SystemClock",
            },
            "raw": {
                "fdatasync_loop": "RealFs File::write_at of one record, then File::sync_data, \
                    sequential offsets in a pre-written and synced file (wrapping at its end)",
                "bulk": "RealFs File::write_all_at of bulk_batch_bytes at sequential offsets \
                    into a new file, then File::sync_data once",
            },
            "bulk_wal": "Wal::submit of bulk_batch_records records, waiting each ticket, \
                then Wal::sync once; timed from the first submit",
        })
    }
}
