//! [`Request`]: one call as the server's layers see it, from the connection that read it to the service that
//! answers it: the method, the caller's metadata (which a layer may rewrite), the deadline, who the peer is, and
//! the arguments still encoded, as bytes shared with the read buffer (no copy).

use std::sync::Arc;

use bytes::Bytes;
use rpc_codec::Metadata;
use tokio::time::Instant;

use super::layer::Caller;
use crate::context::Extras;
use crate::method::MethodInfo;
use crate::trace::TraceContext;
use crate::transport::PeerAddr;

/// Who is at the other end of a connection: one per connection, shared by its calls.
#[derive(Debug, Default)]
pub struct Peer {
    pub(crate) addr: Option<PeerAddr>,
    /// The DNS names of the client's verified certificate (mutual TLS).
    pub(crate) names: Option<Arc<[String]>>,
}

impl Peer {
    /// The peer's address: TCP (with or without TLS) or a Unix domain socket; `None` for a call that came over
    /// no transport.
    pub fn addr(&self) -> Option<&PeerAddr> {
        self.addr.as_ref()
    }

    /// The DNS names (subject alternative names) of the certificate the client presented over mutual TLS, which
    /// the server verified; empty without TLS or without a client certificate.
    pub fn client_names(&self) -> &[String] {
        self.names.as_deref().unwrap_or(&[])
    }
}

/// One call on its way through the server's layers to its service.
///
/// ```
/// use rpc_core::server::{Request, Response};
/// use rpc_core::Status;
///
/// // What a layer that wants an API key does with a request.
/// fn check(request: &Request) -> Option<Response> {
///     match request.metadata().get_str("x-api-key") {
///         Some("let-me-in") => None,
///         _ => Some(Response::error(Status::Unauthenticated, "an x-api-key is needed")),
///     }
/// }
/// # let _ = check;
/// ```
#[derive(Debug)]
pub struct Request {
    pub(crate) request_id: u64,
    pub(crate) method: &'static MethodInfo,
    pub(crate) metadata: Metadata,
    pub(crate) peer: Arc<Peer>,
    pub(crate) payload: Bytes,
    pub(crate) arrived: Instant,
    /// The trace the call belongs to (once the tracing layer has started its span), and who sent it (once an
    /// authorization layer has found out).
    pub(crate) extras: Option<Box<Extras>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) one_way: bool,
    /// The call came in JSON (protocol 1.2).
    pub(crate) json: bool,
}

impl Request {
    /// The method called (its service, name, id and whether it is idempotent).
    pub fn method(&self) -> &'static MethodInfo {
        self.method
    }

    /// The request id, unique among the calls of one connection.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The metadata the caller sent.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The metadata, for a layer to rewrite: the handler sees what the layers left
    /// ([`crate::Context::metadata`]).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// When the caller stops waiting (the budget it sent, counted from the request's arrival), if it set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Who sent the call.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The arguments as they came, encoded by the service's payload codec.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// When the request arrived (the read that brought it): latencies count from here.
    pub fn arrived(&self) -> Instant {
        self.arrived
    }

    /// A one-way call: its answer is not sent.
    pub fn is_one_way(&self) -> bool {
        self.one_way
    }

    /// The call came in JSON (protocol 1.2, flag `JSON`: over HTTP, say): its payload is an object of the
    /// arguments keyed by name, and its answer goes back in JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Who sent the call, as an [`Authorize`](super::layer::Authorize) layer found out.
    pub fn caller(&self) -> Option<&Caller> {
        Extras::caller(&self.extras)
    }

    /// Sets who sent the call (a layer of the user's that authenticates); the handler sees it through
    /// [`crate::Context::caller`].
    pub fn set_caller(&mut self, caller: Caller) {
        Extras::set_caller(&mut self.extras, caller);
    }

    /// The trace context of the call (when a tracing subscriber records its `rpc.serve` span).
    pub fn trace(&self) -> Option<TraceContext> {
        Extras::trace(&self.extras)
    }
}
