//! The popdb-cli binary against the fake server: one-shot commands, `--json`, `--hex`,
//! a `txn` script on stdin, `load` from a file, and the exit code of a server error.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::{FakeServer, Seen};
use popdb_protocol::{
    Engine, ErrorKind, Request, Response, ServerError, TableInfo, TableOptions, Versioned,
};

/// Starts a fake server on its own runtime thread; returns its address and request log.
fn start_server() -> (String, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let server = FakeServer::start().await;
            addr_tx.send(server.addr.clone()).unwrap();
            server.serve(move |request| {
                log.push(request);
                answer(request)
            });
            std::future::pending::<()>().await;
        });
    });
    (addr_rx.recv().unwrap(), seen)
}

fn answer(request: &Request) -> Response {
    match request {
        Request::Ping => Response::Pong,
        Request::CreateTable { name, options } => Response::TableCreated {
            lsn: 3,
            table: TableInfo {
                id: 3,
                name: name.clone(),
                options: *options,
            },
        },
        Request::Get { table, .. } if table == "missing" => Response::Error(ServerError::new(
            ErrorKind::UnknownTable,
            "no table named missing",
        )),
        Request::Get { key, .. } => Response::Value(Some(Versioned {
            value: [b"v-".as_slice(), key].concat(),
            version: 8,
        })),
        Request::Put { .. } | Request::Batch { .. } => Response::Written { lsn: 9 },
        Request::Commit(_) => Response::Committed { lsn: 10 },
        other => panic!("unexpected {other:?}"),
    }
}

fn cli(addr: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_popdb-cli"))
        .arg("--addr")
        .arg(addr)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn cli_one_shot_commands_against_a_server() {
    let (addr, seen) = start_server();
    assert_eq!(stdout(&cli(&addr, &["ping"], "")), "pong\n");
    assert_eq!(
        stdout(&cli(
            &addr,
            &["create-table", "users", "--engine", "btree"],
            ""
        )),
        "users  id=3  btree  page_size=4096\n"
    );
    assert_eq!(
        stdout(&cli(&addr, &["put", "users", "k", "hello"], "")),
        "ok (lsn 9)\n"
    );
    assert_eq!(
        stdout(&cli(&addr, &["get", "users", "k"], "")),
        "v-k  (version 8)\n"
    );
    assert_eq!(
        stdout(&cli(
            &addr,
            &["get", "users", "00ff", "--hex", "--json"],
            ""
        )),
        "{\"found\":true,\"value_hex\":\"762d00ff\",\"version\":8}\n"
    );
    let requests = seen.all();
    assert!(requests.contains(&Request::CreateTable {
        name: "users".to_owned(),
        options: TableOptions::new(Engine::Btree),
    }));
    assert!(requests.contains(&Request::Get {
        table: "users".to_owned(),
        key: vec![0, 255],
    }));
}

#[test]
fn cli_server_error_exits_nonzero_with_its_kind() {
    let (addr, _) = start_server();
    let output = cli(&addr, &["get", "missing", "k", "--json"], "");
    assert!(!output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("\"kind\":\"unknown_table\""), "{text}");
    let output = cli(&addr, &["get", "missing", "k"], "");
    assert!(!output.status.success());
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(text.starts_with("error: unknown table"), "{text}");
}

#[test]
fn cli_txn_script_and_load_file() {
    let (addr, seen) = start_server();
    let script = "# move a to b\nget t a\nput t b 'from a'\ndel t a\n";
    assert_eq!(
        stdout(&cli(&addr, &["txn"], script)),
        "a: v-a\ncommitted (lsn 10, 1 attempt(s))\n"
    );
    let Some(Request::Commit(commit)) = seen.all().into_iter().last() else {
        panic!("no commit")
    };
    assert_eq!(commit.conditions.len(), 1);
    assert_eq!(commit.writes.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.tsv");
    let lines: Vec<String> = (0..25).map(|i| format!("key{i}\tvalue{i}\n")).collect();
    std::fs::write(&path, lines.concat()).unwrap();
    let out = stdout(&cli(
        &addr,
        &[
            "load",
            "t",
            path.to_str().unwrap(),
            "--batch",
            "10",
            "--json",
        ],
        "",
    ));
    assert_eq!(out, "{\"batches\":3,\"records\":25}\n");
    let batches: Vec<usize> = seen
        .all()
        .into_iter()
        .filter_map(|r| match r {
            Request::Batch { writes, .. } => Some(writes.len()),
            _ => None,
        })
        .collect();
    assert_eq!(batches, [10, 10, 5]);
}

#[test]
fn cli_shell_runs_commands_from_its_input() {
    let (addr, _) = start_server();
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_popdb-cli"))
        .args(["--addr", &addr, "shell"])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "ping\nget t 'a b'\nfrobnicate\nget missing k\nexit\nping\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = stdout(&child.wait_with_output().unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("connected to "), "{out}");
    assert!(out.contains("pong\n"), "{out}");
    assert!(out.contains("v-a b  (version 8)\n"), "{out}");
    assert!(
        out.contains("unrecognized subcommand 'frobnicate'"),
        "{out}"
    );
    assert!(out.contains("error: unknown table"), "{out}");
    // Nothing after `exit` runs.
    assert_eq!(out.matches("pong").count(), 1, "{out}");
}

#[test]
fn cli_closed_stdout_is_not_a_panic() {
    let (addr, _) = start_server();
    let mut child = Command::new(env!("CARGO_BIN_EXE_popdb-cli"))
        .args(["--addr", &addr, "ping"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the answer is printed (`popdb-cli ... | head`).
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{stderr}");
}
