//! The server side of a generated service: the [`Service`] trait that `#[service]` implements for
//! `<Trait>Server`, and [`Call`], one request as a service sees it once the layers have passed it on: its
//! arguments to decode (borrowed from the connection's read buffer, or from the [`Request`](crate::server::Request) of a tower
//! layer), and the ways to answer it (start the handler, or refuse).

use std::pin::Pin;

use rpc_codec::{Bincode, PayloadCodec, PayloadError, Status};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use rpc_codec::Metadata;
use tokio::time::Instant;

use super::answer::{Answering, Coded, Ended, Fallible, Handler, Plain, Reply, StreamEnd};
use super::request::Peer;
use super::response::Response;
use crate::context::Context;
use crate::context::Extras;
use crate::error::{PayloadSide, payload_status};
use crate::method::MethodInfo;

/// A service the server can dispatch to; implemented by the `<Trait>Server` that `#[service]` generates.
pub trait Service: Send + Sync + 'static {
    /// The service's name on the wire.
    fn name(&self) -> &'static str;

    /// Its methods, with their ids.
    fn methods(&self) -> &'static [MethodInfo];

    /// Answers one call: decodes its arguments and starts the handler, or refuses it.
    fn dispatch(&self, call: Call<'_>) -> Dispatched;

    /// How the method `method_id` streams, if it does (protocol 1.1); `None` for a unary method.
    fn stream_kind(&self, method_id: u32) -> Option<crate::stream::Kind> {
        let _ = method_id;
        None
    }

    /// What the service says of itself: its methods, their arguments and docs, as `#[service]` writes them
    /// ([`crate::reflect`]); what `rpc.Reflection` answers. `None` for a service written by hand without one.
    fn description(&self) -> Option<&'static crate::reflect::ServiceDescription> {
        None
    }
}

/// The handler of a call, started; only [`Call`] makes one. It resolves to the call's [`Response`].
#[must_use = "return it from `Service::dispatch`"]
pub struct Dispatched(pub(crate) Answer);

impl std::fmt::Debug for Dispatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Answer::Ready(_) => "Dispatched(ready)",
            Answer::Running(_) => "Dispatched(running)",
        })
    }
}

/// A handler's answer: known at once (a refusal), or the handler still to run.
pub(crate) enum Answer {
    /// Boxed: refusals are rare, and a small future moves through the layers cheaply.
    Ready(Option<Box<Response>>),
    Running(Option<Pin<Box<dyn Answering>>>),
}

/// One request, as the service that answers it gets it.
#[derive(Debug)]
pub struct Call<'a> {
    pub(crate) request_id: u64,
    pub(crate) method: &'static MethodInfo,
    pub(crate) metadata: Metadata,
    pub(crate) deadline: Option<Instant>,
    pub(crate) peer: Arc<Peer>,
    pub(crate) extras: Option<Box<Extras>>,
    /// The arguments, encoded.
    pub(crate) payload: &'a [u8],
    /// Most memory the decoded arguments may take ([`rpc_codec::Config::max_decoded_len`]).
    pub(crate) max_decoded_len: usize,
    /// The call came in JSON (protocol 1.2): its arguments are an object keyed by name, and its answer goes
    /// back in JSON.
    pub(crate) json: bool,
}

impl Call<'_> {
    /// The method id the caller named.
    pub fn method_id(&self) -> u32 {
        self.method.id
    }

    /// Decodes the arguments (the tuple of the method's arguments), within the server's limit on the memory
    /// they may take. A call in JSON has its arguments by name, and needs [`Call::decode_named`].
    pub fn decode<A: DeserializeOwned>(&self) -> Result<A, PayloadError> {
        self.decode_with(&Bincode)
    }

    /// Like [`Call::decode`], with `codec`: what the skeleton of a service declared with
    /// `#[service(codec = ...)]` calls.
    pub fn decode_with<C: PayloadCodec, A: DeserializeOwned>(
        &self,
        codec: &C,
    ) -> Result<A, PayloadError> {
        if self.json {
            return Err(PayloadError::Invalid(String::from(
                "a call in JSON names its arguments, and this service does not know their names",
            )));
        }
        codec.decode_within(self.payload, self.max_decoded_len)
    }

    /// Decodes the arguments, whose names are `names` in the trait's order, as [`Call::decode`] does; or, for a
    /// call in JSON (protocol 1.2), from an object keyed by those names. What `#[service]`'s skeletons call.
    #[inline]
    pub fn decode_named<A: DeserializeOwned>(&self, names: &[&str]) -> Result<A, PayloadError> {
        self.decode_named_with(&Bincode, names)
    }

    /// Like [`Call::decode_named`], with `codec` for calls not in JSON.
    #[inline]
    pub fn decode_named_with<C: PayloadCodec, A: DeserializeOwned>(
        &self,
        codec: &C,
        names: &[&str],
    ) -> Result<A, PayloadError> {
        match self.json {
            false => codec.decode_within(self.payload, self.max_decoded_len),
            true => super::json::decode_named(self.payload, names, self.max_decoded_len),
        }
    }

    /// The call came in JSON (protocol 1.2) and is answered in JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Answers a payload that did not decode as the method's arguments: `InvalidArgument`, or
    /// `ResourceExhausted` if the arguments would take more memory than the server's limit or nest deeper
    /// than [`rpc_codec::MAX_DEPTH`].
    pub fn invalid_argument(self, method: &'static MethodInfo, error: PayloadError) -> Dispatched {
        let status = payload_status(PayloadSide::Request, &error);
        let message = format!("the arguments of {method} do not decode: {error}");
        Dispatched(Answer::Ready(Some(Box::new(Response::error(
            status, message,
        )))))
    }

    /// Answers `Unimplemented`: the service has no method with this id.
    pub fn unimplemented(self) -> Dispatched {
        let message = format!(
            "no method with id {:#010x} on this server",
            self.method_id()
        );
        Dispatched(Answer::Ready(Some(Box::new(Response::error(
            Status::Unimplemented,
            message,
        )))))
    }

    /// Runs `handler` (with the call's [`Context`] as the current one) and answers its value.
    pub fn spawn<F, T>(self, method: &'static MethodInfo, handler: F) -> Dispatched
    where
        F: Future<Output = T> + Send + 'static,
        T: Serialize + Send + 'static,
    {
        self.spawn_with(Bincode, method, handler)
    }

    /// Like [`Call::spawn`], with the value encoded by `codec`.
    pub fn spawn_with<C, F, T>(
        self,
        codec: C,
        method: &'static MethodInfo,
        handler: F,
    ) -> Dispatched
    where
        C: PayloadCodec,
        F: Future<Output = T> + Send + 'static,
        T: Serialize + Send + 'static,
    {
        let json = self.json;
        self.run(method, handler, Plain(Coded::new(codec, json)))
    }

    /// Runs `handler`, a method returning `Result<U, E>`, as [`Call::spawn`] does: `Ok` goes back as the value,
    /// `Err` as the application's error (flag `APP_ERROR`).
    pub fn spawn_fallible<F, U, E>(self, method: &'static MethodInfo, handler: F) -> Dispatched
    where
        F: Future<Output = Result<U, E>> + Send + 'static,
        U: Serialize + Send + 'static,
        E: Serialize + Send + 'static,
    {
        self.spawn_fallible_with(Bincode, method, handler)
    }

    /// Like [`Call::spawn_fallible`], with the value or the application's error encoded by `codec`.
    pub fn spawn_fallible_with<C, F, U, E>(
        self,
        codec: C,
        method: &'static MethodInfo,
        handler: F,
    ) -> Dispatched
    where
        C: PayloadCodec,
        F: Future<Output = Result<U, E>> + Send + 'static,
        U: Serialize + Send + 'static,
        E: Serialize + Send + 'static,
    {
        let json = self.json;
        self.run(method, handler, Fallible(Coded::new(codec, json)))
    }

    /// The items the client sends on the stream this call opened (protocol 1.1), decoded by `items`: what the
    /// skeleton of a method taking a [`crate::Streaming`] passes to it. `Err` answers a call that opened no
    /// stream the client sends items on.
    pub fn incoming<T: 'static>(
        &self,
        items: impl crate::stream::ItemCodec<T>,
    ) -> Result<crate::Streaming<T>, Dispatched> {
        let opened = self.stream().and_then(|s| Some((s, s.inbound.as_ref()?)));
        let Some((opened, inbound)) = opened else {
            return Err(self.not_a_stream("takes a stream of items from the client"));
        };
        let source = crate::stream::Source {
            id: opened.id,
            method: self.method,
            inbound: Arc::clone(inbound),
            // The reader keeps the stream open while it reads (also past the handler, in a task of its own).
            link: Arc::clone(opened) as Arc<dyn crate::stream::Link>,
            limit: self.max_decoded_len,
            side: PayloadSide::Request,
            deadline: None,
        };
        Ok(crate::Streaming::new(source, Box::new(items)))
    }

    /// Runs `handler`, the method returning a stream, which hands the stream to the [`StreamSink`] it is given:
    /// the sink sends the stream's items as they come, each encoded by `items`, while the client grants credit
    /// (protocol 1.1); the stream ends with `End` after the last item, or with an `Error` if an item does not
    /// encode. The call, as the layers see it, lasts as long as the stream; its deadline covers it whole, and a
    /// cancel from the client drops the stream.
    pub fn spawn_stream<I, F, Fut>(
        self,
        items: I,
        method: &'static MethodInfo,
        handler: F,
    ) -> Dispatched
    where
        F: FnOnce(StreamSink<I>) -> Fut,
        Fut: Future<Output = Sent> + Send + 'static,
        I: Send + 'static,
    {
        let Some(opened) = self.stream().cloned() else {
            return self.not_a_stream("sends a stream of items to the client");
        };
        let sink = StreamSink {
            opened,
            items,
            method,
        };
        let pump = handler(sink);
        self.run(method, async move { pump.await.0 }, Ended)
    }

    /// The stream this call opened, if it opened one.
    fn stream(&self) -> Option<&Arc<super::stream::Opened>> {
        self.extras.as_ref()?.stream.as_ref()
    }

    /// Refuses a call of a streaming method that opened no stream of the kind the method needs.
    fn not_a_stream(&self, needs: &str) -> Dispatched {
        let message = format!(
            "{} {needs}: it is opened with the STREAM flag (0x08) of protocol 1.1",
            self.method
        );
        Dispatched(Answer::Ready(Some(Box::new(Response::error(
            Status::InvalidArgument,
            message,
        )))))
    }

    /// The handler, run in the call's context; its value is answered by `reply`.
    #[inline(always)]
    fn run<F, T, R>(mut self, method: &'static MethodInfo, handler: F, reply: R) -> Dispatched
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
        R: Reply<T>,
    {
        // A stream is held by the handler, not by its context, which the handler may hand to tasks that
        // outlive the call: the call ends when the handler does.
        if let Some(opened) = self.extras.as_mut().and_then(|e| e.stream.take()) {
            let held = super::stream::Held(opened);
            return self.run_unheld(
                method,
                async move {
                    let _held = held;
                    handler.await
                },
                reply,
            );
        }
        self.run_unheld(method, handler, reply)
    }

    /// [`Call::run`], once the call's stream (if any) is in the handler.
    #[inline(always)]
    fn run_unheld<F, T, R>(self, method: &'static MethodInfo, handler: F, reply: R) -> Dispatched
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
        R: Reply<T>,
    {
        let context = Context {
            request_id: self.request_id,
            method,
            deadline: self.deadline,
            metadata: self.metadata,
            peer: self.peer,
            extras: self.extras,
        };
        // Written straight into its allocation rather than built on the stack and copied there: a call's
        // handler, context and reply are a few hundred bytes (callgrind: 29 instructions a call less).
        let handler = Box::write(
            Box::new_uninit(),
            Handler::new(context.scope(handler), reply),
        );
        Dispatched(Answer::Running(Some(Box::into_pin(handler))))
    }
}

/// Where a method's stream of items goes (protocol 1.1): what the skeleton of a method returning a stream hands
/// that stream to.
pub struct StreamSink<I> {
    opened: Arc<super::stream::Opened>,
    items: I,
    method: &'static MethodInfo,
}

impl<I> std::fmt::Debug for StreamSink<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("stream", &self.opened)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// How a stream's sending ended; the call's answer is made of it.
#[derive(Debug)]
pub struct Sent(StreamEnd);

impl<I> StreamSink<I> {
    /// Sends the items of `stream` as the client grants credit, until the stream ends or the client stops it.
    pub async fn send<S>(self, stream: S) -> Sent
    where
        S: crate::Stream + Send,
        I: crate::stream::ItemCodec<S::Item>,
    {
        let StreamSink {
            opened,
            items,
            method,
        } = self;
        let conn = &opened.conn;
        let framing = crate::stream::Framing {
            frame: &conn.codec,
            id: opened.id,
            items: &items,
        };
        let sent = crate::stream::send_items(&opened.outbound, &conn.outbox, stream, framing).await;
        Sent(match sent {
            Ok(()) => StreamEnd::Done,
            Err(stopped) => match stopped.error(method, PayloadSide::Response) {
                None => StreamEnd::Closed,
                Some(error) => StreamEnd::Failed(error),
            },
        })
    }
}
