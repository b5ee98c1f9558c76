//! A client's layers: what happens around every call, each one file named after what it does.
//!
//! A call goes through, outermost first:
//! 1. `trace`: the `rpc.call` span, and the `traceparent` it sends (when a subscriber records it);
//! 2. `metrics`: calls by method and status, latency, calls in flight (when the client has metrics);
//! 3. the user's tower layers ([`crate::ClientConfig::layer`], the first added sees the call first);
//! 4. for a balanced client, `retry` (another instance after a failure that allows it, within the retry
//!    `budget`) and `hedge` (a second attempt to another instance when the first is slow), then the balancing
//!    policy ([`crate::balance`]), which picks the instance among those the outlier detector has not ejected,
//!    and the attempt timeout;
//! 5. the connection to the instance.
//!
//! As on the server, the client's own layers act when a call starts and when it ends and need no future of
//! their own; a call without user layers costs nothing for the seam. With user layers, the call's arguments
//! are encoded first into a [`Request`] of their own, and its answer comes back as a [`Response`] through a
//! boxed stack.
//!
//! # Layout
//! - `trace`, `metrics`, `retry`, `budget`, `hedge`: the client's own layers (the last three, with the
//!   outlier detector of [`crate::balance`], are driven by `client/balanced.rs`).
//! - `only`: [`Only`], a layer for the calls of some services or methods alone.
//! - `fault`: [`InjectFault`], delays and aborts as a [`crate::fault::Fault`] describes them, before a call is
//!   sent.
//! - this file: [`Request`], [`Response`], and the user's tower layers ([`Layers`]).

pub(crate) mod budget;
mod fault;
pub(crate) mod hedge;
pub(crate) mod metrics;
mod only;
pub(crate) mod retry;
pub(crate) mod trace;

pub use crate::fault::{FaultInjected, InjectFault};
pub use budget::{
    DEFAULT_MIN_RETRIES_PER_SECOND, DEFAULT_RETRY_RATIO, DEFAULT_RETRY_WINDOW, RetryBudgetConfig,
};
pub use hedge::{
    DEFAULT_HEDGE_MIN_DELAY, DEFAULT_HEDGE_MIN_SAMPLES, DEFAULT_HEDGE_PERCENTILE, HedgeConfig,
    HedgeDelay,
};
pub use only::{Only, OnlyService};
pub use retry::{DEFAULT_RETRY_ON, RetryOn};

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use rpc_codec::{Metadata, Status};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::RpcError;
use crate::method::MethodInfo;

/// The error of a layer: any error, as tower's middleware return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A call on its way from the client to a server, as the user's layers see it.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) method: &'static MethodInfo,
    pub(crate) metadata: Metadata,
    pub(crate) deadline: Instant,
    /// Whether the caller (or a layer) chose the deadline: a rules' deadline applies only to calls with none.
    pub(crate) deadline_chosen: bool,
    pub(crate) payload: Bytes,
    /// The caller's key of the call, hashed ([`crate::CallOptions::hash_key`]).
    pub(crate) key: Option<u64>,
    /// The flags of the payload's format ([`rpc_codec::Flags::JSON`] for a call in JSON).
    pub(crate) flags: rpc_codec::Flags,
}

impl Request {
    /// The method called (its service, name, id and whether it is idempotent).
    pub fn method(&self) -> &'static MethodInfo {
        self.method
    }

    /// The metadata the call sends.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The call is in JSON (protocol 1.2, [`crate::Client::call_json`]): its payload is an object of the
    /// arguments keyed by name, and its answer comes back in JSON.
    pub fn is_json(&self) -> bool {
        self.flags.contains(rpc_codec::Flags::JSON)
    }

    /// The metadata, for a layer to rewrite (add a token, say).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// When the caller stops waiting; what is left of it travels to the server as its budget.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The key the caller chose for the call, hashed ([`crate::CallOptions::hash_key`]), which a hashing
    /// balancing policy maps to an instance.
    pub fn hash_key(&self) -> Option<u64> {
        self.key
    }

    /// Sets the call's key, already hashed ([`crate::balance::hash_key`]): a layer that derives it from the
    /// metadata, say.
    pub fn set_hash_key(&mut self, key: Option<u64>) {
        self.key = key;
    }

    /// Moves the deadline (a layer that gives a method less time, or more). A deadline a layer sets is
    /// chosen, as a caller's own is: a rules' deadline no longer applies to the call.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.deadline_chosen = true;
    }

    /// The arguments, encoded by the service's payload codec.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

/// How a call ended, as the user's layers see it on its way back to the caller.
#[derive(Clone, Debug)]
pub enum Response {
    /// The method's value, encoded.
    Value(Bytes),
    /// The method's own error, encoded.
    AppError(Bytes),
    /// The call failed: a status and message.
    Failed(RpcError),
}

impl Response {
    /// `Ok` for a value or the method's own error, else the status of the failure.
    pub fn status(&self) -> Status {
        match self {
            Response::Failed(e) => e.code(),
            _ => Status::Ok,
        }
    }
}

/// The answer for a layer's error: an [`RpcError`] as it is; tower's timeout as `DeadlineExceeded`, its load
/// shedding as `ResourceExhausted`; `Internal` with the error's text for anything else.
pub fn error_of(error: BoxError) -> RpcError {
    match error.downcast::<RpcError>() {
        Ok(e) => *e,
        Err(error) if error.is::<tower::timeout::error::Elapsed>() => RpcError::new(
            Status::DeadlineExceeded,
            "the call took longer than the client's timeout for it",
        ),
        Err(error) if error.is::<tower::load_shed::error::Overloaded>() => RpcError::not_processed(
            Status::ResourceExhausted,
            "the client is overloaded and shed this call",
        ),
        Err(error) => RpcError::internal(format!("a layer failed the call: {error}")),
    }
}

/// A stack of the user's layers, its type erased.
pub type Stack = BoxCloneSyncService<Request, Response, BoxError>;

/// Wraps a stack in one more layer.
type Wrap = Arc<dyn Fn(Stack) -> Stack + Send + Sync>;

/// The user's tower layers of a client, in the order they were added.
#[derive(Clone, Default)]
pub struct Layers {
    wraps: Vec<Wrap>,
}

impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Layers({})", self.wraps.len())
    }
}

impl Layers {
    /// Adds `layer` inside those added before.
    pub(crate) fn push<L>(&mut self, layer: L)
    where
        L: Layer<Stack> + Send + Sync + 'static,
        L::Service: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Error: Into<BoxError>,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.wraps.push(Arc::new(move |inner: Stack| {
            let service = layer.layer(inner);
            BoxCloneSyncService::new(MapError(service))
        }));
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.wraps.is_empty()
    }

    /// The stack around `transport`: the first layer added is the outermost.
    pub(crate) fn around(&self, transport: Stack) -> Stack {
        self.wraps
            .iter()
            .rev()
            .fold(transport, |inner, wrap| wrap(inner))
    }
}

/// A service whose errors become [`BoxError`]s.
#[derive(Clone)]
pub(crate) struct MapError<S>(pub(crate) S);

impl<S> Service<Request> for MapError<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let future = self.0.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// A request for `method` as a layer's unit test makes it: no metadata, no payload, due at `deadline`.
#[cfg(test)]
pub(crate) fn test_request(method: &'static MethodInfo, deadline: Instant) -> Request {
    Request {
        method,
        metadata: Metadata::new(),
        deadline,
        deadline_chosen: true,
        payload: Bytes::new(),
        key: None,
        flags: rpc_codec::Flags::EMPTY,
    }
}
