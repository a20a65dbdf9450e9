//! A small blocking test client on popdb-protocol, and a handle on a running `popdb`.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use popdb_protocol::{Engine, FrameDecoder, Limits, Request, Response, TableOptions};

/// A `popdb` process serving a temporary (or given) data directory.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: PathBuf,
}

impl Server {
    /// Starts `popdb` on loopback with free ports, data in `dir`, and `extra` flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_popdb"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env(
                "POPDB_LOG",
                std::env::var("POPDB_TEST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("popdb starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        let mut metrics = None;
        while addr.is_none() || metrics.is_none() {
            let line = lines
                .next()
                .expect("popdb prints its addresses before anything else")
                .expect("stdout is readable");
            if let Some(rest) = line.strip_prefix("popdb listening on ") {
                addr = Some(rest.parse().expect("an address"));
            } else if let Some(rest) = line.strip_prefix("popdb metrics on http://") {
                let rest = rest.trim_end_matches("/metrics");
                metrics = Some(rest.parse().expect("an address"));
            }
        }
        // Keep draining stdout so that the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr: addr.expect("found"),
            metrics: metrics.expect("found"),
            dir: dir.to_path_buf(),
        }
    }

    /// A connected client that completed its handshake.
    pub fn client(&self) -> Client {
        let mut client = Client::connect(self.addr);
        client.handshake(None).expect("handshake succeeds");
        client
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends a signal by name ("TERM", "KILL") and waits for the exit status.
    pub fn signal(&mut self, name: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
        self.child.wait().expect("wait")
    }

    /// The body of an HTTP GET on the metrics port, with its status code.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.metrics).expect("metrics port");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("response");
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status line");
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking protocol client.
pub struct Client {
    pub stream: TcpStream,
    decoder: FrameDecoder,
    next_id: u64,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A client on an open stream (a clone of another client's, to read its responses).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            decoder: FrameDecoder::new(Limits::DEFAULT),
            next_id: 1,
        }
    }

    /// Sends a handshake; Ok(()) on HandshakeOk, Err(the response) otherwise (`Pong` standing
    /// for a connection closed without an answer).
    pub fn handshake(&mut self, token: Option<&[u8]>) -> Result<(), Response> {
        // Not `call`: a refused connection is answered with request id 0.
        self.send(&Request::Handshake {
            version_min: 1,
            version_max: 1,
            token: token.map(<[u8]>::to_vec),
        });
        let Some((_, response)) = self.try_recv() else {
            return Err(Response::Pong);
        };
        match response {
            Response::Handshake(_) => Ok(()),
            other => Err(other),
        }
    }

    /// Sends `request` with a fresh id; returns the id.
    pub fn send(&mut self, request: &Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = request.to_frame(id).expect("encodable");
        self.stream.write_all(&frame).expect("send");
        id
    }

    /// Sends `requests` in one write, so that the server reads them together; returns their
    /// ids in order.
    pub fn send_together(&mut self, requests: &[Request]) -> Vec<u64> {
        let mut bytes = Vec::new();
        let ids = requests
            .iter()
            .map(|request| {
                let id = self.next_id;
                self.next_id += 1;
                bytes.extend(request.to_frame(id).expect("encodable"));
                id
            })
            .collect();
        self.stream.write_all(&bytes).expect("send");
        ids
    }

    /// The next response and its request id.
    pub fn recv(&mut self) -> (u64, Response) {
        self.try_recv()
            .expect("a response before the connection closed")
    }

    /// The next response, or None if the server closed the connection.
    pub fn try_recv(&mut self) -> Option<(u64, Response)> {
        let mut chunk = vec![0_u8; 65536];
        loop {
            if let Some(frame) = self.decoder.next_frame().expect("the server frames well") {
                let response = Response::decode(&frame, &Limits::DEFAULT).expect("decodable");
                return Some((frame.header.request_id, response));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.push(&chunk[..n]),
            }
        }
    }

    /// Sends `request` and waits for its response (nothing else may be in flight).
    pub fn call(&mut self, request: &Request) -> Response {
        let id = self.send(request);
        let (got, response) = self.recv();
        assert_eq!(got, id, "a response for another request");
        response
    }

    pub fn create(&mut self, name: &str, engine: Engine) -> Response {
        self.call(&Request::CreateTable {
            name: name.into(),
            options: TableOptions::new(engine),
        })
    }

    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Response {
        self.call(&Request::Put {
            table: table.into(),
            key: key.to_vec(),
            value: value.to_vec(),
        })
    }

    pub fn get(&mut self, table: &str, key: &[u8]) -> Response {
        self.call(&Request::Get {
            table: table.into(),
            key: key.to_vec(),
        })
    }

    /// Whether the server closed the connection (reads EOF within the timeout).
    pub fn closed_by_server(&mut self) -> bool {
        loop {
            if self.try_recv().is_none() {
                return true;
            }
        }
    }
}

/// A tiny deterministic generator (xorshift64*), so the tests need no `rand`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
