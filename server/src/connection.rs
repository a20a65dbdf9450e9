//! One client connection: handshake, then pipelined requests answered as they complete.
//!
//! The reader cuts frames out of the stream and takes one of the connection's
//! `in_flight_max` permits per request: when they are all taken it stops reading, and TCP
//! pushes back on the client. Requests that never wait are answered by the reader itself,
//! in the pass that decoded them: pings and point reads the backend answers at once. The
//! responses of one pass are encoded into one buffer and queued for the writer together.
//! Writes go to the backend, the writes of one pass as one group ([`WriteGroup`]): batches
//! and transactions each on its own, puts and deletes through the server's [`PointQueue`],
//! which logs every connection's together, one append per round of the event loop. The
//! group's writes are answered together, in any order the protocol allows, by whoever gives
//! the last answer: on the event loop (which applied the group, or whose reader closed it)
//! straight to the socket; from the log's writer thread through the server's [`Mailbox`],
//! which the event loop empties, sending each group as it would its own. Every other
//! request (scans, status, catalog changes) runs in its own task and queues its own
//! response. Whatever the reader and those tasks queue takes its size from
//! the connection's output byte budget; the writer releases the budget and the in-flight
//! permits once the bytes are on the socket. A group's answers are queued outside the
//! budget: each holds the in-flight permits of its writes, one short frame per write. So a
//! connection holds at most `in_flight_max` requests and `output_buffer_bytes_max` bytes of
//! queued responses (plus at most `in_flight_max` write answers), the frame being read and
//! the responses of the pass being gathered (at most `WRITE_BATCH_BYTES` and one response;
//! the gathering buffer is kept between passes up to `GATHER_KEPT_MAX`).
//!
//! Timeouts: the handshake must complete within `handshake_timeout`; a frame, once started,
//! within `frame_timeout`; a connection with nothing in flight that sends nothing for
//! `idle_timeout` is closed, as is one whose responses cannot be written within
//! `frame_timeout`. The reader's one timer is armed for the nearest deadline and re-armed
//! only when a deadline comes sooner or the timer fires early. A framing error
//! (DecodeError::is_fatal) gets an Error frame and a close;
//! any other bad frame gets an Error frame for its request id and the connection reads on
//! (writes read before a fatal one are still logged, but their answers go after the close,
//! so the client hears nothing of them). When the reader stops it still answers every write
//! it handed on (to the backend, or to the [`PointQueue`]).
//!
//! Costs per request are kept off what connections share: requests answered in place take
//! no server-wide permit (they check that one is free), latencies are gathered per
//! connection and added to the shared histograms once per flush (a write group's once per
//! group), the request permits of a group of answered writes go back together, and gets,
//! puts and deletes are read in place from their frames ([`PointRequest::decode`]): a put's
//! table name, key and value are copied once, into its log record, instead of into three
//! buffers first. Their answers are encoded straight into the gathering buffer
//! ([`PointResponse::encode`]), a get's from the value the backend found, without a
//! [`Response`] built around it and dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use popdb_db::{Commit, PointWrites, WriteOptions};
use popdb_protocol::{
    DecodeError, ErrorKind, FrameDecoder, HandshakeOk, PROTOCOL_VERSION, PointRequest,
    PointResponse, Request, Response, ServerError,
};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::backend::{Backend, ReadConsistency};
use crate::metrics::{OP_DELETE, OP_GET, OP_PUT, OPS, Observations, op_index};
use crate::point_queue::{Asked, PointQueue};
use crate::request::{WriteReply, execute, unauthorized_error, write_commit};
use crate::server::Shared;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The reader keeps its gathering buffer between passes up to this capacity (a pass of 128
/// small responses fits); a larger one is freed once written, so an idle connection holds
/// at most this much besides its read chunk.
const GATHER_KEPT_MAX: usize = 16 * 1024;

/// A response on its way to the writer, with the permits it holds until it is written.
struct Outgoing {
    bytes: Vec<u8>,
    close_after: bool,
    _in_flight: Option<OwnedSemaphorePermit>,
    _budget: Option<OwnedSemaphorePermit>,
}

/// What the reader and the request tasks of one connection share.
struct Conn<B> {
    shared: Arc<Shared<B>>,
    out: Arc<Output>,
    /// Bytes of responses queued and not yet written (`output_buffer_bytes_max` permits).
    budget: Arc<Semaphore>,
    /// Requests read and not yet answered (`in_flight_max` permits).
    in_flight: Arc<Semaphore>,
}

impl<B> Clone for Conn<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            out: Arc::clone(&self.out),
            budget: Arc::clone(&self.budget),
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

/// The writes one pass of the reader handed on (to the backend, or to the server's
/// [`PointQueue`]). Their answers are gathered
/// here and written together, by whoever gives the last of them (the thread that applied
/// the group, or the reader closing the group): the apply stage answers writes one by one,
/// and answering each on its own cost a send per write. They go to the socket from the
/// event loop (through the server's [`Mailbox`] if the log's writer thread gave them), not
/// through the reader: a hand-back woke the reader's task once more per pass (about 620
/// instructions per SET at one request in flight, of about 9,000).
pub(crate) struct WriteGroup<B> {
    /// Writes not yet answered, plus one while the reader may still add to the group.
    remaining: AtomicUsize,
    answered: parking_lot::Mutex<Answered>,
    shared: Arc<Shared<B>>,
    out: Arc<Output>,
}

impl<B> WriteGroup<B> {
    fn new(shared: Arc<Shared<B>>, out: Arc<Output>) -> Self {
        Self {
            remaining: AtomicUsize::new(1),
            answered: parking_lot::Mutex::new(Answered::default()),
            shared,
            out,
        }
    }

    /// Counts one more write in the group; it must be answered through [`WriteGroup::answer`]
    /// or [`WriteGroup::answer_with`].
    fn add(&self) {
        self.remaining.fetch_add(1, Ordering::Relaxed);
    }

    fn answer(&self, done: Done) {
        self.answered.lock().done.push(done);
        self.release(1);
    }

    /// Gives several writes' answers at once (one lock, one count): `fill` adds them and
    /// says how many it added.
    pub(crate) fn answer_with(&self, fill: impl FnOnce(&mut Vec<Done>) -> usize) {
        let count = fill(&mut self.answered.lock().done);
        self.release(count);
    }

    /// Drops the reader's hold, handing the group the permits of its writes, which the
    /// reader merged as it added them.
    fn close(&self, permits: Permits) {
        self.answered.lock().permits = permits;
        self.release(1);
    }

    /// Drops `count` counts (writes', or the reader's hold); the last writes the answers.
    fn release(&self, count: usize) {
        if self.remaining.fetch_sub(count, Ordering::AcqRel) == count {
            let answered = std::mem::take(&mut *self.answered.lock());
            self.respond(answered);
        }
    }

    /// Hands the answers to the socket. On a runtime thread (the event loop that led the
    /// group, or the reader closing it) they are encoded and written now (or queued for the
    /// connection's writer task, if it holds the socket). The log's writer thread posts them
    /// to the server's [`Mailbox`] instead, which the event loop empties: one wake per batch
    /// of groups, where a send to each connection's writer task woke one task per group, and
    /// the encoding happens off the writer, which bounds the write rate at many writes in
    /// flight. Writing to the sockets itself, that thread took longer per group, more
    /// writes queued behind each, and it kept the lead of the log from the event loop.
    fn respond(&self, mut answered: Answered) {
        if answered.done.is_empty() {
            return;
        }
        if tokio::task::try_id().is_some() {
            send_answers(&self.shared, &self.out, answered);
        } else {
            // The server's request permits go back now, as when the writer encoded the
            // answers: held until the event loop drains the box, they would turn requests
            // away as `Overloaded` near the limit for no work left to do.
            drop(answered.permits.requests.take());
            self.shared.mailbox.post(answered, Arc::clone(&self.out));
        }
    }
}

/// Encodes `answered` and writes it to `out`'s socket (or queues it behind what the
/// connection's writer task holds). A stopped writer drops it, as it drops everything
/// queued after it stopped.
fn send_answers<B>(shared: &Shared<B>, out: &Output, answered: Answered) {
    if let Some((bytes, in_flight)) = encode_answers(shared, answered) {
        let outgoing = Outgoing {
            bytes,
            close_after: false,
            _in_flight: in_flight,
            _budget: None,
        };
        let _ = out.enqueue(shared, outgoing, true);
    }
}

/// Encodes a group's answers; counts their latency (one pass's writes were read together)
/// and errors; gives back the server's request permits. Returns the bytes and the
/// connection's in-flight permits, held until they are written; nothing if no write was
/// answered.
fn encode_answers<B>(
    shared: &Shared<B>,
    answered: Answered,
) -> Option<(Vec<u8>, Option<OwnedSemaphorePermit>)> {
    let Answered {
        done: answers,
        permits,
    } = answered;
    let first = answers.first()?;
    let metrics = &shared.metrics;
    let elapsed = shared.clock.now().saturating_sub(first.started);
    let mut bytes = Vec::with_capacity(answers.len() * WRITE_ANSWER_BYTES);
    let mut counts = [0_u64; OPS.len()];
    for done in answers {
        if let Some(count) = counts.get_mut(done.op) {
            *count += 1;
        }
        match (done.result, done.reply) {
            (Ok(lsn), WriteReply::Written) => {
                encode_point_response(done.request_id, PointResponse::Written { lsn }, &mut bytes);
            }
            (Ok(lsn), WriteReply::Committed) => {
                encode_response(done.request_id, &Response::Committed { lsn }, &mut bytes);
            }
            (Err(error), _) => {
                metrics.error(error.kind.code());
                encode_response(done.request_id, &Response::Error(error), &mut bytes);
            }
        }
    }
    for (op, count) in counts.into_iter().enumerate() {
        if count > 0 {
            metrics.observe_many(op, elapsed, count);
        }
    }
    // Every request permit is of the server's one semaphore: they go back together,
    // taking its lock, which every connection shares, once rather than once per write.
    drop(permits.requests);
    Some((bytes, permits.in_flight))
}

/// Write groups answered off the runtime (on the log's writer thread), waiting for the event
/// loop to encode and send them. The poster wakes the loop's drain task only when the box
/// was empty: a batch of groups costs one wake, whatever the number of connections.
#[derive(Default)]
pub(crate) struct Mailbox {
    posted: parking_lot::Mutex<Vec<(Answered, Arc<Output>)>>,
    notify: tokio::sync::Notify,
    draining: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("posted", &self.posted.lock().len())
            .finish_non_exhaustive()
    }
}

impl Mailbox {
    fn post(&self, answered: Answered, out: Arc<Output>) {
        let was_empty = {
            let mut posted = self.posted.lock();
            posted.push((answered, out));
            posted.len() == 1
        };
        if was_empty {
            // Stores a permit if the drain task is not waiting: it empties the box next.
            self.wake();
        }
    }

    /// Wakes the drain task, which ends if the server's shared state is gone.
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// Starts the task that empties the box, once per server, on the calling runtime. It
    /// ends once the server's shared state is gone (whose drop wakes it). A group whose
    /// sending panics (a bug) is dropped with a logged error, its writes unanswered, rather
    /// than stopping every later answer.
    fn start_draining<B: Backend>(shared: &Arc<Shared<B>>) {
        if shared.mailbox.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let mailbox = Arc::clone(&shared.mailbox);
        let shared = Arc::downgrade(shared);
        tokio::spawn(async move {
            // Swapped with the box's vector, so neither side allocates per batch.
            let mut taken = Vec::new();
            loop {
                std::mem::swap(&mut *mailbox.posted.lock(), &mut taken);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if taken.is_empty() {
                    drop(shared);
                    mailbox.notify.notified().await;
                    continue;
                }
                for (answered, out) in taken.drain(..) {
                    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        send_answers(&shared, &out, answered);
                    }));
                    if sent.is_err() {
                        tracing::error!("sending a group of write answers panicked; dropped");
                    }
                }
                drop(shared);
                // Other tasks (readers, other connections' writers) run between batches.
                tokio::task::yield_now().await;
            }
        });
    }
}

/// Merges `permit` into `held`: permits of one semaphore go back together.
fn merge(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(held) => held.merge(permit),
        None => *held = Some(permit),
    }
}

/// Room reserved per answered write: a Written frame's size.
const WRITE_ANSWER_BYTES: usize = 32;

/// A write's answer from the backend.
pub(crate) struct Done {
    pub(crate) request_id: u64,
    pub(crate) op: usize,
    pub(crate) started: Duration,
    pub(crate) reply: WriteReply,
    pub(crate) result: Result<u64, ServerError>,
}

/// A group's answers so far, and once the reader closes it, its writes' permits.
#[derive(Default)]
struct Answered {
    done: Vec<Done>,
    permits: Permits,
}

/// The permits of a group's writes, each kind merged into one by the reader as it adds the
/// writes. A merge drops one reference to the permit's semaphore; merged by the thread that
/// answers the group (at pipeline 16 the log's writer), they wrote both semaphores'
/// reference counts from a second thread once per write.
#[derive(Default)]
struct Permits {
    /// Of the connection's semaphore (`in_flight_max`), held until the answers are written.
    in_flight: Option<OwnedSemaphorePermit>,
    /// Of the server's semaphore (`requests_in_flight_max`), held until they are encoded.
    requests: Option<OwnedSemaphorePermit>,
}

/// Responses the reader gathered for one queueing, with the in-flight permits of the
/// requests they answer.
#[derive(Default)]
struct Gathered {
    bytes: Vec<u8>,
    in_flight: Option<OwnedSemaphorePermit>,
}

impl Gathered {
    /// Appends `response` to `request_id`, which holds `permit`.
    fn add(&mut self, request_id: u64, response: &Response, permit: OwnedSemaphorePermit) {
        encode_response(request_id, response, &mut self.bytes);
        self.hold(permit);
    }

    /// Appends the answer to a get, put or delete, encoded straight from the value it
    /// borrows (no [`Response`] built and dropped per request).
    fn add_point(
        &mut self,
        request_id: u64,
        response: PointResponse<'_>,
        permit: OwnedSemaphorePermit,
    ) {
        encode_point_response(request_id, response, &mut self.bytes);
        self.hold(permit);
    }

    fn hold(&mut self, permit: OwnedSemaphorePermit) {
        merge(&mut self.in_flight, permit);
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
    Mailbox::start_draining(&shared);
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (queue_tx, queue) = mpsc::unbounded_channel();
    let socket = Arc::new(parking_lot::Mutex::new(OutputState {
        write: Some(write),
        busy: false,
    }));
    let out = Arc::new(Output {
        state: Arc::clone(&socket),
        queue: queue_tx,
    });
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
    let writer = tokio::spawn(write_loop(Arc::clone(&shared), socket, queue, closed_tx));
    let mut reader = Reader::new(conn);
    let stop = reader.read_loop(read, closed_rx).await;
    reader.finish().await;
    if stop == Stop::Dropped {
        shared
            .metrics
            .connections_dropped
            .fetch_add(1, Ordering::Relaxed);
    }
    drop(reader);
    let _ = writer.await;
}

/// The reader's side of a connection.
struct Reader<B> {
    conn: Conn<B>,
    /// The group of writes of this pass, while it is open, and its writes' permits.
    group: Option<Arc<WriteGroup<B>>>,
    group_permits: Permits,
    /// Where a put or delete is encoded before it joins the server's [`PointQueue`] (its
    /// buffer kept between writes).
    scratch: PointWrites,
    gathered: Gathered,
    /// When the last read returned: requests are timed from the read that completed their
    /// frame (one clock read per read, not one per request).
    read_at: Duration,
    /// Requests answered in place since the last flush, by kind ([`OPS`] order): timed
    /// together at the flush, from `read_at`.
    answered_now: [u64; OPS.len()],
    /// Latencies gathered since the last flush, published with it.
    observations: Observations,
}

impl<B: Backend> Reader<B> {
    fn new(conn: Conn<B>) -> Self {
        let read_at = conn.shared.clock.now();
        Self {
            conn,
            group: None,
            group_permits: Permits::default(),
            scratch: PointWrites::new(WriteOptions::default()),
            gathered: Gathered::default(),
            read_at,
            answered_now: [0; OPS.len()],
            observations: Observations::default(),
        }
    }

    async fn read_loop(&mut self, mut read: OwnedReadHalf, closed: watch::Receiver<bool>) -> Stop {
        let shared = Arc::clone(&self.conn.shared);
        let config = &shared.config;
        let clock = &shared.clock;
        let mut decoder = FrameDecoder::new(config.limits);
        let mut chunk = vec![0_u8; READ_CHUNK];
        let handshake_deadline = clock.now() + config.handshake_timeout;
        let mut handshaken = false;
        let mut frame_started: Option<Duration> = None;
        // The read deadline's timer, and the deadline (on `clock`) it is armed for.
        let timer = tokio::time::sleep(config.handshake_timeout);
        tokio::pin!(timer);
        let mut armed = handshake_deadline;
        // Made once: a watch's `changed()` made afresh in every pass joined and left the
        // watch's waiter list each time (a lock each way, and the shutdown watch is shared
        // by every connection).
        let (closed_seen, shutdown_seen) = (closed.clone(), shared.shutdown.clone());
        let stopped = stopped(closed, shared.shutdown.clone());
        tokio::pin!(stopped);
        // Polled once here, `stopped` registers this task with both watches, so that a change
        // of either wakes it; from then on each pass reads the watches' versions instead
        // ([`stop_seen`], two atomic loads). Polling `stopped` in every pass polled two
        // watches' `Notified`, each taking its waiter list's lock (the shutdown watch's is
        // every connection's): under one request per pass it cost about as much as decoding
        // and answering a GET.
        let first = std::future::poll_fn(|cx| Poll::Ready(stopped.as_mut().poll(cx))).await;
        if let Poll::Ready(stop) = first {
            return stop;
        }
        loop {
            // Answer every whole frame buffered.
            let mut frames_taken = false;
            loop {
                let frame = match decoder.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        self.close_group();
                        let _ = self.flush(clock.now()).await;
                        framing_error(&self.conn, &error).await;
                        return Stop::Dropped;
                    }
                };
                frames_taken = true;
                let request_id = frame.header.request_id;
                if handshaken {
                    let permit = match self.take_in_flight(stopped.as_mut()).await {
                        Ok(permit) => permit,
                        Err(stop) => return stop,
                    };
                    // Gets, puts and deletes are read in place: no copy of their table
                    // name, key and value is made before the Db copies them in.
                    match PointRequest::decode(&frame, &config.limits) {
                        Ok(Some(point)) => self.handle_point(request_id, point, permit),
                        Ok(None) => {
                            let decoded = Request::decode(&frame, &config.limits);
                            self.handle(request_id, decoded, permit);
                        }
                        Err(error) => self.handle(request_id, Err(error), permit),
                    }
                    if self.gathered.bytes.len() >= WRITE_BATCH_BYTES
                        && !self.flush(clock.now()).await
                    {
                        return Stop::Dropped;
                    }
                } else {
                    let decoded = Request::decode(&frame, &config.limits);
                    if !handshake(&self.conn, request_id, decoded).await {
                        return Stop::Dropped;
                    }
                    handshaken = true;
                }
            }
            self.close_group();
            let now = clock.now();
            if !self.flush(now).await {
                return Stop::Dropped;
            }
            // The frame timer runs from when the bytes left over after the last whole frame
            // were seen, not counting time spent waiting for in-flight room.
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
            // The timer is re-armed only when the deadline comes sooner than it is armed
            // for, or when it fired early: a later deadline (every read moves the idle one)
            // leaves it alone, and it re-arms when it fires. Re-arming on every read
            // touched tokio's shared timer wheel twice per pass.
            if deadline < armed {
                let wait = deadline.saturating_sub(now);
                timer.as_mut().reset(tokio::time::Instant::now() + wait);
                armed = deadline;
            }
            // Here too, since the select below stops at the first branch ready: a client
            // that keeps sending would otherwise never let it look.
            if let Poll::Ready(stop) = stop_seen(&closed_seen, &shutdown_seen) {
                return stop;
            }
            // Biased: polled in this order, and only until one is ready (no random start,
            // which drew from a thread-local generator every pass). Writes' answers come
            // before new requests, so that a client that keeps sending still hears them.
            tokio::select! {
                biased;
                read = read.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return Stop::Clean,
                    Ok(n) => {
                        self.read_at = clock.now();
                        shared.metrics.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                        decoder.push(chunk.get(..n).unwrap_or_default());
                    }
                },
                () = &mut timer => {
                    // Fired: armed for nothing until the next pass arms it again.
                    armed = Duration::MAX;
                    if clock.now() >= deadline {
                        let idle = frame_started.is_none() && handshaken;
                        let busy = self.conn.in_flight.available_permits()
                            < config.in_flight_max as usize;
                        if !(idle && busy) {
                            tracing::debug!(handshaken, "connection timed out");
                            return Stop::Dropped;
                        }
                    }
                },
                stop = std::future::poll_fn(|_| stop_seen(&closed_seen, &shutdown_seen)) => {
                    return stop;
                }
            }
        }
    }

    /// Sends what is gathered and closes the pass's group of writes, whatever stopped the
    /// reader: the writes still with the backend are in the log, and their group answers
    /// them when the last is in (the connection's writer task ends only after that).
    async fn finish(&mut self) {
        self.close_group();
        let now = self.conn.shared.clock.now();
        let _ = self.flush(now).await;
    }

    /// Closes the pass's group of writes, handing it their permits: its answers are
    /// written once all are in (at once, if they already are).
    fn close_group(&mut self) {
        if let Some(group) = self.group.take() {
            group.close(std::mem::take(&mut self.group_permits));
        }
    }

    /// Gathers the response to a request of kind `op` answered in this pass.
    fn answer_now(
        &mut self,
        request_id: u64,
        op: usize,
        response: &Response,
        permit: OwnedSemaphorePermit,
    ) {
        if let Response::Error(error) = response {
            self.conn.shared.metrics.error(error.kind.code());
        }
        if let Some(count) = self.answered_now.get_mut(op) {
            *count += 1;
        }
        self.gathered.add(request_id, response, permit);
    }

    /// Answers a request that never reached the backend with `error`.
    fn refuse(&mut self, request_id: u64, error: ServerError, permit: OwnedSemaphorePermit) {
        self.conn.shared.metrics.error(error.kind.code());
        self.gathered
            .add(request_id, &Response::Error(error), permit);
    }

    /// Answers a request over the server's bound of requests in flight.
    fn refuse_overloaded(&mut self, request_id: u64, permit: OwnedSemaphorePermit) {
        self.conn
            .shared
            .metrics
            .requests_overloaded
            .fetch_add(1, Ordering::Relaxed);
        let error = ServerError::new(ErrorKind::Overloaded, "too many requests in flight");
        self.refuse(request_id, error, permit);
    }

    /// Whether the server is at its bound of requests in flight. A request answered in
    /// place checks this instead of taking a permit: it would give it back in the same
    /// breath, and each take and give is an atomic write on, and a release a lock of, the
    /// one semaphore every connection shares.
    fn overloaded(&self) -> bool {
        self.conn.shared.requests.available_permits() == 0
    }

    /// One of the server's request permits, held until the request is answered.
    fn request_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.conn.shared.requests)
            .try_acquire_owned()
            .ok()
    }

    /// Sends what is gathered: straight to the socket if the writer is idle (keeping the
    /// buffer for the next pass, so that a pass does not grow a fresh one response by
    /// response), else to the writer; and publishes the latencies gathered, the requests
    /// answered in place timed to `now`. False if the connection is gone.
    async fn flush(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.read_at);
        for (op, count) in self.answered_now.iter_mut().enumerate() {
            if *count > 0 {
                self.observations.add(op, elapsed, *count);
                *count = 0;
            }
        }
        self.conn.shared.metrics.publish(&mut self.observations);
        if self.gathered.bytes.is_empty() {
            return true;
        }
        let gathered = std::mem::take(&mut self.gathered);
        let conn = &self.conn;
        match conn
            .out
            .write_now(&conn.shared, gathered.bytes, gathered.in_flight)
        {
            Sent::Done(bytes) => {
                if let Some(bytes) = bytes.filter(|b| b.capacity() <= GATHER_KEPT_MAX) {
                    self.gathered.bytes = bytes;
                }
                true
            }
            Sent::Busy(bytes, in_flight) => enqueue(conn, bytes, false, in_flight).await,
        }
    }

    /// One of the connection's in-flight permits; when they are all taken, reading stops
    /// here until a response is written (the gathered ones first; the writes' groups answer
    /// on their own). Why the connection stops instead, if it stops meanwhile.
    async fn take_in_flight(
        &mut self,
        mut stopped: Pin<&mut impl Future<Output = Stop>>,
    ) -> Result<OwnedSemaphorePermit, Stop> {
        if let Ok(permit) = Arc::clone(&self.conn.in_flight).try_acquire_owned() {
            return Ok(permit);
        }
        // The permits come back as responses are written, some maybe of this group's.
        self.close_group();
        let now = self.conn.shared.clock.now();
        if !self.flush(now).await {
            return Err(Stop::Dropped);
        }
        tokio::select! {
            permit = Arc::clone(&self.conn.in_flight).acquire_owned() => {
                permit.map_err(|_| Stop::Dropped)
            }
            stop = stopped.as_mut() => Err(stop),
        }
    }

    /// Answers one request after the handshake: here if it cannot wait, else in a task.
    fn handle(
        &mut self,
        request_id: u64,
        decoded: Result<Request, DecodeError>,
        permit: OwnedSemaphorePermit,
    ) {
        let request = match decoded {
            Ok(Request::Handshake { .. }) => {
                let error = ServerError::new(
                    ErrorKind::BadRequest,
                    "a second handshake on one connection",
                );
                return self.refuse(request_id, error, permit);
            }
            Ok(request) => request,
            Err(error) => return self.refuse(request_id, error.to_server_error(), permit),
        };
        let op = op_index(&request);
        match request {
            Request::Ping if self.overloaded() => self.refuse_overloaded(request_id, permit),
            Request::Ping => self.answer_now(request_id, op, &Response::Pong, permit),
            Request::Get { table, key } => self.get(request_id, &table, &key, permit),
            request @ (Request::Put { .. }
            | Request::Delete { .. }
            | Request::Batch { .. }
            | Request::Commit(_)) => self.commit(request_id, op, request, permit),
            other => self.spawn(request_id, op, other, permit),
        }
    }

    /// Answers a Get, Put or Delete read in place from its frame.
    fn handle_point(
        &mut self,
        request_id: u64,
        point: PointRequest<'_>,
        permit: OwnedSemaphorePermit,
    ) {
        let (op, table, key, value) = match point {
            PointRequest::Get { table, key } => return self.get(request_id, table, key, permit),
            PointRequest::Put { table, key, value } => (OP_PUT, table, key, Some(value)),
            PointRequest::Delete { table, key } => (OP_DELETE, table, key, None),
        };
        let Some(request_permit) = self.request_permit() else {
            return self.refuse_overloaded(request_id, permit);
        };
        match self
            .conn
            .shared
            .backend
            .add_point(&mut self.scratch, table, key, value)
        {
            Ok(()) => {
                let asked = Asked {
                    group: self.join_group(permit, request_permit),
                    request_id,
                    op,
                    started: self.read_at,
                };
                PointQueue::push(&self.conn.shared, &mut self.scratch, asked);
            }
            Err(error) => {
                drop(request_permit);
                self.answer_now(request_id, op, &Response::Error(error), permit);
            }
        }
    }

    /// Answers a Get: in place if the backend can answer it at once, else in a task.
    fn get(&mut self, request_id: u64, table: &str, key: &[u8], permit: OwnedSemaphorePermit) {
        if self.overloaded() {
            return self.refuse_overloaded(request_id, permit);
        }
        let read = ReadConsistency::Linearizable;
        let Some(result) = self.conn.shared.backend.get_now(read, table, key) else {
            let request = Request::Get {
                table: table.to_owned(),
                key: key.to_vec(),
            };
            return self.spawn(request_id, OP_GET, request, permit);
        };
        match result {
            Ok(found) => {
                let found = found
                    .as_ref()
                    .map(|(value, version)| (value.as_slice(), *version));
                if let Some(count) = self.answered_now.get_mut(OP_GET) {
                    *count += 1;
                }
                self.gathered
                    .add_point(request_id, PointResponse::Value(found), permit);
            }
            Err(error) => self.answer_now(request_id, OP_GET, &Response::Error(error), permit),
        }
    }

    /// Hands a write to the backend's commit path; its answer comes back on `answers`, with
    /// the rest of the pass's group.
    fn commit(
        &mut self,
        request_id: u64,
        op: usize,
        request: Request,
        permit: OwnedSemaphorePermit,
    ) {
        let Some(request_permit) = self.request_permit() else {
            return self.refuse_overloaded(request_id, permit);
        };
        match write_commit(request) {
            Ok(write) => self.commit_with(request_id, op, write, permit, request_permit),
            Err(error) => {
                drop(request_permit);
                self.answer_now(request_id, op, &Response::Error(error), permit);
            }
        }
    }

    /// [`Reader::commit`] for a write that converted: counts it in the pass's group and
    /// hands it to the backend.
    fn commit_with(
        &mut self,
        request_id: u64,
        op: usize,
        (commit, reply): (Commit, WriteReply),
        permit: OwnedSemaphorePermit,
        request_permit: OwnedSemaphorePermit,
    ) {
        let answer = self.answer_in_group(request_id, op, reply, permit, request_permit);
        self.conn.shared.backend.commit_with(commit, answer);
    }

    /// Counts a write in the pass's group; the returned callback hands its result to the
    /// group, which answers the pass's writes together.
    fn answer_in_group(
        &mut self,
        request_id: u64,
        op: usize,
        reply: WriteReply,
        permit: OwnedSemaphorePermit,
        request_permit: OwnedSemaphorePermit,
    ) -> impl FnOnce(Result<u64, ServerError>) + Send + 'static {
        let group = self.join_group(permit, request_permit);
        let started = self.read_at;
        move |result| {
            group.answer(Done {
                request_id,
                op,
                started,
                reply,
                result,
            });
        }
    }

    /// Counts a write in the pass's group (opening it if need be), which holds its permits
    /// until it is answered; the write must be answered through the group.
    fn join_group(
        &mut self,
        permit: OwnedSemaphorePermit,
        request_permit: OwnedSemaphorePermit,
    ) -> Arc<WriteGroup<B>> {
        let conn = &self.conn;
        let group = self.group.get_or_insert_with(|| {
            Arc::new(WriteGroup::new(
                Arc::clone(&conn.shared),
                Arc::clone(&conn.out),
            ))
        });
        group.add();
        merge(&mut self.group_permits.in_flight, permit);
        merge(&mut self.group_permits.requests, request_permit);
        Arc::clone(group)
    }

    /// Runs a request that waits (a scan, status, a catalog change) in its own task, which
    /// queues its own response.
    fn spawn(
        &mut self,
        request_id: u64,
        op: usize,
        request: Request,
        permit: OwnedSemaphorePermit,
    ) {
        let Some(request_permit) = self.request_permit() else {
            return self.refuse_overloaded(request_id, permit);
        };
        let started = self.read_at;
        let conn = self.conn.clone();
        tokio::spawn(async move {
            let response = execute(&conn.shared, request).await;
            drop(request_permit);
            if let Response::Error(error) = &response {
                conn.shared.metrics.error(error.kind.code());
            }
            conn.shared
                .metrics
                .observe(op, conn.shared.clock.now().saturating_sub(started));
            let _ = respond(&conn, request_id, response, false, Some(permit)).await;
        });
    }
}

/// Resolves when the connection must stop: `Dropped` once the writer gives up (a response
/// could not be written in time) or has sent an error that closes the connection, `Clean`
/// once the server shuts down.
async fn stopped(mut closed: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) -> Stop {
    tokio::select! {
        _ = closed.changed() => Stop::Dropped,
        _ = shutdown.changed() => Stop::Clean,
    }
}

/// What [`stopped`] resolves to, if either watch has changed since the connection began
/// (or its sender is gone); registers no waker: `stopped`, polled once, has.
fn stop_seen(closed: &watch::Receiver<bool>, shutdown: &watch::Receiver<bool>) -> Poll<Stop> {
    if closed.has_changed().unwrap_or(true) {
        Poll::Ready(Stop::Dropped)
    } else if shutdown.has_changed().unwrap_or(true) {
        Poll::Ready(Stop::Clean)
    } else {
        Poll::Pending
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
    encode_response(request_id, &response, &mut bytes);
    queue(conn, bytes, close_after, in_flight).await
}

/// Appends the answer to a get, put or delete to `out`, or an Internal error if it cannot
/// be encoded.
fn encode_point_response(request_id: u64, response: PointResponse<'_>, out: &mut Vec<u8>) {
    if let Err(error) = response.encode(request_id, out) {
        encode_response(request_id, &Response::Error(unencodable(&error)), out);
    }
}

/// Appends `response` to `out`, or an Internal error if it cannot be encoded.
fn encode_response(request_id: u64, response: &Response, out: &mut Vec<u8>) {
    if let Err(error) = response.encode(request_id, out) {
        // An error frame with a short message always encodes.
        let _ = Response::Error(unencodable(&error)).encode(request_id, out);
    }
}

/// The Internal error that answers a request whose response cannot be encoded.
fn unencodable(error: &popdb_protocol::EncodeError) -> ServerError {
    ServerError::new(
        ErrorKind::Internal,
        format!("the response cannot be encoded: {error}"),
    )
}

/// Sends `bytes` (whole responses): straight to the socket if nothing is queued before them
/// and the socket takes them, else (what is left of them) to the writer, once the output
/// budget has room. Returns false if the connection is gone.
async fn queue<B>(
    conn: &Conn<B>,
    bytes: Vec<u8>,
    close_after: bool,
    in_flight: Option<OwnedSemaphorePermit>,
) -> bool {
    if !close_after {
        match conn.out.write_now(&conn.shared, bytes, in_flight) {
            Sent::Done(_) => return true,
            Sent::Busy(bytes, in_flight) => return enqueue(conn, bytes, false, in_flight).await,
        }
    }
    enqueue(conn, bytes, close_after, in_flight).await
}

/// Queues `bytes` for the writer once the output budget has room; straight to the socket
/// instead if the writer went idle meanwhile. Returns false if the connection is gone.
async fn enqueue<B>(
    conn: &Conn<B>,
    bytes: Vec<u8>,
    close_after: bool,
    in_flight: Option<OwnedSemaphorePermit>,
) -> bool {
    let cost = u32::try_from(bytes.len().min(conn.budget_max()))
        .expect("the output budget is at most Semaphore::MAX_PERMITS, below u32::MAX");
    let budget = match Arc::clone(&conn.budget).try_acquire_many_owned(cost) {
        Ok(budget) => budget,
        Err(_) => match Arc::clone(&conn.budget).acquire_many_owned(cost).await {
            Ok(budget) => budget,
            Err(_) => return false,
        },
    };
    let outgoing = Outgoing {
        bytes,
        close_after,
        _in_flight: in_flight,
        _budget: Some(budget),
    };
    conn.out.enqueue(&conn.shared, outgoing, true)
}

/// The socket's write side, shared by the reader and the request tasks. While the writer
/// task is idle whoever answers writes to the socket itself (one syscall, no hand-off); once
/// something is queued (the socket was full, or a response closes the connection) the
/// writer holds the socket and everything else queues behind, in order, until it has
/// written the queue out.
struct Output {
    /// Shared with the writer task, which holds no sender: the queue closes when the
    /// reader, every request task and every write group (posted to the mailbox or not)
    /// holding the output are done.
    state: Arc<parking_lot::Mutex<OutputState>>,
    queue: mpsc::UnboundedSender<Outgoing>,
}

struct OutputState {
    /// The socket, while the writer does not hold it.
    write: Option<OwnedWriteHalf>,
    /// The writer holds the socket (or has stopped for good): queue, do not write.
    busy: bool,
}

/// What [`Output::write_now`] did.
enum Sent {
    /// Handed on: written, or (what the socket did not take) queued for the writer. The
    /// buffer comes back, emptied, if the socket took all of it.
    Done(Option<Vec<u8>>),
    /// Not written (the writer holds the socket): queue these.
    Busy(Vec<u8>, Option<OwnedSemaphorePermit>),
}

impl Output {
    /// Writes `bytes` to the socket now if the writer is idle (what the socket does not
    /// take goes to the writer, outside the output budget: at most one gathered batch);
    /// hands them back if it is busy.
    fn write_now<B>(
        &self,
        shared: &Shared<B>,
        bytes: Vec<u8>,
        in_flight: Option<OwnedSemaphorePermit>,
    ) -> Sent {
        let mut state = self.state.lock();
        if state.busy {
            return Sent::Busy(bytes, in_flight);
        }
        let outgoing = Outgoing {
            bytes,
            close_after: false,
            _in_flight: in_flight,
            _budget: None,
        };
        Sent::Done(self.write_idle(&mut state, shared, outgoing))
    }

    /// Queues `outgoing` for the writer, or writes it now if `write_here`, the writer is
    /// idle and it does not close the connection. False if the writer has stopped.
    fn enqueue<B>(&self, shared: &Shared<B>, outgoing: Outgoing, write_here: bool) -> bool {
        let mut state = self.state.lock();
        if state.busy || outgoing.close_after || !write_here {
            state.busy = true;
            return self.queue.send(outgoing).is_ok();
        }
        let _ = self.write_idle(&mut state, shared, outgoing);
        true
    }

    /// Writes what the socket takes of `outgoing` and queues the rest (its permits go back
    /// once it is all written). Returns its buffer, emptied, if the socket took all of it.
    /// Requires: the state's lock, and the writer idle.
    fn write_idle<B>(
        &self,
        state: &mut OutputState,
        shared: &Shared<B>,
        mut outgoing: Outgoing,
    ) -> Option<Vec<u8>> {
        let mut written = 0;
        if let Some(write) = state.write.as_ref() {
            while written < outgoing.bytes.len() {
                match write.try_write(outgoing.bytes.get(written..).unwrap_or_default()) {
                    Ok(n) if n > 0 => written += n,
                    // Full (WouldBlock), or an error the writer meets again and stops on.
                    _ => break,
                }
            }
        }
        shared
            .metrics
            .bytes_written
            .fetch_add(written as u64, Ordering::Relaxed);
        if written == outgoing.bytes.len() {
            let mut bytes = std::mem::take(&mut outgoing.bytes);
            bytes.clear();
            return Some(bytes);
        }
        outgoing.bytes.drain(..written);
        state.busy = true;
        // Queued under the lock: nothing gets ahead of the rest of these bytes. A stopped
        // writer drops them, as it drops everything queued after it stopped.
        let _ = self.queue.send(outgoing);
        None
    }
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
/// response is written on its own, uncopied). It holds the socket from the first queued
/// response until the queue is empty, then hands it back (see [`Output`]). After a write
/// fails or times out, or after a response that closes the connection, it tells the reader
/// to stop, keeps the socket for good and drops the rest (releasing their permits so that
/// no task waits on them).
async fn write_loop<B>(
    shared: Arc<Shared<B>>,
    out: Arc<parking_lot::Mutex<OutputState>>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    closed: watch::Sender<bool>,
) {
    let timeout = shared.config.frame_timeout;
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(WRITE_BATCH_BYTES);
    let mut held: Option<OwnedWriteHalf> = None;
    while let Some(first) = queue.recv().await {
        // Whoever queued set `busy`: nobody else writes until it is cleared below.
        let mut write = match held.take() {
            Some(write) => write,
            None => match out.lock().write.take() {
                Some(write) => write,
                None => break,
            },
        };
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
        let mut state = out.lock();
        if queue.is_empty() {
            // Senders queue under this lock, so nothing can slip in between.
            state.write = Some(write);
            state.busy = false;
        } else {
            held = Some(write);
        }
    }
    let write = held.or_else(|| out.lock().write.take());
    if let Some(mut write) = write {
        let _ = tokio::time::timeout(timeout, write.shutdown()).await;
    }
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
