//! CPU time a server process spent (all its threads, user and system), read from
//! /proc/<pid>/stat. On a shared machine throughput moves with the other tenants' load;
//! the server's CPU time per request moves much less, so the report gives both, and the
//! share of the machine's CPU time the hypervisor stole meanwhile (/proc/stat).

use std::time::Duration;

/// Clock ticks per second of /proc's `utime` and `stime`: `USER_HZ`, which Linux fixes at
/// 100 for user space on every architecture it supports.
const USER_HZ: f64 = 100.0;

/// Seconds of CPU `pid` has used so far; `None` where /proc cannot say.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The command name (field 2)
/// is in parentheses and may hold spaces, so fields are counted after its closing one.
fn parse_stat(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th field from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Seconds of CPU this process has used so far (the PopDB side's load generator runs in
/// it); `None` where /proc cannot say.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

/// Seconds of CPU used by this process's children that have been waited for (the Redis
/// side's redis-benchmark, once it exits): `cutime` + `cstime` of /proc/self/stat.
pub fn children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_children(&stat)
}

/// cutime + cstime (fields 16 and 17) of a /proc/<pid>/stat line.
fn parse_stat_children(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let cutime: u64 = fields.nth(13)?.parse().ok()?;
    let cstime: u64 = fields.next()?.parse().ok()?;
    Some((cutime + cstime) as f64 / USER_HZ)
}

/// Seconds of CPU time the hypervisor gave other guests while this machine's CPUs wanted
/// to run (`steal`, the 8th value of /proc/stat's `cpu` line, summed over the CPUs);
/// `None` where /proc cannot say.
pub fn stolen_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_steal(&stat)
}

/// The steal ticks of a /proc/stat text's first (all-CPU) line.
fn parse_steal(stat: &str) -> Option<f64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    let steal: u64 = fields.nth(7)?.parse().ok()?;
    Some(steal as f64 / USER_HZ)
}

/// The share of the machine's CPU time stolen between two readings `wall` apart, in
/// percent: on a shared host a phase that lost much of it measured the neighbours more
/// than the server.
pub fn steal_percent(before: Option<f64>, after: Option<f64>, wall: Duration) -> Option<f64> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let available = wall.as_secs_f64() * cpus;
    if available <= 0.0 {
        return None;
    }
    Some((after? - before?) * 100.0 / available)
}

/// The CPU clocks a phase is measured by, read at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// The server process's CPU seconds.
    pub server: Option<f64>,
    /// The load generator's CPU seconds.
    pub client: Option<f64>,
    /// The machine's stolen seconds.
    pub stolen: Option<f64>,
    pub at: std::time::Instant,
}

impl Reading {
    /// Reads the steal and the time now, beside the two processes' CPU seconds.
    pub fn now(server: Option<f64>, client: Option<f64>) -> Self {
        Self {
            server,
            client,
            stolen: stolen_seconds(),
            at: std::time::Instant::now(),
        }
    }
}

/// Microseconds of server CPU per request between two readings.
pub fn us_per_op(before: Option<f64>, after: Option<f64>, requests: u64) -> Option<f64> {
    Some((after? - before?) * 1e6 / requests.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_sums_utime_and_stime() {
        let stat = "4242 (popdb (x) y) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(2.0));
        assert_eq!(parse_stat_children(stat), Some(0.0));
        let stat = "1 (p) S 1 2 3 4 5 6 7 8 9 10 150 50 30 70 20 0 4 0 100 0 0";
        assert_eq!(parse_stat_children(stat), Some(1.0));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parse_steal_reads_the_all_cpu_line() {
        let stat = "cpu  2929629 0 330602 11198216 43930 0 76100 13702 0 0\n\
                    cpu0 1440316 0 164372 5624839 23386 0 36533 6785 0 0\n";
        assert_eq!(parse_steal(stat), Some(137.02));
        assert_eq!(parse_steal("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_steal("cpu  1 2 3\n"), None);
        let percent = steal_percent(Some(1.0), Some(1.5), Duration::from_secs(1)).unwrap();
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        assert!((percent - 50.0 / cpus).abs() < 1e-9);
        assert_eq!(steal_percent(None, Some(1.0), Duration::from_secs(1)), None);
        assert_eq!(steal_percent(Some(0.0), Some(1.0), Duration::ZERO), None);
    }
}
