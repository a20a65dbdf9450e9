//! db_bench's workloads over any [`Target`]: fillseq, fillrandom, overwrite, readrandom,
//! readmissing and seekrandom (a seek and the next 100 entries), with db_bench's shapes
//! (zero-padded decimal keys, incompressible values; sizes are flags).
//!
//! Loads group keys as the target's `batch_keys` says and end with its `finish_load`, both
//! timed; latency is recorded per write (one key, or one batch). Reads are recorded per
//! operation, on one reader made after a close and reopen and a full untimed scan (so the
//! data is cached, as the notes ran the peers).

use std::time::Instant;

use anyhow::{Result, bail, ensure};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::target::{Reader, Shape, Target};
use crate::keys::{mix, permute, value};
use crate::measure::new_histogram;
use crate::raw::duration_ns;

/// Entries each seekrandom operation reads after its seek.
pub const SEEK_ROWS: usize = 100;
/// Values checked (untimed) after a load's reopen.
const CHECKED_VALUES: u64 = 1_000;

/// A db_bench workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    Fillseq,
    Fillrandom,
    Overwrite,
    Readrandom,
    Readmissing,
    Seekrandom,
    /// One writer, one key per synced write (`Target::write_sync`), into a fresh
    /// directory: `Counts::sync_ops` writes. Not in the default list.
    Fillsync,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::Fillseq,
        Workload::Fillrandom,
        Workload::Overwrite,
        Workload::Readrandom,
        Workload::Readmissing,
        Workload::Seekrandom,
        Workload::Fillsync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Fillseq => "fillseq",
            Workload::Fillrandom => "fillrandom",
            Workload::Overwrite => "overwrite",
            Workload::Readrandom => "readrandom",
            Workload::Readmissing => "readmissing",
            Workload::Seekrandom => "seekrandom",
            Workload::Fillsync => "fillsync",
        }
    }

    pub fn parse(name: &str) -> Result<Workload> {
        match Workload::ALL.into_iter().find(|w| w.name() == name) {
            Some(w) => Ok(w),
            None => bail!(
                "unknown workload {name:?} (known: fillseq, fillrandom, overwrite, \
                 readrandom, readmissing, seekrandom, fillsync)"
            ),
        }
    }

    pub fn is_read(self) -> bool {
        matches!(
            self,
            Workload::Readrandom | Workload::Readmissing | Workload::Seekrandom
        )
    }

    /// What one operation of the workload is, for the reports.
    pub fn op(self) -> &'static str {
        match self {
            Workload::Seekrandom => "seek + next 100",
            Workload::Readrandom | Workload::Readmissing => "get",
            Workload::Fillseq | Workload::Fillrandom | Workload::Overwrite => "put",
            Workload::Fillsync => "synced put",
        }
    }
}

/// Sizes and counts of a run.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub keys: u64,
    pub shape: Shape,
    pub reads: u64,
    pub seeks: u64,
    /// Synced writes of fillsync.
    pub sync_ops: u64,
}

impl Counts {
    /// Key and value bytes of one full load.
    pub fn raw_bytes(&self) -> u64 {
        self.keys * (self.shape.key_size + self.shape.value_size) as u64
    }

    /// Key `i`: its decimal digits, zero-padded on the left to `key_size` bytes.
    pub fn key(&self, i: u64) -> Vec<u8> {
        let digits = i.to_string();
        let size = self.shape.key_size;
        assert!(digits.len() <= size, "key {i} does not fit in {size} bytes");
        let mut out = vec![b'0'; size];
        out[size - digits.len()..].copy_from_slice(digits.as_bytes());
        out
    }

    /// Requires that every key index fits its key size.
    pub fn check(&self) -> Result<()> {
        ensure!(self.keys > 0, "--keys must be at least 1");
        ensure!(
            (self.keys - 1).to_string().len() <= self.shape.key_size,
            "--key-size {} cannot hold {} distinct decimal keys",
            self.shape.key_size,
            self.keys
        );
        ensure!(self.shape.value_size > 0, "--value-size must be at least 1");
        Ok(())
    }
}

/// What one workload measured in one process.
#[derive(Debug)]
pub struct Outcome {
    pub workload: Workload,
    pub ops: u64,
    pub seconds: f64,
    /// The part of `seconds` the load's `finish_load` took (0 for reads).
    pub finish_seconds: f64,
    /// Per write (a key or a batch) for loads, per operation for reads.
    pub latency: Histogram<u64>,
    /// Keys per recorded latency value.
    pub keys_per_latency: u64,
}

impl Outcome {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    pub fn to_json(&self) -> Value {
        let h = &self.latency;
        json!({
            "workload": self.workload.name(),
            "op": self.workload.op(),
            "ops": self.ops,
            "seconds": self.seconds,
            "finish_seconds": self.finish_seconds,
            "ops_per_sec": self.ops_per_sec(),
            "latency_ns": {
                "per": if self.keys_per_latency == 1 {
                    "operation".to_string()
                } else {
                    format!("write of {} keys", self.keys_per_latency)
                },
                "count": h.len(),
                "min": h.min(),
                "p50": h.value_at_quantile(0.5),
                "p99": h.value_at_quantile(0.99),
                "p99_9": h.value_at_quantile(0.999),
                "max": h.max(),
                "mean": h.mean(),
            },
        })
    }
}

/// Writes every key once, `pick(i)` giving write `i`'s key index and value seed, in
/// writes of `batch_keys`, then `finish_load`; all timed.
pub fn load(
    target: &mut dyn Target,
    workload: Workload,
    counts: &Counts,
    batch_keys: usize,
    pick: impl Fn(u64) -> (u64, u64),
) -> Result<Outcome> {
    ensure!(batch_keys > 0, "batches of no keys");
    let n = counts.keys;
    let mut latency = new_histogram();
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(batch_keys);
    let start = Instant::now();
    let mut done = 0u64;
    while done < n {
        let end = n.min(done + batch_keys as u64);
        batch.clear();
        for i in done..end {
            let (k, v) = pick(i);
            batch.push((counts.key(k), value(v, counts.shape.value_size)));
        }
        let write = Instant::now();
        target.write(&batch)?;
        latency.saturating_record(duration_ns(write.elapsed()));
        done = end;
    }
    let finish = Instant::now();
    target.finish_load()?;
    let finish_seconds = finish.elapsed().as_secs_f64();
    Ok(Outcome {
        workload,
        ops: n,
        seconds: start.elapsed().as_secs_f64(),
        finish_seconds,
        latency,
        keys_per_latency: batch_keys as u64,
    })
}

/// Reads every key once through one untimed scan (the data cached, as the notes ran
/// reads), and checks a sample of values: key `k` holds `value(k + shift)`.
pub fn warm_and_check(reader: &mut dyn Reader, counts: &Counts, shift: u64) -> Result<f64> {
    let start = Instant::now();
    let n = counts.keys;
    let rows = reader.seek_next(&counts.key(0), usize::try_from(n)?)?;
    ensure!(rows as u64 == n, "a full scan read {rows} entries, not {n}");
    let seconds = start.elapsed().as_secs_f64();
    let mut got = Vec::new();
    for i in 0..n.min(CHECKED_VALUES) {
        let k = mix(i ^ 0x5a5a) % n;
        ensure!(reader.get(&counts.key(k), &mut got)?, "key {k} is missing");
        ensure!(
            got == value(k + shift, counts.shape.value_size),
            "key {k} holds the wrong value"
        );
    }
    Ok(seconds)
}

/// One read workload on `reader`.
pub fn read(reader: &mut dyn Reader, workload: Workload, counts: &Counts) -> Result<Outcome> {
    let n = counts.keys;
    let mut latency = new_histogram();
    let mut value = Vec::new();
    let (ops, salt) = match workload {
        Workload::Readrandom => (counts.reads, 0xabcd),
        Workload::Readmissing => (counts.reads, 0x1234),
        Workload::Seekrandom => (counts.seeks, 0x7777),
        _ => bail!("{} is not a read workload", workload.name()),
    };
    let mut hits = 0u64;
    let start = Instant::now();
    for i in 0..ops {
        let mut key = counts.key(mix(i ^ salt) % n);
        if workload == Workload::Readmissing {
            // A digit replaced by a letter: no loaded key has it.
            *key.last_mut().expect("keys are at least one byte") = b'x';
        }
        let op = Instant::now();
        hits += match workload {
            Workload::Seekrandom => reader.seek_next(&key, SEEK_ROWS)? as u64,
            _ => u64::from(reader.get(&key, &mut value)?),
        };
        latency.saturating_record(duration_ns(op.elapsed()));
    }
    let seconds = start.elapsed().as_secs_f64();
    match workload {
        Workload::Readrandom => ensure!(hits == ops, "readrandom found {hits} of {ops}"),
        Workload::Readmissing => ensure!(hits == 0, "readmissing found {hits}"),
        _ => ensure!(
            hits >= ops * (SEEK_ROWS as u64) / 2 || n < 2 * SEEK_ROWS as u64,
            "seekrandom read only {hits} entries in {ops} seeks"
        ),
    }
    Ok(Outcome {
        workload,
        ops,
        seconds,
        finish_seconds: 0.0,
        latency,
        keys_per_latency: 1,
    })
}

/// `counts.sync_ops` synced one-key writes of scattered keys, each timed.
pub fn fill_sync(target: &mut dyn Target, counts: &Counts) -> Result<Outcome> {
    let n = counts.keys;
    let ops = counts.sync_ops;
    ensure!(ops > 0, "fillsync of no writes");
    let mut latency = new_histogram();
    let start = Instant::now();
    for i in 0..ops {
        let k = permute(i % n, n);
        let (key, value) = (counts.key(k), value(k, counts.shape.value_size));
        let op = Instant::now();
        target.write_sync(&key, &value)?;
        latency.saturating_record(duration_ns(op.elapsed()));
    }
    Ok(Outcome {
        workload: Workload::Fillsync,
        ops,
        seconds: start.elapsed().as_secs_f64(),
        finish_seconds: 0.0,
        latency,
        keys_per_latency: 1,
    })
}

/// Key index and value seed of write `i` of each load: fillseq in order, fillrandom in a
/// scattered order, overwrite in another scattered order with new values.
pub fn pick(workload: Workload, n: u64) -> impl Fn(u64) -> (u64, u64) {
    move |i| match workload {
        Workload::Fillseq => (i, i),
        Workload::Overwrite => {
            let k = permute(i + n / 3, n);
            (k, k + 1)
        }
        _ => {
            let k = permute(i, n);
            (k, k)
        }
    }
}
