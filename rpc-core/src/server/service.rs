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

use super::answer::{Answering, Fallible, Handler, Plain, Reply};
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
}

impl Call<'_> {
    /// The method id the caller named.
    pub fn method_id(&self) -> u32 {
        self.method.id
    }

    /// Decodes the arguments (the tuple of the method's arguments), within the server's limit on the memory
    /// they may take.
    pub fn decode<A: DeserializeOwned>(&self) -> Result<A, PayloadError> {
        self.decode_with(&Bincode)
    }

    /// Like [`Call::decode`], with `codec`: what the skeleton of a service declared with
    /// `#[service(codec = ...)]` calls.
    pub fn decode_with<C: PayloadCodec, A: DeserializeOwned>(
        &self,
        codec: &C,
    ) -> Result<A, PayloadError> {
        codec.decode_within(self.payload, self.max_decoded_len)
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
        self.run(method, handler, Plain(codec))
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
        self.run(method, handler, Fallible(codec))
    }

    /// The handler, run in the call's context; its value is answered by `reply`.
    fn run<F, T, R>(self, method: &'static MethodInfo, handler: F, reply: R) -> Dispatched
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
