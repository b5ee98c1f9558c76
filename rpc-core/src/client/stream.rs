//! The client's side of streams (protocol 1.1): [`Client::open_stream`] and [`Client::open_stream_sending`],
//! which the stubs of streaming methods call; the connection's open streams ([`Streams`]), and the routing of
//! the server's `Item`, `End`, `Credit`, `Response` and `Error` frames to them. A stream goes to one connection
//! (a balanced client's picks an instance as it opens) and skips the client's layers, which see one answer per
//! call; it has no deadline unless the caller sets one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rpc_codec::{Frame, Header, Kind as FrameKind, Metadata, PayloadCodec};
use serde::Serialize;
use tokio::time::Instant;

use super::connection::{Connection, Shared};
use super::{Client, Kind};
use crate::balance::CallInfo;
use crate::error::{PayloadSide, RpcError, peer_text};
use crate::ids::IdMap;
use crate::method::MethodInfo;
use crate::options::CallOptions;
use crate::payload::{Args, Payload};
use crate::stream::{
    Event, Inbound, ItemCodec, Link, Outbound, Source, Stream, Streaming, overrun, send_items,
};

/// One open stream, as its connection's reader finds it.
#[derive(Debug)]
struct Open {
    inbound: Arc<Inbound>,
    outbound: Arc<Outbound>,
}

impl Open {
    /// The stream is over: nothing more is sent, and its reader hears `event` last.
    fn end(self, event: Event) {
        self.outbound.close();
        self.inbound.close(event);
    }
}

/// The streams open on a connection.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    open: Mutex<IdMap<u64, Open>>,
    /// How many are open, read without the lock: a connection without streams checks nothing more.
    count: AtomicUsize,
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, IdMap<u64, Open>> {
        crate::sync::lock(&self.open)
    }

    /// Whether any stream is open.
    #[inline]
    pub(crate) fn any_open(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    fn insert(&self, id: u64, open: Open) {
        let mut streams = self.lock();
        streams.insert(id, open);
        self.count.store(streams.len(), Ordering::Release);
    }

    fn remove(&self, id: u64) -> Option<Open> {
        let mut streams = self.lock();
        let open = streams.remove(&id)?;
        self.count.store(streams.len(), Ordering::Release);
        Some(open)
    }

    fn inbound(&self, id: u64) -> Option<Arc<Inbound>> {
        self.lock().get(&id).map(|open| Arc::clone(&open.inbound))
    }

    fn outbound(&self, id: u64) -> Option<Arc<Outbound>> {
        self.lock().get(&id).map(|open| Arc::clone(&open.outbound))
    }

    /// Ends stream `id` with `event`, if it is open.
    fn end(&self, id: u64, event: Event) {
        if let Some(open) = self.remove(id) {
            open.end(event);
        }
    }

    /// Fails every stream: the connection closed.
    pub(crate) fn fail_all(&self, error: impl Fn() -> RpcError) {
        let all: Vec<Open> = {
            let mut streams = self.lock();
            self.count.store(0, Ordering::Release);
            streams.drain().map(|(_, open)| open).collect()
        };
        for open in all {
            open.end(Event::Failed(error()));
        }
    }

    /// Fails the streams above `last`: the server goes away without having processed them.
    pub(crate) fn fail_above(&self, last: u64, error: impl Fn() -> RpcError) {
        let above: Vec<Open> = {
            let mut streams = self.lock();
            let ids: Vec<u64> = streams.keys().copied().filter(|id| *id > last).collect();
            let above = ids.iter().filter_map(|id| streams.remove(id)).collect();
            self.count.store(streams.len(), Ordering::Release);
            above
        };
        for open in above {
            open.end(Event::Failed(error()));
        }
    }
}

/// The items of one read on their way to their streams: consecutive items of a stream are handed over together,
/// under one lock of the stream's queue (and one lookup of the stream).
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    id: u64,
    inbound: Option<Arc<Inbound>>,
    items: Vec<(bytes::Bytes, rpc_codec::Flags, u64)>,
}

impl Delivery {
    /// Hands over the items gathered, and forgets the stream (the read ends, or a frame of another kind comes,
    /// which must not pass them).
    pub(crate) fn flush(&mut self, shared: &Shared) {
        let Some(inbound) = self.inbound.take() else {
            return;
        };
        if let Err(refused) = inbound.items(&mut self.items) {
            // The stream fails; the server stops it, and the connection's other calls go on.
            let _ = fail(shared, self.id, overrun(self.id, &refused));
        }
    }
}

/// Gathers an `Item` of the server into `delivery` (an item of a stream no longer open is dropped).
pub(crate) fn item(shared: &Shared, frame: Frame, delivery: &mut Delivery) {
    let h = frame.header;
    if delivery.inbound.is_none() || delivery.id != h.request_id {
        delivery.flush(shared);
        delivery.id = h.request_id;
        delivery.inbound = shared.streams.inbound(h.request_id);
        if delivery.inbound.is_none() {
            return;
        }
    }
    // An item costs its payload as sent: a compressed one is charged its compressed length.
    let cost = crate::stream::cost(frame.payload.len());
    let payload = match h.flags.encoding() {
        None => frame.payload,
        Some(encoding) => {
            // Decompressed only within the credit: the items before it are counted first.
            delivery.flush(shared);
            let Some(inbound) = shared.streams.inbound(h.request_id) else {
                return;
            };
            let inflated = match inbound.has_credit() {
                true => {
                    super::compression::inflate(encoding, &frame.payload, shared.codec().config())
                }
                false => Err(overrun(
                    h.request_id,
                    &crate::stream::Refused::Overrun {
                        got: cost,
                        credit: 0,
                    },
                )),
            };
            match inflated {
                Ok(payload) => {
                    delivery.id = h.request_id;
                    delivery.inbound = Some(inbound);
                    payload
                }
                Err(error) => {
                    let _ = fail(shared, h.request_id, error);
                    return;
                }
            }
        }
    };
    delivery.items.push((payload, h.flags, cost));
}

/// Routes a stream frame of the server (`End`, `Credit`; an `Item` goes through a [`Delivery`]). Frames of a
/// stream no longer open are dropped.
pub(crate) fn route(shared: &Shared, frame: Frame) {
    let h = frame.header;
    match h.kind {
        FrameKind::Credit => {
            if let Some(outbound) = shared.streams.outbound(h.request_id) {
                let bytes = <[u8; 4]>::try_from(&frame.payload[..]).map_or(0, u32::from_le_bytes);
                outbound.grant(bytes);
            }
        }
        FrameKind::End => {
            shared.streams.end(h.request_id, Event::End);
        }
        _ => {}
    }
}

/// Fails stream `id` with `error` and tells the server to stop it; gives `error` back if no stream has the id.
pub(crate) fn fail(shared: &Shared, id: u64, error: RpcError) -> Result<(), RpcError> {
    let Some(open) = shared.streams.remove(id) else {
        return Err(error);
    };
    open.end(Event::Failed(error));
    shared.send_cancel(id);
    Ok(())
}

/// Ends the stream a `Response` (the one answer of a method that takes a stream) or an `Error` is for; `false`
/// if no stream has its id (it is a unary call's).
pub(crate) fn route_end(shared: &Shared, frame: &Frame) -> bool {
    let h = frame.header;
    let Some(open) = shared.streams.remove(h.request_id) else {
        return false;
    };
    let event = match h.kind {
        FrameKind::Error => Event::Failed(RpcError::new(h.status, peer_text(&frame.payload))),
        _ => {
            // A stream's answer may be the first to answer the client's offer of compression.
            shared.heard(&frame.metadata);
            let payload = match h.flags.encoding() {
                None => Ok(frame.payload.clone()),
                Some(encoding) => {
                    super::compression::inflate(encoding, &frame.payload, shared.codec().config())
                }
            };
            match payload {
                Ok(payload) => Event::Answer {
                    payload,
                    app_error: h.flags.contains(rpc_codec::Flags::APP_ERROR),
                },
                Err(e) => Event::Failed(e),
            }
        }
    };
    open.end(event);
    true
}

impl Link for Shared {
    fn grant(&self, id: u64, bytes: u32) {
        let _ = self.outbox.push(|state| {
            self.codec().encode_bytes(
                &Header::credit(id),
                &Metadata::new(),
                &bytes.to_le_bytes(),
                &mut state.buf,
            )
        });
    }

    fn abandon(&self, id: u64) {
        if let Some(open) = self.streams.remove(id) {
            open.outbound.close();
            self.send_cancel(id);
        }
    }
}

/// A stream as it opened on a connection.
struct Opened {
    conn: Arc<Connection>,
    id: u64,
    inbound: Arc<Inbound>,
    outbound: Arc<Outbound>,
    deadline: Option<Instant>,
}

impl Client {
    /// Opens a stream of `method` with `args` (encoded by `codec`), whose items (or, for a method that takes a
    /// stream, whose one answer) `receiving` decodes: what the stub of a method returning a stream calls.
    pub async fn open_stream<C, A, T>(
        &self,
        codec: &C,
        method: &'static MethodInfo,
        args: &A,
        receiving: impl ItemCodec<T>,
        options: &CallOptions,
    ) -> Result<Streaming<T>, RpcError>
    where
        C: PayloadCodec,
        A: Serialize + ?Sized,
        T: 'static,
    {
        let opened = self.open(method, &Args { codec, args }, options).await?;
        Ok(self.streaming(method, opened, receiving))
    }

    /// Like [`Client::open_stream`] for a method that takes a stream: `items` are sent as the server grants
    /// credit, each encoded by `sending`, then the client's half ends. The items stop when the stream ends
    /// (the server answers or fails, the [`Streaming`] is dropped, the connection closes).
    #[allow(clippy::too_many_arguments)]
    pub async fn open_stream_sending<C, A, T, S, I>(
        &self,
        codec: &C,
        method: &'static MethodInfo,
        args: &A,
        receiving: impl ItemCodec<T>,
        items: S,
        sending: I,
        options: &CallOptions,
    ) -> Result<Streaming<T>, RpcError>
    where
        C: PayloadCodec,
        A: Serialize + ?Sized,
        T: 'static,
        S: Stream + Send + 'static,
        S::Item: Send,
        I: ItemCodec<S::Item>,
    {
        let opened = self.open(method, &Args { codec, args }, options).await?;
        let conn = Arc::clone(&opened.conn);
        let (id, outbound) = (opened.id, Arc::clone(&opened.outbound));
        tokio::spawn(async move {
            let shared = &conn.shared;
            let frame = shared.codec();
            let framing = crate::stream::Framing {
                frame,
                id,
                items: &sending,
            };
            match send_items(&outbound, &shared.outbox, items, framing).await {
                Ok(()) => {
                    let _ = shared.outbox.push(|state| {
                        frame.encode_bytes(&Header::end(id), &Metadata::new(), &[], &mut state.buf)
                    });
                }
                Err(stopped) => {
                    if let Some(error) = stopped.error(method, PayloadSide::Request) {
                        let _ = fail(shared, id, error);
                    }
                }
            }
        });
        Ok(self.streaming(method, opened, receiving))
    }

    fn streaming<T: 'static>(
        &self,
        method: &'static MethodInfo,
        opened: Opened,
        receiving: impl ItemCodec<T>,
    ) -> Streaming<T> {
        let source = Source {
            id: opened.id,
            method,
            inbound: opened.inbound,
            link: Arc::clone(&opened.conn.shared) as Arc<dyn Link>,
            limit: self.config().codec.max_decoded_len,
            side: PayloadSide::Response,
            deadline: opened.deadline,
        };
        Streaming::new(source, Box::new(receiving))
    }

    /// Sends the request that opens a stream of `method`, on the connection of the address (or the instance
    /// the balancer picks), within the caller's deadline if it set one.
    async fn open<P: Payload + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &P,
        options: &CallOptions,
    ) -> Result<Opened, RpcError> {
        options.check()?;
        let deadline = options
            .has_deadline()
            .then(|| Instant::now() + options.deadline_or(self.config().default_deadline));
        let direct = match &self.target {
            Kind::Direct(d) => Arc::clone(d),
            Kind::Balanced(b) => {
                let call = CallInfo::new(method, options.metadata_ref()).with_key(options.key());
                b.stream_target(&call)?
            }
        };
        let conn = match deadline {
            None => direct.connection().await?,
            Some(at) => tokio::time::timeout_at(at, direct.connection())
                .await
                .map_err(|_| super::direct::deadline_exceeded(method).unprocessed())??,
        };
        let shared = &conn.shared;
        let inbound = Arc::new(Inbound::new(self.config().stream_window));
        let outbound = Arc::new(Outbound::default());
        let budget = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        let metadata = options.metadata_ref();
        let mut encode = |state: &mut crate::outbox::OutState| {
            let id = state.last_request_id + 1;
            let mut header = Header::stream(id, method.id);
            if let Some(budget) = budget {
                header = header.with_deadline(budget);
            }
            args.encode_frame(shared.codec(), &header, metadata, &mut state.buf)?;
            state.last_request_id = id;
            // Registered before the frame can leave, so that the server's first frames find the stream.
            shared.streams.insert(
                id,
                Open {
                    inbound: Arc::clone(&inbound),
                    outbound: Arc::clone(&outbound),
                },
            );
            if let Some(grant) = inbound.opening_grant() {
                let credit = grant.to_le_bytes();
                let md = Metadata::new();
                shared
                    .codec()
                    .encode_bytes(&Header::credit(id), &md, &credit, &mut state.buf)?;
            }
            Ok::<u64, rpc_codec::EncodeError>(id)
        };
        // A request that finds the queue over its limit waits for room (until the deadline, if there is one),
        // as a unary call's does: opening streams against a server that does not read holds nothing more.
        let pushed = loop {
            match shared.outbox.try_push_quiet(encode) {
                Err(_) => return Err(shared.closing().await.unprocessed()),
                Ok(Ok((pushed, first))) => {
                    if first {
                        shared.outbox.wake_writer();
                    }
                    break pushed;
                }
                Ok(Err(back)) => {
                    encode = back;
                    let room = shared.outbox.wait_for_room();
                    match deadline {
                        None => room.await,
                        Some(at) => {
                            if tokio::time::timeout_at(at, room).await.is_err() {
                                let error = super::direct::deadline_exceeded(method);
                                return Err(error.unprocessed());
                            }
                        }
                    }
                }
            }
        };
        let id = match pushed {
            Ok(id) => id,
            Err(e) => {
                let status = crate::error::encode_status(PayloadSide::Request, &e);
                let message = format!("the request opening {method} was not sent: {e}");
                return Err(RpcError::not_processed(status, message));
            }
        };
        Ok(Opened {
            conn,
            id,
            inbound,
            outbound,
            deadline,
        })
    }
}
