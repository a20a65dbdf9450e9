//! kill -9 during a write load: after a restart, every acknowledged write is readable with
//! the version it was acknowledged at.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, Server};
use popdb_protocol::{Commit, Engine, IdempotencyKey, Request, Response, Write};

type Acked = Arc<Mutex<BTreeMap<Vec<u8>, (Vec<u8>, u64)>>>;

/// Writes until the connection breaks, pipelining `depth` requests; records what was
/// acknowledged.
fn writer(client: &mut Client, thread: u32, depth: usize, acked: &Acked) {
    let mut sent: BTreeMap<u64, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut i = 0_u32;
    loop {
        while sent.len() < depth {
            let key = format!("w{thread}-{i:06}").into_bytes();
            let value = format!("value {i} of writer {thread}").into_bytes();
            let request = if i.is_multiple_of(3) {
                Request::Commit(Commit {
                    idempotency: Some(IdempotencyKey {
                        client: u64::from(thread),
                        sequence: u64::from(i),
                    }),
                    tables: vec!["t".into()],
                    writes: vec![Write {
                        table: 0,
                        key: key.clone(),
                        value: Some(value.clone()),
                    }],
                    ..Commit::default()
                })
            } else {
                Request::Put {
                    table: "t".into(),
                    key: key.clone(),
                    value: value.clone(),
                }
            };
            let frame = request.to_frame(u64::from(i)).unwrap();
            if std::io::Write::write_all(&mut client.stream, &frame).is_err() {
                return;
            }
            sent.insert(u64::from(i), (key, value));
            i += 1;
        }
        let Some((id, response)) = client.try_recv() else {
            return;
        };
        let (key, value) = sent.remove(&id).expect("a response to a request sent");
        match response {
            Response::Written { lsn } | Response::Committed { lsn } => {
                acked.lock().unwrap().insert(key, (value, lsn));
            }
            other => panic!("write {id} failed before the kill: {other:?}"),
        }
    }
}

#[test]
fn server_kill_9_loses_no_acknowledged_write() {
    kill_9_loses_no_acknowledged_write(&[]);
}

/// No-sync writes are acknowledged once written to the OS, by the reactor itself when it
/// leads a small group: a killed process (the machine still up) keeps every one.
#[test]
fn server_kill_9_loses_no_acknowledged_nosync_write() {
    kill_9_loses_no_acknowledged_write(&["--sync", "nosync"]);
}

fn kill_9_loses_no_acknowledged_write(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), flags);
    server.client().create("t", Engine::Lsm);
    let acked: Acked = Arc::default();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let acked = Arc::clone(&acked);
            let mut client = server.client();
            std::thread::spawn(move || {
                writer(
                    &mut client,
                    t,
                    if t.is_multiple_of(2) { 1 } else { 16 },
                    &acked,
                );
            })
        })
        .collect();
    // Let the load run, then kill the server hard, mid-write.
    std::thread::sleep(Duration::from_millis(700));
    let status = server.signal("KILL");
    assert!(!status.success());
    for thread in threads {
        thread.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() > 20,
        "only {} writes were acknowledged",
        acked.len()
    );
    let server = Server::start(dir.path(), flags);
    let mut c = server.client();
    for (key, (value, lsn)) in &acked {
        match c.get("t", key) {
            Response::Value(Some(found)) => {
                assert_eq!((&found.value, found.version), (value, *lsn), "key {key:?}");
            }
            other => panic!(
                "acknowledged key {:?} lost: {other:?}",
                String::from_utf8_lossy(key)
            ),
        }
    }
}
