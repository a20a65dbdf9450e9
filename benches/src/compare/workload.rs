//! The workloads' names, and db_bench's single-threaded workloads over any [`Target`]:
//! fillseq, fillrandom, overwrite, readrandom, readmissing and seekrandom (a seek and the
//! next 100 entries), with db_bench's shapes (zero-padded decimal keys, incompressible
//! values; sizes are flags). The threaded ones (readwhilewriting, fillsync) are in
//! `concurrent.rs`, YCSB in `ycsb.rs`.
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
use super::ycsb::Ycsb;
use crate::keys::{mix, permute, value, value_into};
use crate::measure::new_histogram;
use crate::raw::duration_ns;

/// Entries each seekrandom operation reads after its seek.
pub const SEEK_ROWS: usize = 100;
/// Values checked (untimed) after a load's reopen.
const CHECKED_VALUES: u64 = 1_000;

/// A workload, in the name its users know it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    Fillseq,
    Fillrandom,
    Overwrite,
    Readrandom,
    Readmissing,
    Seekrandom,
    /// db_bench's readwhilewriting: one writer thread overwriting at full speed while the
    /// reader (the other core) makes `Counts::reads` gets; both rates reported.
    ReadWhileWriting,
    /// Synced one-key commits from `writers` threads for `Counts::sync_seconds`, into a
    /// fresh directory (db_bench's fillsync with `--threads`).
    Fillsync {
        writers: u32,
    },
    /// A YCSB core workload after the load.
    Ycsb(Ycsb),
}

/// The db_bench names that stand for one workload each.
const SIMPLE: [(Workload, &str); 7] = [
    (Workload::Fillseq, "fillseq"),
    (Workload::Fillrandom, "fillrandom"),
    (Workload::Overwrite, "overwrite"),
    (Workload::Readrandom, "readrandom"),
    (Workload::Readmissing, "readmissing"),
    (Workload::Seekrandom, "seekrandom"),
    (Workload::ReadWhileWriting, "readwhilewriting"),
];

impl Workload {
    /// The name in reports and ratio lines: db_bench's, `fillsync_<writers>`, or
    /// `ycsb_<a..f>_<zipf|uniform>`.
    pub fn name(self) -> String {
        match self {
            Workload::Fillsync { writers } => format!("fillsync_{writers}"),
            Workload::Ycsb(y) => y.name(),
            simple => SIMPLE
                .iter()
                .find(|(w, _)| *w == simple)
                .map_or("?", |(_, name)| name)
                .to_string(),
        }
    }

    /// The rows a workload reports: its name, and for readwhilewriting also the writer's
    /// rate as `readwhilewriting_writer`.
    pub fn rows(self) -> Vec<String> {
        match self {
            Workload::ReadWhileWriting => vec![self.name(), format!("{}_writer", self.name())],
            _ => vec![self.name()],
        }
    }

    /// Parses a list of names, each once, in run order. Besides the names `name` gives:
    /// `fillsync` is one workload per count in `sync_writers`, `ycsb` all twelve YCSB
    /// workloads, `ycsb_<a..f>` one mix with both key choices.
    ///
    /// # Errors
    /// An unknown name, or an empty list.
    pub fn parse_list(names: &[String], sync_writers: &[u32]) -> Result<Vec<Workload>> {
        let mut out = Vec::new();
        for name in names.iter().map(|n| n.trim()) {
            out.extend(Workload::parse(name, sync_writers)?);
        }
        out.sort();
        out.dedup();
        ensure!(!out.is_empty(), "no workload named");
        Ok(out)
    }

    fn parse(name: &str, sync_writers: &[u32]) -> Result<Vec<Workload>> {
        if let Some((w, _)) = SIMPLE.iter().find(|(_, n)| *n == name) {
            return Ok(vec![*w]);
        }
        if name == "fillsync" {
            ensure!(!sync_writers.is_empty(), "fillsync with no writer counts");
            return sync_writers
                .iter()
                .map(|&writers| Workload::fillsync(writers))
                .collect();
        }
        if let Some(writers) = name.strip_prefix("fillsync_") {
            return Ok(vec![Workload::fillsync(writers.parse().map_err(
                |_| anyhow::anyhow!("{name:?}: fillsync_<writers> takes a number"),
            )?)?]);
        }
        if let Some(list) = Ycsb::parse(name) {
            return Ok(list.into_iter().map(Workload::Ycsb).collect());
        }
        bail!(
            "unknown workload {name:?} (known: fillseq, fillrandom, overwrite, readrandom, \
             readmissing, seekrandom, readwhilewriting, fillsync, fillsync_<writers>, ycsb, \
             ycsb_<a..f>, ycsb_<a..f>_<zipf|uniform>)"
        )
    }

    fn fillsync(writers: u32) -> Result<Workload> {
        ensure!(
            (1..=SYNC_WRITERS_MAX).contains(&writers),
            "fillsync takes 1 to {SYNC_WRITERS_MAX} writers, not {writers}"
        );
        Ok(Workload::Fillsync { writers })
    }

    pub fn is_read(self) -> bool {
        matches!(
            self,
            Workload::Readrandom | Workload::Readmissing | Workload::Seekrandom
        )
    }

    /// Whether the workload runs on the data fillrandom loaded (after the reads).
    pub fn needs_load(self) -> bool {
        self.is_read()
            || matches!(
                self,
                Workload::Overwrite | Workload::ReadWhileWriting | Workload::Ycsb(_)
            )
    }

    /// What one operation of the workload is, for the reports.
    pub fn op(self) -> &'static str {
        match self {
            Workload::Seekrandom => "seek + next 100",
            Workload::Readrandom | Workload::Readmissing | Workload::ReadWhileWriting => "get",
            Workload::Fillseq | Workload::Fillrandom | Workload::Overwrite => "put",
            Workload::Fillsync { .. } => "synced put",
            Workload::Ycsb(_) => "YCSB operation",
        }
    }
}

/// Bound on fillsync's writer threads.
pub const SYNC_WRITERS_MAX: u32 = 256;

/// Sizes and counts of a run.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub keys: u64,
    pub shape: Shape,
    pub reads: u64,
    pub seeks: u64,
    /// Length of each fillsync run.
    pub sync_seconds: f64,
    /// Operations of each YCSB workload.
    pub ycsb_ops: u64,
}

impl Counts {
    /// Key and value bytes of one full load.
    pub fn raw_bytes(&self) -> u64 {
        self.keys * (self.shape.key_size + self.shape.value_size) as u64
    }

    /// Key `i`: its decimal digits, zero-padded on the left to `key_size` bytes.
    pub fn key(&self, i: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.shape.key_size);
        self.key_into(i, &mut out);
        out
    }

    /// Key `i` written over `out`, which keeps its allocation: the timed loops call this
    /// so that the harness's own cost per operation stays a few instructions, not an
    /// allocation and a formatting call that would dilute every ratio toward 1.
    pub fn key_into(&self, mut i: u64, out: &mut Vec<u8>) {
        let size = self.shape.key_size;
        out.clear();
        out.resize(size, b'0');
        let mut at = size;
        loop {
            assert!(at > 0, "key does not fit in {size} bytes");
            at -= 1;
            out[at] = b'0' + (i % 10) as u8;
            i /= 10;
            if i == 0 {
                break;
            }
        }
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

/// What one workload measured in one process (one row of the report).
#[derive(Debug)]
pub struct Outcome {
    /// The row: the workload's name (`Workload::rows`).
    pub name: String,
    pub op: &'static str,
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
            "workload": self.name,
            "op": self.op,
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
        // The pairs keep their buffers from one write to the next.
        batch.truncate(usize::try_from(end - done)?);
        for (slot, i) in (done..end).enumerate() {
            let (k, v) = pick(i);
            if slot == batch.len() {
                batch.push((Vec::new(), Vec::new()));
            }
            let (key, val) = &mut batch[slot];
            counts.key_into(k, key);
            value_into(v, counts.shape.value_size, val);
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
        name: workload.name(),
        op: workload.op(),
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
    let mut key = Vec::with_capacity(counts.shape.key_size);
    let start = Instant::now();
    for i in 0..ops {
        counts.key_into(mix(i ^ salt) % n, &mut key);
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
        name: workload.name(),
        op: workload.op(),
        ops,
        seconds,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    fn counts(key_size: usize) -> Counts {
        Counts {
            keys: 10,
            shape: Shape {
                key_size,
                value_size: 100,
            },
            reads: 0,
            seeks: 0,
            sync_seconds: 0.0,
            ycsb_ops: 0,
        }
    }

    #[test]
    fn keys_are_zero_padded_decimals_and_reuse_the_buffer() {
        let counts = counts(16);
        let mut key = Vec::new();
        for i in [
            0,
            7,
            10,
            999_999,
            1_000_000,
            u64::from(u32::MAX),
            9_999_999_999_999_999,
        ] {
            counts.key_into(i, &mut key);
            assert_eq!(key, format!("{i:016}").into_bytes());
            assert_eq!(counts.key(i), key);
        }
        let mut long = vec![1u8; 40];
        counts.key_into(42, &mut long);
        assert_eq!(long, b"0000000000000042");
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_key_too_long_for_its_size_is_refused() {
        counts(3).key(1000);
    }
}
