//! One connection to a server: the handshake, and pipelining (docs/protocol.md, sections
//! 1 and 9).
//!
//! A request is given the next request id, registered in the pending map (request id ->
//! oneshot sender) and encoded straight into the connection's output buffer, which the
//! writer task empties into the socket: every request queued while it was writing goes out
//! in one write. The reader task decodes responses as they come, in any order, and
//! completes the pending request with the response's id. When the connection breaks, every
//! pending request fails with [`Error::ConnectionLost`] (its outcome is unknown) and later
//! requests fail with [`Error::Closed`] (never sent).
//!
//! Timeouts: a request registers with its deadline, and the writer task (which wakes
//! whenever requests are queued) keeps one timer armed for the earliest deadline it knows
//! of; when it fires it fails the requests whose deadlines have passed with
//! [`Error::Timeout`] and re-arms for the next. A timer per request (registered in and
//! removed from tokio's timer wheel) cost more than the rest of a request's bookkeeping.
//!
//! Invariants: at most `in_flight_max` requests are registered at once (a semaphore
//! permit is held from registration until the response or the timeout), so the output
//! buffer holds at most that many frames; a request id is registered at most once, and
//! before its frame can reach the socket; a request whose caller gave up (timeout,
//! cancellation) is removed from the map, and a late response to it is dropped; while any
//! request is registered, the writer's timer is armed no later than the earliest deadline.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use popdb_protocol::{
    EncodeError, FrameDecoder, HandshakeOk, Limit, Limits, PROTOCOL_VERSION, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, Semaphore, TryAcquireError, oneshot, watch};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::options::ClientOptions;

/// The reader's receive chunk.
const READ_CHUNK_SIZE: usize = 64 * 1024;
/// The writer keeps a buffer this large or smaller for the next batch; a larger one (after
/// a burst of large requests) is freed.
const OUTPUT_KEPT_MAX: usize = 1 << 20;

type Reply = oneshot::Sender<Result<Response>>;

/// A registered request: where its response goes, and when it times out.
struct Waiting {
    reply: Reply,
    deadline: Instant,
}

/// Request ids are a counter, so they need no keyed hash (the default SipHash cost a
/// visible share of a request): multiplying by an odd constant spreads consecutive ids
/// over both the bucket bits (the low ones) and the tag bits (the high ones).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the map's keys are u64); any other input still hashes.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(ID_HASH_FACTOR);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(ID_HASH_FACTOR);
    }
}

/// 2^64 divided by the golden ratio, made odd: Fibonacci hashing's multiplier.
const ID_HASH_FACTOR: u64 = 0x9E37_79B9_7F4A_7C15;

/// The shared state of one connection.
pub(crate) struct Connection {
    options: ClientOptions,
    server: HandshakeOk,
    next_id: AtomicU64,
    pending: Arc<Mutex<Pending>>,
    /// Set once `pending.closed` is: read on every request without taking the lock.
    closed: AtomicBool,
    in_flight: Semaphore,
    output: Arc<Output>,
    /// Set to `true` once the connection is closed: the reader and writer tasks stop and
    /// the socket closes.
    shutdown: watch::Sender<bool>,
}

/// Frames encoded and not yet taken by the writer task, shared with it.
#[derive(Default)]
struct Output {
    bytes: Mutex<Vec<u8>>,
    /// Signalled when `bytes` turns non-empty: the writer has something to take.
    ready: Notify,
}

impl Output {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // Frames are appended whole or truncated back under the lock, so a panic cannot
        // leave half a frame: poisoning carries no information.
        self.bytes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Pending {
    replies: HashMap<u64, Waiting, BuildHasherDefault<IdHasher>>,
    /// Set once the connection is gone: why.
    closed: Option<String>,
}

fn lock_pending(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic while holding this lock leaves the map consistent (every operation on it is
    // a single insert or remove), so poisoning carries no information.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Connection {
    /// Connects, handshakes and starts the reader and writer tasks.
    pub(crate) async fn connect(addr: &str, options: ClientOptions) -> Result<Arc<Connection>> {
        let timeout = options.connect_timeout;
        let connect = async {
            let stream = TcpStream::connect(addr).await.map_err(|source| Error::Io {
                op: "connecting to the server",
                source,
            })?;
            // Requests are small and latency matters: do not wait to coalesce them. A
            // failure here costs only latency.
            let _ = stream.set_nodelay(true);
            handshake(stream, &options).await
        };
        let (stream, decoder, server) =
            tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| Error::Timeout {
                    timeout_ms: timeout.as_millis() as u64,
                })??;
        let in_flight_max = options.in_flight_max.min(server.in_flight_max).max(1);
        let output = Arc::new(Output::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let expiry = Expiry {
            pending: Arc::clone(&pending),
            timeout: options.request_timeout,
        };
        let connection = Arc::new(Connection {
            options,
            server,
            next_id: AtomicU64::new(1),
            pending,
            closed: AtomicBool::new(false),
            in_flight: Semaphore::new(in_flight_max as usize),
            output: Arc::clone(&output),
            shutdown,
        });
        let (read, write) = stream.into_split();
        let tasks = Tasks {
            connection: Arc::downgrade(&connection),
            shutdown: shutdown_rx,
        };
        tokio::spawn(read_loop(tasks.clone(), read, decoder));
        tokio::spawn(write_loop(tasks, write, output, expiry));
        Ok(connection)
    }

    /// What the server said in its handshake.
    pub(crate) fn server(&self) -> &HandshakeOk {
        &self.server
    }

    /// Sends `request` and waits for its response, within the request timeout. An error
    /// response becomes the matching [`Error`].
    pub(crate) async fn call(&self, request: &Request) -> Result<Response> {
        self.call_encoded(|id, out| request.encode(id, out)).await
    }

    /// [`Connection::call`] for the request `encode` appends to a buffer as a frame with the
    /// id it is given (and on failure leaves the buffer as it was).
    pub(crate) async fn call_encoded(
        &self,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> std::result::Result<(), EncodeError>,
    ) -> Result<Response> {
        let deadline = deadline_after(self.options.request_timeout);
        match self.call_until(deadline, encode).await {
            Ok(Response::Error(error)) => Err(Error::from_server(error)),
            result => result,
        }
    }

    /// Sends the request and waits for its response until `deadline`: for an in-flight
    /// permit under a timer of its own (only when none is free), then registered with the
    /// deadline, which the writer's timer enforces.
    async fn call_until(
        &self,
        deadline: Instant,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> std::result::Result<(), EncodeError>,
    ) -> Result<Response> {
        let _permit = match self.in_flight.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(self.closed_error()),
            Err(TryAcquireError::NoPermits) => {
                match tokio::time::timeout_at(deadline, self.in_flight.acquire()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(self.closed_error()),
                    Err(_) => return Err(timeout_error(self.options.request_timeout)),
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, response) = oneshot::channel();
        {
            // Registered before its frame is in the buffer: the writer cannot send a frame
            // whose response would find nobody. Lock order: output, then pending.
            let mut output = self.output.lock();
            let was_empty = output.is_empty();
            let start = output.len();
            encode(id, &mut output)?;
            let size = output.len() - start;
            let frame_size_max = self.server.limits.frame_size_max;
            if size > frame_size_max as usize {
                output.truncate(start);
                return Err(Error::LimitExceeded {
                    limit: Limit::FrameSize,
                    message: format!(
                        "request of {size} bytes is over the server's frame size maximum of \
                         {frame_size_max}"
                    ),
                });
            }
            let mut pending = self.lock_pending();
            if let Some(reason) = &pending.closed {
                output.truncate(start);
                return Err(Error::Closed {
                    reason: reason.clone(),
                });
            }
            let previous = pending.replies.insert(id, Waiting { reply, deadline });
            assert!(previous.is_none(), "request id {id} registered twice");
            drop(pending);
            drop(output);
            // The writer wakes for these bytes, and arms its timer for this deadline if it
            // has none armed.
            if was_empty {
                self.output.ready.notify_one();
            }
        }
        // From here on the request is in the map; the guard takes it out if this future
        // ends early (cancellation), so a late response finds nobody.
        let guard = PendingGuard {
            connection: self,
            id,
        };
        let result = response.await.unwrap_or_else(|_| {
            Err(Error::ConnectionLost {
                reason: "the reader stopped".to_owned(),
            })
        });
        // Whoever answered (or dropped the sender) took the request out of the map first:
        // another lock and lookup would find nothing.
        std::mem::forget(guard);
        result
    }

    fn closed_error(&self) -> Error {
        let reason = self
            .lock_pending()
            .closed
            .clone()
            .unwrap_or_else(|| "the connection is closed".to_owned());
        Error::Closed { reason }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        lock_pending(&self.pending)
    }

    /// Hands `response` to the request `id` is waiting for, if it still is; else returns
    /// it.
    fn complete(&self, id: u64, response: Result<Response>) -> Option<Result<Response>> {
        let waiting = self.lock_pending().replies.remove(&id);
        match waiting {
            // The receiver may have just given up; then nobody wants this response.
            Some(waiting) => waiting.reply.send(response).err(),
            None => Some(response),
        }
    }

    /// Marks the connection closed and fails every pending request: their outcomes are
    /// unknown.
    fn fail_all(&self, reason: &str) {
        let replies = {
            let mut pending = self.lock_pending();
            if pending.closed.is_none() {
                pending.closed = Some(reason.to_owned());
            }
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut pending.replies)
        };
        for (_, waiting) in replies {
            let _ = waiting.reply.send(Err(Error::ConnectionLost {
                reason: reason.to_owned(),
            }));
        }
        self.in_flight.close();
        self.shutdown.send_replace(true);
    }

    /// Closes the connection: pending requests fail with [`Error::ConnectionLost`], later
    /// ones with [`Error::Closed`].
    pub(crate) fn close(&self) {
        self.fail_all("closed by the client");
    }

    /// Whether the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Removes a pending request from the map when its caller stops waiting.
struct PendingGuard<'a> {
    connection: &'a Connection,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.connection.lock_pending().replies.remove(&self.id);
    }
}

/// Sends the handshake and reads its answer; returns the stream and the decoder holding any
/// bytes that came after it.
async fn handshake(
    mut stream: TcpStream,
    options: &ClientOptions,
) -> Result<(TcpStream, FrameDecoder, HandshakeOk)> {
    let request = Request::Handshake {
        version_min: PROTOCOL_VERSION,
        version_max: PROTOCOL_VERSION,
        token: options.token.clone(),
    };
    let frame = request.to_frame(0)?;
    stream.write_all(&frame).await.map_err(|source| Error::Io {
        op: "sending the handshake",
        source,
    })?;
    // Until the server announces its limits, responses are decoded with the defaults.
    let mut decoder = FrameDecoder::new(Limits::DEFAULT);
    let mut chunk = vec![0; READ_CHUNK_SIZE];
    let response = loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| Error::decode(&e))? {
            break Response::decode(&frame, &Limits::DEFAULT).map_err(|e| Error::decode(&e))?;
        }
        let n = stream.read(&mut chunk).await.map_err(|source| Error::Io {
            op: "reading the handshake response",
            source,
        })?;
        if n == 0 {
            return Err(Error::Closed {
                reason: "the server closed the connection during the handshake".to_owned(),
            });
        }
        decoder.push(chunk.get(..n).unwrap_or_default());
    };
    let server = match response {
        Response::Handshake(ok) => ok,
        Response::Error(error) => return Err(Error::from_server(error)),
        other => {
            return Err(Error::Protocol(format!(
                "expected a handshake response, got {other:?}"
            )));
        }
    };
    if server.version != PROTOCOL_VERSION {
        return Err(Error::Protocol(format!(
            "the server chose protocol version {}, which this client did not offer",
            server.version
        )));
    }
    // The server sends nothing unasked, so nothing follows the handshake's response yet.
    if decoder.buffered() != 0 {
        return Err(Error::Protocol(
            "the server sent bytes after the handshake response, before any request".to_owned(),
        ));
    }
    // Later frames are framed and decoded with the limits the server announced.
    let next = FrameDecoder::new(server.limits);
    Ok((stream, next, server))
}

/// What the reader and writer tasks share: the connection (weakly: the tasks end when the
/// last client handle is dropped) and the shutdown signal.
#[derive(Clone)]
struct Tasks {
    connection: std::sync::Weak<Connection>,
    shutdown: watch::Receiver<bool>,
}

impl Tasks {
    /// Resolves once the connection is closed (or gone); borrows nothing, so a task makes
    /// it once and polls it on every wake-up.
    fn closed_owned(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut shutdown = self.shutdown.clone();
        async move {
            // An error means the sender, and so the connection, is gone: closed too.
            let _ = shutdown.wait_for(|closed| *closed).await;
        }
    }
}

async fn read_loop(tasks: Tasks, mut read: OwnedReadHalf, mut decoder: FrameDecoder) {
    let mut chunk = vec![0; READ_CHUNK_SIZE];
    let closed = tasks.closed_owned();
    tokio::pin!(closed);
    let mut orphan = None;
    let reason = loop {
        if let Err(reason) = read_loop_drain(&tasks.connection, &mut decoder, &mut orphan) {
            break reason;
        }
        let read = tokio::select! {
            read = read.read(&mut chunk) => read,
            () = &mut closed => break "closed by the client".to_owned(),
        };
        match read {
            Ok(0) => break "the server closed the connection".to_owned(),
            Ok(n) => decoder.push(chunk.get(..n).unwrap_or_default()),
            Err(e) => break format!("reading from the server: {e}"),
        }
    };
    let reason = match orphan {
        Some(said) => format!("{reason} after an error: {said}"),
        None => reason,
    };
    if let Some(connection) = tasks.connection.upgrade() {
        connection.fail_all(&reason);
    }
}

/// Completes the requests whose responses are buffered. Returns why the connection must
/// close, if it must. An error response to request id 0 (the handshake's id, which no
/// later request uses; the server answers a frame it could not read an id from with it) is
/// kept in `orphan`: the server closes the connection after such errors, and the reason
/// should say why.
fn read_loop_drain(
    connection: &std::sync::Weak<Connection>,
    decoder: &mut FrameDecoder,
    orphan: &mut Option<String>,
) -> std::result::Result<(), String> {
    let Some(connection) = connection.upgrade() else {
        return Err("the client was dropped".to_owned());
    };
    if connection.is_closed() {
        return Err("closed by the client".to_owned());
    }
    let limits = *decoder.limits();
    loop {
        let frame = match decoder.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("malformed frame from the server: {e}")),
        };
        let id = frame.header.request_id;
        let response = Response::decode(&frame, &limits).map_err(|e| Error::decode(&e));
        if let Some(Ok(Response::Error(error))) = connection.complete(id, response)
            && id == 0
        {
            *orphan = Some(error.to_string());
        }
    }
}

/// The instant `timeout` from now, or a far one if that does not fit (tokio's own
/// `timeout` does the same).
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_hours(24 * 365 * 30))
}

fn timeout_error(timeout: Duration) -> Error {
    Error::Timeout {
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The writer's side of the request timeouts: the registered requests, and the timeout
/// they were registered with (for the error).
struct Expiry {
    pending: Arc<Mutex<Pending>>,
    timeout: Duration,
}

impl Expiry {
    /// The earliest deadline of a registered request, if any. Walks every registered
    /// request (at most `in_flight_max`): done when the timer is not armed, which is once
    /// per timeout period under a steady load, not once per request.
    fn earliest(&self) -> Option<Instant> {
        lock_pending(&self.pending)
            .replies
            .values()
            .map(|waiting| waiting.deadline)
            .min()
    }

    /// Fails every registered request whose deadline is not after `now` with
    /// [`Error::Timeout`]; returns the earliest deadline left.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let (expired, earliest) = {
            let mut pending = lock_pending(&self.pending);
            let ids: Vec<u64> = pending
                .replies
                .iter()
                .filter(|(_, waiting)| waiting.deadline <= now)
                .map(|(&id, _)| id)
                .collect();
            let expired: Vec<Waiting> = ids
                .iter()
                .filter_map(|id| pending.replies.remove(id))
                .collect();
            let earliest = pending.replies.values().map(|w| w.deadline).min();
            (expired, earliest)
        };
        // Sent outside the lock, as every other completion.
        for waiting in expired {
            let _ = waiting.reply.send(Err(timeout_error(self.timeout)));
        }
        earliest
    }
}

/// Empties the output buffer into the socket whenever it has bytes: everything queued
/// since the last write goes out in one. Also the requests' timer: armed for the earliest
/// deadline whenever requests are registered and it is not armed already.
async fn write_loop(tasks: Tasks, mut write: OwnedWriteHalf, output: Arc<Output>, expiry: Expiry) {
    let mut taken = Vec::new();
    // Made once, not once per wake-up (each made afresh joins and leaves the watch's
    // waiter list).
    let closed = tasks.closed_owned();
    tokio::pin!(closed);
    let timer = tokio::time::sleep_until(deadline_after(Duration::MAX));
    tokio::pin!(timer);
    let mut armed = false;
    let reason = loop {
        tokio::select! {
            () = output.ready.notified() => {}
            () = &mut timer, if armed => {
                armed = false;
                if let Some(next) = expiry.expire(Instant::now()) {
                    timer.as_mut().reset(next);
                    armed = true;
                }
                continue;
            }
            () = &mut closed => break None,
        }
        if !armed && let Some(next) = expiry.earliest() {
            timer.as_mut().reset(next);
            armed = true;
        }
        // Swapped under the lock, written outside it: callers keep queueing meanwhile.
        std::mem::swap(&mut *output.lock(), &mut taken);
        if taken.is_empty() {
            continue;
        }
        if let Err(e) = write.write_all(&taken).await {
            break Some(format!("writing to the server: {e}"));
        }
        taken.clear();
        if taken.capacity() > OUTPUT_KEPT_MAX {
            taken = Vec::new();
        }
    };
    if let Some(reason) = reason
        && let Some(connection) = tasks.connection.upgrade()
    {
        connection.fail_all(&reason);
    }
    // Closing the write half tells the server this client is done.
    let _ = write.shutdown().await;
}
