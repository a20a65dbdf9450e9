//! A fake PopDB server for the client's tests: a tokio TCP listener that decodes frames with
//! popdb-protocol and answers with whatever the test says, when the test says, in any
//! order. The real server is tested end to end in its own crate.

#![allow(dead_code, reason = "each test file uses part of the fake server")]

use std::sync::{Arc, Mutex};

use popdb_protocol::{FrameDecoder, HandshakeOk, Limits, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;

/// What the fake server says in its handshake.
pub fn handshake_ok() -> HandshakeOk {
    HandshakeOk {
        version: 1,
        server_version: "fake 0.0.0".to_owned(),
        limits: Limits::DEFAULT,
        in_flight_max: 64,
        cursor_ttl_ms: 1000,
    }
}

/// A listener on a free loopback port.
pub struct FakeServer {
    listener: TcpListener,
    /// `127.0.0.1:port`.
    pub addr: String,
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        FakeServer { listener, addr }
    }

    /// Accepts a connection without reading anything.
    pub async fn accept_raw(&self) -> FakeConn {
        let (stream, _) = self.listener.accept().await.unwrap();
        FakeConn {
            stream,
            decoder: FrameDecoder::new(Limits::DEFAULT),
        }
    }

    /// Accepts a connection and answers its handshake with [`handshake_ok`].
    pub async fn accept(&self) -> FakeConn {
        self.accept_with(handshake_ok()).await
    }

    /// Accepts a connection and answers its handshake with `ok`.
    pub async fn accept_with(&self, ok: HandshakeOk) -> FakeConn {
        let mut conn = self.accept_raw().await;
        let (id, request) = conn.recv().await.expect("a handshake");
        assert!(matches!(request, Request::Handshake { .. }), "{request:?}");
        conn.send(id, &Response::Handshake(ok)).await;
        conn
    }

    /// Answers every request of every connection with `handler`, in arrival order.
    pub fn serve<F>(self, handler: F)
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        self.serve_with(handshake_ok(), handler);
    }

    /// As [`FakeServer::serve`], with this handshake answer.
    pub fn serve_with<F>(self, ok: HandshakeOk, handler: F)
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let mut conn = self.accept_with(ok.clone()).await;
                let handler = handler.clone();
                tokio::spawn(async move {
                    while let Some((id, request)) = conn.recv().await {
                        let response = handler(&request);
                        conn.send(id, &response).await;
                    }
                });
            }
        });
    }
}

/// One accepted connection, driven by the test.
pub struct FakeConn {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl FakeConn {
    /// The next request, or `None` once the client closed the connection.
    pub async fn recv(&mut self) -> Option<(u64, Request)> {
        let mut chunk = vec![0; 64 * 1024];
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                let request = Request::decode(&frame, &Limits::DEFAULT).unwrap();
                return Some((frame.header.request_id, request));
            }
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.push(&chunk[..n]);
        }
    }

    /// Sends a response to request `id`.
    pub async fn send(&mut self, id: u64, response: &Response) {
        let frame = response.to_frame(id).unwrap();
        self.send_raw(&frame).await;
    }

    /// The next request if one arrives within `wait`.
    pub async fn try_recv(&mut self, wait: std::time::Duration) -> Option<(u64, Request)> {
        tokio::time::timeout(wait, self.recv()).await.ok().flatten()
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }
}

/// A log of the requests a handler saw, shared with the test.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<Request>>>);

impl Seen {
    pub fn push(&self, request: &Request) {
        self.0.lock().unwrap().push(request.clone());
    }

    pub fn all(&self) -> Vec<Request> {
        self.0.lock().unwrap().clone()
    }
}
