//! The composition root: opens the Db, binds the protocol and metrics listeners, accepts
//! connections up to the limit, and shuts down cleanly on SIGINT or SIGTERM (stop
//! accepting, answer what was read, checkpoint, close the Db).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use popdb_db::{Db, DbOptions, Durability};
use popdb_io::{Clock, SystemClock};
use popdb_protocol::{ErrorKind, Response, ServerError};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::backend::{Backend, DbBackend};
use crate::config::{Config, SyncPolicy};
use crate::cursors::Cursors;
use crate::metrics::Metrics;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared<B> {
    /// The request path.
    pub backend: B,
    /// The configuration.
    pub config: Config,
    /// Counters.
    pub metrics: Metrics,
    /// Read views of scan cursors.
    pub cursors: Cursors,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// When the server started, on `clock`.
    pub started: Duration,
    /// Requests in flight on the whole server (`requests_in_flight_max` permits).
    pub requests: Arc<Semaphore>,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Write answers given on the log's writer thread, for the event loop to send.
    pub(crate) mailbox: Arc<crate::connection::Mailbox>,
    /// Puts and deletes read and not yet handed to the backend.
    pub(crate) points: crate::point_queue::PointQueue<B>,
}

impl<B> Drop for Shared<B> {
    fn drop(&mut self) {
        // The mailbox's drain task holds the state weakly: woken, it finds it gone and ends.
        self.mailbox.wake();
    }
}

#[cfg(test)]
impl<B: Backend> Shared<B> {
    /// Shared state around `backend` with the default configuration.
    pub(crate) fn for_tests(backend: B) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let (_, shutdown) = watch::channel(false);
        Self {
            backend,
            config: Config::default(),
            metrics: Metrics::default(),
            cursors: Cursors::new(Arc::clone(&clock), Duration::from_secs(1), 4),
            started: clock.now(),
            clock,
            requests: Arc::new(Semaphore::new(16)),
            shutdown,
            mailbox: Arc::default(),
            points: crate::point_queue::PointQueue::default(),
        }
    }
}

/// Builds the runtime the `popdb` binary serves on and runs [`run`] on it until SIGINT or
/// SIGTERM. The binary and the benchmark's server process both start here, so a benchmark
/// measures the runtime settings the binary ships with.
///
/// # Errors
/// The runtime's construction error, or [`run`]'s.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .thread_name("popdb")
        .build()
        .context("building the runtime")?;
    runtime.block_on(run(config))
}

/// Opens the Db in `config.data_dir` and serves it until SIGINT or SIGTERM.
///
/// # Errors
/// The Db's open error (a held lock names its holder), a bind error.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let options = DbOptions {
        durability: match config.sync {
            SyncPolicy::Sync => Durability::Sync,
            SyncPolicy::Nosync => Durability::NoSync,
        },
        block_cache_bytes: config.cache_bytes,
        ..DbOptions::default()
    };
    let dir = config.data_dir.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&dir, options))
        .await
        .context("opening the database")?
        .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    tracing::info!(dir = %config.data_dir.display(), recovery = ?db.recovery(), "database open");
    let backend = DbBackend::new(db);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?,
        ),
        None => None,
    };
    let (shutdown_tx, shutdown) = watch::channel(false);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let shared = Arc::new(Shared {
        cursors: Cursors::new(
            Arc::clone(&clock),
            Duration::from_millis(u64::from(config.cursor_ttl_ms)),
            config.cursors_max as usize,
        ),
        requests: Arc::new(Semaphore::new(config.requests_in_flight_max as usize)),
        started: clock.now(),
        clock,
        metrics: Metrics::default(),
        backend,
        config,
        shutdown,
        mailbox: Arc::default(),
        points: crate::point_queue::PointQueue::default(),
    });
    let addr = listener.local_addr().context("the listener's address")?;
    // Tests and scripts read these lines to find the ports (they may be 0 in the config).
    println!("popdb listening on {addr}");
    if let Some(listener) = metrics_listener {
        let metrics_addr = listener.local_addr().context("the metrics address")?;
        println!("popdb metrics on http://{metrics_addr}/metrics");
        tokio::spawn(crate::http::serve(Arc::clone(&shared), listener));
    }
    tracing::info!(%addr, "serving");
    accept_loop(&shared, listener, wait_for_signal(shutdown_tx)).await;
    finish(shared).await
}

/// Turns `shutdown` true at SIGINT or SIGTERM; resolves then.
async fn wait_for_signal(shutdown: watch::Sender<bool>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match &mut term {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
    tracing::info!("shutting down: no new connections, answering requests in flight");
    let _ = shutdown.send(true);
}

async fn accept_loop<B: Backend>(
    shared: &Arc<Shared<B>>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(shared.config.connections_max as usize));
    let mut tasks = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            shared
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            tasks.spawn(refuse(stream, shared.config.frame_timeout));
            continue;
        };
        shared
            .metrics
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        shared
            .metrics
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            tracing::debug!(%peer, "connection open");
            crate::connection::serve(Arc::clone(&shared), stream).await;
            shared
                .metrics
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let timeout = shared.config.shutdown_timeout;
    if tokio::time::timeout(timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            ?timeout,
            "connections still busy at the shutdown timeout; closing them"
        );
        tasks.shutdown().await;
    }
}

/// Tells a connection over the limit that the server is overloaded, and closes it.
async fn refuse(mut stream: TcpStream, timeout: Duration) {
    let error = ServerError::new(ErrorKind::Overloaded, "too many connections");
    let mut bytes = Vec::new();
    if Response::Error(error).encode(0, &mut bytes).is_ok() {
        let _ = tokio::time::timeout(timeout, stream.write_all(&bytes)).await;
    }
    let _ = tokio::time::timeout(timeout, stream.shutdown()).await;
}

/// Checkpoints and closes the Db once the connections are done.
async fn finish(shared: Arc<Shared<DbBackend>>) -> anyhow::Result<()> {
    let healthy = shared
        .backend
        .health()
        .await
        .is_ok_and(|health| health.writes_refused.is_none());
    if healthy {
        match shared.backend.checkpoint().await {
            Ok(lsn) => tracing::info!(lsn, "checkpoint at shutdown"),
            Err(error) => tracing::warn!(%error, "checkpoint at shutdown failed"),
        }
    }
    let backend = shared.backend.clone();
    drop(shared);
    tokio::task::spawn_blocking(move || backend.close())
        .await
        .context("closing the database")?
        .context("closing the database")?;
    tracing::info!("stopped");
    Ok(())
}
