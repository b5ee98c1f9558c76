//! The server side of a generated service: the [`Service`] trait that `#[service]` implements for
//! `<Trait>Server`, and [`Call`], one request as a service sees it: its arguments to decode, and the ways to
//! answer it (spawn the handler, or refuse).

use std::sync::Arc;

use rpc_codec::{Bincode, MetadataRef, PayloadCodec, PayloadError, Status};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::connection::ConnShared;
use super::handler;
use crate::error::{PayloadSide, payload_status};
use crate::method::MethodInfo;
use crate::metrics::{MethodStats, Metrics};

/// A service the server can dispatch to; implemented by the `<Trait>Server` that `#[service]` generates.
pub trait Service: Send + Sync + 'static {
    /// The service's name on the wire.
    fn name(&self) -> &'static str;

    /// Its methods, with their ids.
    fn methods(&self) -> &'static [MethodInfo];

    /// Answers one call: decodes its arguments and spawns the handler, or refuses it.
    fn dispatch(&self, call: Call<'_>) -> Dispatched;
}

/// Proof that a call was answered or handed to a handler; only [`Call`] makes one.
#[derive(Debug)]
#[must_use = "return it from `Service::dispatch`"]
pub struct Dispatched(());

/// One request, borrowed from the connection's read buffer while it is dispatched.
#[derive(Debug)]
pub struct Call<'a> {
    pub(crate) conn: &'a Arc<ConnShared>,
    pub(crate) request_id: u64,
    pub(crate) method_id: u32,
    pub(crate) metadata: MetadataRef<'a>,
    pub(crate) payload: &'a [u8],
    pub(crate) deadline: Option<Instant>,
    /// A one-way call: the handler runs, nothing is sent back.
    pub(crate) one_way: bool,
    /// Poll the handler once before giving it a task ([`crate::ServerConfig::inline_handlers`]).
    pub(crate) inline: bool,
    /// Most memory the decoded arguments may take ([`rpc_codec::Config::max_decoded_len`]).
    pub(crate) max_decoded_len: usize,
    /// The method's counters, if the server has metrics.
    pub(crate) stats: Option<&'a Arc<MethodStats>>,
    /// The server's metrics, if any.
    pub(crate) metrics: Option<&'a Metrics>,
    /// When the request arrived (the read that brought it).
    pub(crate) arrived: Instant,
}

impl Call<'_> {
    /// The method id the caller named.
    pub fn method_id(&self) -> u32 {
        self.method_id
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
        self.refuse(status, message)
    }

    /// Answers `Unimplemented`: the service has no method with this id.
    pub fn unimplemented(self) -> Dispatched {
        let message = format!("no method with id {:#010x} on this server", self.method_id);
        self.refuse(Status::Unimplemented, message)
    }

    fn refuse(self, status: Status, message: String) -> Dispatched {
        if let Some(stats) = self.stats {
            stats.record(status, self.arrived.elapsed());
        }
        if !self.one_way {
            self.conn.send_error(self.request_id, status, &message);
        }
        Dispatched(())
    }

    /// Runs `handler` and sends its value back: polled once at once, and on a task of its own if it has to wait.
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
        let reply = move |conn: &ConnShared, id, value: T| conn.send_value(&codec, id, &value);
        handler::spawn(self, method, handler, reply, |_| false);
        Dispatched(())
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
        let reply = move |conn: &ConnShared, id, result: Result<U, E>| match result {
            Ok(value) => conn.send_value(&codec, id, &value),
            Err(error) => conn.send_app_error(&codec, id, &error),
        };
        // An `Err` is counted apart from the calls that succeeded.
        handler::spawn(self, method, handler, reply, Result::is_err);
        Dispatched(())
    }
}
