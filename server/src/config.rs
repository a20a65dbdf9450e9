//! The server's configuration: command-line flags (clap) over an optional TOML file over
//! defaults, validated once at start. Every key of the file has a flag of the same name
//! (`data_dir` is `--data-dir`); README.md, "Server", lists them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use popdb_protocol::Limits;
use serde::Deserialize;

/// The `popdb` command line.
#[derive(Debug, Parser)]
#[command(
    name = "popdb",
    version,
    about = "PopDB server: serves a database over PopDB's binary protocol",
    long_about = "PopDB server: serves a database over PopDB's binary protocol \
                  (docs/protocol.md).\n\n\
                  With no arguments it serves a single node on 127.0.0.1:7878 with its data in \
                  ./popdb-data, and metrics on http://127.0.0.1:7879/metrics. Flags override \
                  the config file (--config), which overrides the defaults.\n\n\
                  It listens beyond loopback only with an auth token (or \
                  --insecure-no-auth). SIGINT or SIGTERM stops it cleanly: it stops \
                  accepting, answers the requests it has read, checkpoints and exits 0.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How to serve.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verifies a data directory offline (the server must not be running on it) and prints
    /// what it found; exits 1 if it found damage.
    Check {
        /// The data directory.
        dir: PathBuf,
    },
}

/// Serving flags; each overrides the config file key of the same name.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (keys as the long flags, with `_` for `-`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve the protocol on [default: 127.0.0.1:7878].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./popdb-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// When writes are durable: `sync` (on disk before acknowledged) or `nosync` (synced
    /// within ~20 ms; a machine crash may lose the last ones) [default: sync].
    #[arg(long, value_name = "POLICY")]
    pub sync: Option<SyncPolicy>,
    /// Bytes of the block cache shared by LSM tables [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub cache_bytes: Option<usize>,
    /// Threads serving connections [default: half the CPUs, at least 1]. The log's writer
    /// and the engines' background work have threads of their own, and at a PoP the
    /// functions calling PopDB share the machine.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Address of the HTTP endpoint for /metrics and /health, or `off`
    /// [default: 127.0.0.1:7879].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Shared secret clients must send in their handshake. Visible to other local users
    /// in the process list: prefer --auth-token-file.
    #[arg(long, value_name = "TOKEN", help_heading = "Authentication")]
    pub auth_token: Option<String>,
    /// File holding the shared secret (one trailing newline is ignored).
    #[arg(long, value_name = "FILE", help_heading = "Authentication")]
    pub auth_token_file: Option<PathBuf>,
    /// Allow listening beyond loopback without a token.
    #[arg(long, help_heading = "Authentication")]
    pub insecure_no_auth: bool,

    /// Most open client connections; past it a new one gets Overloaded [default: 1024].
    #[arg(long, value_name = "N", help_heading = "Bounds")]
    pub connections_max: Option<u32>,
    /// Requests read ahead of their responses on one connection [default: 128].
    #[arg(long, value_name = "N", help_heading = "Bounds")]
    pub in_flight_max: Option<u32>,
    /// Requests in flight on the whole server; past it requests get Overloaded
    /// [default: 8192].
    #[arg(long, value_name = "N", help_heading = "Bounds")]
    pub requests_in_flight_max: Option<u32>,
    /// Bytes of responses buffered for one connection [default: 33554432].
    #[arg(long, value_name = "BYTES", help_heading = "Bounds")]
    pub output_buffer_bytes_max: Option<u64>,
    /// Scan read views kept for cursors [default: 1024].
    #[arg(long, value_name = "N", help_heading = "Bounds")]
    pub cursors_max: Option<u32>,

    /// Time a new connection has to complete its handshake [default: 5000].
    #[arg(long, value_name = "MS", help_heading = "Timeouts")]
    pub handshake_timeout_ms: Option<u64>,
    /// A connection with nothing in flight that sends nothing for this long is closed
    /// [default: 300000].
    #[arg(long, value_name = "MS", help_heading = "Timeouts")]
    pub idle_timeout_ms: Option<u64>,
    /// Time a client has to send the rest of a frame it started, and the server to write
    /// a response [default: 30000].
    #[arg(long, value_name = "MS", help_heading = "Timeouts")]
    pub frame_timeout_ms: Option<u64>,
    /// How long a scan cursor's read view is kept after the page that returned it
    /// [default: 60000].
    #[arg(long, value_name = "MS", help_heading = "Timeouts")]
    pub cursor_ttl_ms: Option<u32>,
    /// How long shutdown waits for requests in flight [default: 10000].
    #[arg(long, value_name = "MS", help_heading = "Timeouts")]
    pub shutdown_timeout_ms: Option<u64>,

    /// Largest frame in bytes, header included (at most the protocol's 16777232).
    #[arg(
        long,
        value_name = "BYTES",
        help_heading = "Limits (at most the defaults)"
    )]
    pub frame_size_max: Option<u32>,
    /// Largest key in bytes (at most 512).
    #[arg(
        long,
        value_name = "BYTES",
        help_heading = "Limits (at most the defaults)"
    )]
    pub key_size_max: Option<u32>,
    /// Largest value in bytes (at most 1048576).
    #[arg(
        long,
        value_name = "BYTES",
        help_heading = "Limits (at most the defaults)"
    )]
    pub value_size_max: Option<u32>,
    /// Most writes in a batch or commit (at most 65536).
    #[arg(long, value_name = "N", help_heading = "Limits (at most the defaults)")]
    pub batch_writes_max: Option<u32>,
    /// Most bytes of keys and values in a batch or commit (at most 8388608).
    #[arg(
        long,
        value_name = "BYTES",
        help_heading = "Limits (at most the defaults)"
    )]
    pub batch_size_max: Option<u32>,
    /// Most conditions in a commit (at most 4096).
    #[arg(long, value_name = "N", help_heading = "Limits (at most the defaults)")]
    pub conditions_max: Option<u32>,
    /// Most entries in a scan page (at most 10000).
    #[arg(long, value_name = "N", help_heading = "Limits (at most the defaults)")]
    pub scan_limit_max: Option<u32>,
    /// Most tables a request names (at most 4096).
    #[arg(long, value_name = "N", help_heading = "Limits (at most the defaults)")]
    pub tables_max: Option<u32>,
}

/// The Db's default durability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// Durable before acknowledged (group-committed).
    #[default]
    Sync,
    /// Acknowledged once written to the OS; synced by the background thread.
    Nosync,
}

/// The config file's shape: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    sync: Option<SyncPolicy>,
    cache_bytes: Option<usize>,
    threads: Option<usize>,
    metrics_listen: Option<String>,
    auth_token: Option<String>,
    auth_token_file: Option<PathBuf>,
    insecure_no_auth: Option<bool>,
    connections_max: Option<u32>,
    in_flight_max: Option<u32>,
    requests_in_flight_max: Option<u32>,
    output_buffer_bytes_max: Option<u64>,
    cursors_max: Option<u32>,
    handshake_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    frame_timeout_ms: Option<u64>,
    cursor_ttl_ms: Option<u32>,
    shutdown_timeout_ms: Option<u64>,
    limits: Option<FileLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    clippy::struct_field_names,
    reason = "the keys are the limits' names, as in popdb_protocol::Limits"
)]
struct FileLimits {
    frame_size_max: Option<u32>,
    key_size_max: Option<u32>,
    value_size_max: Option<u32>,
    batch_writes_max: Option<u32>,
    batch_size_max: Option<u32>,
    conditions_max: Option<u32>,
    scan_limit_max: Option<u32>,
    tables_max: Option<u32>,
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the protocol is served.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The Db's default durability.
    pub sync: SyncPolicy,
    /// The LSM block cache's bytes.
    pub cache_bytes: usize,
    /// Threads serving connections (the runtime's workers).
    pub threads: usize,
    /// Where /metrics and /health are served; `None`: not at all.
    pub metrics_listen: Option<SocketAddr>,
    /// The shared secret, if one is required.
    pub auth_token: Option<Vec<u8>>,
    /// Most open connections.
    pub connections_max: u32,
    /// Requests read ahead on one connection.
    pub in_flight_max: u32,
    /// Requests in flight on the whole server.
    pub requests_in_flight_max: u32,
    /// Bytes of responses buffered per connection.
    pub output_buffer_bytes_max: u64,
    /// Cursor read views kept.
    pub cursors_max: u32,
    /// Handshake deadline.
    pub handshake_timeout: Duration,
    /// Idle connection deadline.
    pub idle_timeout: Duration,
    /// Deadline for the rest of a started frame, and for writing a response.
    pub frame_timeout: Duration,
    /// Cursor lifetime, in ms as the handshake announces it.
    pub cursor_ttl_ms: u32,
    /// Shutdown's wait for requests in flight.
    pub shutdown_timeout: Duration,
    /// The limits requests are decoded with.
    pub limits: Limits,
}

/// Most threads serving connections.
const THREADS_MAX: usize = 1024;

/// Half the CPUs, at least one: the rest stay with the log's writer, the engines'
/// background work and the machine's other tenants. On 2 CPUs with 50 clients of one
/// request each, one thread serving and writing small log groups itself spent a quarter
/// less CPU per write than two (benches/README.md).
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: PathBuf::from("popdb-data"),
            sync: SyncPolicy::Sync,
            cache_bytes: 64 << 20,
            threads: default_threads(),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7879))),
            auth_token: None,
            connections_max: 1024,
            in_flight_max: 128,
            requests_in_flight_max: 8192,
            output_buffer_bytes_max: 32 << 20,
            cursors_max: 1024,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_mins(5),
            frame_timeout: Duration::from_secs(30),
            cursor_ttl_ms: 60_000,
            shutdown_timeout: Duration::from_secs(10),
            limits: Limits::DEFAULT,
        }
    }
}

impl Config {
    /// The configuration `args` (and the file it names) describe.
    ///
    /// # Errors
    /// An unreadable or invalid file, an invalid value, or a non-loopback address without
    /// a token and without `--insecure-no-auth`.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        let limits = file.limits.unwrap_or_default();
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = args.$field.clone().or(file.$field.clone()) {
                    config.$field = v;
                }
            };
            ($field:ident, $map:expr) => {
                if let Some(v) = args.$field.clone().or(file.$field.clone()) {
                    config.$field = $map(v);
                }
            };
        }
        set!(listen);
        set!(data_dir);
        set!(sync);
        set!(cache_bytes);
        set!(threads);
        set!(connections_max);
        set!(in_flight_max);
        set!(requests_in_flight_max);
        set!(output_buffer_bytes_max);
        set!(cursors_max);
        set!(cursor_ttl_ms);
        let ms = Duration::from_millis;
        if let Some(v) = args.handshake_timeout_ms.or(file.handshake_timeout_ms) {
            config.handshake_timeout = ms(v);
        }
        if let Some(v) = args.idle_timeout_ms.or(file.idle_timeout_ms) {
            config.idle_timeout = ms(v);
        }
        if let Some(v) = args.frame_timeout_ms.or(file.frame_timeout_ms) {
            config.frame_timeout = ms(v);
        }
        if let Some(v) = args.shutdown_timeout_ms.or(file.shutdown_timeout_ms) {
            config.shutdown_timeout = ms(v);
        }
        if let Some(v) = args.metrics_listen.clone().or(file.metrics_listen) {
            config.metrics_listen = if v == "off" {
                None
            } else {
                Some(v.parse().with_context(|| format!("metrics_listen {v:?}"))?)
            };
        }
        macro_rules! limit {
            ($field:ident) => {
                if let Some(v) = args.$field.or(limits.$field) {
                    config.limits.$field = v;
                }
            };
        }
        limit!(frame_size_max);
        limit!(key_size_max);
        limit!(value_size_max);
        limit!(batch_writes_max);
        limit!(batch_size_max);
        limit!(conditions_max);
        limit!(scan_limit_max);
        limit!(tables_max);
        config.auth_token = match (&args.auth_token, &args.auth_token_file) {
            (Some(token), _) => Some(token.clone().into_bytes()),
            (None, Some(path)) => Some(read_token(path)?),
            (None, None) => match (file.auth_token, file.auth_token_file) {
                (Some(token), _) => Some(token.into_bytes()),
                (None, Some(path)) => Some(read_token(&path)?),
                (None, None) => None,
            },
        };
        let insecure = args.insecure_no_auth || file.insecure_no_auth.unwrap_or(false);
        config.validate(insecure)?;
        Ok(config)
    }

    /// Checks the values against each other and the protocol's bounds.
    fn validate(&self, insecure_no_auth: bool) -> anyhow::Result<()> {
        if !(1..=THREADS_MAX).contains(&self.threads) {
            bail!("threads must be 1 to {THREADS_MAX}, not {}", self.threads);
        }
        if self.auth_token.is_none() && !self.listen.ip().is_loopback() && !insecure_no_auth {
            bail!(
                "refusing to listen on {} without an auth token: set --auth-token-file (or \
                 auth_token in the config), listen on loopback, or pass --insecure-no-auth",
                self.listen
            );
        }
        if let Some(token) = &self.auth_token
            && (token.is_empty() || token.len() > popdb_protocol::AUTH_TOKEN_MAX as usize)
        {
            bail!(
                "the auth token must be 1 to {} bytes",
                popdb_protocol::AUTH_TOKEN_MAX
            );
        }
        let max = Limits::DEFAULT;
        let pairs = [
            (
                "frame_size_max",
                self.limits.frame_size_max,
                max.frame_size_max,
            ),
            ("key_size_max", self.limits.key_size_max, max.key_size_max),
            (
                "value_size_max",
                self.limits.value_size_max,
                max.value_size_max,
            ),
            (
                "batch_writes_max",
                self.limits.batch_writes_max,
                max.batch_writes_max,
            ),
            (
                "batch_size_max",
                self.limits.batch_size_max,
                max.batch_size_max,
            ),
            (
                "conditions_max",
                self.limits.conditions_max,
                max.conditions_max,
            ),
            (
                "scan_limit_max",
                self.limits.scan_limit_max,
                max.scan_limit_max,
            ),
            ("tables_max", self.limits.tables_max, max.tables_max),
        ];
        for (name, value, max) in pairs {
            if value > max {
                bail!("{name} {value} is above the Db's {max}");
            }
        }
        // A scan page must hold at least one entry at the limits.
        let entry_max =
            u64::from(self.limits.key_size_max) * 2 + u64::from(self.limits.value_size_max);
        if u64::from(self.limits.frame_size_max) < entry_max + 1024 {
            bail!(
                "frame_size_max {} cannot hold one scan entry at the key and value limits \
                 (needs {})",
                self.limits.frame_size_max,
                entry_max + 1024
            );
        }
        for (name, value) in [
            ("connections_max", self.connections_max),
            ("in_flight_max", self.in_flight_max),
            ("requests_in_flight_max", self.requests_in_flight_max),
            ("cursors_max", self.cursors_max),
            ("scan_limit_max", self.limits.scan_limit_max),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1");
            }
        }
        if self.output_buffer_bytes_max < u64::from(self.limits.frame_size_max) {
            bail!(
                "output_buffer_bytes_max {} must hold one frame of frame_size_max {}",
                self.output_buffer_bytes_max,
                self.limits.frame_size_max
            );
        }
        Ok(())
    }
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

fn read_token(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut token = std::fs::read(path)
        .with_context(|| format!("reading auth token file {}", path.display()))?;
    if token.last() == Some(&b'\n') {
        token.pop();
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    fn args(list: &[&str]) -> ServeArgs {
        let mut argv = vec!["popdb"];
        argv.extend_from_slice(list);
        Cli::parse_from(argv).serve
    }

    #[test]
    fn config_defaults_serve_loopback() {
        let config = Config::load(&args(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(config.data_dir, PathBuf::from("popdb-data"));
        assert_eq!(config.metrics_listen.unwrap().to_string(), "127.0.0.1:7879");
    }

    #[test]
    fn config_beyond_loopback_without_token_is_refused() {
        let error = Config::load(&args(&["--listen", "0.0.0.0:7878"])).unwrap_err();
        assert!(
            error.to_string().contains("without an auth token"),
            "{error}"
        );
        Config::load(&args(&["--listen", "0.0.0.0:7878", "--insecure-no-auth"])).unwrap();
        Config::load(&args(&[
            "--listen",
            "0.0.0.0:7878",
            "--auth-token",
            "s3cret",
        ]))
        .unwrap();
    }

    #[test]
    fn config_threads_default_to_half_the_cpus_and_zero_is_refused() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(Config::load(&args(&[])).unwrap().threads, (cpus / 2).max(1));
        assert_eq!(Config::load(&args(&["--threads", "5"])).unwrap().threads, 5);
        let error = Config::load(&args(&["--threads", "0"])).unwrap_err();
        assert!(error.to_string().contains("threads must be 1"), "{error}");
    }

    #[test]
    fn config_limits_above_the_db_are_refused() {
        let error = Config::load(&args(&["--key-size-max", "513"])).unwrap_err();
        assert!(error.to_string().contains("key_size_max"), "{error}");
    }

    #[test]
    fn config_file_is_read_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("popdb.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nsync = \"nosync\"\nidle_timeout_ms = 50\n\
             metrics_listen = \"off\"\nthreads = 3\n[limits]\nscan_limit_max = 7\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let config = Config::load(&args(&["--config", path, "--idle-timeout-ms", "70"])).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.sync, SyncPolicy::Nosync);
        assert_eq!(config.idle_timeout, Duration::from_millis(70));
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.limits.scan_limit_max, 7);
        assert_eq!(config.threads, 3);
        std::fs::write(dir.path().join("bad.toml"), "lisen = 1\n").unwrap();
        let bad = dir.path().join("bad.toml");
        let error = Config::load(&args(&["--config", bad.to_str().unwrap()])).unwrap_err();
        assert!(format!("{error:#}").contains("unknown field"), "{error:#}");
    }
}
