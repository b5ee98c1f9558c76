//! The server's layers: what happens around every call, each one file named after what it does, composed
//! statically, so that a server without layers of the user's costs nothing for them.
//!
//! A call goes through, outermost first:
//! 1. `trace`: the `rpc.serve` span, continuing the caller's `traceparent` (when a subscriber records it);
//! 2. `metrics`: calls by method and status, latency, calls in flight (when the server has metrics);
//! 3. `drain`: refuses calls with `Unavailable` once the server shuts down;
//! 4. `in_flight`: refuses calls past [`crate::ServerConfig::max_in_flight_per_connection`] with
//!    `ResourceExhausted`;
//! 5. the user's tower layers, in the order of [`crate::ServerBuilder::layer`] (the first added sees the call
//!    first); [`Only`] puts one on some services or methods alone. The framework's own tower layers go best
//!    in this order: [`Authorize`], then [`RateLimit`], [`ConcurrencyLimit`] and [`AdaptiveLimit`] (each
//!    refuses at once, `ResourceExhausted` with a retry-after, a call its handler never sees), then
//!    [`InjectFault`] (so that its delays count in the limits, as a slow handler's would);
//! 6. dispatch ([`crate::server::Dispatch`]): the call's service decodes the arguments and runs the handler.
//!
//! Observation comes first, so that metrics and spans see every refusal, by the server's layers and the user's
//! alike. Deadlines, cancellation and panics are the connection's: it stops a call whose deadline passes or
//! whose caller cancels (every layer's future is dropped then), and a panic answers `Internal`.
//!
//! The server's own layers (1 to 4) act as a call starts and as it ends, and need no future of their own:
//! they implement `Intercept` (before: refuse or pass on; after: note how the call ended) rather than tower's
//! `Service`, which takes each request by value and nests a future per layer. Measured with callgrind on a
//! 32-byte call, 128 in flight, tower's shape cost 214 instructions per call for these four (4% of a call)
//! and owned requests (payloads cut from the read buffer) 417 more; the user's tower layers pay both only
//! when there are some (see `docs/BENCHMARKS.md`).
//!
//! # Layout
//! - `trace`, `metrics`, `drain`, `in_flight`: the server's own layers.
//! - `only`: [`Only`], a tower layer for some services or methods alone.
//! - `intercept`: [`intercept`], a tower layer from a closure that may rewrite or refuse each call.
//! - `authorize`: [`Authorize`], tokens and client certificates mapped to what they may call.
//! - `jwt` (feature `jwt`): `JwtKeys`, JSON Web Tokens whose subjects are callers (`Authorize::jwt`).
//! - `follow_rules`: [`FollowRules`], the authorization and limits of the rules a server watches (after
//!   [`Authorize`]).
//! - `rate_limit`: [`RateLimit`], a token bucket per method and caller.
//! - `concurrency`: [`ConcurrencyLimit`], the most calls of each method under way at once.
//! - `adaptive`: [`AdaptiveLimit`], a limit on the calls under way that follows latency (Gradient2).
//! - `load`: [`LoadMeter`], the calls, failures, calls under way and latency quantiles a server reports with
//!   its heartbeats.
//! - `fault`: [`InjectFault`], delays and aborts as a [`crate::fault::Fault`] describes them.
//! - `per_method`: [`PerMethod`], a setting for each method, with a default (the limits' configuration).
//! - this file: `Intercept` and the server's own layers in order; [`Layers`], the user's tower layers (or
//!   none) that `ServerBuilder::layer` builds; how a tower layer's error becomes a status.
//!
//! The limits' refusals are counted by the metrics layer like any other answer
//! (`rpc_server_calls_total{status="ResourceExhausted"}`); their state is read from the layers themselves
//! ([`ConcurrencyLimit::in_flight`], [`AdaptiveLimit::limit`], [`RateLimit::tracked`]), whose clones share it.

mod adaptive;
mod authorize;
mod concurrency;
mod drain;
mod fault;
mod follow_rules;
mod in_flight;
mod intercept;
#[cfg(feature = "jwt")]
mod jwt;
mod load;
mod metrics;
mod only;
mod per_method;
mod rate_limit;
mod trace;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use bytes::Bytes;
use rpc_codec::{Metadata, Status};
use tokio::time::Instant;
use tower_layer::{Identity, Layer, Stack};
use tower_service::Service;

pub use crate::fault::{FaultInjected, InjectFault};
pub use adaptive::{
    AdaptiveConfig, AdaptiveLimit, AdaptiveLimited, DEFAULT_ADAPTIVE_RETRY_AFTER,
    DEFAULT_INITIAL_LIMIT, DEFAULT_LONG_WINDOWS, DEFAULT_MAX_LIMIT, DEFAULT_MIN_LIMIT,
    DEFAULT_MIN_WINDOW_SAMPLES, DEFAULT_PROBE_EVERY, DEFAULT_PROBE_TOLERANCE, DEFAULT_SMOOTHING,
    DEFAULT_TOLERANCE, DEFAULT_WINDOW, MIN_GRADIENT, Sampled, WARMUP_WINDOWS,
};
pub use authorize::{AUTHORIZATION, Authorize, Authorized, Caller, Grant};
pub use concurrency::{
    ConcurrencyConfig, ConcurrencyLimit, ConcurrencyLimited, DEFAULT_CONCURRENCY_RETRY_AFTER, Held,
};
use drain::Drain;
pub use follow_rules::{FollowRules, Holding, RulesFollowed};
use in_flight::InFlight;
pub use intercept::{Intercepted, Interceptor, intercept};
#[cfg(feature = "jwt")]
pub use jwt::{JwtKeys, MAX_JWT_LEN, MAX_SUBJECT_LEN};
pub use load::{LoadMeter, LoadMetered, LoadReport, Measured};
use metrics::Counting;
pub(crate) use metrics::Metered;
pub use only::{Either, Only, OnlyService};
pub use per_method::PerMethod;
pub use rate_limit::{DEFAULT_MAX_CALLERS, Rate, RateLimit, RateLimitConfig, RateLimited};
use trace::{Span, Traced};

use super::dispatch::{Dispatch, Dispatching};
use super::request::{Peer, Request};
use super::response::Response;
use crate::error::RpcError;
use crate::method::MethodInfo;
use crate::metrics::Ended;

/// The error of a layer: any error, as tower's middleware return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A call as the server's own layers see it when it starts.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) request_id: u64,
    pub(crate) method: &'static MethodInfo,
    pub(crate) metadata: Metadata,
    pub(crate) arrived: Instant,
    pub(crate) deadline: Option<Instant>,
    pub(crate) one_way: bool,
    /// The call came in JSON (protocol 1.2, flag `JSON`), and is answered in JSON.
    pub(crate) json: bool,
    /// Calls of the connection still running.
    pub(crate) in_flight: usize,
    /// The trace the handler runs in, once the tracing layer has started the call's span.
    pub(crate) extras: Option<Box<crate::context::Extras>>,
}

/// A layer that acts as a call starts (refuse it, or pass it on) and as it ends (note how), with no future of
/// its own.
pub(crate) trait Intercept {
    /// What it keeps of a call from its start to its end.
    type State;

    /// The call starts: `Err` refuses it with that answer.
    fn before(&self, head: &mut Head) -> Result<Self::State, Response>;

    /// The call ended so.
    #[inline]
    fn after(&self, state: Self::State, ended: Ended) {
        let _ = (state, ended);
    }
}

/// The server's own layers, in their order.
#[derive(Debug)]
pub(crate) struct Own {
    trace: Traced,
    metrics: Metered,
    drain: Drain,
    in_flight: InFlight,
}

/// What the server's own layers keep of a call under way.
pub(crate) struct Started {
    span: Option<Box<Span>>,
    counting: Option<Counting>,
}

impl Own {
    /// One connection's: calls counted by `metrics`, refused once `draining` is set or past `max_in_flight`.
    pub(crate) fn new(metrics: Metered, draining: Arc<AtomicBool>, max_in_flight: usize) -> Own {
        Own {
            trace: Traced,
            metrics,
            drain: Drain::new(draining),
            in_flight: InFlight::new(max_in_flight),
        }
    }

    /// The call of `head` starts; with a refusal if a layer refused it (the layers before it still see it end).
    #[inline]
    pub(crate) fn start(&self, head: &mut Head) -> (Started, Result<(), Response>) {
        let span = self.trace.before(head).unwrap_or_default();
        let counting = self.metrics.before(head).unwrap_or_default();
        let started = Started { span, counting };
        let passed = self
            .drain
            .before(head)
            .and_then(|()| self.in_flight.before(head));
        (started, passed)
    }

    /// The call started as `started` ended as `ended` says (asked only if a layer notes it).
    #[inline]
    pub(crate) fn end(&self, started: Started, ended: impl FnOnce() -> Ended) {
        if started.span.is_none() && started.counting.is_none() {
            return;
        }
        let ended = ended();
        self.metrics.after(started.counting, ended);
        self.trace.after(started.span, ended);
    }
}

impl Started {
    /// The call's span, when it is traced: its handler runs inside it.
    #[inline]
    pub(crate) fn span(&self) -> Option<&tracing::Span> {
        self.span.as_deref().map(|s| &s.span)
    }
}

/// A call's arguments: borrowed from the connection's read buffer, or cut from it for a tower layer's
/// [`Request`].
#[doc(hidden)]
#[derive(Debug)]
pub enum Payload<'a> {
    /// Borrowed.
    Borrowed(&'a [u8]),
    /// Shared with the read buffer.
    Shared(Bytes),
}

/// A call, handed by the connection to the user's layers (or straight to its service).
#[doc(hidden)]
pub struct Parts<'a> {
    pub(crate) head: Head,
    pub(crate) peer: Arc<Peer>,
    pub(crate) service: &'a dyn super::Service,
    pub(crate) payload: Payload<'a>,
}

impl std::fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tower_layer::Identity {}
    impl<I, O> Sealed for tower_layer::Stack<I, O> {}
}

/// The user's tower layers of a server: none ([`Identity`]), or those added with
/// [`crate::ServerBuilder::layer`]. Implemented for what the builder makes; not meant to be implemented
/// elsewhere.
pub trait Layers: sealed::Sealed + Clone + Send + Sync + 'static {
    /// One connection's stack.
    #[doc(hidden)]
    type Stack: Send + 'static;
    /// The future of a call through it.
    #[doc(hidden)]
    type Future: Future<Output = Result<Response, Infallible>> + Unpin + Send + 'static;
    /// Whether the stack takes requests of their own ([`Request`], its payload cut from the read buffer).
    #[doc(hidden)]
    const OWNED: bool;
    /// One connection's stack around `dispatch`.
    #[doc(hidden)]
    fn stack(&self, dispatch: Dispatch) -> Self::Stack;
    /// Ready for a call.
    #[doc(hidden)]
    fn poll_ready(stack: &mut Self::Stack, cx: &mut Context<'_>) -> Poll<()>;
    /// A call.
    #[doc(hidden)]
    fn call(stack: &mut Self::Stack, parts: Parts<'_>) -> Self::Future;
}

/// No user layer: the call goes straight to its service, its arguments decoded from the read buffer.
impl Layers for Identity {
    type Stack = Dispatch;
    type Future = Dispatching;
    const OWNED: bool = false;

    fn stack(&self, dispatch: Dispatch) -> Dispatch {
        dispatch
    }

    #[inline]
    fn poll_ready(_: &mut Dispatch, _: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    #[inline]
    fn call(stack: &mut Dispatch, parts: Parts<'_>) -> Dispatching {
        let Parts {
            head,
            peer,
            service,
            payload,
        } = parts;
        let payload: &[u8] = match &payload {
            Payload::Borrowed(bytes) => bytes,
            Payload::Shared(bytes) => bytes,
        };
        let call = super::Call {
            request_id: head.request_id,
            method: head.method,
            metadata: head.metadata,
            deadline: head.deadline,
            peer,
            extras: head.extras,
            payload,
            max_decoded_len: stack.max_decoded_len(),
            json: head.json,
        };
        Dispatching::new(service.dispatch(call).0, head.method)
    }
}

/// User layers: a call is a [`Request`] of its own; its future is boxed (the connection polls a call once in
/// place, then moves it to a task of its own if it waits), and a layer's error becomes a status
/// ([`status_of`]).
impl<I, O> Layers for Stack<I, O>
where
    Stack<I, O>: Layer<Dispatch> + Clone + Send + Sync + 'static,
    <Stack<I, O> as Layer<Dispatch>>::Service:
        Service<Request, Response = Response> + Send + 'static,
    <<Stack<I, O> as Layer<Dispatch>>::Service as Service<Request>>::Error: Into<BoxError>,
    <<Stack<I, O> as Layer<Dispatch>>::Service as Service<Request>>::Future: Send + 'static,
{
    type Stack = Settled<<Stack<I, O> as Layer<Dispatch>>::Service>;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;
    const OWNED: bool = true;

    fn stack(&self, dispatch: Dispatch) -> Self::Stack {
        Settled {
            inner: self.layer(dispatch),
            failed: None,
        }
    }

    fn poll_ready(stack: &mut Self::Stack, cx: &mut Context<'_>) -> Poll<()> {
        stack.poll_ready(cx).map(|_| ())
    }

    fn call(stack: &mut Self::Stack, parts: Parts<'_>) -> Self::Future {
        let Parts {
            head,
            peer,
            payload,
            ..
        } = parts;
        let payload = match payload {
            Payload::Shared(bytes) => bytes,
            Payload::Borrowed(bytes) => Bytes::copy_from_slice(bytes),
        };
        stack.call(Request {
            request_id: head.request_id,
            method: head.method,
            metadata: head.metadata,
            peer,
            payload,
            arrived: head.arrived,
            extras: head.extras,
            deadline: head.deadline,
            one_way: head.one_way,
            json: head.json,
        })
    }
}

/// A user stack whose errors (from `poll_ready` or from a call) answer the call with a status.
pub struct Settled<S> {
    inner: S,
    /// `poll_ready` failed: the next call is answered with this.
    failed: Option<Response>,
}

impl<S> std::fmt::Debug for Settled<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settled")
    }
}

impl<S> Service<Request> for Settled<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.failed = Some(status_of(e.into()));
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if let Some(failed) = self.failed.take() {
            return Box::pin(std::future::ready(Ok(failed)));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            Ok(match future.await {
                Ok(response) => response,
                Err(e) => status_of(e.into()),
            })
        })
    }
}

/// The answer for a layer's error: an [`RpcError`]'s status and message; `DeadlineExceeded` for tower's
/// timeout, `ResourceExhausted` for its load shedding; `Internal` with the error's text for anything else.
pub fn status_of(error: BoxError) -> Response {
    if let Some(e) = error.downcast_ref::<RpcError>() {
        let response = Response::error(e.code(), e.message().to_owned());
        return match e.retry_after() {
            Some(after) => response.with_retry_after(after),
            None => response,
        };
    }
    if error.is::<tower::timeout::error::Elapsed>() {
        return Response::error(
            Status::DeadlineExceeded,
            "the call took longer than the server's timeout for it",
        );
    }
    if error.is::<tower::load_shed::error::Overloaded>() {
        return Response::error(
            Status::ResourceExhausted,
            "the server is overloaded and shed this call",
        );
    }
    Response::error(
        Status::Internal,
        format!("a layer failed the call: {error}"),
    )
}

/// A request for `method` as a layer's unit test makes it: no metadata, no deadline, no peer, arrived now.
#[cfg(test)]
pub(crate) fn test_request(method: &'static MethodInfo) -> Request {
    Request {
        request_id: 1,
        method,
        metadata: Metadata::new(),
        peer: Arc::new(Peer::default()),
        payload: Bytes::new(),
        arrived: Instant::now(),
        extras: None,
        deadline: None,
        one_way: false,
        json: false,
    }
}
