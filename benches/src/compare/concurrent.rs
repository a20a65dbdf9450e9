//! The workloads that share one target between threads: db_bench's readwhilewriting (one
//! writer at full speed, one reader on the other core) and fillsync with many writers
//! (synced one-key commits; an engine with group commit shares its syncs between them).
//!
//! Every loop is bounded: the reader by its operation count, the writers by a deadline, a
//! stop flag and `WRITES_MAX`.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hdrhistogram::Histogram;

use super::target::{Reader, Target};
use super::workload::{Counts, Outcome, Workload};
use crate::keys::{mix, permute, value, value_into};
use crate::measure::new_histogram;
use crate::raw::duration_ns;

/// Gets between two fresh readers in readwhilewriting: often enough that the reads see the
/// writer's recent writes (db_bench's reads see the latest data), rarely enough that making
/// a reader (a read transaction, a read view) is not what is measured.
pub const READER_REFRESH_OPS: u64 = 100;
/// Bound on the writes of one writer thread.
const WRITES_MAX: u64 = 1 << 40;

/// readwhilewriting on a loaded target: the reader makes `counts.reads` gets of scattered
/// loaded keys (every one must be found), a fresh reader every `READER_REFRESH_OPS`; the
/// writer overwrites scattered keys in writes of `batch_keys` (as the loads write) until the
/// reader is done (at least one write). Returns the reader's row and the writer's (its keys per second).
///
/// # Errors
/// The target's, or a get that did not find its key.
pub fn read_while_writing(
    target: &dyn Target,
    counts: &Counts,
    batch_keys: usize,
) -> Result<(Outcome, Outcome)> {
    ensure!(batch_keys > 0, "batches of no keys");
    let stop = AtomicBool::new(false);
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            start.wait();
            let result = rww_write(target, counts, batch_keys, &stop);
            // A failed writer ends the run early; the reader sees the flag.
            stop.store(true, Ordering::Release);
            result
        });
        start.wait();
        let read = rww_read(target, counts, &stop);
        stop.store(true, Ordering::Release);
        let write = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // The writer's error first: it is why a reader stopped early.
        let write = write?;
        Ok((read?, write))
    })
}

fn rww_read(target: &dyn Target, counts: &Counts, stop: &AtomicBool) -> Result<Outcome> {
    let n = counts.keys;
    let mut latency = new_histogram();
    let mut value = Vec::new();
    let mut reader: Option<Box<dyn Reader + '_>> = None;
    let mut hits = 0u64;
    let mut ops = 0u64;
    let mut key = Vec::with_capacity(counts.shape.key_size);
    let begin = Instant::now();
    while ops < counts.reads {
        if ops.is_multiple_of(READER_REFRESH_OPS) {
            // The old reader goes first: LMDB allows one read transaction per thread.
            drop(reader.take());
            if stop.load(Ordering::Acquire) {
                break;
            }
            reader = Some(target.reader()?);
        }
        counts.key_into(mix(ops ^ 0xfeed) % n, &mut key);
        let r = reader.as_mut().expect("made above at every refresh");
        let op = Instant::now();
        hits += u64::from(r.get(&key, &mut value)?);
        latency.saturating_record(duration_ns(op.elapsed()));
        ops += 1;
    }
    let seconds = begin.elapsed().as_secs_f64();
    ensure!(hits == ops, "readwhilewriting found {hits} of {ops} keys");
    ensure!(
        ops > 0,
        "readwhilewriting: the writer stopped before any read"
    );
    Ok(Outcome {
        name: Workload::ReadWhileWriting.name(),
        op: "get",
        ops,
        seconds,
        finish_seconds: 0.0,
        latency,
        keys_per_latency: 1,
    })
}

fn rww_write(
    target: &dyn Target,
    counts: &Counts,
    batch_keys: usize,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let n = counts.keys;
    let mut latency = new_histogram();
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(batch_keys);
    let mut keys = 0u64;
    let begin = Instant::now();
    // At least one write, so that a reader quicker than the first write still leaves a rate.
    while (keys == 0 || !stop.load(Ordering::Acquire)) && keys < WRITES_MAX {
        batch.resize_with(batch_keys, Default::default);
        for (i, (key, val)) in (keys..).zip(batch.iter_mut()) {
            // Another scattered order than the loads', with values no load wrote.
            let k = permute((i + 2 * n / 3) % n, n);
            counts.key_into(k, key);
            value_into(k + 2, counts.shape.value_size, val);
        }
        let write = Instant::now();
        target.write(&batch)?;
        latency.saturating_record(duration_ns(write.elapsed()));
        keys += batch_keys as u64;
    }
    Ok(Outcome {
        name: format!("{}_writer", Workload::ReadWhileWriting.name()),
        op: "put (while the reader runs)",
        ops: keys,
        seconds: begin.elapsed().as_secs_f64(),
        finish_seconds: 0.0,
        latency,
        keys_per_latency: batch_keys as u64,
    })
}

/// fillsync with `writers` threads on a fresh target opened for synced commits: each
/// thread writes scattered keys, one synced `write_sync` per key, until `seconds` have
/// passed since they all started. Latency is per commit, over all threads.
///
/// # Errors
/// The target's.
pub fn fill_sync(target: &dyn Target, counts: &Counts, writers: u32) -> Result<Outcome> {
    ensure!(writers > 0, "fillsync with no writers");
    ensure!(
        counts.sync_seconds > 0.0,
        "fillsync needs --sync-seconds above 0"
    );
    let duration = Duration::from_secs_f64(counts.sync_seconds);
    let start = Barrier::new(writers as usize + 1);
    let (results, seconds) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..u64::from(writers))
            .map(|t| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let deadline = Instant::now() + duration;
                    fill_sync_writer(target, counts, t, u64::from(writers), deadline)
                })
            })
            .collect();
        start.wait();
        let begin = Instant::now();
        let results: Vec<Result<(u64, Histogram<u64>)>> = threads
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (results, begin.elapsed().as_secs_f64())
    });
    let mut ops = 0;
    let mut latency = new_histogram();
    for result in results {
        let (thread_ops, thread_latency) = result?;
        ops += thread_ops;
        latency
            .add(&thread_latency)
            .expect("histograms of equal bounds merge");
    }
    ensure!(ops > 0, "fillsync with {writers} writers committed nothing");
    Ok(Outcome {
        name: Workload::Fillsync { writers }.name(),
        op: "synced put",
        ops,
        seconds,
        finish_seconds: 0.0,
        latency,
        keys_per_latency: 1,
    })
}

/// Writer `t` of `writers`: keys `t`, `t + writers`, ... of a scattered order.
fn fill_sync_writer(
    target: &dyn Target,
    counts: &Counts,
    t: u64,
    writers: u64,
    deadline: Instant,
) -> Result<(u64, Histogram<u64>)> {
    let n = counts.keys;
    let mut latency = new_histogram();
    let mut ops = 0u64;
    while ops < WRITES_MAX && Instant::now() < deadline {
        let k = permute((ops * writers + t) % n, n);
        let (key, value) = (counts.key(k), value(k, counts.shape.value_size));
        let op = Instant::now();
        target.write_sync(&key, &value)?;
        latency.saturating_record(duration_ns(op.elapsed()));
        ops += 1;
    }
    Ok((ops, latency))
}
