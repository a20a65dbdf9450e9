//! End to end: the real `popdb` binary, driven over TCP by the test client. Every request
//! kind, the errors a client can cause, cursors, auth, metrics and a clean shutdown.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::ops::Bound;
use std::time::Duration;

use common::{Client, Server};
use popdb_protocol::{
    Check, Commit, Condition, Cursor, Direction, Engine, ErrorKind, IdempotencyKey, Limit, Request,
    Response, Scan, TableOptions, Write,
};

fn error_kind(response: &Response) -> ErrorKind {
    match response {
        Response::Error(error) => error.kind.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn written(response: &Response) -> u64 {
    match response {
        Response::Written { lsn } | Response::Committed { lsn } => *lsn,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn scan(table: &str, direction: Direction, limit: u32, cursor: Option<Cursor>) -> Request {
    Request::Scan(Scan {
        table: table.into(),
        lower: Bound::Unbounded,
        upper: Bound::Unbounded,
        direction,
        limit,
        cursor,
    })
}

#[test]
fn server_every_request_kind_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    assert_eq!(c.call(&Request::Ping), Response::Pong);

    // DDL.
    let Response::TableCreated { lsn, table } = c.create("users", Engine::Btree) else {
        panic!("create");
    };
    assert_eq!(table.id, lsn);
    assert_eq!(table.options, TableOptions::new(Engine::Btree));
    assert!(matches!(
        c.create("hits", Engine::Lsm),
        Response::TableCreated { .. }
    ));
    assert_eq!(
        error_kind(&c.create("users", Engine::Lsm)),
        ErrorKind::TableExists
    );
    assert_eq!(
        error_kind(&c.create("bad name!", Engine::Lsm)),
        ErrorKind::BadRequest
    );
    let Response::Tables(tables) = c.call(&Request::ListTables) else {
        panic!("list");
    };
    let mut names: Vec<_> = tables.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["hits", "users"]);
    let Response::Table(info) = c.call(&Request::DescribeTable {
        name: "hits".into(),
    }) else {
        panic!("describe");
    };
    assert_eq!(info.options.engine, Engine::Lsm);
    let missing = c.call(&Request::DescribeTable {
        name: "nope".into(),
    });
    assert_eq!(error_kind(&missing), ErrorKind::UnknownTable);

    // Point writes and reads.
    let v1 = written(&c.put("users", b"alice", b"admin"));
    let Response::Value(Some(value)) = c.get("users", b"alice") else {
        panic!("get");
    };
    assert_eq!((value.value.as_slice(), value.version), (&b"admin"[..], v1));
    assert_eq!(c.get("users", b"bob"), Response::Value(None));
    assert_eq!(error_kind(&c.get("nope", b"k")), ErrorKind::UnknownTable);
    assert_eq!(
        error_kind(&c.put("nope", b"k", b"v")),
        ErrorKind::UnknownTable
    );
    written(&c.call(&Request::Delete {
        table: "users".into(),
        key: b"alice".to_vec(),
    }));
    assert_eq!(c.get("users", b"alice"), Response::Value(None));

    // A batch across tables.
    let batch = Request::Batch {
        tables: vec!["users".into(), "hits".into()],
        writes: vec![
            Write {
                table: 0,
                key: b"carol".to_vec(),
                value: Some(b"x".to_vec()),
            },
            Write {
                table: 1,
                key: b"/a".to_vec(),
                value: Some(b"1".to_vec()),
            },
        ],
    };
    let batch_lsn = written(&c.call(&batch));
    let Response::Value(Some(hit)) = c.get("hits", b"/a") else {
        panic!("get");
    };
    assert_eq!(hit.version, batch_lsn);

    // A commit: a condition that fails names its index; an idempotent resend returns the
    // first result.
    let stale = Commit {
        tables: vec!["users".into()],
        conditions: vec![
            Condition {
                table: 0,
                check: Check::Exists {
                    key: b"carol".to_vec(),
                },
            },
            Condition {
                table: 0,
                check: Check::Version {
                    key: b"carol".to_vec(),
                    version: 1,
                },
            },
        ],
        writes: vec![Write {
            table: 0,
            key: b"carol".to_vec(),
            value: None,
        }],
        ..Commit::default()
    };
    let conflict = c.call(&Request::Commit(stale));
    assert_eq!(
        error_kind(&conflict),
        ErrorKind::Conflict { condition_index: 1 }
    );
    let good = Commit {
        idempotency: Some(IdempotencyKey {
            client: 7,
            sequence: 1,
        }),
        tables: vec!["users".into()],
        conditions: vec![Condition {
            table: 0,
            check: Check::Version {
                key: b"carol".to_vec(),
                version: batch_lsn,
            },
        }],
        writes: vec![Write {
            table: 0,
            key: b"carol".to_vec(),
            value: Some(b"y".to_vec()),
        }],
    };
    let first = written(&c.call(&Request::Commit(good.clone())));
    assert_eq!(written(&c.call(&Request::Commit(good))), first);

    // Limits: the decoder names the limit.
    let long_key = c.get("users", &[b'k'; 600]);
    assert_eq!(
        error_kind(&long_key),
        ErrorKind::LimitExceeded {
            limit: Limit::KeySize
        }
    );

    // Status.
    let Response::Status(status) = c.call(&Request::Status) else {
        panic!("status");
    };
    assert!(status.visible_lsn >= first);
    assert_eq!(status.tables_count, 2);
    assert!(status.connections_count >= 1);
    assert!(!status.read_only);
    assert!(status.stats.iter().any(|(k, _)| k == "wal.syncs"));

    // A second handshake is a bad request, and the connection goes on.
    let again = c.call(&Request::Handshake {
        version_min: 1,
        version_max: 1,
        token: None,
    });
    assert_eq!(error_kind(&again), ErrorKind::BadRequest);
    assert_eq!(c.call(&Request::Ping), Response::Pong);

    // Drop.
    written(&c.call(&Request::DropTable {
        name: "hits".into(),
    }));
    assert_eq!(error_kind(&c.get("hits", b"/a")), ErrorKind::UnknownTable);
    let drop_again = c.call(&Request::DropTable {
        name: "hits".into(),
    });
    assert_eq!(error_kind(&drop_again), ErrorKind::UnknownTable);
}

#[test]
fn server_scans_page_with_cursors_and_cursors_expire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--scan-limit-max",
            "7",
            "--cursor-ttl-ms",
            "1000",
            "--sync",
            "nosync",
        ],
    );
    let mut c = server.client();
    c.create("t", Engine::Lsm);
    let writes = (0..50_u32)
        .map(|i| Write {
            table: 0,
            key: format!("k{i:03}").into_bytes(),
            value: Some(vec![b'v'; 10]),
        })
        .collect();
    written(&c.call(&Request::Batch {
        tables: vec!["t".into()],
        writes,
    }));
    for direction in [Direction::Forward, Direction::Backward] {
        let mut keys = Vec::new();
        let mut cursor = None;
        let mut read_lsn = None;
        for _ in 0..20 {
            let Response::Entries(page) = c.call(&scan("t", direction, 0, cursor.take())) else {
                panic!("scan");
            };
            // A write between pages is not seen: every page reads the first page's view.
            written(&c.put("t", b"k025x", b"late"));
            assert!(page.entries.len() <= 7);
            assert_eq!(*read_lsn.get_or_insert(page.read_lsn), page.read_lsn);
            keys.extend(page.entries.into_iter().map(|e| e.key));
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<Vec<u8>> = (0..50).map(|i| format!("k{i:03}").into_bytes()).collect();
        if direction == Direction::Backward {
            expected.reverse();
        }
        assert_eq!(keys, expected, "{direction:?}");
        written(&c.call(&Request::Delete {
            table: "t".into(),
            key: b"k025x".to_vec(),
        }));
    }
    // A limit above the server's maximum is refused by name.
    let over = c.call(&scan("t", Direction::Forward, 8, None));
    assert_eq!(
        error_kind(&over),
        ErrorKind::LimitExceeded {
            limit: Limit::ScanLimit
        }
    );
    // Bounds and a limit below the maximum.
    let bounded = Request::Scan(Scan {
        table: "t".into(),
        lower: Bound::Excluded(b"k010".to_vec()),
        upper: Bound::Included(b"k013".to_vec()),
        direction: Direction::Forward,
        limit: 2,
        cursor: None,
    });
    let Response::Entries(page) = c.call(&bounded) else {
        panic!("scan")
    };
    let keys: Vec<_> = page.entries.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys, [b"k011".to_vec(), b"k012".to_vec()]);
    let cursor = page.cursor.unwrap();
    // The cursor expires after its TTL.
    std::thread::sleep(Duration::from_millis(1300));
    let Request::Scan(mut next) = bounded else {
        unreachable!()
    };
    next.cursor = Some(cursor);
    let expired = c.call(&Request::Scan(next));
    assert_eq!(error_kind(&expired), ErrorKind::CursorExpired);
    let unknown = c.call(&scan(
        "t",
        Direction::Forward,
        0,
        Some(Cursor {
            key: b"k".to_vec(),
            lsn: 3,
        }),
    ));
    assert_eq!(error_kind(&unknown), ErrorKind::CursorExpired);
}

#[test]
fn server_pipelined_requests_complete_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--in-flight-max", "64"]);
    let mut c = server.client();
    c.create("t", Engine::Btree);
    let writes = (0..3000_u32)
        .map(|i| Write {
            table: 0,
            key: format!("k{i:05}").into_bytes(),
            value: Some(vec![b'v'; 1000]),
        })
        .collect();
    written(&c.call(&Request::Batch {
        tables: vec!["t".into()],
        writes,
    }));
    // A long scan first, then pings, in one write so that the server reads them together
    // (sent apart, a loaded machine may finish the scan before the pings arrive): the
    // pings are answered before the scan.
    let mut burst = vec![scan("t", Direction::Forward, 0, None)];
    burst.extend((0..20).map(|_| Request::Ping));
    let ids = c.send_together(&burst);
    let (scan_id, ping_ids) = (ids[0], ids[1..].to_vec());
    let mut order = Vec::new();
    for _ in 0..21 {
        let (id, response) = c.recv();
        if id == scan_id {
            assert!(matches!(response, Response::Entries(_)));
        } else {
            assert!(ping_ids.contains(&id));
            assert_eq!(response, Response::Pong);
        }
        order.push(id);
    }
    assert_ne!(order[0], scan_id, "a ping overtook the scan: {order:?}");
    // Many more requests than in_flight_max in one burst: each answered exactly once.
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..500_u32 {
        let key = format!("p{i}").into_bytes();
        let id = c.send(&Request::Put {
            table: "t".into(),
            key: key.clone(),
            value: key.clone(),
        });
        expected.insert(id);
    }
    for _ in 0..500 {
        let (id, response) = c.recv();
        written(&response);
        assert!(
            expected.remove(&id),
            "request {id} answered twice or never sent"
        );
    }
    assert!(expected.is_empty());
}

#[test]
fn server_many_concurrent_clients_all_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--sync", "nosync"]);
    server.client().create("t", Engine::Lsm);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.handshake(None).unwrap();
                for i in 0..100 {
                    let key = format!("{t}-{i}").into_bytes();
                    written(&c.put("t", &key, &key));
                    let Response::Value(Some(v)) = c.get("t", &key) else {
                        panic!("get")
                    };
                    assert_eq!(v.value, key);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut c = server.client();
    let Response::Entries(page) = c.call(&scan("t", Direction::Forward, 0, None)) else {
        panic!("scan");
    };
    assert_eq!(page.entries.len(), 1600);
}

/// Puts and deletes read in one pass are logged together, in appends of at most
/// `POINT_WRITES_BYTES_MAX` bytes: one naming a missing table is refused alone (as it is
/// read), a pass larger than one append becomes several, and every write is answered once.
#[test]
fn server_point_writes_of_one_pass_are_answered_each_even_when_some_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--in-flight-max", "256"]);
    let mut c = server.client();
    c.create("t", Engine::Lsm);
    let mut burst = Vec::new();
    for i in 0..60_u32 {
        let key = format!("k{i:02}").into_bytes();
        burst.push(match i % 6 {
            // About 60 KiB of values in all: more than one append's bound.
            0..=2 => Request::Put {
                table: "t".into(),
                key,
                value: vec![i as u8; 2000],
            },
            3 => Request::Put {
                table: "missing".into(),
                key,
                value: b"v".to_vec(),
            },
            4 => Request::Delete {
                table: "t".into(),
                key,
            },
            _ => Request::Put {
                table: "t".into(),
                key,
                value: Vec::new(),
            },
        });
    }
    let ids = c.send_together(&burst);
    let mut answers = std::collections::HashMap::new();
    for _ in 0..ids.len() {
        let (id, response) = c.recv();
        assert!(
            answers.insert(id, response).is_none(),
            "request {id} answered twice"
        );
    }
    let mut lsns = std::collections::BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let answer = &answers[id];
        if i % 6 == 3 {
            assert_eq!(error_kind(answer), ErrorKind::UnknownTable, "request {i}");
        } else {
            assert!(lsns.insert(written(answer)), "request {i}: an LSN twice");
        }
    }
    for i in 0..60_u32 {
        let found = c.get("t", format!("k{i:02}").as_bytes());
        match i % 6 {
            0..=2 => assert!(
                matches!(&found, Response::Value(Some(v)) if v.value == vec![i as u8; 2000]),
                "k{i:02}: {found:?}"
            ),
            5 => assert!(
                matches!(&found, Response::Value(Some(v)) if v.value.is_empty()),
                "k{i:02}: {found:?}"
            ),
            _ => assert_eq!(found, Response::Value(None), "k{i:02}"),
        }
    }
}

/// Puts from many connections at once go through the server's one queue of point writes,
/// which hands them to the log as appends of at most `POINT_WRITES_BYTES_MAX` bytes: more
/// than that read in one round makes several. Every write is answered once and readable.
#[test]
fn server_point_writes_of_many_connections_are_each_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--sync", "nosync"]);
    server.client().create("t", Engine::Btree);
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8_u8)
        .map(|t| {
            let (addr, start) = (server.addr, std::sync::Arc::clone(&start));
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.handshake(None).unwrap();
                // 40 puts of 1,000 bytes per connection: 320 KB in all.
                let burst: Vec<Request> = (0..40_u8)
                    .map(|i| Request::Put {
                        table: "t".into(),
                        key: vec![t, i],
                        value: vec![t ^ i; 1000],
                    })
                    .collect();
                start.wait();
                let mut expected: std::collections::BTreeSet<u64> =
                    c.send_together(&burst).into_iter().collect();
                for _ in 0..burst.len() {
                    let (id, response) = c.recv();
                    written(&response);
                    assert!(expected.remove(&id), "request {id} answered twice");
                }
                assert!(expected.is_empty(), "unanswered: {expected:?}");
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut c = server.client();
    for t in 0..8_u8 {
        for i in 0..40_u8 {
            let Response::Value(Some(found)) = c.get("t", &[t, i]) else {
                panic!("{t}/{i} not found");
            };
            assert_eq!(found.value, vec![t ^ i; 1000]);
        }
    }
}

/// Without sync, a write that finds the log idle is written and answered on the event loop
/// if its group is small (at most 32 writes); a larger group goes to the log's writer
/// thread, whose answers reach the socket through the server's mailbox, which the event
/// loop empties. Both kinds
/// of group, one after the other on one connection: each write answered once, readable.
#[test]
fn server_nosync_writes_answered_from_the_event_loop_and_the_log_writer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--sync", "nosync"]);
    let mut c = server.client();
    c.create("t", Engine::Lsm);
    for round in 0..5_u32 {
        // Alone: a group of one, led by the event loop.
        let key = format!("single-{round}").into_bytes();
        written(&c.put("t", &key, &key));
        // Together: read in one pass, one group of 200.
        let burst: Vec<Request> = (0..200_u32)
            .map(|i| {
                let key = format!("burst-{round}-{i:03}").into_bytes();
                Request::Put {
                    table: "t".into(),
                    key: key.clone(),
                    value: key,
                }
            })
            .collect();
        let mut expected: std::collections::BTreeSet<u64> =
            c.send_together(&burst).into_iter().collect();
        for _ in 0..burst.len() {
            let (id, response) = c.recv();
            written(&response);
            assert!(expected.remove(&id), "request {id} answered twice");
        }
        assert!(expected.is_empty(), "unanswered: {expected:?}");
    }
    for round in 0..5_u32 {
        for key in [
            format!("single-{round}"),
            format!("burst-{round}-000"),
            format!("burst-{round}-199"),
        ] {
            let Response::Value(Some(found)) = c.get("t", key.as_bytes()) else {
                panic!("{key} not found");
            };
            assert_eq!(found.value, key.as_bytes());
        }
    }
}

#[test]
fn server_handshake_rules_auth_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--auth-token", "s3cret"]);
    let mut c = Client::connect(server.addr);
    let wrong = c.handshake(Some(b"s3creT")).unwrap_err();
    assert_eq!(error_kind(&wrong), ErrorKind::Unauthorized);
    assert!(c.closed_by_server());
    let mut c = Client::connect(server.addr);
    assert_eq!(
        error_kind(&c.handshake(None).unwrap_err()),
        ErrorKind::Unauthorized
    );
    let mut c = Client::connect(server.addr);
    assert_eq!(error_kind(&c.call(&Request::Ping)), ErrorKind::Unauthorized);
    assert!(c.closed_by_server());
    let mut c = Client::connect(server.addr);
    let future = c.call(&Request::Handshake {
        version_min: 2,
        version_max: 9,
        token: None,
    });
    assert_eq!(
        error_kind(&future),
        ErrorKind::UnsupportedVersion { min: 1, max: 1 }
    );
    assert!(c.closed_by_server());
    let mut c = Client::connect(server.addr);
    c.handshake(Some(b"s3cret")).unwrap();
    assert_eq!(c.call(&Request::Ping), Response::Pong);
}

#[test]
fn server_connection_limit_answers_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--connections-max", "2"]);
    let a = server.client();
    let b = server.client();
    let mut c = Client::connect(server.addr);
    let (id, response) = c.try_recv().unwrap();
    assert_eq!((id, error_kind(&response)), (0, ErrorKind::Overloaded));
    drop((a, b));
    // Slots free up once the others close.
    let mut ok = false;
    for _ in 0..50 {
        let mut c = Client::connect(server.addr);
        if c.handshake(None).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "a connection slot was never released");
}

#[test]
fn server_metrics_and_health_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    c.create("t", Engine::Btree);
    written(&c.put("t", b"k", b"v"));
    c.get("nope", b"k");
    let (code, body) = server.http_get("/metrics");
    assert_eq!(code, 200);
    for needle in [
        "popdb_requests_total{op=\"put\"} 1",
        "popdb_request_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 1",
        "popdb_errors_total{code=\"UnknownTable\"} 1",
        "popdb_connections_open 1",
        "popdb_wal_syncs_total",
        "popdb_wal_written_bytes_total",
        "popdb_durable_lsn",
        "popdb_log_pinned_info{by=",
        "popdb_table_memory_bytes{table=\"t\",engine=\"btree\"}",
    ] {
        assert!(body.contains(needle), "no {needle} in\n{body}");
    }
    assert_eq!(server.http_get("/health"), (200, "ok\n".to_string()));
    assert_eq!(server.http_get("/nope").0, 404);
}

#[test]
fn server_sigterm_answers_in_flight_checkpoints_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    c.create("t", Engine::Lsm);
    let lsn = written(&c.put("t", b"k", b"v"));
    let status = server.signal("TERM");
    assert!(status.success(), "{status:?}");
    let server = Server::start(dir.path(), &[]);
    let Response::Value(Some(v)) = server.client().get("t", b"k") else {
        panic!("get")
    };
    assert_eq!((v.value, v.version), (b"v".to_vec(), lsn));
}

#[test]
fn server_second_process_on_one_dir_refuses_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_popdb"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let pid = server.child.id().to_string();
    assert!(
        stderr.contains(&pid),
        "the error does not name process {pid}: {stderr}"
    );
}

#[test]
fn server_refuses_to_listen_beyond_loopback_without_a_token() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_popdb"))
        .args([
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            "/nonexistent/never-created",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without an auth token"), "{stderr}");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_popdb"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--sync",
        "--auth-token-file",
        "--idle-timeout-ms",
        "check",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn server_check_subcommand_verifies_a_stopped_dir_and_refuses_a_served_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    c.create("t", Engine::Btree);
    for i in 0..100_u32 {
        written(&c.put("t", format!("k{i:03}").as_bytes(), b"v"));
    }
    let held = std::process::Command::new(env!("CARGO_BIN_EXE_popdb"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!held.status.success());
    let stderr = String::from_utf8_lossy(&held.stderr);
    assert!(stderr.contains(&server.child.id().to_string()), "{stderr}");
    assert!(server.signal("TERM").success());
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_popdb"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(!stdout.is_empty());
}

#[test]
fn server_idle_connection_is_closed_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--idle-timeout-ms", "300"]);
    let mut idle = server.client();
    let mut busy = server.client();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(busy.call(&Request::Ping), Response::Pong);
    }
    assert!(idle.closed_by_server());
    assert_eq!(busy.call(&Request::Ping), Response::Pong);
}

#[test]
fn server_scan_pages_stop_before_the_frame_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--value-size-max",
            "10000",
            "--frame-size-max",
            "50000",
            "--sync",
            "nosync",
        ],
    );
    let mut c = server.client();
    c.create("t", Engine::Lsm);
    for i in 0..40_u32 {
        written(&c.put("t", format!("k{i:02}").as_bytes(), &vec![b'v'; 9000]));
    }
    let too_big = c.put("t", b"x", &vec![b'v'; 10_001]);
    assert_eq!(
        error_kind(&too_big),
        ErrorKind::LimitExceeded {
            limit: Limit::ValueSize
        }
    );
    let mut cursor = None;
    let mut total = 0;
    let mut pages = 0;
    loop {
        let id = c.send(&scan("t", Direction::Forward, 0, cursor.take()));
        let (got, response) = c.recv();
        assert_eq!(got, id);
        let Response::Entries(page) = response else {
            panic!("scan")
        };
        let size = Response::Entries(page.clone()).to_frame(id).unwrap().len();
        assert!(size <= 50_000, "a page of {size} bytes");
        assert!(!page.entries.is_empty() || page.cursor.is_none());
        total += page.entries.len();
        pages += 1;
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(total, 40);
    assert!(
        pages >= 8,
        "40 entries of 9000 bytes in {pages} pages of at most 50000 bytes"
    );
}

#[test]
fn server_requests_past_the_server_wide_limit_are_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--requests-in-flight-max", "1", "--sync", "nosync"],
    );
    let mut c = server.client();
    c.create("t", Engine::Btree);
    let writes = (0..3000_u32)
        .map(|i| Write {
            table: 0,
            key: format!("k{i:05}").into_bytes(),
            value: Some(vec![b'v'; 1000]),
        })
        .collect();
    written(&c.call(&Request::Batch {
        tables: vec!["t".into()],
        writes,
    }));
    // A long scan holds the one slot; the pings behind it are refused, not queued.
    let mut ids = std::collections::BTreeSet::new();
    ids.insert(c.send(&scan("t", Direction::Forward, 0, None)));
    for _ in 0..20 {
        ids.insert(c.send(&Request::Ping));
    }
    let mut overloaded = 0;
    for _ in 0..21 {
        let (id, response) = c.recv();
        assert!(ids.remove(&id), "request {id} answered twice");
        match response {
            Response::Entries(_) | Response::Pong => {}
            Response::Error(error) if error.kind == ErrorKind::Overloaded => overloaded += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(overloaded > 0, "no request was refused");
    assert_eq!(c.call(&Request::Ping), Response::Pong);
}

#[test]
fn server_pipelined_writes_are_answered_behind_a_full_socket() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    assert!(matches!(
        c.create("t", Engine::Lsm),
        Response::TableCreated { .. }
    ));
    let big = vec![7_u8; 200_000];
    written(&c.put("t", b"big", &big));
    // Large reads interleaved with writes, sent together and read only a while after: the
    // reads' responses fill the socket, so the writes' answers find the connection's writer
    // busy and queue behind them.
    let mut requests = Vec::new();
    for i in 0..100_u32 {
        requests.push(Request::Get {
            table: "t".into(),
            key: b"big".to_vec(),
        });
        requests.push(Request::Put {
            table: "t".into(),
            key: format!("k{i}").into_bytes(),
            value: i.to_le_bytes().to_vec(),
        });
    }
    let ids = c.send_together(&requests);
    std::thread::sleep(Duration::from_millis(300));
    let mut answers = std::collections::HashMap::new();
    for _ in 0..ids.len() {
        let (id, response) = c.recv();
        assert!(
            answers.insert(id, response).is_none(),
            "request {id} answered twice"
        );
    }
    for (id, request) in ids.iter().zip(&requests) {
        let answer = answers.get(id).unwrap();
        match request {
            Request::Get { .. } => {
                assert!(
                    matches!(answer, Response::Value(Some(v)) if v.value == big),
                    "request {id}"
                );
            }
            _ => {
                written(answer);
            }
        }
    }
    for i in 0..100_u32 {
        let Response::Value(Some(value)) = c.get("t", format!("k{i}").as_bytes()) else {
            panic!("k{i} was not written");
        };
        assert_eq!(value.value, i.to_le_bytes());
    }
}
