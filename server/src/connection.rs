//! One client connection: handshake, then pipelined requests answered as they complete.
//!
//! The reader cuts frames out of the stream and hands each request to its own task, after
//! taking one of the connection's `in_flight_max` permits: when they are all taken it stops
//! reading, and TCP pushes back on the client. A task answers by queueing the encoded
//! response for the writer, after taking its size from the connection's output byte budget;
//! the writer releases both when the bytes are on the socket. So a connection holds at most
//! `in_flight_max` requests and `output_buffer_bytes_max` bytes of responses, plus the frame
//! being read.
//!
//! Timeouts: the handshake must complete within `handshake_timeout`; a frame, once started,
//! within `frame_timeout`; a connection with nothing in flight that sends nothing for
//! `idle_timeout` is closed, as is one whose responses cannot be written within
//! `frame_timeout`. A framing error (DecodeError::is_fatal) gets an Error frame and a close;
//! any other bad frame gets an Error frame for its request id and the connection reads on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use popdb_protocol::{
    DecodeError, ErrorKind, FrameDecoder, HandshakeOk, PROTOCOL_VERSION, Request, Response,
    ServerError,
};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::backend::Backend;
use crate::request::{execute, unauthorized_error};
use crate::server::Shared;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A response on its way to the writer, with the permits it holds until it is written.
struct Outgoing {
    bytes: Vec<u8>,
    close_after: bool,
    _in_flight: Option<OwnedSemaphorePermit>,
    _budget: OwnedSemaphorePermit,
}

/// What the reader and the request tasks of one connection share.
struct Conn<B> {
    shared: Arc<Shared<B>>,
    out: mpsc::UnboundedSender<Outgoing>,
    /// Bytes of responses queued and not yet written (`output_buffer_bytes_max` permits).
    budget: Arc<Semaphore>,
    /// Requests read and not yet answered (`in_flight_max` permits).
    in_flight: Arc<Semaphore>,
}

impl<B> Clone for Conn<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            out: self.out.clone(),
            budget: Arc::clone(&self.budget),
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

/// Why the reader stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The client closed, or the server is shutting down.
    Clean,
    /// A protocol violation, a timeout, or a response that could not be written.
    Dropped,
}

/// Serves one connection until it closes; answers every request it read before returning.
pub async fn serve<B: Backend>(shared: Arc<Shared<B>>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (out, queue) = mpsc::unbounded_channel();
    let (closed_tx, closed_rx) = watch::channel(false);
    let config = &shared.config;
    let budget_bytes = usize::try_from(config.output_buffer_bytes_max)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let conn = Conn {
        shared: Arc::clone(&shared),
        out,
        budget: Arc::new(Semaphore::new(budget_bytes)),
        in_flight: Arc::new(Semaphore::new(config.in_flight_max as usize)),
    };
    let writer = tokio::spawn(write_loop(Arc::clone(&shared), write, queue, closed_tx));
    let stop = read_loop(&conn, read, closed_rx).await;
    if stop == Stop::Dropped {
        shared
            .metrics
            .connections_dropped
            .fetch_add(1, Ordering::Relaxed);
    }
    drop(conn);
    let _ = writer.await;
}

async fn read_loop<B: Backend>(
    conn: &Conn<B>,
    mut read: OwnedReadHalf,
    mut closed: watch::Receiver<bool>,
) -> Stop {
    let shared = &conn.shared;
    let config = &shared.config;
    let clock = &shared.clock;
    let mut shutdown = shared.shutdown.clone();
    let mut decoder = FrameDecoder::new(config.limits);
    let mut chunk = vec![0_u8; READ_CHUNK];
    let handshake_deadline = clock.now() + config.handshake_timeout;
    let mut handshaken = false;
    let mut frame_started: Option<Duration> = None;
    loop {
        // Answer every whole frame buffered.
        let mut frames_taken = false;
        loop {
            let (request_id, decoded) = match decoder.next_frame() {
                Ok(Some(frame)) => (
                    frame.header.request_id,
                    Request::decode(&frame, &config.limits),
                ),
                Ok(None) => break,
                Err(error) => {
                    framing_error(conn, &error).await;
                    return Stop::Dropped;
                }
            };
            frames_taken = true;
            if handshaken {
                let Some(permit) = take_in_flight(conn, &mut closed).await else {
                    return Stop::Dropped;
                };
                dispatch(conn, request_id, decoded, permit).await;
            } else {
                if !handshake(conn, request_id, decoded).await {
                    return Stop::Dropped;
                }
                handshaken = true;
            }
        }
        // The frame timer runs from when the bytes left over after the last whole frame
        // were seen, not counting time spent waiting for in-flight room.
        let now = clock.now();
        frame_started = match (decoder.buffered(), frame_started) {
            (0, _) => None,
            (_, Some(at)) if !frames_taken => Some(at),
            (_, _) => Some(now),
        };
        let deadline = match frame_started {
            Some(at) => at + config.frame_timeout,
            None => now + config.idle_timeout,
        };
        let deadline = if handshaken {
            deadline
        } else {
            deadline.min(handshake_deadline)
        };
        let wait = deadline.saturating_sub(now);
        tokio::select! {
            read = tokio::time::timeout(wait, read.read(&mut chunk)) => match read {
                Ok(Ok(0) | Err(_)) => return Stop::Clean,
                Ok(Ok(n)) => {
                    shared.metrics.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                    decoder.push(chunk.get(..n).unwrap_or_default());
                }
                Err(_elapsed) => {
                    let idle = frame_started.is_none() && handshaken;
                    let busy = conn.in_flight.available_permits() < config.in_flight_max as usize;
                    if !(idle && busy) {
                        tracing::debug!(handshaken, "connection timed out");
                        return Stop::Dropped;
                    }
                }
            },
            // The writer gave up (a response could not be written in time) or sent an error
            // that closes the connection.
            _ = closed.changed() => return Stop::Dropped,
            _ = shutdown.changed() => return Stop::Clean,
        }
    }
}

/// Waits for one of the connection's in-flight permits (this is where reading stops when
/// the connection is full); `None` if the connection closed meanwhile.
async fn take_in_flight<B>(
    conn: &Conn<B>,
    closed: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        permit = Arc::clone(&conn.in_flight).acquire_owned() => permit.ok(),
        _ = closed.changed() => None,
    }
}

/// Answers a frame the framing refused, and gives up on the stream.
async fn framing_error<B: Backend>(conn: &Conn<B>, error: &DecodeError) {
    tracing::debug!(%error, "closing a connection on a framing error");
    // The frame's request id is not trusted once its length is bad: 0, as section 4 says.
    let _ = respond(
        conn,
        0,
        Response::Error(error.to_server_error()),
        true,
        None,
    )
    .await;
}

/// Handles the first frame; true if the connection may go on.
async fn handshake<B: Backend>(
    conn: &Conn<B>,
    request_id: u64,
    decoded: Result<Request, DecodeError>,
) -> bool {
    let config = &conn.shared.config;
    let error = match decoded {
        Ok(Request::Handshake {
            version_min,
            version_max,
            token,
        }) => {
            if !(version_min..=version_max).contains(&PROTOCOL_VERSION) {
                ServerError::new(
                    ErrorKind::UnsupportedVersion {
                        min: PROTOCOL_VERSION,
                        max: PROTOCOL_VERSION,
                    },
                    format!(
                        "the client speaks {version_min} to {version_max}, the server \
                         {PROTOCOL_VERSION}"
                    ),
                )
            } else if !token_matches(config.auth_token.as_deref(), token.as_deref()) {
                ServerError::new(
                    ErrorKind::Unauthorized,
                    "the auth token is missing or wrong",
                )
            } else {
                let ok = Response::Handshake(HandshakeOk {
                    version: PROTOCOL_VERSION,
                    server_version: format!("popdb {}", env!("CARGO_PKG_VERSION")),
                    limits: config.limits,
                    in_flight_max: config.in_flight_max,
                    cursor_ttl_ms: config.cursor_ttl_ms,
                });
                return respond(conn, request_id, ok, false, None).await;
            }
        }
        Ok(_) => unauthorized_error(),
        Err(error) => error.to_server_error(),
    };
    conn.shared.metrics.error(error.kind.code());
    let _ = respond(conn, request_id, Response::Error(error), true, None).await;
    false
}

/// Whether the handshake's token passes: always without a configured token; otherwise it
/// must equal it, compared in constant time (`subtle`: the time depends on the lengths
/// only, never on where the bytes differ).
fn token_matches(configured: Option<&[u8]>, sent: Option<&[u8]>) -> bool {
    match (configured, sent) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(configured), Some(sent)) => bool::from(configured.ct_eq(sent)),
    }
}

/// Starts answering one request after the handshake.
async fn dispatch<B: Backend>(
    conn: &Conn<B>,
    request_id: u64,
    decoded: Result<Request, DecodeError>,
    permit: OwnedSemaphorePermit,
) {
    let shared = &conn.shared;
    let request = match decoded {
        Ok(Request::Handshake { .. }) => Err(ServerError::new(
            ErrorKind::BadRequest,
            "a second handshake on one connection",
        )),
        Ok(request) => Ok(request),
        Err(error) => Err(error.to_server_error()),
    };
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            shared.metrics.error(error.kind.code());
            let _ = respond(
                conn,
                request_id,
                Response::Error(error),
                false,
                Some(permit),
            )
            .await;
            return;
        }
    };
    let Ok(server_permit) = Arc::clone(&shared.requests).try_acquire_owned() else {
        shared
            .metrics
            .requests_overloaded
            .fetch_add(1, Ordering::Relaxed);
        shared.metrics.error(ErrorKind::Overloaded.code());
        let error = ServerError::new(ErrorKind::Overloaded, "too many requests in flight");
        let _ = respond(
            conn,
            request_id,
            Response::Error(error),
            false,
            Some(permit),
        )
        .await;
        return;
    };
    let conn = conn.clone();
    tokio::spawn(async move {
        let started = conn.shared.clock.now();
        let op = crate::metrics::op_index(&request);
        let response = execute(&conn.shared, request).await;
        drop(server_permit);
        if let Response::Error(error) = &response {
            conn.shared.metrics.error(error.kind.code());
        }
        conn.shared
            .metrics
            .observe(op, conn.shared.clock.now().saturating_sub(started));
        let _ = respond(&conn, request_id, response, false, Some(permit)).await;
    });
}

/// Encodes `response` and queues it for the writer once the output budget has room.
/// Returns false if the connection is gone.
async fn respond<B>(
    conn: &Conn<B>,
    request_id: u64,
    response: Response,
    close_after: bool,
    in_flight: Option<OwnedSemaphorePermit>,
) -> bool {
    let mut bytes = Vec::new();
    if let Err(error) = response.encode(request_id, &mut bytes) {
        bytes.clear();
        let internal = ServerError::new(
            ErrorKind::Internal,
            format!("the response cannot be encoded: {error}"),
        );
        if Response::Error(internal)
            .encode(request_id, &mut bytes)
            .is_err()
        {
            return false;
        }
    }
    let cost = u32::try_from(bytes.len().min(conn.budget_max()))
        .expect("the output budget is at most Semaphore::MAX_PERMITS, below u32::MAX");
    let Ok(budget) = Arc::clone(&conn.budget).acquire_many_owned(cost).await else {
        return false;
    };
    conn.out
        .send(Outgoing {
            bytes,
            close_after,
            _in_flight: in_flight,
            _budget: budget,
        })
        .is_ok()
}

impl<B> Conn<B> {
    fn budget_max(&self) -> usize {
        usize::try_from(self.shared.config.output_buffer_bytes_max)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize)
    }
}

/// Writes queued responses until every sender is gone. Whatever is queued when the writer
/// wakes goes out in one write (up to `WRITE_BATCH_BYTES` copied together; a larger
/// response is written on its own, uncopied): with pipelined requests answered by many
/// tasks, one syscall and one wake-up per response would cost more than the responses.
/// After a write fails or times out, or after a response that closes the connection, it
/// tells the reader to stop and drops the rest (releasing their permits so that no task
/// waits on them).
async fn write_loop<B>(
    shared: Arc<Shared<B>>,
    mut write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    closed: watch::Sender<bool>,
) {
    let timeout = shared.config.frame_timeout;
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(WRITE_BATCH_BYTES);
    while let Some(first) = queue.recv().await {
        let mut close_after = first.close_after;
        let mut bytes = first.bytes.len();
        batch.push(first);
        // Bounded by `WRITE_BATCH_BYTES`: a connection's queue is bounded anyway (its
        // in-flight permits), this bounds what one write holds back.
        while bytes < WRITE_BATCH_BYTES && !close_after {
            let Ok(next) = queue.try_recv() else { break };
            close_after = next.close_after;
            bytes += next.bytes.len();
            batch.push(next);
        }
        let written =
            tokio::time::timeout(timeout, write_batch(&mut write, &batch, &mut buffer)).await;
        let ok = matches!(written, Ok(Ok(())));
        if ok {
            shared
                .metrics
                .bytes_written
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        // The permits go back once the bytes are on the socket.
        batch.clear();
        if !ok || close_after {
            let _ = closed.send(true);
            let _ = tokio::time::timeout(timeout, write.shutdown()).await;
            while queue.recv().await.is_some() {}
            return;
        }
    }
    let _ = tokio::time::timeout(timeout, write.shutdown()).await;
}

/// Responses below this size are copied together into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Writes `batch` in order: runs of small responses copied into `buffer` and written
/// together, large ones written straight from their own bytes.
async fn write_batch(
    write: &mut OwnedWriteHalf,
    batch: &[Outgoing],
    buffer: &mut Vec<u8>,
) -> std::io::Result<()> {
    if let [only] = batch {
        return write.write_all(&only.bytes).await;
    }
    buffer.clear();
    for outgoing in batch {
        if outgoing.bytes.len() >= WRITE_BATCH_BYTES {
            if !buffer.is_empty() {
                write.write_all(buffer).await?;
                buffer.clear();
            }
            write.write_all(&outgoing.bytes).await?;
        } else {
            buffer.extend_from_slice(&outgoing.bytes);
        }
    }
    if !buffer.is_empty() {
        write.write_all(buffer).await?;
    }
    // The buffer never holds more than `2 * WRITE_BATCH_BYTES`: gathering stops at
    // `WRITE_BATCH_BYTES`, and larger responses never enter it.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_the_configured_token() {
        assert!(token_matches(None, None));
        assert!(token_matches(None, Some(b"anything")));
        assert!(!token_matches(Some(b"secret"), None));
        assert!(!token_matches(Some(b"secret"), Some(b"secreT")));
        assert!(!token_matches(Some(b"secret"), Some(b"secret!")));
        assert!(token_matches(Some(b"secret"), Some(b"secret")));
    }
}
