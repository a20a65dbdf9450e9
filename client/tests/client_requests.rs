//! The async and blocking clients against a fake server: every request kind and its typed
//! result, pipelining with out-of-order completion, the in-flight bound, timeouts, every
//! error code's typed mapping, and a dropped connection.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::ops::Bound;
use std::time::Duration;

use common::{FakeServer, Seen, handshake_ok};
use popdb_client::{
    BlockingClient, Client, ClientOptions, Engine, Error, ScanOptions, TableInfo, TableOptions,
    TxnOptions, Versioned, WriteBatch,
};
use popdb_protocol::HandshakeOk;
use popdb_protocol::{
    Cursor, Direction, Entries, Entry, ErrorKind, Limit, Request, Response, ServerError, Status,
    UnknownReason,
};

fn table(name: &str) -> TableInfo {
    TableInfo {
        id: 7,
        name: name.to_owned(),
        options: TableOptions::new(Engine::Lsm),
    }
}

/// A fake database of one key: `t`/`k` = `v` at version 9.
fn canned(request: &Request) -> Response {
    match request {
        Request::Ping => Response::Pong,
        Request::Status => Response::Status(Status {
            visible_lsn: 10,
            durable_lsn: 9,
            stats: vec![("wal.syncs".to_owned(), "3".to_owned())],
            ..Status::default()
        }),
        Request::CreateTable { name, .. } => Response::TableCreated {
            lsn: 7,
            table: table(name),
        },
        Request::DropTable { .. } => Response::Written { lsn: 11 },
        Request::ListTables => Response::Tables(vec![table("a"), table("b")]),
        Request::DescribeTable { name } => Response::Table(table(name)),
        Request::Get { key, .. } if key == b"k" => Response::Value(Some(Versioned {
            value: b"v".to_vec(),
            version: 9,
        })),
        Request::Get { .. } => Response::Value(None),
        Request::Put { .. } => Response::Written { lsn: 12 },
        Request::Delete { .. } => Response::Written { lsn: 13 },
        Request::Batch { .. } => Response::Written { lsn: 14 },
        Request::Commit(_) => Response::Committed { lsn: 15 },
        other => panic!("unexpected request {other:?}"),
    }
}

#[tokio::test]
async fn client_every_request_kind_returns_its_typed_result() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let seen = Seen::default();
    let log = seen.clone();
    server.serve(move |request| {
        log.push(request);
        canned(request)
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(client.server().server_version, "fake 0.0.0");
    client.ping().await.unwrap();
    let status = client.status().await.unwrap();
    assert_eq!((status.visible_lsn, status.durable_lsn), (10, 9));
    let created = client
        .create_table("users", TableOptions::new(Engine::Btree))
        .await
        .unwrap();
    assert_eq!(created.name, "users");
    assert_eq!(client.drop_table("users").await.unwrap(), 11);
    let names: Vec<String> = client
        .list_tables()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(client.describe_table("x").await.unwrap().name, "x");
    let value = client.get("t", b"k").await.unwrap().unwrap();
    assert_eq!((value.value.as_slice(), value.version), (&b"v"[..], 9));
    assert_eq!(client.get("t", b"missing").await.unwrap(), None);
    assert_eq!(client.put("t", b"k", b"v2").await.unwrap(), 12);
    assert_eq!(client.delete("t", b"k").await.unwrap(), 13);
    let mut batch = WriteBatch::new();
    batch
        .put("a", b"1", b"x")
        .delete("b", b"2")
        .put("a", b"3", b"y");
    assert_eq!(batch.len(), 3);
    assert_eq!(client.batch(batch).await.unwrap(), 14);
    let commit = client.begin();
    commit.put("t", b"k", b"v3");
    assert_eq!(commit.commit(None).await.unwrap(), 15);

    let requests = seen.all();
    assert_eq!(requests.len(), 12);
    let Request::Batch { tables, writes } = &requests[10] else {
        panic!("{:?}", requests[10]);
    };
    assert_eq!(tables, &["a", "b"]);
    assert_eq!(
        writes.iter().map(|w| w.table).collect::<Vec<_>>(),
        [0, 1, 0]
    );
    assert_eq!(writes[1].value, None);
}

#[tokio::test]
async fn client_pipelined_requests_complete_out_of_order() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let fake = tokio::spawn(async move {
        let mut conn = server.accept().await;
        let mut received = Vec::new();
        for _ in 0..3 {
            received.push(conn.recv().await.unwrap());
        }
        // Answer in reverse order: each response carries its request's id and the key it
        // asked for as the value.
        for (id, request) in received.iter().rev() {
            let Request::Get { key, .. } = request else {
                panic!("{request:?}")
            };
            let value = Versioned {
                value: key.clone(),
                version: *id,
            };
            conn.send(*id, &Response::Value(Some(value))).await;
        }
        received.len()
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        client.get("t", b"a"),
        client.get("t", b"b"),
        client.get("t", b"c")
    );
    assert_eq!(a.unwrap().unwrap().value, b"a");
    assert_eq!(b.unwrap().unwrap().value, b"b");
    assert_eq!(c.unwrap().unwrap().value, b"c");
    assert_eq!(fake.await.unwrap(), 3);
}

#[tokio::test]
async fn client_in_flight_bound_holds_requests_back_until_responses_arrive() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        let mut first = Vec::new();
        for _ in 0..2 {
            let (id, _) = conn.recv().await.unwrap();
            received_tx.send(id).unwrap();
            first.push(id);
        }
        go_rx.await.unwrap();
        for id in first {
            conn.send(id, &Response::Pong).await;
        }
        while let Some((id, _)) = conn.recv().await {
            received_tx.send(id).unwrap();
            conn.send(id, &Response::Pong).await;
        }
    });
    let options = ClientOptions::default().with_in_flight_max(2);
    let client = Client::connect(&addr, options).await.unwrap();
    let pings = tokio::spawn({
        let client = client.clone();
        async move {
            let results = tokio::join!(
                client.ping(),
                client.ping(),
                client.ping(),
                client.ping(),
                client.ping()
            );
            [results.0, results.1, results.2, results.3, results.4]
        }
    });
    received_rx.recv().await.unwrap();
    received_rx.recv().await.unwrap();
    // Two are in flight and unanswered: the other three must wait.
    let third = tokio::time::timeout(Duration::from_millis(150), received_rx.recv()).await;
    assert!(third.is_err(), "a third request was sent past the bound");
    go_tx.send(()).unwrap();
    for result in pings.await.unwrap() {
        result.unwrap();
    }
    let mut rest = 0;
    while received_rx.try_recv().is_ok() {
        rest += 1;
    }
    assert_eq!(rest, 3);
}

#[tokio::test]
async fn client_request_past_its_timeout_fails_with_timeout_and_the_connection_goes_on() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        let (slow, _) = conn.recv().await.unwrap();
        let (next, _) = conn.recv().await.unwrap();
        // The late answer to the timed-out request must be dropped, not misdelivered.
        conn.send(slow, &Response::Written { lsn: 1 }).await;
        conn.send(next, &Response::Pong).await;
        while let Some((id, _)) = conn.recv().await {
            conn.send(id, &Response::Pong).await;
        }
    });
    let options = ClientOptions::default().with_request_timeout(Duration::from_millis(100));
    let client = Client::connect(&addr, options).await.unwrap();
    let error = client.put("t", b"k", b"v").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout { timeout_ms: 100 }),
        "{error}"
    );
    assert!(error.may_have_applied());
    client.ping().await.unwrap();
    client.ping().await.unwrap();
}

#[tokio::test]
async fn client_error_frames_map_to_typed_errors() {
    let kinds = [
        ErrorKind::BadRequest,
        ErrorKind::FrameTooLarge,
        ErrorKind::LimitExceeded {
            limit: Limit::KeySize,
        },
        ErrorKind::UnsupportedVersion { min: 2, max: 3 },
        ErrorKind::Unauthorized,
        ErrorKind::UnknownTable,
        ErrorKind::TableExists,
        ErrorKind::Conflict { condition_index: 4 },
        ErrorKind::UnknownOutcome {
            reason: UnknownReason::LogLost,
        },
        ErrorKind::Overloaded,
        ErrorKind::ReadOnly,
        ErrorKind::CursorExpired,
        ErrorKind::Internal,
        ErrorKind::NotLeader {
            leader_hint: Some("10.0.0.2:7878".to_owned()),
        },
    ];
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let answers = kinds.clone();
    server.serve(move |request| {
        let Request::Get { key, .. } = request else {
            panic!("{request:?}")
        };
        let kind = answers[usize::from(key[0])].clone();
        Response::Error(ServerError::new(kind, "canned"))
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let mut errors = Vec::new();
    for index in 0..kinds.len() {
        errors.push(client.get("t", &[index as u8]).await.unwrap_err());
    }
    let mut it = errors.iter();
    let mut next = || it.next().unwrap();
    assert!(matches!(next(), Error::BadRequest { message } if message == "canned"));
    assert!(matches!(
        next(),
        Error::LimitExceeded {
            limit: Limit::FrameSize,
            ..
        }
    ));
    assert!(matches!(
        next(),
        Error::LimitExceeded {
            limit: Limit::KeySize,
            ..
        }
    ));
    assert!(matches!(
        next(),
        Error::UnsupportedVersion { min: 2, max: 3, .. }
    ));
    assert!(matches!(next(), Error::Unauthorized { .. }));
    assert!(matches!(next(), Error::UnknownTable { .. }));
    assert!(matches!(next(), Error::TableExists { .. }));
    assert!(matches!(next(), Error::Conflict { condition: 4, .. }));
    assert!(matches!(
        next(),
        Error::Unknown {
            reason: UnknownReason::LogLost,
            ..
        }
    ));
    assert!(matches!(next(), Error::Overloaded { .. }));
    assert!(matches!(next(), Error::ReadOnly { .. }));
    assert!(matches!(next(), Error::CursorExpired { .. }));
    assert!(matches!(next(), Error::Internal { .. }));
    assert!(matches!(next(), Error::NotLeader { hint: Some(h), .. } if h == "10.0.0.2:7878"));
    let maybe: Vec<bool> = errors.iter().map(Error::may_have_applied).collect();
    let expected: Vec<bool> = (0..kinds.len()).map(|i| i == 8 || i == 12).collect();
    assert_eq!(
        maybe, expected,
        "only UnknownOutcome and Internal may have applied"
    );
    // The connection survives error responses.
    assert!(!client.is_closed());
}

#[tokio::test]
async fn client_dropped_connection_fails_pending_as_lost_and_later_as_closed() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        let _ = conn.recv().await.unwrap();
        drop(conn);
    });
    let options = ClientOptions::default().with_reconnect(false);
    let client = Client::connect(&addr, options).await.unwrap();
    let error = client.put("t", b"k", b"v").await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error}");
    assert!(error.may_have_applied());
    assert!(client.is_closed());
    let error = client.put("t", b"k", b"v").await.unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error}");
    assert!(!error.may_have_applied());
}

#[tokio::test]
async fn client_malformed_frame_from_server_closes_the_connection() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        let _ = conn.recv().await.unwrap();
        // A length under the 12 header bytes: the stream cannot be framed.
        conn.send_raw(&[3, 0, 0, 0, 1, 2, 3]).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let error = client.ping().await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error}");
}

#[tokio::test]
async fn client_handshake_sends_token_and_maps_refusal() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let fake = tokio::spawn(async move {
        let mut conn = server.accept_raw().await;
        let (id, request) = conn.recv().await.unwrap();
        let refusal = ServerError::new(ErrorKind::Unauthorized, "wrong token");
        conn.send(id, &Response::Error(refusal)).await;
        let mut conn = server.accept_raw().await;
        let (id, second) = conn.recv().await.unwrap();
        conn.send(id, &Response::Handshake(handshake_ok())).await;
        (request, second)
    });
    let options = ClientOptions::default().with_token("s3cret");
    let error = Client::connect(&addr, options).await.unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error}");
    Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let (first, second) = fake.await.unwrap();
    assert_eq!(
        first,
        Request::Handshake {
            version_min: 1,
            version_max: 1,
            token: Some(b"s3cret".to_vec()),
        }
    );
    assert!(matches!(second, Request::Handshake { token: None, .. }));
}

fn entry(key: &str, version: u64) -> Entry {
    Entry {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        version,
    }
}

/// Pages of two entries from the keys `a` to `e`, at read view 50, following the cursor.
fn paged(request: &Request) -> Response {
    let Request::Scan(scan) = request else {
        panic!("{request:?}")
    };
    let keys = ["a", "b", "c", "d", "e"];
    let start = match &scan.cursor {
        None => 0,
        Some(cursor) => {
            assert_eq!(cursor.lsn, 50);
            keys.iter()
                .position(|k| k.as_bytes() == cursor.key)
                .unwrap()
                + 1
        }
    };
    let limit = if scan.limit == 0 {
        2
    } else {
        scan.limit.min(2)
    } as usize;
    let page: Vec<Entry> = keys[start..]
        .iter()
        .take(limit)
        .map(|k| entry(k, 1))
        .collect();
    let cursor = (start + page.len() < keys.len()).then(|| Cursor {
        key: page.last().unwrap().key.clone(),
        lsn: 50,
    });
    Response::Entries(Entries {
        read_lsn: 50,
        entries: page,
        cursor,
    })
}

#[tokio::test]
async fn client_scan_follows_cursors_and_stops_at_its_limit() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let seen = Seen::default();
    let log = seen.clone();
    server.serve(move |request| {
        log.push(request);
        paged(request)
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let all = client
        .scan("t", ScanOptions::new())
        .collect()
        .await
        .unwrap();
    let keys: Vec<&[u8]> = all.iter().map(|e| e.key.as_slice()).collect();
    assert_eq!(keys, [b"a", b"b", b"c", b"d", b"e"]);
    assert_eq!(seen.all().len(), 3);

    let mut stream = client.scan("t", ScanOptions::new().from("a").limit(3).reverse());
    let mut keys = Vec::new();
    while let Some(entry) = stream.next().await.unwrap() {
        keys.push(entry.key);
    }
    assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(stream.read_lsn(), Some(50));
    let requests = seen.all();
    let Request::Scan(last) = requests.last().unwrap() else {
        panic!()
    };
    // The second page asks only for what is left of the total.
    assert_eq!(last.limit, 1);
    assert_eq!(last.lower, Bound::Included(b"a".to_vec()));
    assert_eq!(last.direction, Direction::Backward);
}

#[test]
fn blocking_client_runs_requests_and_scans() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = runtime.block_on(async {
        let server = FakeServer::start().await;
        let addr = server.addr.clone();
        server.serve(|request| match request {
            Request::Scan(_) => paged(request),
            other => canned(other),
        });
        addr
    });
    let client = BlockingClient::connect(&addr, ClientOptions::default()).unwrap();
    client.ping().unwrap();
    assert_eq!(client.put("t", b"k", b"v").unwrap(), 12);
    assert_eq!(client.get("t", b"k").unwrap().unwrap().version, 9);
    let keys: Vec<Vec<u8>> = client
        .scan("t", ScanOptions::new())
        .map(|e| e.unwrap().key)
        .collect();
    assert_eq!(keys.len(), 5);
    let committed = client
        .transaction(TxnOptions::default(), |txn| async move {
            let value = txn.get("t", b"k").await?;
            txn.put("t", b"k2", &value.unwrap());
            Ok(())
        })
        .unwrap();
    assert_eq!(committed.lsn, Some(15));
}

#[tokio::test]
async fn client_server_in_flight_bound_is_honored() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let ok = HandshakeOk {
        in_flight_max: 1,
        ..handshake_ok()
    };
    let fake = tokio::spawn(async move {
        let mut conn = server.accept_with(ok).await;
        let (first, _) = conn.recv().await.unwrap();
        // The client offered 256 but the server announced 1: nothing more may come.
        let early = conn.try_recv(Duration::from_millis(100)).await;
        conn.send(first, &Response::Pong).await;
        let (second, _) = conn.recv().await.unwrap();
        conn.send(second, &Response::Pong).await;
        early.is_none()
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let (a, b) = tokio::join!(client.ping(), client.ping());
    a.unwrap();
    b.unwrap();
    assert!(
        fake.await.unwrap(),
        "a second request was sent past the server's bound"
    );
}

#[tokio::test]
async fn client_many_concurrent_requests_each_get_their_own_response() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        // Collect what has arrived, then answer it newest first, until the client is done.
        let mut waiting = Vec::new();
        loop {
            match conn.try_recv(Duration::from_millis(5)).await {
                Some(request) => waiting.push(request),
                None if waiting.is_empty() => match conn.recv().await {
                    Some(request) => waiting.push(request),
                    None => break,
                },
                None => {
                    while let Some((id, request)) = waiting.pop() {
                        let Request::Get { key, .. } = request else {
                            panic!("{request:?}")
                        };
                        let value = Versioned {
                            value: key,
                            version: id,
                        };
                        conn.send(id, &Response::Value(Some(value))).await;
                    }
                }
            }
        }
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500u32 {
        let client = client.clone();
        tasks.spawn(async move {
            let key = i.to_le_bytes();
            let value = client.get("t", &key).await.unwrap().unwrap();
            assert_eq!(value.value, key);
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

#[tokio::test]
async fn client_error_for_request_zero_explains_the_close() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        let _ = conn.recv().await.unwrap();
        let error = ServerError::new(ErrorKind::FrameTooLarge, "frame of 99 bytes");
        conn.send(0, &Response::Error(error)).await;
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let error = client.ping().await.unwrap_err();
    let Error::ConnectionLost { reason } = &error else {
        panic!("{error}")
    };
    assert!(reason.contains("frame of 99 bytes"), "{reason}");
}

#[test]
fn client_depends_on_no_engine() {
    // STYLE.md, section 1: the client depends on popdb-protocol alone, so that a client
    // application never compiles an engine.
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "popdb-client",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    let popdb: std::collections::BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("popdb-"))
        .collect();
    assert_eq!(
        popdb.into_iter().collect::<Vec<_>>(),
        ["popdb-client", "popdb-protocol"]
    );
}

#[tokio::test]
async fn client_close_fails_pending_requests_and_closes_the_socket() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let fake = tokio::spawn(async move {
        let mut conn = server.accept().await;
        let _ = conn.recv().await.unwrap();
        got_tx.send(()).unwrap();
        // The next thing the server sees is the end of the stream.
        conn.recv().await.is_none()
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.put("t", b"k", b"v").await }
    });
    got_rx.await.unwrap();
    client.close();
    let error = pending.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error}");
    let error = client.ping().await.unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error}");
    let eof = tokio::time::timeout(Duration::from_secs(5), fake).await;
    assert!(eof.unwrap().unwrap(), "the socket stayed open");
}

#[tokio::test]
async fn client_reconnects_after_the_server_drops_the_connection() {
    let server = FakeServer::start().await;
    let addr = server.addr.clone();
    tokio::spawn(async move {
        let mut first = server.accept().await;
        let _ = first.recv().await.unwrap();
        drop(first);
        let mut second = server.accept().await;
        while let Some((id, _)) = second.recv().await {
            second.send(id, &Response::Pong).await;
        }
    });
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let key = client.next_idempotency_key();
    let error = client.ping().await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error}");
    client.ping().await.unwrap();
    client.ping().await.unwrap();
    // The same client id on the new connection: resent commits are still recognized.
    assert_eq!(client.next_idempotency_key().client, key.client);
}
