//! Our side: the WAL opened on `RealFs` in a fresh directory, brought to its steady state
//! (first segment installed, a spare segment ready) before the clock starts.
//!
//! - Synced appends: `threads` appenders, each calling `Wal::append` (which returns once
//!   the record is durable) in a loop for the sample's duration.
//! - Pipelined synced appends: one thread keeps N appends in flight through tickets, as
//!   async tasks on one executor thread would.
//! - Unsynced bulk: `SyncPolicy::Never`, batches of 1 MiB of records through `Wal::submit`,
//!   each ticket waited for, then one `Wal::sync`; the sample crosses segment boundaries so
//!   rotation is included.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hdrhistogram::Histogram;
use popdb_io::{FileSystem, FsRef, RealFs};
use popdb_wal::{NewRecord, NodeId, RecordKind, SyncPolicy, Term, Wal, WalStats};

use crate::measure::{Sample, new_histogram};
use crate::raw::{duration_ns, payload};
use crate::settings::Settings;

/// One sample of synced appends by `threads` appenders in `dir` (empty).
pub fn synced_appends(
    fs: &Arc<RealFs>,
    dir: &Path,
    settings: &Settings,
    threads: usize,
) -> Result<Sample> {
    let wal = open_ready(fs, dir, settings, SyncPolicy::Always)?;
    let record = payload(settings.record_size, 0x3c);
    let barrier = Barrier::new(threads + 1);
    let before = wal.stats();
    let (start, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (wal, record, barrier) = (&wal, &record, &barrier);
                scope.spawn(move || appender(wal, record, barrier, settings.sample))
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("an appender thread panicked"))
            .collect();
        (start, results)
    });
    let elapsed = start.elapsed();
    let after = wal.stats();
    let mut latency = new_histogram();
    let mut ops = 0u64;
    for result in results {
        let (count, histogram) = result?;
        ops += count;
        latency
            .add(&histogram)
            .expect("histograms of equal bounds merge");
    }
    let timing = Timing {
        ops,
        elapsed,
        latency,
    };
    finish_synced(wal, settings, stats_delta(before, after), timing)
}

/// One sample of synced appends kept `depth` deep in flight by a single thread through
/// tickets (`Wal::submit`, then waiting on the oldest), the way async tasks on one executor
/// thread append: group commit without an OS thread per appender.
pub fn pipelined_appends(
    fs: &Arc<RealFs>,
    dir: &Path,
    settings: &Settings,
    depth: usize,
) -> Result<Sample> {
    let wal = open_ready(fs, dir, settings, SyncPolicy::Always)?;
    let record = payload(settings.record_size, 0x5a);
    let submit = |wal: &Wal| {
        wal.submit(vec![NewRecord {
            term: Term(0),
            node: NodeId(0),
            kind: RecordKind::Normal,
            payload: record.clone(),
        }])
        .context("submit")
    };
    let before = wal.stats();
    let mut latency = new_histogram();
    let mut ops = 0u64;
    let start = Instant::now();
    let deadline = start + settings.sample;
    let mut in_flight = std::collections::VecDeque::with_capacity(depth);
    for _ in 0..depth {
        in_flight.push_back((Instant::now(), submit(&wal)?));
    }
    while let Some((t0, ticket)) = in_flight.pop_front() {
        let appended = ticket.wait().context("append")?;
        ensure!(appended.durable, "a synced append came back not durable");
        latency.saturating_record(duration_ns(t0.elapsed()));
        ops += 1;
        if Instant::now() < deadline {
            in_flight.push_back((Instant::now(), submit(&wal)?));
        }
    }
    let elapsed = start.elapsed();
    let after = wal.stats();
    let timing = Timing {
        ops,
        elapsed,
        latency,
    };
    finish_synced(wal, settings, stats_delta(before, after), timing)
}

/// What a synced sample measured.
struct Timing {
    ops: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

/// Closes the WAL, checks that it counted every append, and makes the sample.
fn finish_synced(wal: Wal, settings: &Settings, delta: WalStats, timing: Timing) -> Result<Sample> {
    wal.close().context("close the WAL")?;
    let ops = timing.ops;
    ensure!(
        delta.records == ops,
        "the WAL counted {} records, the driver {ops}",
        delta.records
    );
    Ok(Sample {
        ops,
        payload_bytes: ops * settings.record_size as u64,
        written_bytes: delta.bytes,
        writes: delta.writes,
        syncs: delta.syncs,
        segments_created: delta.segments_created,
        elapsed: timing.elapsed,
        latency: Some(timing.latency),
    })
}

/// One appender: appends until `duration` has passed since the barrier, timing each append.
fn appender(
    wal: &Wal,
    record: &[u8],
    barrier: &Barrier,
    duration: Duration,
) -> Result<(u64, Histogram<u64>)> {
    let mut latency = new_histogram();
    let mut count = 0u64;
    barrier.wait();
    let deadline = Instant::now() + duration;
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        let appended = wal
            .append(RecordKind::Normal, record.to_vec())
            .context("append")?;
        latency.saturating_record(duration_ns(t0.elapsed()));
        ensure!(appended.durable, "a synced append came back not durable");
        count += 1;
    }
    Ok((count, latency))
}

/// One sample of unsynced bulk appends in `dir` (empty).
pub fn bulk_appends(fs: &Arc<RealFs>, dir: &Path, settings: &Settings) -> Result<Sample> {
    let per_batch = settings.bulk_batch_records();
    let records_total = settings.bulk_bytes.div_ceil(settings.record_size as u64);
    let record = payload(settings.record_size, 0xc3);
    // Built before the clock starts: the records are the caller's, the WAL's work begins at
    // submit.
    let mut batches: Vec<Vec<NewRecord>> = Vec::new();
    let mut left = records_total;
    while left > 0 {
        let n = left.min(per_batch as u64);
        batches.push(
            (0..n)
                .map(|_| NewRecord {
                    term: Term(0),
                    node: NodeId(0),
                    kind: RecordKind::Normal,
                    payload: record.clone(),
                })
                .collect(),
        );
        left -= n;
    }
    let wal = open_ready(fs, dir, settings, SyncPolicy::Never)?;
    let before = wal.stats();
    let mut latency = new_histogram();
    let start = Instant::now();
    for batch in batches {
        let t0 = Instant::now();
        wal.submit(batch)
            .context("submit")?
            .wait()
            .context("append")?;
        latency.saturating_record(duration_ns(t0.elapsed()));
    }
    wal.sync().context("final sync")?;
    let elapsed = start.elapsed();
    let after = wal.stats();
    wal.close().context("close the WAL")?;
    let delta = stats_delta(before, after);
    ensure!(
        delta.records == records_total,
        "the WAL counted {} records, expected {records_total}",
        delta.records
    );
    Ok(Sample {
        ops: records_total,
        payload_bytes: records_total * settings.record_size as u64,
        written_bytes: delta.bytes,
        writes: delta.writes,
        syncs: delta.syncs,
        segments_created: delta.segments_created,
        elapsed,
        latency: Some(latency),
    })
}

/// Opens a WAL in `dir` and brings it to its steady state: one record appended (so the
/// first segment is installed) and a spare segment ready (so the spare thread is idle and
/// the next rotation does not wait for one).
fn open_ready(fs: &Arc<RealFs>, dir: &Path, settings: &Settings, sync: SyncPolicy) -> Result<Wal> {
    let fs_ref: FsRef = Arc::clone(fs) as FsRef;
    let (wal, report) = Wal::open(fs_ref, dir, settings.wal_options(sync))
        .with_context(|| format!("open a WAL in {}", dir.display()))?;
    ensure!(
        wal.next_lsn().0 == 1,
        "a fresh directory held a log: {report:?}"
    );
    wal.append(RecordKind::Normal, payload(settings.record_size, 1))
        .context("warm-up append")?;
    wal.sync().context("warm-up sync")?;
    wait_for_spare(fs, dir, settings.spare_wait)?;
    Ok(wal)
}

/// Waits until the WAL's spare thread has a spare ready. Spares are named `spare-*.wal` once
/// ready (wal/src/segments.rs); this is the WAL's private naming, so a rename there shows up
/// here as a timeout, not as a wrong result.
fn wait_for_spare(fs: &RealFs, dir: &Path, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let ready = fs
            .read_dir(dir)
            .with_context(|| format!("list {}", dir.display()))?
            .iter()
            .any(|name| {
                let name = Path::new(name);
                name.extension().is_some_and(|e| e == "wal")
                    && name.to_str().is_some_and(|n| n.starts_with("spare-"))
            });
        if ready {
            return Ok(());
        }
        if start.elapsed() >= limit {
            bail!(
                "no spare segment appeared in {} within {limit:?} (did the WAL rename \
                 its spares?)",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn stats_delta(before: WalStats, after: WalStats) -> WalStats {
    WalStats {
        records: after.records - before.records,
        writes: after.writes - before.writes,
        syncs: after.syncs - before.syncs,
        bytes: after.bytes - before.bytes,
        segments_created: after.segments_created - before.segments_created,
        segments_recycled: after.segments_recycled - before.segments_recycled,
        callback_panics: after.callback_panics - before.callback_panics,
    }
}
