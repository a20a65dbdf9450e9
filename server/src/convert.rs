//! Conversions between the wire's types (popdb-protocol) and the Db's (popdb-db), and the
//! mapping of Db errors onto wire error codes.

use popdb_db as db;
use popdb_protocol::{self as wire, ErrorKind, Limit, ServerError, UnknownReason};

/// The wire error for a Db error. Precise where the client can act on it: a conflict names
/// its condition (certainly not applied), an unknown outcome says it may have applied, a
/// limit is named, a Db that refuses writes says read-only.
pub fn db_error(error: &db::Error) -> ServerError {
    let message = error.to_string();
    let kind = match error {
        db::Error::Conflict { condition, .. } => ErrorKind::Conflict {
            condition_index: *condition,
        },
        db::Error::Unknown(why) => ErrorKind::UnknownOutcome {
            reason: unknown_reason(why),
        },
        db::Error::Poisoned { .. }
        | db::Error::ReadOnly(_)
        | db::Error::Wal(popdb_wal::Error::Poisoned { .. }) => ErrorKind::ReadOnly,
        db::Error::LimitExceeded { limit, .. } => match limit_by_name(limit) {
            Some(limit) => ErrorKind::LimitExceeded { limit },
            None => ErrorKind::BadRequest,
        },
        db::Error::UnknownTable(_) => ErrorKind::UnknownTable,
        db::Error::TableExists(_) => ErrorKind::TableExists,
        db::Error::InvalidArgument(_) => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    };
    ServerError::new(kind, message)
}

/// Why a Db write's outcome is unknown. The Db says it in words only: "the Db closed
/// before applying it" is a shutdown; anything else (the log failed after accepting the
/// record, or the record could not be applied) leaves the record in the log, which is the
/// wire's "the log failed". Either way the client's rule is the same: it may have applied.
fn unknown_reason(why: &str) -> UnknownReason {
    if why.contains("Db closed") {
        UnknownReason::Shutdown
    } else {
        UnknownReason::LogLost
    }
}

/// The wire limit the Db names `name` (docs/limits.md spells both the same); `None` for a
/// Db limit the wire has no code for (the log record size: the request was too big as a
/// whole, which the client fixes by splitting it, as for a bad request).
fn limit_by_name(name: &str) -> Option<Limit> {
    Limit::ALL.into_iter().find(|limit| limit.name() == name)
}

/// The Db's table options for the wire's.
pub fn table_options_to_db(options: wire::TableOptions) -> db::TableOptions {
    db::TableOptions {
        engine: match options.engine {
            wire::Engine::Lsm => db::EngineKind::Lsm,
            wire::Engine::Btree => db::EngineKind::Btree,
        },
        compression: match options.compression {
            wire::Compression::None => db::Compression::None,
            wire::Compression::Zstd { level } => db::Compression::Zstd(level),
        },
        page_size: options.page_size,
        bloom_bits_per_key: options.bloom_bits_per_key,
    }
}

/// The wire's description of a table.
pub fn table_info(desc: &db::TableDesc) -> wire::TableInfo {
    let options = desc.options;
    wire::TableInfo {
        id: desc.id,
        name: desc.name.clone(),
        options: wire::TableOptions {
            engine: match options.engine {
                db::EngineKind::Lsm => wire::Engine::Lsm,
                db::EngineKind::Btree => wire::Engine::Btree,
            },
            compression: match options.compression {
                db::Compression::None => wire::Compression::None,
                db::Compression::Zstd(level) => wire::Compression::Zstd { level },
            },
            page_size: options.page_size,
            bloom_bits_per_key: options.bloom_bits_per_key,
        },
    }
}

/// The Db's write batch for a wire batch (tables named once, written by index).
///
/// # Errors
/// `BadRequest` for a table index out of range (the decoder checks it; checked again here).
pub fn batch_to_db(
    tables: &[String],
    writes: Vec<wire::Write>,
) -> Result<db::WriteBatch, ServerError> {
    let mut batch = db::WriteBatch::new();
    for write in writes {
        let table = table_at(tables, write.table)?;
        match write.value {
            Some(value) => batch.put(table, write.key, value),
            None => batch.delete(table, write.key),
        };
    }
    Ok(batch)
}

/// The Db's commit for a wire commit.
///
/// # Errors
/// As [`batch_to_db`].
pub fn commit_to_db(commit: wire::Commit) -> Result<db::Commit, ServerError> {
    let mut conditions = Vec::with_capacity(commit.conditions.len());
    for condition in commit.conditions {
        conditions.push(db::Condition {
            table: table_at(&commit.tables, condition.table)?.to_string(),
            check: match condition.check {
                wire::Check::Version { key, version } => db::Check::Version { key, version },
                wire::Check::Absent { key } => db::Check::Absent { key },
                wire::Check::Exists { key } => db::Check::Exists { key },
                wire::Check::RangeUnchanged { start, end, since } => {
                    db::Check::RangeUnchanged { start, end, since }
                }
            },
        });
    }
    Ok(db::Commit {
        conditions,
        writes: batch_to_db(&commit.tables, commit.writes)?,
        idempotency: commit.idempotency.map(|key| db::IdempotencyKey {
            client: key.client,
            sequence: key.sequence,
        }),
        durability: None,
    })
}

fn table_at(tables: &[String], index: u16) -> Result<&str, ServerError> {
    tables
        .get(usize::from(index))
        .map(String::as_str)
        .ok_or_else(|| {
            ServerError::new(
                ErrorKind::BadRequest,
                format!(
                    "table index {index} is out of range ({} tables named)",
                    tables.len()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    #[test]
    fn db_error_maps_each_kind_precisely() {
        let conflict = db_error(&db::Error::Conflict {
            condition: 3,
            lsn: 9,
        });
        assert_eq!(conflict.kind, ErrorKind::Conflict { condition_index: 3 });
        let closed = db_error(&db::Error::Unknown(
            "record 9 is logged but the Db closed before applying it".into(),
        ));
        let shutdown = ErrorKind::UnknownOutcome {
            reason: UnknownReason::Shutdown,
        };
        assert_eq!(closed.kind, shutdown);
        let unknown = db_error(&db::Error::Unknown("log failed".into()));
        assert!(matches!(unknown.kind, ErrorKind::UnknownOutcome { .. }));
        assert!(!unknown.kind.code().certainly_not_applied());
        let limit = db_error(&db::Error::LimitExceeded {
            limit: "key size",
            actual: 600,
            max: 512,
        });
        assert_eq!(
            limit.kind,
            ErrorKind::LimitExceeded {
                limit: Limit::KeySize
            }
        );
        let tables = db_error(&db::Error::LimitExceeded {
            limit: "tables",
            actual: 4097,
            max: 4096,
        });
        assert_eq!(
            tables.kind,
            ErrorKind::LimitExceeded {
                limit: Limit::Tables
            }
        );
        assert_eq!(
            db_error(&db::Error::ReadOnly("disk full".into())).kind,
            ErrorKind::ReadOnly
        );
        assert_eq!(
            db_error(&db::Error::UnknownTable("t".into())).kind,
            ErrorKind::UnknownTable
        );
        assert_eq!(
            db_error(&db::Error::TableExists("t".into())).kind,
            ErrorKind::TableExists
        );
        assert_eq!(
            db_error(&db::Error::InvalidArgument("x".into())).kind,
            ErrorKind::BadRequest
        );
        let corrupt = db::Error::Corruption {
            file: "f".into(),
            what: "w".into(),
        };
        assert_eq!(db_error(&corrupt).kind, ErrorKind::Internal);
    }

    #[test]
    fn commit_to_db_refuses_a_table_index_out_of_range() {
        let commit = wire::Commit {
            tables: vec!["a".into()],
            writes: vec![wire::Write {
                table: 1,
                key: b"k".to_vec(),
                value: None,
            }],
            ..wire::Commit::default()
        };
        assert_eq!(
            commit_to_db(commit).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }
}
