//! What one timed sample yields, the two sides of a comparison, and the statistics a report
//! needs: per-pair ratios, their median and spread, merged latency histograms.

use std::time::Duration;

use anyhow::{Result, ensure};
use hdrhistogram::Histogram;

/// Latencies are recorded in nanoseconds with 3 significant digits, from 1 ns to 1 hour
/// (longer ones are recorded as 1 hour: `saturating_record`).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// The figure a comparison ranks by (higher is better for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Operations (records or raw writes) per second.
    OpsPerSec,
    /// Payload megabytes (10^6 bytes) per second.
    MbPerSec,
}

impl Metric {
    pub fn unit(self) -> &'static str {
        match self {
            Metric::OpsPerSec => "ops/s",
            Metric::MbPerSec => "MB/s",
        }
    }
}

/// One timed sample.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Records appended, or raw writes made.
    pub ops: u64,
    /// Payload bytes written.
    pub payload_bytes: u64,
    /// Bytes the system under test wrote to its files (WAL: headers included; raw: equal to
    /// the payload).
    pub written_bytes: u64,
    /// Writes issued: WAL group-commit writes (units), or raw `pwrite`s.
    pub writes: u64,
    /// fdatasync calls made in the timed window.
    pub syncs: u64,
    /// WAL segments created in the timed window (0 for raw).
    pub segments_created: u64,
    pub elapsed: Duration,
    /// Per-operation latency, where the benchmark measures one.
    pub latency: Option<Histogram<u64>>,
}

impl Sample {
    pub fn value(&self, metric: Metric) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        match metric {
            Metric::OpsPerSec => self.ops as f64 / secs,
            Metric::MbPerSec => self.payload_bytes as f64 / 1e6 / secs,
        }
    }

    pub fn syncs_per_op(&self) -> f64 {
        self.syncs as f64 / self.ops.max(1) as f64
    }
}

/// One side of a comparison: a label and its samples, in the order taken.
#[derive(Clone, Debug)]
pub struct Side {
    pub label: String,
    pub samples: Vec<Sample>,
}

impl Side {
    pub fn new(label: impl Into<String>) -> Side {
        Side {
            label: label.into(),
            samples: Vec::new(),
        }
    }

    pub fn values(&self, metric: Metric) -> Vec<f64> {
        self.samples.iter().map(|s| s.value(metric)).collect()
    }

    /// Every sample's latencies in one histogram, or `None` if no sample measured latency.
    pub fn merged_latency(&self) -> Option<Histogram<u64>> {
        let mut merged: Option<Histogram<u64>> = None;
        for h in self.samples.iter().filter_map(|s| s.latency.as_ref()) {
            match merged.as_mut() {
                None => merged = Some(h.clone()),
                Some(m) => m.add(h).expect("histograms of equal bounds merge"),
            }
        }
        merged
    }

    /// Syncs per operation over all samples.
    pub fn syncs_per_op(&self) -> f64 {
        let syncs: u64 = self.samples.iter().map(|s| s.syncs).sum();
        let ops: u64 = self.samples.iter().map(|s| s.ops).sum();
        syncs as f64 / ops.max(1) as f64
    }

    /// Operations per write over all samples (records per group-commit write for the WAL).
    pub fn ops_per_write(&self) -> f64 {
        let writes: u64 = self.samples.iter().map(|s| s.writes).sum();
        let ops: u64 = self.samples.iter().map(|s| s.ops).sum();
        ops as f64 / writes.max(1) as f64
    }

    /// Written bytes over payload bytes, over all samples.
    pub fn write_amplification(&self) -> f64 {
        let written: u64 = self.samples.iter().map(|s| s.written_bytes).sum();
        let payload: u64 = self.samples.iter().map(|s| s.payload_bytes).sum();
        written as f64 / payload.max(1) as f64
    }
}

/// Two sides measured in interleaved pairs; sample `i` of `ours` ran just before sample `i`
/// of `baseline`.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub name: String,
    pub metric: Metric,
    pub ours: Side,
    pub baseline: Side,
}

/// Median, minimum and maximum of a set of ratios.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Comparison {
    /// Ours over baseline, pair by pair.
    pub fn ratios(&self) -> Vec<f64> {
        self.ours
            .values(self.metric)
            .iter()
            .zip(self.baseline.values(self.metric))
            .map(|(o, b)| o / b)
            .collect()
    }

    /// The spread of the per-pair ratios.
    ///
    /// # Errors
    /// If there are no pairs or a ratio is not a positive finite number (a side measured
    /// nothing).
    pub fn spread(&self) -> Result<Spread> {
        let ratios = self.ratios();
        ensure!(!ratios.is_empty(), "{}: no pairs measured", self.name);
        ensure!(
            ratios.iter().all(|r| r.is_finite() && *r > 0.0),
            "{}: a ratio is not a positive number: {ratios:?}",
            self.name
        );
        Ok(spread(&ratios))
    }
}

/// Median, min and max of `values` (non-empty).
pub fn spread(values: &[f64]) -> Spread {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])
    };
    Spread {
        median,
        min: sorted[0],
        max: sorted[n - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        let s = spread(&[3.0, 1.0, 2.0]);
        assert!((s.median - 2.0).abs() < f64::EPSILON);
        assert!((s.min - 1.0).abs() < f64::EPSILON);
        assert!((s.max - 3.0).abs() < f64::EPSILON);
        let s = spread(&[4.0, 1.0, 2.0, 3.0]);
        assert!((s.median - 2.5).abs() < f64::EPSILON);
    }

    #[test]
    fn ratios_pair_samples_in_order() {
        let sample = |ops: u64| Sample {
            ops,
            payload_bytes: 0,
            written_bytes: 0,
            writes: 0,
            syncs: 0,
            segments_created: 0,
            elapsed: Duration::from_secs(1),
            latency: None,
        };
        let comparison = Comparison {
            name: "t".into(),
            metric: Metric::OpsPerSec,
            ours: Side {
                label: "a".into(),
                samples: vec![sample(10), sample(30)],
            },
            baseline: Side {
                label: "b".into(),
                samples: vec![sample(5), sample(10)],
            },
        };
        assert_eq!(comparison.ratios(), vec![2.0, 3.0]);
        assert!((comparison.spread().expect("pairs").median - 2.5).abs() < f64::EPSILON);
    }
}
