//! One server connection: the read loop parses requests in place, hands each to the server's stack of layers
//! (its payload shared with the read buffer, not copied), refuses what the wire forbids (ids out of order, an
//! unknown method, a frame over the limits), and on shutdown drains: go-away, the calls in flight finish up to
//! the drain timeout, then the connection closes. Answers go out through the outbox. Policies (limits,
//! draining refusals, metrics of calls, tracing) are layers (`layer/`), not branches here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use bytes::{Buf, BytesMut};
use rpc_codec::{FrameCodec, Header, Kind, Metadata, ReceivedRef, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::{Duration, Instant};

use super::ServerConfig;
use super::admission::Slot;
use super::handler::{self, Serving};
use super::layer::{Head, Layers, Own, Parts, Payload};
use super::registry::{Entry, Registry};
use super::request::Peer;
use super::response::Response;
use crate::error::{PayloadSide, encode_status};
use crate::ids::IdMap;
use crate::inbox::ReadSize;
use crate::outbox::Outbox;

/// What a connection's read loop and its handlers share.
#[derive(Debug)]
pub(crate) struct ConnShared {
    pub(crate) outbox: Outbox,
    pub(crate) codec: FrameCodec,
    pub(crate) config: Arc<ServerConfig>,
    /// Who is at the other end.
    pub(crate) peer: Arc<Peer>,
    /// The server's own layers.
    pub(crate) own: Own,
    /// Calls in flight, by request id: dropping the sender cancels the handler.
    calls: Mutex<IdMap<u64, oneshot::Sender<()>>>,
    in_flight: AtomicUsize,
    /// Notified when the last call in flight finishes.
    idle: Notify,
    /// What the client and the server agreed on compression.
    pub(crate) compression: super::compression::Negotiated,
    /// The streams open on the connection (protocol 1.1), by request id.
    streams: Mutex<IdMap<u64, super::stream::Open>>,
}

impl ConnShared {
    fn calls(&self) -> MutexGuard<'_, IdMap<u64, oneshot::Sender<()>>> {
        crate::sync::lock(&self.calls)
    }

    pub(crate) fn streams(&self) -> MutexGuard<'_, IdMap<u64, super::stream::Open>> {
        crate::sync::lock(&self.streams)
    }

    /// The connection's frame limits.
    pub(crate) fn codec_config(&self) -> &rpc_codec::Config {
        self.codec.config()
    }

    /// Stream `id` broke a rule (its credit, say): its handler stops and the client hears why; the connection
    /// and its other calls go on.
    pub(crate) fn fail_stream(&self, id: u64, status: Status, message: &str) {
        self.cancel(id);
        self.send_error(id, status, message);
    }

    /// Records a call about to start; its handler stops when the returned receiver fires.
    pub(crate) fn register(&self, id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.calls().insert(id, tx);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        rx
    }

    /// A handler ended.
    pub(crate) fn finish(&self, id: u64) {
        self.calls().remove(&id);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
    }

    fn cancel(&self, id: u64) {
        if let Some(tx) = self.calls().remove(&id) {
            let _ = tx.send(());
        }
        super::stream::cancelled(self, id);
    }

    /// Stops every handler still running.
    fn cancel_all(&self) {
        let all: Vec<_> = self.calls().drain().collect();
        for (_, tx) in all {
            let _ = tx.send(());
        }
        super::stream::close_all(self);
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Queues `response` as the answer to call `id` (the caller has waited for room).
    pub(crate) fn send_response(&self, id: u64, response: &Response) {
        let codec = &self.codec;
        let sent = match self.compression.plan() {
            Some(plan) if !response.frames_itself() => self.push_planned(id, response, &plan),
            _ => self
                .outbox
                .push(|state| response.encode(codec, id, &mut state.buf)),
        };
        match sent {
            Ok(Ok(true)) | Err(_) => {}
            Ok(Ok(false)) => {
                let message = response.message().unwrap_or_default();
                let _ = self.outbox.push(|state| {
                    let after = response.retry_after();
                    self.encode_error(state, id, response.status(), message, after)
                });
            }
            Ok(Err(e)) => {
                let status = encode_status(PayloadSide::Response, &e);
                let message = match status {
                    Status::ResourceExhausted => format!("the response is too large: {e}"),
                    _ => format!("the response does not encode: {e}"),
                };
                self.send_error(id, status, &message);
            }
        }
    }

    /// Queues `response` to call `id` as a compression `plan` says (protocol 1.1): out of the way of the calls of
    /// connections that negotiated nothing.
    #[cold]
    #[inline(never)]
    fn push_planned(
        &self,
        id: u64,
        response: &Response,
        plan: &super::compression::Plan,
    ) -> Result<Result<bool, rpc_codec::EncodeError>, crate::error::RpcError> {
        let codec = &self.codec;
        // Encoded and compressed before the outbox's lock is taken: the other answers do not wait for it.
        let planned = match response.planned(id, plan) {
            Ok(Some(planned)) => planned,
            Ok(None) => return Ok(Ok(false)),
            Err(e) => return Ok(Err(e)),
        };
        let (header, metadata, payload) = &planned;
        let sent = self.outbox.push(|state| {
            codec
                .encode_bytes(header, metadata, payload, &mut state.buf)
                .map(|()| true)
        });
        if plan.announce.is_some() && matches!(sent, Ok(Ok(true))) {
            self.compression.announced();
        }
        sent
    }

    /// Queues an `Error` frame as the answer to call `id`, without waiting for room: a handler's answer or a
    /// refusal of the read loop, which takes no new request while the queue is full.
    pub(crate) fn send_error(&self, id: u64, status: Status, message: &str) {
        let _ = self
            .outbox
            .push(|state| self.encode_error(state, id, status, message, None));
    }

    /// Appends an `Error` frame, with [`crate::RETRY_AFTER`] in its metadata if the answer asks the caller to
    /// wait before sending the call again.
    fn encode_error(
        &self,
        state: &mut crate::outbox::OutState,
        id: u64,
        status: Status,
        message: &str,
        retry_after: Option<Duration>,
    ) {
        // The message is ours and short; cut it anyway rather than lose the frame.
        let text = &message.as_bytes()[..message.len().min(4096)];
        let metadata = match retry_after {
            None => Metadata::new(),
            Some(after) => {
                let ms = after.as_millis().to_string();
                Metadata::from_pairs([(crate::RETRY_AFTER, ms.as_str())]).unwrap_or_default()
            }
        };
        let _ =
            self.codec
                .encode_bytes(&Header::error(id, status), &metadata, text, &mut state.buf);
    }

    fn send(&self, header: Header, payload: &[u8]) {
        let _ = self.outbox.push(|state| {
            self.codec
                .encode_bytes(&header, &Metadata::new(), payload, &mut state.buf)
        });
    }
}

/// Cancels every handler and stops the writer when the connection's task ends, also when it is aborted.
struct Teardown {
    conn: Arc<ConnShared>,
    writer: tokio::task::AbortHandle,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.conn.cancel_all();
        self.conn.outbox.close();
        // After a normal end the writer has already flushed and returned; this only stops one still blocked.
        self.writer.abort();
    }
}

/// What the read loop knows of the requests it has seen.
struct ReadState {
    /// The highest request id accepted (for go-away).
    last_id: u64,
    draining: bool,
    /// When the bytes being processed arrived: deadlines count from it. Read once per batch.
    arrived: Option<Instant>,
    /// Frames (and refusals) that began in the batch being processed.
    frames: usize,
    /// The peer did not read its answers within the write timeout: the connection is cut at once.
    stalled: bool,
}

/// An accepted connection: who is at the other end, and the connection's place among the server's.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) peer: Arc<Peer>,
    /// Established at the first frame; given back when the connection ends.
    pub(crate) slot: Slot,
}

/// Serves one connection until the peer leaves, a protocol error, or the end of a drain.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<R, W, L>(
    mut reader: R,
    writer: W,
    accepted: Accepted,
    registry: Arc<Registry>,
    (own, mut stack): (Own, L::Stack),
    config: Arc<ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
    L: Layers,
{
    let conn = Arc::new(ConnShared {
        outbox: Outbox::new(config.max_pending_output, Box::pin(writer)),
        codec: FrameCodec::new(config.codec),
        config: Arc::clone(&config),
        peer: accepted.peer,
        own,
        calls: Mutex::new(IdMap::default()),
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        compression: super::compression::Negotiated::new(config.compression.clone()),
        streams: Mutex::new(IdMap::default()),
    });
    let writer = {
        let conn = Arc::clone(&conn);
        tokio::spawn(async move { conn.outbox.run_writer().await })
    };
    // However this task ends (returning, or aborted with the server), handlers stop and the socket closes.
    let _teardown = Teardown {
        conn: Arc::clone(&conn),
        writer: writer.abort_handle(),
    };
    let mut codec = FrameCodec::new(config.codec);
    let mut buf = ReadSize::first_buf();
    let mut size = ReadSize::new();
    let mut state = ReadState {
        last_id: 0,
        draining: false,
        arrived: None,
        frames: 0,
        stalled: false,
    };
    let mut slot = accepted.slot;
    let mut drain_until: Option<Instant> = None;
    // Resolves once the server starts to shut down. Made once, so that each pass of the loop polls a waiter that
    // is already registered instead of registering a new one (a measurable share of a small call).
    let shutting_down = async {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::pin!(shutting_down);
    // Idle and slow-frame checks: one timer per connection, not one per read. It fires every quarter of the idle
    // timeout, and at the frame timeout of a frame under way if that comes first.
    let check_every = config
        .idle_timeout
        .div_f64(4.0)
        .max(Duration::from_millis(1));
    let mut last_read = Instant::now();
    // When the first byte of the frame under way arrived (the read that brought it).
    let mut frame_since: Option<Instant> = None;
    let check = tokio::time::sleep(check_every);
    tokio::pin!(check);
    loop {
        if state.draining && conn.in_flight() == 0 {
            break;
        }
        let idle = conn.idle.notified();
        tokio::select! {
            // Reads first; the other branches fire once per connection at most, or once per check period.
            biased;
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => {
                        // The peer left: nobody can take answers any more.
                        break;
                    }
                    Ok(n) => {
                        size.note(n);
                        let now = Instant::now();
                        last_read = now;
                        state.arrived = Some(now);
                        let batch = Batch { conn: &conn, registry: &registry, config: &config };
                        if !process::<L>(batch, &mut stack, &mut codec, &mut buf, &mut state).await {
                            break;
                        }
                        // The first frame ends the handshake: the connection leaves the handshaking budget (or
                        // ends here, if it was dropped to make room meanwhile).
                        if !slot.is_established() && state.frames > 0 && !slot.establish() {
                            break;
                        }
                        // A frame is timed from the read that brought its first bytes.
                        let since = match (codec.mid_frame(&buf), state.frames > 0) {
                            (false, _) => None,
                            (true, true) => Some(now),
                            (true, false) => frame_since.or(Some(now)),
                        };
                        if since != frame_since {
                            frame_since = since;
                            if let Some(since) = since
                                && since + config.frame_timeout < check.deadline()
                            {
                                check.as_mut().reset(since + config.frame_timeout);
                            }
                        }
                    }
                }
                size.make_room(&codec, &mut buf);
            }
            () = &mut shutting_down, if !state.draining => {
                state.draining = true;
                drain_until = Some(Instant::now() + config.drain_timeout);
                let reason = b"server shutting down";
                conn.send(Header::go_away(state.last_id, Status::Ok), reason);
            }
            () = idle, if state.draining => {}
            () = sleep_until(drain_until), if drain_until.is_some() => break,
            () = &mut check, if !state.draining => {
                let now = Instant::now();
                if let Some(since) = frame_since
                    && now.duration_since(since) >= config.frame_timeout
                {
                    let message = format!(
                        "a frame took longer than {:?} to arrive (frame_timeout); closing",
                        config.frame_timeout
                    );
                    conn.send_error(0, Status::ResourceExhausted, &message);
                    break;
                }
                if conn.in_flight() == 0 && now.duration_since(last_read) >= config.idle_timeout {
                    let reason = format!(
                        "connection idle for {:?} (idle_timeout); reconnect to call again",
                        config.idle_timeout
                    );
                    conn.send(Header::go_away(state.last_id, Status::Ok), reason.as_bytes());
                    break;
                }
                let next = now + check_every;
                let next = frame_since.map_or(next, |since| next.min(since + config.frame_timeout));
                check.as_mut().reset(next);
            }
        }
    }
    conn.cancel_all();
    conn.outbox.close();
    // What is queued (a go-away, the reason of a close) leaves if the peer reads it within the write timeout; a
    // peer that stopped reading is cut at once, and the writer stopped with the connection (see `Teardown`).
    if !state.stalled {
        let _ = tokio::time::timeout(config.write_timeout, writer).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the frames of one read are handled with.
struct Batch<'a> {
    conn: &'a Arc<ConnShared>,
    registry: &'a Registry,
    config: &'a ServerConfig,
}

/// Handles every whole frame in `buf`, passing each request through the server's layers; returns `false` if
/// the connection must close (a protocol error).
async fn process<L: Layers>(
    batch: Batch<'_>,
    stack: &mut L::Stack,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    state: &mut ReadState,
) -> bool {
    let Batch {
        conn,
        registry,
        config,
    } = batch;
    state.frames = 0;
    // Answers and refusals queued while the batch is processed leave with one write at its end.
    conn.outbox.begin_batch();
    let mut at = 0;
    let keep = loop {
        let (used, item) = match codec.parse(&buf[at..]) {
            Ok(step) => step,
            Err(e) => {
                // The stream is not protocol v1: say why, then close (docs/PROTOCOL.md section 8).
                let status = match e {
                    rpc_codec::FrameError::UnsupportedVersion { .. }
                    | rpc_codec::FrameError::UnknownKind { .. } => Status::Unimplemented,
                    _ => Status::InvalidArgument,
                };
                conn.send_error(0, status, &e.to_string());
                break false;
            }
        };
        // A request for tower layers, which take its payload cut from the buffer.
        let owned = match item {
            None if used == 0 => break true,
            None => None,
            Some(ReceivedRef::Refused(r)) if r.header.kind == Kind::Request => {
                state.frames += 1;
                state.last_id = state.last_id.max(r.header.request_id);
                let message = format!("request refused: {}", r.reason);
                conn.send_error(r.header.request_id, Status::ResourceExhausted, &message);
                None
            }
            // Only a request expects an answer; any other refused frame is dropped.
            Some(ReceivedRef::Refused(_)) => {
                state.frames += 1;
                None
            }
            Some(ReceivedRef::Frame(frame)) => {
                if matches!(frame.header().kind, Kind::Request | Kind::OneWay)
                    && conn.outbox.is_full()
                {
                    // Answers wait for the peer to read: take no new request until there is room, so that a
                    // batch of requests cannot queue more than one answer past the limit.
                    conn.outbox.end_batch();
                    if !wait_for_room(conn, config).await {
                        state.stalled = true;
                        break false;
                    }
                    conn.outbox.begin_batch();
                    // The frame is parsed again from the same place.
                    continue;
                }
                state.frames += 1;
                match handle(conn, registry, &frame, state) {
                    Err(message) => {
                        conn.send_error(0, Status::InvalidArgument, &message);
                        break false;
                    }
                    Ok(None) => None,
                    // A compressed payload: decompressed into a buffer of its own (protocol 1.1).
                    Ok(Some(admitted)) if frame.header().flags.encoding().is_some() => {
                        inflated(conn, &frame, admitted, codec.config())
                    }
                    Ok(Some(admitted)) if !L::OWNED => {
                        let head = admitted.head(&frame);
                        let payload = Payload::Borrowed(frame.payload);
                        start::<L>(conn, stack, config, head, &*admitted.entry.service, payload);
                        None
                    }
                    Ok(Some(admitted)) => {
                        // Where the payload lies in `buf`, to share it once the frame leaves the buffer.
                        let from = frame.payload.as_ptr() as usize - buf.as_ptr() as usize;
                        let payload_at = from..from + frame.payload.len();
                        Some((
                            admitted.head(&frame),
                            admitted.entry,
                            Source::At(payload_at),
                        ))
                    }
                }
            }
        };
        at += used;
        let Some((head, entry, source)) = owned else {
            continue;
        };
        let payload = match source {
            Source::At(payload_at) => {
                // The frames read so far leave the buffer; the payload is shared with the request, not copied.
                let read = buf.split_to(at).freeze();
                at = 0;
                let payload = Payload::Shared(read.slice(payload_at));
                drop(read);
                payload
            }
            Source::Inflated(inflated) => Payload::Shared(inflated),
        };
        ready::<L>(conn, stack).await;
        start::<L>(conn, stack, config, head, &*entry.service, payload);
    };
    buf.advance(at);
    // Refusals and answers of handlers that finished at once were queued without waiting for room; before
    // reading more, wait for it.
    let room = conn.outbox.end_batch();
    if keep && !room && !wait_for_room(conn, config).await {
        state.stalled = true;
        return false;
    }
    keep
}

/// A request whose payload is compressed (protocol 1.1): its head and payload, decompressed within `limits`; or
/// `None`, the request refused.
#[cold]
#[inline(never)]
fn inflated<'r>(
    conn: &ConnShared,
    frame: &rpc_codec::FrameRef<'_>,
    admitted: Admitted<'r>,
    limits: &rpc_codec::Config,
) -> Option<(Head, &'r Entry, Source)> {
    let h = frame.header();
    let encoding = h.flags.encoding()?;
    match conn.compression.inflate(encoding, frame.payload, limits) {
        Ok(payload) => Some((
            admitted.head(frame),
            admitted.entry,
            Source::Inflated(payload),
        )),
        Err((status, message)) => {
            if !admitted.one_way {
                conn.send_error(h.request_id, status, &message);
            }
            None
        }
    }
}

/// Where a request's payload is: in the read buffer, or decompressed into a buffer of its own.
enum Source {
    At(std::ops::Range<usize>),
    Inflated(bytes::Bytes),
}

/// Starts the call of `head`: through the server's own layers, which may refuse it, then the user's and its
/// service's handler.
fn start<L: Layers>(
    conn: &Arc<ConnShared>,
    stack: &mut L::Stack,
    config: &ServerConfig,
    mut head: Head,
    service: &dyn super::Service,
    payload: Payload<'_>,
) {
    head.in_flight = conn.in_flight();
    let (started, passed) = conn.own.start(&mut head);
    let serving = Serving {
        id: head.request_id,
        method: head.method,
        one_way: head.one_way,
        deadline: head.deadline,
        inline: config.inline_handlers,
    };
    if let Err(refusal) = passed {
        conn.own.end(started, || refusal.ended());
        if !serving.one_way {
            conn.send_response(serving.id, &refusal);
        }
        return;
    }
    let parts = Parts {
        head,
        peer: Arc::clone(&conn.peer),
        service,
        payload,
    };
    handler::serve(conn, serving, started, L::call(stack, parts));
}

/// Waits until the user's layers take a call (a layer may hold calls back: a concurrency limit, say); what was
/// queued meanwhile is written while it waits.
async fn ready<L: Layers>(conn: &ConnShared, stack: &mut L::Stack) {
    let mut waited = false;
    std::future::poll_fn(|cx| match L::poll_ready(stack, cx) {
        Poll::Pending if !waited => {
            waited = true;
            conn.outbox.end_batch();
            Poll::Pending
        }
        other => other,
    })
    .await;
    if waited {
        conn.outbox.begin_batch();
    }
}

/// Waits for room in the outbox, at most `write_timeout`; `false` if the peer did not read in that time (the
/// connection is then closed).
async fn wait_for_room(conn: &ConnShared, config: &ServerConfig) -> bool {
    tokio::time::timeout(config.write_timeout, conn.outbox.wait_for_room())
        .await
        .is_ok()
}

/// A request the read loop admitted: its method's entry, and what its [`Head`] needs beyond the frame. Small,
/// so that it comes back in registers; the head is built where it is used.
struct Admitted<'r> {
    entry: &'r Entry,
    arrived: Instant,
    one_way: bool,
    /// The request carried an offer of compression, which is the connection's, not the handler's.
    offer: bool,
    /// The stream the request opened (protocol 1.1).
    stream: Option<Arc<super::stream::Opened>>,
}

impl Admitted<'_> {
    /// The head of the call of `frame`.
    #[inline]
    fn head(&self, frame: &rpc_codec::FrameRef<'_>) -> Head {
        let h = frame.header();
        Head {
            request_id: h.request_id,
            method: self.entry.method,
            metadata: match self.offer {
                false => frame.metadata.to_metadata(),
                true => super::compression::without_offer(&frame.metadata),
            },
            arrived: self.arrived,
            deadline: h.deadline().map(|budget| self.arrived + budget),
            one_way: self.one_way,
            json: h.flags.contains(rpc_codec::Flags::JSON),
            in_flight: 0,
            extras: self.stream.as_ref().map(|stream| {
                Box::new(crate::context::Extras {
                    stream: Some(Arc::clone(stream)),
                    ..Default::default()
                })
            }),
        }
    }
}

/// Handles one frame: a request comes back to be served, with its service; an `Err` is a protocol violation
/// that closes the connection.
fn handle<'r>(
    conn: &Arc<ConnShared>,
    registry: &'r Registry,
    frame: &rpc_codec::FrameRef<'_>,
    state: &mut ReadState,
) -> Result<Option<Admitted<'r>>, String> {
    let h = frame.header();
    match h.kind {
        Kind::Request | Kind::OneWay => {
            let one_way = h.kind == Kind::OneWay;
            if !one_way {
                if h.request_id <= state.last_id {
                    return Err(format!(
                        "request id {} does not follow {} (ids must increase)",
                        h.request_id, state.last_id
                    ));
                }
                state.last_id = h.request_id;
            }
            let Some(entry) = registry.method(h.method_id) else {
                if !one_way {
                    let message = format!("no method with id {:#010x} on this server", h.method_id);
                    conn.send_error(h.request_id, Status::Unimplemented, &message);
                }
                return Ok(None);
            };
            if h.flags.contains(rpc_codec::Flags::JSON)
                && let Some(message) = super::json::refusal(entry)
            {
                if !one_way {
                    conn.send_error(h.request_id, Status::Unimplemented, &message);
                }
                return Ok(None);
            }
            let stream = match (entry.stream, h.flags.contains(rpc_codec::Flags::STREAM)) {
                (None, false) => None,
                (kind, _) => match super::stream::admit(conn, frame, kind, entry.method) {
                    Ok(stream) if !one_way => stream,
                    Ok(_) => return Ok(None),
                    Err((status, message)) => {
                        if !one_way {
                            conn.send_error(h.request_id, status, &message);
                        }
                        return Ok(None);
                    }
                },
            };
            let offer = conn.compression.read_offer(&frame.metadata);
            let arrived = *state.arrived.get_or_insert_with(Instant::now);
            Ok(Some(Admitted {
                entry,
                arrived,
                one_way,
                offer,
                stream,
            }))
        }
        Kind::Cancel => {
            conn.cancel(h.request_id);
            Ok(None)
        }
        Kind::Ping => {
            conn.send(Header::pong(h.request_id), &[]);
            Ok(None)
        }
        // The client leaves; its calls in flight still get their answers.
        Kind::GoAway => Ok(None),
        // A server calls nobody: stray answers and pongs are ignored.
        Kind::Response | Kind::Error | Kind::Pong => Ok(None),
        // The client's side of a stream (protocol 1.1).
        Kind::Item | Kind::End | Kind::Credit => {
            super::stream::route(conn, frame);
            Ok(None)
        }
    }
}
