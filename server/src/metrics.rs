//! The server's counters and their Prometheus text rendering (format 0.0.4). Counters are
//! atomics updated on the request path; [`Metrics::render`] reads them with the backend's
//! stats when `/metrics` is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use popdb_db::{DbStats, EngineKind};
use popdb_protocol::{ErrorCode, Request};

/// The request kinds, by name, in opcode order.
pub const OPS: [&str; 13] = [
    "handshake",
    "ping",
    "status",
    "create_table",
    "drop_table",
    "list_tables",
    "describe_table",
    "get",
    "put",
    "delete",
    "batch",
    "scan",
    "commit",
];

/// The index of a Get in [`OPS`].
pub const OP_GET: usize = 7;
/// The index of a Put in [`OPS`].
pub const OP_PUT: usize = 8;
/// The index of a Delete in [`OPS`].
pub const OP_DELETE: usize = 9;

/// The index of `request`'s kind in [`OPS`].
pub fn op_index(request: &Request) -> usize {
    match request {
        Request::Handshake { .. } => 0,
        Request::Ping => 1,
        Request::Status => 2,
        Request::CreateTable { .. } => 3,
        Request::DropTable { .. } => 4,
        Request::ListTables => 5,
        Request::DescribeTable { .. } => 6,
        Request::Get { .. } => OP_GET,
        Request::Put { .. } => OP_PUT,
        Request::Delete { .. } => OP_DELETE,
        Request::Batch { .. } => 10,
        Request::Scan(_) => 11,
        Request::Commit(_) => 12,
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS_S: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram: cumulative buckets are summed at render time.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    /// Above the last bucket.
    overflow: AtomicU64,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Adds `count` observations in bucket `bucket` (`BUCKETS_S.len()`: the overflow) that
    /// took `sum_ns` together.
    fn add(&self, bucket: usize, count: u64, sum_ns: u64) {
        match self.buckets.get(bucket) {
            Some(counter) => counter.fetch_add(count, Ordering::Relaxed),
            None => self.overflow.fetch_add(count, Ordering::Relaxed),
        };
        self.count.fetch_add(count, Ordering::Relaxed);
        self.sum_ns.fetch_add(sum_ns, Ordering::Relaxed);
    }
}

/// The index of the first bucket `elapsed` fits, or `BUCKETS_S.len()` above the last.
fn bucket_index(elapsed: Duration) -> usize {
    let seconds = elapsed.as_secs_f64();
    BUCKETS_S
        .iter()
        .position(|&bound| seconds <= bound)
        .unwrap_or(BUCKETS_S.len())
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// Latencies a connection gathers and publishes together ([`Metrics::publish`]): the
/// shared histograms are written from every worker thread, and three atomic adds per
/// request moved their cache lines between cores on every request (issue 7). At most one
/// entry per kind and bucket, so at most `OPS.len() * (BUCKETS_S.len() + 1)`.
#[derive(Debug, Default)]
pub struct Observations {
    entries: Vec<Observed>,
}

#[derive(Clone, Copy, Debug)]
struct Observed {
    op: usize,
    bucket: usize,
    count: u64,
    sum_ns: u64,
}

impl Observations {
    /// Records `count` requests of kind `op` (an index into [`OPS`]) that took `elapsed`
    /// each.
    pub fn add(&mut self, op: usize, elapsed: Duration, count: u64) {
        let bucket = bucket_index(elapsed);
        let sum_ns = nanos(elapsed).saturating_mul(count);
        match self
            .entries
            .iter_mut()
            .find(|e| e.op == op && e.bucket == bucket)
        {
            Some(entry) => {
                entry.count = entry.count.saturating_add(count);
                entry.sum_ns = entry.sum_ns.saturating_add(sum_ns);
            }
            None => self.entries.push(Observed {
                op,
                bucket,
                count,
                sum_ns,
            }),
        }
    }
}

/// Every counter the server keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    latency: [Histogram; OPS.len()],
    errors: [AtomicU64; ErrorCode::ALL.len() + 1],
    /// Connections accepted and served.
    pub connections_accepted: AtomicU64,
    /// Connections refused at the connection limit.
    pub connections_refused: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections closed for a protocol violation or a timeout.
    pub connections_dropped: AtomicU64,
    /// Requests refused as Overloaded at the server-wide in-flight limit.
    pub requests_overloaded: AtomicU64,
    /// Bytes read from clients.
    pub bytes_read: AtomicU64,
    /// Bytes written to clients.
    pub bytes_written: AtomicU64,
    /// Cursor read views held now.
    pub cursors_open: AtomicU64,
}

impl Metrics {
    /// Records one answered request of kind `op` that took `elapsed`.
    pub fn observe(&self, op: usize, elapsed: Duration) {
        self.observe_many(op, elapsed, 1);
    }

    /// Records `count` answered requests of kind `op` that took `elapsed` each.
    pub fn observe_many(&self, op: usize, elapsed: Duration, count: u64) {
        if let Some(histogram) = self.latency.get(op) {
            histogram.add(
                bucket_index(elapsed),
                count,
                nanos(elapsed).saturating_mul(count),
            );
        }
    }

    /// Adds what `observations` gathered to the histograms, and empties it.
    pub fn publish(&self, observations: &mut Observations) {
        for entry in observations.entries.drain(..) {
            if let Some(histogram) = self.latency.get(entry.op) {
                histogram.add(entry.bucket, entry.count, entry.sum_ns);
            }
        }
    }

    /// Counts one error response.
    pub fn error(&self, code: ErrorCode) {
        if let Some(counter) = self.errors.get(usize::from(code.to_u16())) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of the counters and of `stats`.
    pub fn render(&self, stats: &DbStats, writes_refused: bool) -> String {
        let mut out = String::with_capacity(8192);
        self.render_requests(&mut out);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "popdb_connections_accepted_total",
                "counter",
                "Connections accepted.",
                load(&self.connections_accepted),
            ),
            (
                "popdb_connections_refused_total",
                "counter",
                "Connections refused at connections_max.",
                load(&self.connections_refused),
            ),
            (
                "popdb_connections_dropped_total",
                "counter",
                "Connections closed for a protocol violation or a timeout.",
                load(&self.connections_dropped),
            ),
            (
                "popdb_connections_open",
                "gauge",
                "Open client connections.",
                load(&self.connections_open),
            ),
            (
                "popdb_requests_overloaded_total",
                "counter",
                "Requests refused at requests_in_flight_max.",
                load(&self.requests_overloaded),
            ),
            (
                "popdb_client_read_bytes_total",
                "counter",
                "Bytes read from clients.",
                load(&self.bytes_read),
            ),
            (
                "popdb_client_written_bytes_total",
                "counter",
                "Bytes written to clients.",
                load(&self.bytes_written),
            ),
            (
                "popdb_cursors_open",
                "gauge",
                "Scan read views held for cursors.",
                load(&self.cursors_open),
            ),
            (
                "popdb_wal_syncs_total",
                "counter",
                "fdatasync calls on log segments.",
                stats.wal.syncs,
            ),
            (
                "popdb_wal_written_bytes_total",
                "counter",
                "Bytes written to the log.",
                stats.wal.bytes,
            ),
            (
                "popdb_wal_records_total",
                "counter",
                "Records appended to the log.",
                stats.wal.records,
            ),
            (
                "popdb_wal_writes_total",
                "counter",
                "Group-commit writes to the log.",
                stats.wal.writes,
            ),
            (
                "popdb_wal_segments_created_total",
                "counter",
                "Log segments created.",
                stats.wal.segments_created,
            ),
            (
                "popdb_visible_lsn",
                "gauge",
                "Every record through this LSN is readable.",
                stats.visible_lsn,
            ),
            (
                "popdb_durable_lsn",
                "gauge",
                "The log is durable through this LSN.",
                stats.durable_lsn,
            ),
            (
                "popdb_checkpoint_lsn",
                "gauge",
                "The last completed checkpoint's LSN (0: none).",
                stats.checkpoint_lsn.unwrap_or(0),
            ),
            (
                "popdb_writes_refused",
                "gauge",
                "1 if the Db refuses writes (poisoned or read-only).",
                u64::from(writes_refused),
            ),
        ];
        for (name, kind, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP popdb_log_pinned_info What keeps the log from being purged.\n\
             # TYPE popdb_log_pinned_info gauge\npopdb_log_pinned_info{{by=\"{}\"}} 1",
            escape(&stats.log_pinned_by)
        );
        render_tables(&mut out, stats);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP popdb_request_duration_seconds Time from reading a request to queueing its response.\n\
             # TYPE popdb_request_duration_seconds histogram"
        );
        for (op, histogram) in OPS.iter().zip(&self.latency) {
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS_S.iter().zip(&histogram.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "popdb_request_duration_seconds_bucket{{op=\"{op}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = histogram.count.load(Ordering::Relaxed);
            let sum = histogram.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "popdb_request_duration_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {count}\n\
                 popdb_request_duration_seconds_sum{{op=\"{op}\"}} {sum}\n\
                 popdb_request_duration_seconds_count{{op=\"{op}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP popdb_requests_total Requests answered, by kind.\n# TYPE popdb_requests_total counter"
        );
        for (op, histogram) in OPS.iter().zip(&self.latency) {
            let count = histogram.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "popdb_requests_total{{op=\"{op}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP popdb_errors_total Error responses, by code.\n# TYPE popdb_errors_total counter"
        );
        for code in ErrorCode::ALL {
            let count = self.errors[usize::from(code.to_u16())].load(Ordering::Relaxed);
            let _ = writeln!(out, "popdb_errors_total{{code=\"{code:?}\"}} {count}");
        }
    }
}

fn render_tables(out: &mut String, stats: &DbStats) {
    type Gauge = (&'static str, &'static str, fn(&popdb_db::TableStats) -> u64);
    let gauges: [Gauge; 3] = [
        (
            "popdb_table_watermark_lsn",
            "The LSN a table's files hold through.",
            |t| t.watermark.unwrap_or(0),
        ),
        (
            "popdb_table_last_applied_lsn",
            "The last record applied to a table.",
            |t| t.last_applied.unwrap_or(0),
        ),
        (
            "popdb_table_memory_bytes",
            "Memory only a checkpoint releases.",
            |t| t.memory_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for table in &stats.tables {
            let engine = match table.desc.options.engine {
                EngineKind::Lsm => "lsm",
                EngineKind::Btree => "btree",
            };
            let _ = writeln!(
                out,
                "{name}{{table=\"{}\",engine=\"{engine}\"}} {}",
                escape(&table.desc.name),
                value(table)
            );
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_op_indexes_name_their_kinds() {
        assert_eq!(OPS.get(OP_GET), Some(&"get"));
        assert_eq!(OPS.get(OP_PUT), Some(&"put"));
        assert_eq!(OPS.get(OP_DELETE), Some(&"delete"));
    }

    #[test]
    fn histogram_counts_each_observation_once() {
        let metrics = Metrics::default();
        metrics.observe(7, Duration::from_micros(300));
        metrics.observe(7, Duration::from_mins(1));
        metrics.error(ErrorCode::Conflict);
        let h = &metrics.latency[7];
        assert_eq!(h.count.load(Ordering::Relaxed), 2);
        assert_eq!(h.overflow.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.errors[8].load(Ordering::Relaxed), 1);
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }

    #[test]
    fn observations_publish_what_they_gathered_once() {
        let metrics = Metrics::default();
        let mut observations = Observations::default();
        observations.add(7, Duration::from_micros(300), 3);
        observations.add(7, Duration::from_micros(400), 2);
        observations.add(8, Duration::from_mins(1), 1);
        assert_eq!(
            observations.entries.len(),
            2,
            "one entry per kind and bucket"
        );
        metrics.publish(&mut observations);
        metrics.publish(&mut observations);
        let get = &metrics.latency[7];
        assert_eq!(get.count.load(Ordering::Relaxed), 5);
        assert_eq!(get.buckets[2].load(Ordering::Relaxed), 5);
        assert_eq!(get.sum_ns.load(Ordering::Relaxed), 1_700_000);
        assert_eq!(metrics.latency[8].overflow.load(Ordering::Relaxed), 1);
    }
}
