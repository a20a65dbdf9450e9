//! CPU time a server process spent (all its threads, user and system), read from
//! /proc/<pid>/stat. On a shared machine throughput moves with the other tenants' load;
//! the server's CPU time per request moves much less, so the report gives both.

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
}
