//! Answering one decoded request through the [`Backend`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use popdb_db::{Commit, DbStats, WriteBatch};
use popdb_protocol::{
    Cursor, Entries, ErrorKind, Request, Response, STATS_MAX, Scan, ServerError, Status, Versioned,
};

use crate::backend::{Backend, ReadConsistency};
use crate::convert::{batch_to_db, commit_to_db, table_info, table_options_to_db};
use crate::scan::scan_page;
use crate::server::Shared;

/// The error for a request before the handshake.
pub fn unauthorized_error() -> ServerError {
    ServerError::new(
        ErrorKind::Unauthorized,
        "the first request on a connection must be a handshake",
    )
}

/// The response to `request` (a handshake is answered by the connection, not here).
pub async fn execute<B: Backend>(shared: &Arc<Shared<B>>, request: Request) -> Response {
    match execute_inner(shared, request).await {
        Ok(response) => response,
        Err(error) => Response::Error(error),
    }
}

async fn execute_inner<B: Backend>(
    shared: &Arc<Shared<B>>,
    request: Request,
) -> Result<Response, ServerError> {
    let backend = &shared.backend;
    let read = ReadConsistency::Linearizable;
    Ok(match request {
        Request::Handshake { .. } => {
            return Err(ServerError::new(
                ErrorKind::BadRequest,
                "a second handshake on one connection",
            ));
        }
        Request::Ping => Response::Pong,
        Request::Status => Response::Status(status(shared).await?),
        Request::CreateTable { name, options } => {
            let desc = backend
                .create_table(name, table_options_to_db(options))
                .await?;
            Response::TableCreated {
                lsn: desc.id,
                table: table_info(&desc),
            }
        }
        Request::DropTable { name } => Response::Written {
            lsn: backend.drop_table(name).await?,
        },
        Request::ListTables => Response::Tables(backend.tables().iter().map(table_info).collect()),
        Request::DescribeTable { name } => Response::Table(table_info(&backend.describe(&name)?)),
        Request::Get { table, key } => Response::Value(
            backend
                .get(read, table, key)
                .await?
                .map(|(value, version)| Versioned { value, version }),
        ),
        Request::Scan(scan) => Response::Entries(scan_request(shared, scan).await?),
        request @ (Request::Put { .. }
        | Request::Delete { .. }
        | Request::Batch { .. }
        | Request::Commit(_)) => {
            let (commit, reply) = write_commit(request)?;
            let lsn = backend.commit(commit).await?;
            match reply {
                WriteReply::Written => Response::Written { lsn },
                WriteReply::Committed => Response::Committed { lsn },
            }
        }
    })
}

/// Which response answers a write: `Written` (put, delete, batch) or `Committed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteReply {
    Written,
    Committed,
}

/// The Db commit a write request asks for, and how to answer it.
///
/// # Errors
/// `BadRequest` for a batch or commit that does not convert; `Internal` for a request
/// that is not a write (a caller's mistake).
pub fn write_commit(request: Request) -> Result<(Commit, WriteReply), ServerError> {
    Ok(match request {
        Request::Put { table, key, value } => {
            let mut batch = WriteBatch::new();
            batch.put(&table, key, value);
            (batch_commit(batch), WriteReply::Written)
        }
        Request::Delete { table, key } => {
            let mut batch = WriteBatch::new();
            batch.delete(&table, key);
            (batch_commit(batch), WriteReply::Written)
        }
        Request::Batch { tables, writes } => (
            batch_commit(batch_to_db(&tables, writes)?),
            WriteReply::Written,
        ),
        Request::Commit(commit) => (commit_to_db(commit)?, WriteReply::Committed),
        _ => {
            return Err(ServerError::new(
                ErrorKind::Internal,
                "a request that is not a write reached the write path",
            ));
        }
    })
}

fn batch_commit(writes: WriteBatch) -> Commit {
    Commit {
        writes,
        ..Commit::default()
    }
}

/// One page of a scan: a new read view, or the cursor's (CursorExpired if it is gone).
async fn scan_request<B: Backend>(
    shared: &Arc<Shared<B>>,
    scan: Scan,
) -> Result<Entries, ServerError> {
    let view = match &scan.cursor {
        Some(cursor) => shared.cursors.get(cursor.lsn).ok_or_else(|| {
            ServerError::new(
                ErrorKind::CursorExpired,
                format!("the read view at LSN {} is no longer held", cursor.lsn),
            )
        })?,
        None => Arc::new(
            shared
                .backend
                .read_view(ReadConsistency::Linearizable)
                .await?,
        ),
    };
    let limits = shared.config.limits;
    let page_view = Arc::clone(&view);
    let page = tokio::task::spawn_blocking(move || scan_page(&page_view, &scan, &limits))
        .await
        .map_err(|join| {
            ServerError::new(
                ErrorKind::Internal,
                format!("the scan's task failed: {join}"),
            )
        })?
        .map_err(|e| crate::convert::db_error(&e))?;
    let cursor = match (page.more, page.entries.last()) {
        (true, Some(last)) => {
            shared.cursors.keep(&view);
            shared
                .metrics
                .cursors_open
                .store(shared.cursors.held_count() as u64, Ordering::Relaxed);
            Some(Cursor {
                key: last.key.clone(),
                lsn: view.lsn(),
            })
        }
        _ => None,
    };
    Ok(Entries {
        read_lsn: view.lsn(),
        entries: page.entries,
        cursor,
    })
}

/// The server's state for a Status request.
async fn status<B: Backend>(shared: &Shared<B>) -> Result<Status, ServerError> {
    let stats = shared.backend.stats().await?;
    let health = shared.backend.health().await?;
    Ok(Status {
        visible_lsn: stats.visible_lsn,
        durable_lsn: stats.durable_lsn,
        uptime_ms: u64::try_from(
            shared
                .clock
                .now()
                .saturating_sub(shared.started)
                .as_millis(),
        )
        .unwrap_or(u64::MAX),
        tables_count: u32::try_from(stats.tables.len()).unwrap_or(u32::MAX),
        connections_count: u32::try_from(shared.metrics.connections_open.load(Ordering::Relaxed))
            .unwrap_or(u32::MAX),
        read_only: health.writes_refused.is_some(),
        stats: status_stats(&stats, health.writes_refused),
    })
}

fn status_stats(stats: &DbStats, writes_refused: Option<String>) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "checkpoint_lsn".to_string(),
            format!("{:?}", stats.checkpoint_lsn),
        ),
        ("log_pinned_by".to_string(), stats.log_pinned_by.clone()),
        ("wal.records".to_string(), stats.wal.records.to_string()),
        ("wal.writes".to_string(), stats.wal.writes.to_string()),
        ("wal.syncs".to_string(), stats.wal.syncs.to_string()),
        ("wal.bytes".to_string(), stats.wal.bytes.to_string()),
        ("lsn_lease".to_string(), stats.lsn_lease.to_string()),
    ];
    if let Some(why) = writes_refused {
        out.push(("writes_refused".to_string(), why));
    }
    if let Some(error) = &stats.background_error {
        out.push(("background_error".to_string(), error.clone()));
    }
    for table in &stats.tables {
        let name = &table.desc.name;
        out.push((
            format!("table.{name}.watermark"),
            format!("{:?}", table.watermark),
        ));
        out.push((
            format!("table.{name}.memory_bytes"),
            table.memory_bytes.to_string(),
        ));
    }
    out.truncate(STATS_MAX as usize);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tests::FakeBackend;

    #[tokio::test]
    async fn requests_go_through_the_backend_and_keep_its_errors() {
        let shared = Arc::new(Shared::for_tests(FakeBackend::default()));
        let put = Request::Put {
            table: "t".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let Response::Error(error) = execute(&shared, put).await else {
            panic!("a follower refuses writes");
        };
        assert!(matches!(
            error.kind,
            ErrorKind::NotLeader {
                leader_hint: Some(_)
            }
        ));
        let get = Request::Get {
            table: "t".into(),
            key: b"k".to_vec(),
        };
        let expected = Response::Value(Some(Versioned {
            value: b"v".to_vec(),
            version: 7,
        }));
        assert_eq!(execute(&shared, get).await, expected);
        let Response::Status(status) = execute(&shared, Request::Status).await else {
            panic!("status");
        };
        assert_eq!((status.visible_lsn, status.read_only), (7, false));
    }
}
