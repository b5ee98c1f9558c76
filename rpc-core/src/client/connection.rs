//! One client connection: requests go out through the outbox, a reader task matches responses to the calls
//! waiting for them by request id, a deadline task fails the calls whose time is up (see `calls.rs`), and when
//! the connection ends every call still waiting fails at once with `Unavailable`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rpc_codec::{FrameCodec, Header, Kind, Metadata, Received, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::calls::Calls;
use crate::error::{PayloadSide, RpcError, encode_status, peer_text};
use crate::inbox::ReadSize;
use crate::method::MethodInfo;
use crate::outbox::Outbox;
use crate::payload::Payload;
use crate::transport::Open;

/// How a call ended, as the reader saw it.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The method's value (a `Response` without flags).
    Value(Bytes),
    /// The application's error value (a `Response` with `APP_ERROR`).
    AppError(Bytes),
    /// An `Error` frame, or the connection ending.
    Failed(RpcError),
    /// The call's deadline passed (the caller turns this into its error, naming the method).
    DeadlineExceeded,
}

impl Reply {
    /// The payload of a response, or the error.
    pub(crate) fn into_result(self) -> Result<Reply, RpcError> {
        match self {
            Reply::Failed(e) => Err(e),
            ok => Ok(ok),
        }
    }
}

/// The message of the `Unimplemented` answer to a request from the server: a client serves no methods.
pub(crate) const SERVES_NOTHING: &str = "this peer serves no methods";

/// How long a failed write, or a request that found the connection closing, waits for the reader to say why the
/// connection ended: 1 s. A write fails when the server has gone, and what it said last (a TLS alert refusing the
/// handshake, an `Error` frame) is still there for the reader to read, which tells more than `Broken pipe`.
const CLOSE_REASON_WAIT: Duration = Duration::from_secs(1);

/// What the connection's tasks and its callers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) outbox: Outbox,
    codec: FrameCodec,
    calls: Mutex<Calls>,
    /// Wakes the deadline task when a call's deadline comes before the one it sleeps until.
    rearm: Notify,
    /// Set once the connection is closed or draining: no new calls go on it.
    retired: AtomicBool,
    /// Why the connection closed, once it has (the first reason given wins).
    closed: OnceLock<String>,
    /// Notified when `closed` is set.
    closed_signal: Notify,
    /// Set when the server sent a `GoAway` with a status other than `Ok`: it refuses this connection (it is at
    /// its connection limit, say). The next call counts it as a failed connection attempt.
    refusal: OnceLock<RpcError>,
    /// The negotiation of compression, when the client compresses (protocol 1.1).
    compression: Option<super::compression::Negotiation>,
    /// The streams open on the connection (protocol 1.1).
    pub(crate) streams: super::stream::Streams,
}

impl Shared {
    fn calls(&self) -> MutexGuard<'_, Calls> {
        crate::sync::lock(&self.calls)
    }

    /// Fails every call still waiting, and accepts no new ones.
    fn close(&self, reason: &str) {
        self.retired.store(true, Ordering::Release);
        let _ = self.closed.set(reason.to_owned());
        self.closed_signal.notify_waiters();
        self.outbox.close();
        let waiting = self.calls().drain();
        for tx in waiting {
            let _ = tx.send(Reply::Failed(self.closed_error()));
        }
        self.streams.fail_all(|| self.closed_error());
    }

    /// The error of a call that the closing of this connection ended, with the reason if it is known.
    fn closed_error(&self) -> RpcError {
        match self.closed.get() {
            Some(reason) => RpcError::unavailable(format!("connection closed: {reason}")),
            None => RpcError::unavailable("connection closed"),
        }
    }

    /// Waits (at most [`CLOSE_REASON_WAIT`]) until the connection has closed with a reason, and gives the error
    /// that says it: a write that failed, or a request that found the queue closed, learns why from the reader.
    async fn closing_error(&self) -> RpcError {
        let closed = self.closed_signal.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if self.closed.get().is_none() {
            let _ = tokio::time::timeout(CLOSE_REASON_WAIT, closed).await;
        }
        self.closed_error()
    }

    /// Hands each reply of a read batch to its caller, under one lock, and notes how many callers it woke.
    fn deliver(&self, replies: &mut Vec<(u64, Reply)>) {
        let mut calls = self.calls();
        let mut woke = 0;
        for (id, reply) in replies.drain(..) {
            if let Some(tx) = calls.take(id)
                && tx.send(reply).is_ok()
            {
                woke += 1;
            }
        }
        // Those callers are about to make their next calls: see `Calls::register`.
        calls.woke(woke);
    }

    /// Queues an answer the server asked for (a pong, a refusal of its request), unless requests already fill
    /// the queue: a server that sends pings or requests and does not read cannot make this client hold more.
    fn answer(&self, header: Header, payload: &[u8]) {
        if self.outbox.is_full() {
            return;
        }
        let _ = self.outbox.push(|state| {
            self.codec
                .encode_bytes(&header, &Metadata::new(), payload, &mut state.buf)
        });
    }

    /// Tells the server to stop call `id`.
    pub(crate) fn send_cancel(&self, id: u64) {
        let _ = self.outbox.push(|state| {
            self.codec
                .encode_bytes(&Header::cancel(id), &Metadata::new(), &[], &mut state.buf)
        });
    }
}

/// A live connection; dropping the last handle stops its tasks.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    tasks: [AbortHandle; 3],
}

impl Shared {
    /// The connection's frame codec.
    pub(crate) fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    /// A response's metadata, for what it answers of the client's offer of compression.
    pub(crate) fn heard(&self, metadata: &Metadata) {
        if let Some(negotiation) = &self.compression {
            negotiation.heard(metadata);
        }
    }

    /// The error of a request that found the connection closing.
    pub(crate) async fn closing(&self) -> RpcError {
        self.closing_error().await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close("client dropped");
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Connection {
    /// Starts the reader and writer tasks over the two halves of a transport; `open` lives as long as the
    /// reader (the connection).
    pub(crate) fn start<R, W>(
        reader: R,
        writer: W,
        codec: FrameCodec,
        max_pending_output: usize,
        compression: &crate::CompressionConfig,
        open: Open,
    ) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            outbox: Outbox::new(max_pending_output, Box::pin(writer)),
            codec: codec.clone(),
            calls: Mutex::new(Calls::default()),
            rearm: Notify::new(),
            retired: AtomicBool::new(false),
            closed: OnceLock::new(),
            closed_signal: Notify::new(),
            refusal: OnceLock::new(),
            compression: super::compression::Negotiation::of(compression),
            streams: super::stream::Streams::default(),
        });
        let read = tokio::spawn(read_loop(Arc::clone(&shared), reader, codec, open));
        let write = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                if let Err(e) = shared.outbox.run_writer().await {
                    // The reader closes the connection with a better reason, if it has one.
                    let _ = shared.closing_error().await;
                    shared.close(&format!("write failed: {e}"));
                }
            })
        };
        let deadlines = tokio::spawn(deadline_loop(Arc::clone(&shared)));
        Connection {
            shared,
            tasks: [
                read.abort_handle(),
                write.abort_handle(),
                deadlines.abort_handle(),
            ],
        }
    }

    /// Closes the connection for `reason`: the calls in flight on it fail at once with `Unavailable` and that
    /// reason, and no new call goes on it.
    pub(crate) fn close(&self, reason: &str) {
        self.shared.close(reason);
    }

    /// Whether new calls may go on this connection.
    pub(crate) fn is_usable(&self) -> bool {
        !self.shared.retired.load(Ordering::Acquire)
    }

    /// Why the server refused this connection (a `GoAway` with a status other than `Ok`), if it did.
    pub(crate) fn refusal(&self) -> Option<&RpcError> {
        self.shared.refusal.get()
    }

    /// The error of a call whose connection closed under it, saying why if the reader knows.
    pub(crate) fn closed_error(&self) -> RpcError {
        self.shared.closed_error()
    }

    /// Encodes a request for `method` that fails at `deadline`, `budget` from now, and registers the call;
    /// returns its id and where its reply will come. A request that finds the queue over its limit waits for
    /// room until `deadline`, and then fails unsent.
    pub(crate) async fn send<P: Payload + ?Sized>(
        &self,
        method: &MethodInfo,
        args: &P,
        metadata: &Metadata,
        deadline: Instant,
        budget: Duration,
    ) -> Result<(u64, oneshot::Receiver<Reply>), RpcError> {
        let (tx, rx) = oneshot::channel();
        let shared = &*self.shared;
        // With compression negotiated (protocol 1.1): the offer in the metadata, a large payload compressed.
        let planned = match &shared.compression {
            None => None,
            Some(negotiation) => planned(negotiation, args, metadata)?,
        };
        let mut encode = |state: &mut crate::outbox::OutState| {
            let id = state.last_request_id + 1;
            let header = Header::request(id, method.id).with_deadline(budget);
            let encoded = match &planned {
                None => args.encode_frame(&shared.codec, &header, metadata, &mut state.buf),
                Some((flags, metadata, payload)) => {
                    let header = Header {
                        flags: flags.with(args.flags()),
                        ..header
                    };
                    shared
                        .codec
                        .encode_bytes(&header, metadata, payload, &mut state.buf)
                }
            };
            encoded.map(|()| {
                state.last_request_id = id;
                // Registered before the frame can leave, so the reply always finds its caller.
                (id, shared.calls().register(id, tx, deadline))
            })
        };
        let (encoded, first) = loop {
            let Ok(pushed) = shared.outbox.try_push_quiet(encode) else {
                // The connection closed before the request was queued: it was never sent.
                return Err(shared.closing_error().await.unprocessed());
            };
            match pushed {
                Ok(pushed) => break pushed,
                Err(back) => {
                    // Over the queue's limit: wait for the writer to drain it, until the call's deadline.
                    encode = back;
                    let room = shared.outbox.wait_for_room();
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        let message = format!(
                            "{method} did not complete within its deadline: its request waited for room \
                             in the connection's queue (max_pending_output) and was not sent"
                        );
                        return Err(RpcError::not_processed(Status::DeadlineExceeded, message));
                    }
                }
            }
        };
        match encoded {
            Ok((id, registered)) => {
                if registered.rearm {
                    shared.rearm.notify_one();
                }
                if registered.alone {
                    // No other call is in flight, so no reply is about to wake another caller with a request to
                    // add: send now, without the hand-off to the writer task.
                    shared.outbox.flush_now();
                } else if first {
                    // Other callers may be queueing too; the writer task sends them all with one write.
                    shared.outbox.wake_writer();
                }
                Ok((id, rx))
            }
            Err(e) => {
                if first {
                    shared.outbox.wake_writer();
                }
                Err(encode_error(e).unprocessed())
            }
        }
    }

    /// The caller stopped waiting for call `id`: forget it and tell the server to stop its handler.
    pub(crate) fn cancel(&self, id: u64) {
        let shared = &*self.shared;
        if shared.calls().take(id).is_some() {
            shared.send_cancel(id);
        }
    }
}

/// Fails calls as their deadlines pass, sleeping until the soonest one (or until told of a sooner one).
async fn deadline_loop(shared: Arc<Shared>) {
    loop {
        let (expired, next) = shared.calls().expire(Instant::now());
        for (id, tx) in expired {
            let _ = tx.send(Reply::DeadlineExceeded);
            shared.send_cancel(id);
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = shared.rearm.notified() => {}
                }
            }
            None => shared.rearm.notified().await,
        }
    }
}

fn encode_error(e: rpc_codec::EncodeError) -> RpcError {
    RpcError::new(
        encode_status(PayloadSide::Request, &e),
        format!("request not sent: {e}"),
    )
}

/// A request as the negotiation's plan writes it: its flags, its metadata (with the offer, if it carries it)
/// and its payload (compressed, if it gains); `None` when it is written as protocol 1.0 writes it.
#[cold]
#[inline(never)]
fn planned<P: Payload + ?Sized>(
    negotiation: &super::compression::Negotiation,
    args: &P,
    metadata: &Metadata,
) -> Result<Option<(rpc_codec::Flags, Metadata, Bytes)>, RpcError> {
    let Some(plan) = negotiation.plan() else {
        return Ok(None);
    };
    let metadata = match &plan.offer {
        Some(offer) => super::compression::with_offer(metadata, offer)?,
        None => metadata.clone(),
    };
    let payload = args.to_bytes().map_err(|e| {
        let status = crate::error::payload_status(PayloadSide::Request, &e);
        RpcError::not_processed(status, format!("request not sent: {e}"))
    })?;
    let squeezed = plan.squeeze.and_then(|(encoding, threshold)| {
        crate::compression::squeeze(encoding, threshold, &payload)
    });
    Ok(Some(match squeezed {
        Some((flags, packed)) => (flags, metadata, Bytes::from(packed)),
        None => (rpc_codec::Flags::EMPTY, metadata, payload),
    }))
}

/// Reads frames until the connection ends, then fails whatever is still waiting.
async fn read_loop<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    mut reader: R,
    mut codec: FrameCodec,
    open: Open,
) {
    // The connection counts as open while the reader runs (it ends, or is aborted, with the connection).
    let _open = open;
    let mut buf = ReadSize::first_buf();
    let mut size = ReadSize::new();
    // The replies of one read, delivered together; and its streams' items.
    let mut replies = Vec::new();
    let mut items = super::stream::Delivery::default();
    let reason = loop {
        size.make_room(&codec, &mut buf);
        match reader.read_buf(&mut buf).await {
            Ok(0) => {
                break match codec.decode_eof(&mut buf) {
                    Ok(_) => String::from("closed by the server"),
                    Err(e) => e.to_string(),
                };
            }
            Ok(n) => size.note(n),
            Err(e) => break format!("read failed: {e}"),
        }
        let stop = loop {
            match codec.decode(&mut buf) {
                Ok(Some(Received::Frame(frame))) if frame.header.kind == Kind::Item => {
                    super::stream::item(&shared, frame, &mut items);
                }
                Ok(Some(Received::Frame(frame))) => {
                    // What ends a stream comes after its items.
                    items.flush(&shared);
                    handle(&shared, frame, &mut replies);
                }
                Ok(Some(Received::Refused(r))) => {
                    let error = RpcError::new(
                        Status::ResourceExhausted,
                        format!("response refused: {}", r.reason),
                    );
                    // A refused item fails its stream: the stream would go on without it otherwise.
                    items.flush(&shared);
                    let id = r.header.request_id;
                    if let Err(error) = super::stream::fail(&shared, id, error) {
                        replies.push((id, Reply::Failed(error)));
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(format!("protocol error from the server: {e}")),
            }
        };
        items.flush(&shared);
        shared.deliver(&mut replies);
        if let Some(reason) = stop {
            break reason;
        }
    };
    shared.close(&reason);
}

/// Handles one frame. Replies to calls join `replies`, delivered together at the end of the read; a frame that
/// ends calls wholesale (a connection error, a go-away) first delivers the replies that came before it.
fn handle(shared: &Shared, frame: rpc_codec::Frame, replies: &mut Vec<(u64, Reply)>) {
    let h = frame.header;
    if shared.streams.any_open()
        && matches!(h.kind, Kind::Response | Kind::Error)
        && super::stream::route_end(shared, &frame)
    {
        return;
    }
    match h.kind {
        Kind::Item | Kind::End | Kind::Credit => super::stream::route(shared, frame),
        Kind::Response if shared.compression.is_some() || h.flags.encoding().is_some() => {
            replies.push((h.request_id, negotiated(shared, &frame)));
        }
        Kind::Response if h.flags.contains(rpc_codec::Flags::APP_ERROR) => {
            replies.push((h.request_id, Reply::AppError(frame.payload)));
        }
        Kind::Response => replies.push((h.request_id, Reply::Value(frame.payload))),
        Kind::Error if h.request_id == 0 => {
            shared.deliver(replies);
            shared.close(&format!(
                "the server reported {}: {}",
                h.status,
                peer_text(&frame.payload)
            ));
        }
        Kind::Error => {
            let error = RpcError::new(h.status, peer_text(&frame.payload));
            // A server answers `Unavailable` only for calls it did not process (docs/PROTOCOL.md section 6), and
            // asks for a call again later only if it did not process it (section 7.5).
            let retry_after = retry_after(&frame.metadata);
            let error = match retry_after {
                Some(after) => error.with_retry_after(after).unprocessed(),
                None if h.status == Status::Unavailable => error.unprocessed(),
                None => error,
            };
            replies.push((h.request_id, Reply::Failed(error)));
        }
        Kind::GoAway => {
            shared.deliver(replies);
            go_away(shared, h.request_id, h.status, &peer_text(&frame.payload));
        }
        Kind::Ping => shared.answer(Header::pong(h.request_id), b""),
        // A client serves no methods: a request gets `Unimplemented` under its own id (docs/PROTOCOL.md section
        // 6); a one-way call is dropped, as it expects no answer.
        Kind::Request => shared.answer(
            Header::error(h.request_id, Status::Unimplemented),
            SERVES_NOTHING.as_bytes(),
        ),
        // A cancel (there is nothing to cancel) and a stray pong are ignored.
        Kind::OneWay | Kind::Cancel | Kind::Pong => {}
    }
}

/// A response on a connection that compresses, or compressed: what it answers of the offer, and its payload
/// decompressed.
#[cold]
#[inline(never)]
fn negotiated(shared: &Shared, frame: &rpc_codec::Frame) -> Reply {
    let h = frame.header;
    if let Some(negotiation) = &shared.compression {
        negotiation.heard(&frame.metadata);
    }
    let payload = match h.flags.encoding() {
        None => Ok(frame.payload.clone()),
        Some(encoding) => {
            super::compression::inflate(encoding, &frame.payload, shared.codec.config())
        }
    };
    match payload {
        Ok(payload) if h.flags.contains(rpc_codec::Flags::APP_ERROR) => Reply::AppError(payload),
        Ok(payload) => Reply::Value(payload),
        Err(e) => Reply::Failed(e),
    }
}

/// The server drains (status `Ok`): calls above `last` were not processed (they fail as retryable), the rest
/// still complete, and new calls go to a new connection. With another status, the server refuses the connection
/// (it is at its connection limit, say): calls above `last` fail with that status and the server's reason, and
/// the next call counts the refusal as a failed connection attempt.
fn go_away(shared: &Shared, last: u64, status: Status, reason: &str) {
    shared.retired.store(true, Ordering::Release);
    let error = match status {
        Status::Ok => RpcError::unavailable(format!(
            "the server is draining ({reason}) and did not process this call"
        )),
        refused => {
            let error = RpcError::not_processed(
                refused,
                format!("the server refused the connection: {reason}"),
            );
            let _ = shared.refusal.set(error.clone());
            error
        }
    };
    let not_processed = shared.calls().take_above(last);
    for tx in not_processed {
        let _ = tx.send(Reply::Failed(error.clone().unprocessed()));
    }
    shared
        .streams
        .fail_above(last, || error.clone().unprocessed());
}

/// The wait an `Error` frame asks for ([`crate::RETRY_AFTER`]): decimal milliseconds, 1 to an hour (more counts
/// as an hour); anything else is ignored.
fn retry_after(metadata: &Metadata) -> Option<std::time::Duration> {
    if metadata.is_empty() {
        return None;
    }
    let text = metadata.get_str(crate::RETRY_AFTER)?;
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = text
        .parse::<u64>()
        .ok()?
        .min(u64::from(crate::error::MAX_RETRY_AFTER_MS));
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}
