//! The interactive-transaction helper against a fake server: what it records as
//! conditions, and its retry rules (conflicts re-run the body; unknown outcomes are resent
//! unchanged only with an idempotency key; retries are bounded).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::{FakeServer, Seen};
use popdb_client::{Client, ClientOptions, Error, ScanOptions, TxnOptions};
use popdb_protocol::{
    Check, Commit, Condition, Entries, Entry, ErrorKind, Request, Response, ServerError,
    UnknownReason, Versioned, Write,
};

fn conflict() -> Response {
    Response::Error(ServerError::new(
        ErrorKind::Conflict { condition_index: 0 },
        "version changed",
    ))
}

fn unknown() -> Response {
    Response::Error(ServerError::new(
        ErrorKind::UnknownOutcome {
            reason: UnknownReason::Timeout,
        },
        "commit timed out",
    ))
}

/// A server where `t`/`n` holds a counter at version 5 and commits are answered from
/// `commits` in turn (the last one repeated).
async fn server_answering_commits(commits: Vec<Response>) -> (String, Seen) {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let seen = Seen::default();
    let log = seen.clone();
    let commits = Mutex::new(commits);
    server.serve(move |request| {
        log.push(request);
        match request {
            Request::Get { .. } => Response::Value(Some(Versioned {
                value: b"1".to_vec(),
                version: 5,
            })),
            Request::Commit(_) => {
                let mut commits = commits.lock().unwrap();
                if commits.len() > 1 {
                    commits.remove(0)
                } else {
                    commits[0].clone()
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    (addr, seen)
}

fn commits(seen: &Seen) -> Vec<Commit> {
    seen.all()
        .into_iter()
        .filter_map(|r| match r {
            Request::Commit(commit) => Some(commit),
            _ => None,
        })
        .collect()
}

/// Increments `t`/`n`; counts how often the body ran.
async fn increment(
    client: &Client,
    options: TxnOptions,
    runs: &Arc<AtomicU32>,
) -> Result<u64, Error> {
    let committed = client
        .transaction(options, |txn| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let value = txn.get("t", b"n").await?.unwrap();
                let n: u64 = std::str::from_utf8(&value).unwrap().parse().unwrap();
                txn.put("t", b"n", (n + 1).to_string().as_bytes());
                Ok(n + 1)
            }
        })
        .await?;
    assert_eq!(committed.value, 2);
    Ok(committed.lsn.unwrap())
}

#[tokio::test]
async fn transaction_records_reads_as_conditions_and_buffers_writes() {
    let (addr, seen) = server_answering_commits(vec![Response::Committed { lsn: 40 }]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        increment(&client, TxnOptions::default(), &runs)
            .await
            .unwrap(),
        40
    );
    let commits = commits(&seen);
    assert_eq!(commits.len(), 1);
    let commit = &commits[0];
    assert_eq!(commit.tables, ["t"]);
    assert_eq!(
        commit.conditions,
        [Condition {
            table: 0,
            check: Check::Version {
                key: b"n".to_vec(),
                version: 5
            }
        }]
    );
    assert_eq!(
        commit.writes,
        [Write {
            table: 0,
            key: b"n".to_vec(),
            value: Some(b"2".to_vec())
        }]
    );
    assert!(commit.idempotency.is_some());
}

#[tokio::test]
async fn transaction_conflict_reruns_the_body_with_a_new_key() {
    let (addr, seen) = server_answering_commits(vec![
        conflict(),
        conflict(),
        Response::Committed { lsn: 41 },
    ])
    .await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        increment(&client, TxnOptions::default(), &runs)
            .await
            .unwrap(),
        41
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let commits = commits(&seen);
    assert_eq!(commits.len(), 3);
    let keys: Vec<_> = commits.iter().map(|c| c.idempotency.unwrap()).collect();
    assert_ne!(
        keys[0], keys[1],
        "a re-run body is a new commit with a new key"
    );
    assert_eq!(keys[0].client, keys[1].client);
    assert_eq!(keys[1].sequence, keys[0].sequence + 1);
}

#[tokio::test]
async fn transaction_unknown_outcome_with_key_resends_the_same_commit() {
    let (addr, seen) =
        server_answering_commits(vec![unknown(), Response::Committed { lsn: 42 }]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        increment(&client, TxnOptions::default(), &runs)
            .await
            .unwrap(),
        42
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the body must not run again"
    );
    let commits = commits(&seen);
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[0], commits[1], "resent unchanged, key included");
}

/// Symptom: `popdb-torture --mode server --seed 3 --cycles 1` found the shared counter one
/// higher than the increments acknowledged plus those in doubt: a transaction the helper
/// reported as certainly not applied had applied. Cause: the commit's connection broke
/// with the commit in flight (`ConnectionLost`, outcome unknown); the helper resent it, the
/// resend failed with `Closed` (never sent), and the helper returned that error, which
/// says "not applied" about a commit whose first attempt may have applied. Issue 8.
#[tokio::test]
async fn issue_8_resend_that_never_applied_keeps_the_unknown_outcome() {
    let read_only = Response::Error(ServerError::new(ErrorKind::ReadOnly, "disk full"));
    let (addr, seen) = server_answering_commits(vec![unknown(), read_only]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let error = increment(&client, TxnOptions::default(), &runs)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unknown { .. }), "{error}");
    assert!(error.may_have_applied());
    assert_eq!(commits(&seen).len(), 2, "sent, then resent once");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn transaction_unknown_outcome_without_key_is_returned() {
    let (addr, seen) =
        server_answering_commits(vec![unknown(), Response::Committed { lsn: 43 }]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let options = TxnOptions {
        idempotent: false,
        ..TxnOptions::default()
    };
    let error = increment(&client, options, &runs).await.unwrap_err();
    assert!(matches!(error, Error::Unknown { .. }), "{error}");
    assert!(error.may_have_applied());
    assert_eq!(commits(&seen).len(), 1);
    assert_eq!(commits(&seen)[0].idempotency, None);
}

#[tokio::test]
async fn transaction_retries_are_bounded() {
    let (addr, seen) = server_answering_commits(vec![conflict()]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let options = TxnOptions {
        retries_max: 3,
        ..TxnOptions::default()
    };
    let error = increment(&client, options, &runs).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(commits(&seen).len(), 4);

    // Unknown outcomes resent with a key are bounded by the same budget.
    let (addr, seen) = server_answering_commits(vec![unknown()]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let options = TxnOptions {
        retries_max: 2,
        ..TxnOptions::default()
    };
    let error = increment(&client, options, &runs).await.unwrap_err();
    assert!(matches!(error, Error::Unknown { .. }), "{error}");
    assert_eq!(commits(&seen).len(), 3);
}

#[tokio::test]
async fn transaction_body_error_is_returned_without_commit() {
    let (addr, seen) = server_answering_commits(vec![Response::Committed { lsn: 1 }]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let result = client
        .transaction(TxnOptions::default(), |txn| async move {
            txn.put("t", b"k", b"v");
            Err::<(), _>(Error::BadRequest {
                message: "the body gave up".to_owned(),
            })
        })
        .await;
    assert!(matches!(result, Err(Error::BadRequest { .. })));
    assert!(commits(&seen).is_empty());
}

#[tokio::test]
async fn transaction_reads_its_own_writes_and_records_scans() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let seen = Seen::default();
    let log = seen.clone();
    server.serve(move |request| {
        log.push(request);
        match request {
            Request::Scan(_) => Response::Entries(Entries {
                read_lsn: 30,
                entries: vec![Entry {
                    key: b"b".to_vec(),
                    value: b"1".to_vec(),
                    version: 20,
                }],
                cursor: None,
            }),
            Request::Get { .. } => Response::Value(None),
            Request::Commit(_) => Response::Committed { lsn: 31 },
            other => panic!("unexpected {other:?}"),
        }
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let committed = client
        .transaction(TxnOptions::default(), |txn| async move {
            let scanned = txn.scan("s", ScanOptions::new().from("a").to("m")).await?;
            let absent = txn.get("t", b"x").await?;
            txn.put("t", b"y", b"new");
            let own = txn.get("t", b"y").await?;
            txn.delete("t", b"y");
            let deleted = txn.get("t", b"y").await?;
            Ok((scanned.len(), absent, own, deleted))
        })
        .await
        .unwrap();
    assert_eq!(committed.value, (1, None, Some(b"new".to_vec()), None));
    // Reads of buffered writes never reach the server.
    let gets = seen
        .all()
        .iter()
        .filter(|r| matches!(r, Request::Get { .. }))
        .count();
    assert_eq!(gets, 1);
    let commit = &commits(&seen)[0];
    assert_eq!(commit.tables, ["s", "t"]);
    assert_eq!(
        commit.conditions,
        [
            Condition {
                table: 1,
                check: Check::Absent { key: b"x".to_vec() }
            },
            Condition {
                table: 0,
                check: Check::RangeUnchanged {
                    start: b"a".to_vec(),
                    end: Some(b"m".to_vec()),
                    since: 30
                }
            },
            Condition {
                table: 0,
                check: Check::Version {
                    key: b"b".to_vec(),
                    version: 20
                }
            },
        ]
    );
    assert_eq!(commit.writes.len(), 2);
    assert_eq!(commit.writes[1].value, None);
}

#[tokio::test]
async fn transaction_that_touches_nothing_sends_nothing() {
    let (addr, seen) = server_answering_commits(vec![Response::Committed { lsn: 1 }]).await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let committed = client
        .transaction(TxnOptions::default(), |_txn| async move { Ok(7) })
        .await
        .unwrap();
    assert_eq!(
        (committed.value, committed.lsn, committed.attempts),
        (7, None, 0)
    );
    assert!(seen.all().is_empty());
}

#[tokio::test]
async fn transaction_per_key_scan_conditions_stop_at_the_server_limit() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let seen = Seen::default();
    let log = seen.clone();
    let mut ok = common::handshake_ok();
    ok.limits.conditions_max = 3;
    server.serve_with(ok, move |request| {
        log.push(request);
        match request {
            Request::Scan(_) => Response::Entries(Entries {
                read_lsn: 30,
                entries: (0..5u8)
                    .map(|i| Entry {
                        key: vec![i],
                        value: Vec::new(),
                        version: 1,
                    })
                    .collect(),
                cursor: None,
            }),
            Request::Get { .. } => Response::Value(None),
            Request::Commit(_) => Response::Committed { lsn: 31 },
            other => panic!("unexpected {other:?}"),
        }
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    client
        .transaction(TxnOptions::default(), |txn| async move {
            txn.scan("s", ScanOptions::new()).await?;
            txn.get("s", b"x").await?;
            Ok(())
        })
        .await
        .unwrap();
    let commit = &commits(&seen)[0];
    let kinds: Vec<&str> = commit
        .conditions
        .iter()
        .map(|c| match c.check {
            Check::Absent { .. } => "absent",
            Check::RangeUnchanged { .. } => "range",
            Check::Version { .. } => "version",
            Check::Exists { .. } => "exists",
        })
        .collect();
    // The point read and the range always; per-key versions only while they fit.
    assert_eq!(kinds, ["absent", "range", "version"]);
}

/// A server whose first connection drops right after reading a commit; later connections
/// answer commits with `Committed`. Returns the commits that arrived.
async fn server_dropping_first_commit() -> (String, Arc<Mutex<Vec<Commit>>>) {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let commits = Arc::new(Mutex::new(Vec::new()));
    let log = commits.clone();
    tokio::spawn(async move {
        let mut dropped = false;
        loop {
            let mut conn = server.accept().await;
            while let Some((id, request)) = conn.recv().await {
                let response = match request {
                    Request::Get { .. } => Response::Value(Some(Versioned {
                        value: b"1".to_vec(),
                        version: 5,
                    })),
                    Request::Commit(commit) => {
                        log.lock().unwrap().push(commit);
                        if !dropped {
                            dropped = true;
                            break;
                        }
                        Response::Committed { lsn: 50 }
                    }
                    other => panic!("unexpected {other:?}"),
                };
                conn.send(id, &response).await;
            }
        }
    });
    (addr, commits)
}

#[tokio::test]
async fn transaction_lost_connection_with_key_resends_the_same_commit_on_a_new_one() {
    let (addr, commits) = server_dropping_first_commit().await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        increment(&client, TxnOptions::default(), &runs)
            .await
            .unwrap(),
        50
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the body must not run again"
    );
    let commits = commits.lock().unwrap();
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[0], commits[1], "resent unchanged, key included");
}

#[tokio::test]
async fn transaction_lost_connection_without_key_is_returned() {
    let (addr, commits) = server_dropping_first_commit().await;
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let options = TxnOptions {
        idempotent: false,
        ..TxnOptions::default()
    };
    let error = increment(&client, options, &runs).await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error}");
    assert!(error.may_have_applied());
    assert_eq!(commits.lock().unwrap().len(), 1);
}
