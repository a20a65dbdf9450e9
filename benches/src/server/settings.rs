//! What a server run measures and every setting each side runs with. Both sides' command
//! lines are built here, in one place, so that the JSON and the README can list them and a
//! change of a default elsewhere cannot change a result silently (STYLE.md section 11).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};

/// The PopDB server's bound on requests read ahead per connection (its default
/// `in_flight_max`, which the benchmark passes explicitly); a deeper pipeline would wait
/// on it, not measure it.
pub const POPDB_IN_FLIGHT_MAX: u32 = 128;

/// The name of the table PopDB's load goes to.
pub const TABLE: &str = "bench";

/// A resolved `popdb-bench server` run.
#[derive(Clone, Debug)]
pub struct ServerBench {
    pub connections: u32,
    pub pipelines: Vec<u32>,
    pub value_size: usize,
    pub keys: u64,
    pub requests: u64,
    pub pairs: usize,
    pub durabilities: Vec<Durability>,
    /// `lsm` or `btree`.
    pub engine: String,
    pub smoke: bool,
    /// Pause between processes, after `sync(2)`.
    pub settle: Duration,
    pub dir: PathBuf,
    pub out: PathBuf,
    /// Drive the popdb server at this address alone (`--attach`).
    pub attach: Option<String>,
}

impl ServerBench {
    /// # Errors
    /// A zero count, a pipeline deeper than PopDB's in-flight bound, no durability.
    pub fn check(&self) -> Result<()> {
        ensure!(self.connections > 0, "--connections must be at least 1");
        ensure!(self.keys > 0, "--keys must be at least 1");
        ensure!(self.requests > 0, "--requests must be at least 1");
        ensure!(self.pairs > 0, "--pairs must be at least 1");
        ensure!(self.value_size > 0, "--value-size must be at least 1");
        ensure!(!self.pipelines.is_empty(), "no pipeline depth");
        ensure!(!self.durabilities.is_empty(), "no durability");
        for &p in &self.pipelines {
            ensure!(
                (1..=POPDB_IN_FLIGHT_MAX).contains(&p),
                "--pipeline {p}: from 1 to {POPDB_IN_FLIGHT_MAX}"
            );
        }
        Ok(())
    }

    /// Every comparison, durability-major.
    pub fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for &durability in &self.durabilities {
            for &pipeline in &self.pipelines {
                cases.push(Case {
                    durability,
                    pipeline,
                });
            }
        }
        cases
    }

    /// The load both sides put on their server in `case`.
    pub fn load(&self, case: Case) -> Load {
        Load {
            connections: self.connections,
            pipeline: case.pipeline,
            keys: self.keys,
            requests: self.requests,
            value_size: self.value_size,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "connections": self.connections,
            "pipelines": self.pipelines,
            "value_size": self.value_size,
            "key_format": "key:%012d (16 bytes, redis-benchmark's -r format)",
            "keys": self.keys,
            "requests_per_phase": self.requests,
            "phases": ["set", "get"],
            "pairs": self.pairs,
            "durabilities": self.durabilities.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "engine": self.engine,
            "smoke": self.smoke,
            "settle_seconds": self.settle.as_secs_f64(),
            "between_processes": "kill the server, remove its directory, sync(2), sleep settle_seconds",
        })
    }
}

/// One comparison: a durability setting and a pipeline depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub durability: Durability,
    pub pipeline: u32,
}

impl Case {
    /// `server`, `server_nosync`, `server_p16`, `server_nosync_p16`: the prefix of the
    /// ratio lines (`ratio server.set_vs_redis ...`).
    pub fn name(self) -> String {
        let durability = match self.durability {
            Durability::Sync => "",
            Durability::NoSync => "_nosync",
        };
        if self.pipeline == 1 {
            format!("server{durability}")
        } else {
            format!("server{durability}_p{}", self.pipeline)
        }
    }
}

/// The load of one run: `connections` connections, each keeping `pipeline` requests in
/// flight; a SET phase of `requests` requests, then a GET phase of as many, each request
/// on a key drawn at random from `keys`.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: u32,
    pub pipeline: u32,
    pub keys: u64,
    pub requests: u64,
    pub value_size: usize,
}

/// A durability setting, with its meaning on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// PopDB `--sync sync`: a write is on the medium before it is answered (group commit:
    /// one fdatasync for every write waiting). Redis `appendfsync always`: the AOF is
    /// fsynced before the replies of an event-loop iteration go out (one fsync for every
    /// write of the iteration). The same promise, both group-committed.
    Sync,
    /// PopDB `--sync nosync`: a write is answered once the OS has it; the Db's background
    /// thread syncs the log every 20 ms (`DbOptions::background_interval`). Redis
    /// `appendfsync everysec`: a background thread fsyncs the AOF once a second. The
    /// closest Redis setting: both bound the loss window of a machine crash by a timer
    /// (PopDB's is 50x shorter, so this does not favour PopDB); `appendfsync no` would
    /// leave it to the kernel's writeback (about 30 s).
    NoSync,
}

impl Durability {
    /// # Errors
    /// A name other than `sync` and `nosync`.
    pub fn parse(name: &str) -> Result<Durability> {
        match name {
            "sync" => Ok(Durability::Sync),
            "nosync" => Ok(Durability::NoSync),
            other => bail!("unknown durability {other:?}: sync or nosync"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::NoSync => "nosync",
        }
    }

    /// Redis's `appendfsync` for this setting.
    pub fn redis_appendfsync(self) -> &'static str {
        match self {
            Durability::Sync => "always",
            Durability::NoSync => "everysec",
        }
    }
}

/// The `serve-popdb` arguments (the `popdb` binary's flags) of a PopDB server on `data_dir`.
/// Every flag that bears on speed is set explicitly, at the binary's default.
pub fn popdb_args(durability: Durability, data_dir: &Path) -> Vec<String> {
    vec![
        "--listen".into(),
        // Port 0: the server prints the port it got, so no port is guessed.
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--sync".into(),
        durability.name().into(),
        "--cache-bytes".into(),
        (64_u64 << 20).to_string(),
        "--metrics-listen".into(),
        "off".into(),
        "--in-flight-max".into(),
        POPDB_IN_FLIGHT_MAX.to_string(),
        "--requests-in-flight-max".into(),
        "8192".into(),
        "--connections-max".into(),
        "1024".into(),
    ]
}

/// The redis-server arguments for `durability` on `port` with its files in `dir`. AOF on
/// with the matching fsync policy, RDB snapshots off (PopDB has no second persistence path
/// beside its log and checkpoints), one I/O thread (Redis's default), the AOF rewrite
/// thresholds at their defaults (the runs stay below 64 MB of AOF, so no rewrite starts).
pub fn redis_args(durability: Durability, port: u16, dir: &Path) -> Vec<String> {
    let pairs: [(&str, String); 12] = [
        ("port", port.to_string()),
        ("bind", "127.0.0.1".into()),
        ("dir", dir.display().to_string()),
        ("logfile", dir.join("redis.log").display().to_string()),
        ("daemonize", "no".into()),
        ("appendonly", "yes".into()),
        ("appendfsync", durability.redis_appendfsync().into()),
        ("no-appendfsync-on-rewrite", "no".into()),
        ("auto-aof-rewrite-percentage", "100".into()),
        ("auto-aof-rewrite-min-size", "64mb".into()),
        ("save", String::new()),
        ("io-threads", "1".into()),
    ];
    pairs
        .into_iter()
        .flat_map(|(k, v)| [format!("--{k}"), v])
        .collect()
}

/// The redis-benchmark arguments of `load`'s `test` (`set` or `get`; a run invokes it for
/// SET, then for GET, as `-t set,get` would) against `port`: random keys (`-r`), the value
/// size (`-d`), connections (`-c`), pipeline (`-P`), requests per test (`-n`), one thread
/// (its default), CSV output.
pub fn redis_benchmark_args(load: Load, port: u16, test: &str) -> Vec<String> {
    [
        ("-h", "127.0.0.1".to_string()),
        ("-p", port.to_string()),
        ("-t", test.into()),
        ("-r", load.keys.to_string()),
        ("-d", load.value_size.to_string()),
        ("-c", load.connections.to_string()),
        ("-P", load.pipeline.to_string()),
        ("-n", load.requests.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .chain(["--csv".to_string()])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_follow_the_ratio_lines() {
        let case = |durability, pipeline| Case {
            durability,
            pipeline,
        };
        assert_eq!(case(Durability::Sync, 1).name(), "server");
        assert_eq!(case(Durability::NoSync, 1).name(), "server_nosync");
        assert_eq!(case(Durability::Sync, 16).name(), "server_p16");
        assert_eq!(case(Durability::NoSync, 16).name(), "server_nosync_p16");
    }

    #[test]
    fn redis_args_set_the_fsync_policy() {
        let args = redis_args(Durability::Sync, 7000, Path::new("/d"));
        let at = args.iter().position(|a| a == "--appendfsync");
        assert_eq!(
            at.and_then(|i| args.get(i + 1)).map(String::as_str),
            Some("always")
        );
        let args = redis_args(Durability::NoSync, 7000, Path::new("/d"));
        let at = args.iter().position(|a| a == "--appendfsync");
        assert_eq!(
            at.and_then(|i| args.get(i + 1)).map(String::as_str),
            Some("everysec")
        );
        let at = args.iter().position(|a| a == "--save");
        assert_eq!(
            at.and_then(|i| args.get(i + 1)).map(String::as_str),
            Some("")
        );
    }
}
