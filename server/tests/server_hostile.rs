//! Hostile input against a live server: random bytes, huge and tiny declared lengths,
//! truncated frames, unknown opcodes, thousands of random frames on a live connection,
//! byte-at-a-time and silent clients. A well-behaved client keeps being served during and
//! after, and the server stays up.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Client, Rng, Server};
use popdb_protocol::{Engine, ErrorKind, Request, Response};

/// Reads until the server closes the connection; panics if it stays open for 10 s.
fn wait_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

fn handshaken(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    c.handshake(None).unwrap();
    c
}

fn header(length: u32, version: u8, opcode: u8, flags: u16, id: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&length.to_le_bytes());
    h.push(version);
    h.push(opcode);
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&id.to_le_bytes());
    h
}

/// Puts and reads back its own keys until told to stop; counts round trips.
fn good_client(addr: SocketAddr, stop: Arc<AtomicBool>, served: Arc<AtomicU64>) {
    let mut c = handshaken(addr);
    let mut i = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("good-{i}").into_bytes();
        assert!(matches!(c.put("t", &key, &key), Response::Written { .. }));
        let Response::Value(Some(v)) = c.get("t", &key) else {
            panic!("get {i}")
        };
        assert_eq!(v.value, key);
        served.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
}

#[test]
fn server_hostile_input_never_disturbs_a_good_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            "--sync",
            "nosync",
            "--handshake-timeout-ms",
            "300",
            "--frame-timeout-ms",
            "300",
            "--idle-timeout-ms",
            "3000",
            "--in-flight-max",
            "16",
        ],
    );
    let addr = server.addr;
    handshaken(addr).create("t", Engine::Lsm);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let good = {
        let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
        std::thread::spawn(move || good_client(addr, stop, served))
    };
    let mut rng = Rng(0x5eed_1234_abcd_ef01);

    // Random bytes before any handshake: an error frame and a close, or just a close.
    for _ in 0..300 {
        let mut s = TcpStream::connect(addr).unwrap();
        let len = 1 + rng.below(3000) as usize;
        let junk = rng.bytes(len);
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        wait_closed(&mut s);
    }

    // Huge and tiny declared lengths, before and after the handshake.
    for length in [u32::MAX, 0xffff_fff0, 16 * 1024 * 1024 + 13, 0, 11] {
        for handshake in [false, true] {
            let mut c = if handshake {
                handshaken(addr)
            } else {
                Client::connect(addr)
            };
            c.stream.write_all(&header(length, 1, 0x02, 0, 9)).unwrap();
            let (id, response) = c.try_recv().expect("an error frame before the close");
            let Response::Error(error) = response else {
                panic!("{response:?}")
            };
            let expected = if length > 12 {
                ErrorKind::FrameTooLarge
            } else {
                ErrorKind::BadRequest
            };
            assert_eq!((id, error.kind), (0, expected), "length {length}");
            assert!(c.closed_by_server());
        }
    }

    // Truncated frames: a frame cut short, then a close; a frame cut short and left
    // hanging is closed at the frame timeout.
    for _ in 0..50 {
        let mut c = handshaken(addr);
        let frame = Request::Ping.to_frame(1).unwrap();
        let cut = rng.below(frame.len() as u64) as usize;
        c.stream.write_all(&frame[..cut]).unwrap();
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(c.closed_by_server());
    }
    let mut hanging = handshaken(addr);
    hanging
        .stream
        .write_all(&header(100, 1, 0x09, 0, 1))
        .unwrap();
    assert!(hanging.closed_by_server());

    // Unknown opcodes, reserved flags, other versions: an error for that request id, and
    // the connection reads on.
    let mut c = handshaken(addr);
    for (i, (version, opcode, flags)) in [
        (1, 0x7f, 0),
        (1, 0x0e, 0),
        (1, 0x81, 0),
        (1, 0x02, 1),
        (2, 0x02, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let id = 100 + i as u64;
        c.stream
            .write_all(&header(12, version, opcode, flags, id))
            .unwrap();
        let (got, response) = c.recv();
        assert_eq!(got, id);
        let Response::Error(error) = response else {
            panic!("{response:?}")
        };
        assert!(
            matches!(
                error.kind,
                ErrorKind::BadRequest | ErrorKind::UnsupportedVersion { .. }
            ),
            "{error:?}"
        );
    }
    assert_eq!(c.call(&Request::Ping), Response::Pong);

    // Thousands of random frames on one live connection, read back by another thread:
    // every frame gets exactly one answer.
    let mut c = handshaken(addr);
    let mut reader = Client::from_stream(c.stream.try_clone().unwrap());
    let frames = 3000_u64;
    let counter = std::thread::spawn(move || {
        let mut answered = std::collections::BTreeSet::new();
        for _ in 0..frames {
            let (id, _) = reader.recv();
            assert!(answered.insert(id), "request {id} answered twice");
        }
        answered.len()
    });
    for id in 0..frames {
        let opcode = if rng.below(4) == 0 {
            rng.next() as u8
        } else {
            1 + rng.below(13) as u8
        };
        let len = rng.below(200) as usize;
        let body = rng.bytes(len);
        let mut frame = header(12 + body.len() as u32, 1, opcode, 0, 10_000 + id);
        frame.extend_from_slice(&body);
        c.stream.write_all(&frame).unwrap();
    }
    assert_eq!(counter.join().unwrap(), frames as usize);
    assert_eq!(c.call(&Request::Ping), Response::Pong);

    // A client sending a frame one byte at a time, slower than the frame timeout: closed.
    let mut slow = handshaken(addr);
    let frame = Request::Ping.to_frame(1).unwrap();
    let mut refused = false;
    for byte in &frame {
        if slow.stream.write_all(std::slice::from_ref(byte)).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(
        refused || slow.closed_by_server(),
        "the slow client was never cut off"
    );

    // A client that sends without ever reading: the server stops reading from it once its
    // in-flight and output bounds are full (its sends stall), then cuts it off when its
    // responses cannot be written within the frame timeout.
    let mut deaf = handshaken(addr);
    deaf.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Large answers fill the socket buffers after a few requests.
    assert!(matches!(
        deaf.put("t", b"big", &vec![7; 100_000]),
        Response::Written { .. }
    ));
    let get = Request::Get {
        table: "t".into(),
        key: b"big".to_vec(),
    }
    .to_frame(1)
    .unwrap();
    let mut sent_bytes = 0_usize;
    let stalled = loop {
        if deaf.stream.write_all(&get).is_err() {
            break true;
        }
        sent_bytes += get.len();
        if sent_bytes > 512 << 20 {
            break false;
        }
    };
    assert!(
        stalled,
        "the server read 512 MiB of requests from a client that never reads"
    );
    wait_closed(&mut deaf.stream);

    // Silent connections that never handshake are closed at the handshake timeout.
    let mut silent: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for s in &mut silent {
        wait_closed(s);
    }

    // The good client was served during all this, and goes on being served after.
    let during = served.load(Ordering::Relaxed);
    assert!(during > 0, "the good client was starved");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    good.join().expect("the good client saw only good answers");
    assert!(server.alive(), "the server died");
    let mut after = handshaken(addr);
    assert!(matches!(
        after.get("t", b"good-0"),
        Response::Value(Some(_))
    ));
    let (_, metrics) = server.http_get("/metrics");
    assert!(
        !metrics.contains("popdb_connections_dropped_total 0\n"),
        "{metrics}"
    );
}
