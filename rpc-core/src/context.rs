//! The call context: what a handler may know of the call it serves (metadata, deadline, request id, peer, the
//! verified names of the client's certificate, the trace), available through `Context::current()` anywhere in
//! the handler's task, and in the tasks it spawns through `Context::scope`.

use std::sync::Arc;

use rpc_codec::Metadata;
use tokio::time::Instant;

use crate::method::MethodInfo;
use crate::server::Peer;
use crate::server::layer::Caller;
use crate::trace::TraceContext;
use crate::transport::PeerAddr;

tokio::task_local! {
    static CONTEXT: Context;
}

/// The call a handler is serving.
///
/// ```no_run
/// # #[rpc_core::service] trait Echo { async fn echo(&self, s: String) -> String; }
/// struct Impl;
/// impl Echo for Impl {
///     async fn echo(&self, s: String) -> String {
///         let ctx = rpc_core::Context::current().expect("inside a handler");
///         let tenant = ctx.metadata().get_str("tenant").unwrap_or("none").to_owned();
///         format!("{s} (tenant {tenant})")
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Context {
    pub(crate) request_id: u64,
    pub(crate) method: &'static MethodInfo,
    pub(crate) deadline: Option<Instant>,
    pub(crate) metadata: Metadata,
    /// Who sent the call: its address, and the DNS names of its verified certificate (mutual TLS).
    pub(crate) peer: Arc<Peer>,
    /// The trace and the caller, when there are (boxed together: a context is moved with every call, and most
    /// calls have neither).
    pub(crate) extras: Option<Box<Extras>>,
}

/// What few calls have: a trace, and a caller an authorization layer identified.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    /// The trace the call belongs to (its `rpc.serve` span's context).
    pub(crate) trace: Option<TraceContext>,
    /// Who sent the call.
    pub(crate) caller: Option<Arc<Caller>>,
    /// The stream the call opened (protocol 1.1).
    pub(crate) stream: Option<Arc<crate::server::stream::Opened>>,
}

impl Extras {
    /// `extras` with the trace set to `trace`.
    pub(crate) fn set_trace(extras: &mut Option<Box<Extras>>, trace: TraceContext) {
        extras.get_or_insert_default().trace = Some(trace);
    }

    /// `extras` with the caller set to `caller`.
    pub(crate) fn set_caller(extras: &mut Option<Box<Extras>>, caller: Caller) {
        extras.get_or_insert_default().caller = Some(Arc::new(caller));
    }

    /// The trace in `extras`.
    pub(crate) fn trace(extras: &Option<Box<Extras>>) -> Option<TraceContext> {
        extras.as_ref().and_then(|e| e.trace)
    }

    /// The caller in `extras`.
    pub(crate) fn caller(extras: &Option<Box<Extras>>) -> Option<&Caller> {
        extras.as_ref().and_then(|e| e.caller.as_deref())
    }
}

impl Context {
    /// The context of the call served by the current task, or `None` outside a handler. A task the handler
    /// spawns does not inherit it: spawn the task's future wrapped in [`Context::scope`].
    pub fn current() -> Option<Context> {
        CONTEXT.try_with(Context::clone).ok()
    }

    /// The request id, unique among the calls of one connection.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The method called.
    pub fn method(&self) -> &'static MethodInfo {
        self.method
    }

    /// When the caller stops waiting (the budget it sent, counted from the request's arrival), if it set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The metadata the caller sent.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The caller's address: its TCP address (with or without TLS), or [`PeerAddr::Unix`] over a Unix domain
    /// socket. `None` only for a call that came over no transport at all.
    pub fn peer(&self) -> Option<&PeerAddr> {
        self.peer.addr()
    }

    /// The DNS names (subject alternative names) of the certificate the client presented over mutual TLS,
    /// which the server verified against its client CA; empty without TLS or without a client certificate.
    /// They identify the client: a server can authorize calls by them.
    pub fn client_names(&self) -> &[String] {
        self.peer.client_names()
    }

    /// Who sent the call, as an authorization layer ([`crate::server::layer::Authorize`]) found out; `None`
    /// when the server has none.
    pub fn caller(&self) -> Option<&Caller> {
        Extras::caller(&self.extras)
    }

    /// The trace context of the call's `rpc.serve` span (when a tracing subscriber records it): calls the
    /// handler makes through a client continue this trace.
    pub fn trace(&self) -> Option<TraceContext> {
        Extras::trace(&self.extras)
    }

    /// `fut`, run with this context as the current one: how a task that a handler spawns sees the call it
    /// works for (its metadata, deadline, peer, trace; calls it makes continue the trace).
    ///
    /// ```no_run
    /// # #[rpc_core::service] trait Jobs { async fn start(&self, job: String) -> bool; }
    /// use rpc_core::Context;
    ///
    /// struct Impl;
    /// impl Jobs for Impl {
    ///     async fn start(&self, job: String) -> bool {
    ///         let ctx = Context::current().expect("inside a handler");
    ///         tokio::spawn(ctx.scope(async move {
    ///             // Still the call's context, in a task of its own.
    ///             let tenant = Context::current().and_then(|c| c.metadata().get_str("tenant").map(str::to_owned));
    ///             println!("{job} for {tenant:?}");
    ///         }));
    ///         true
    ///     }
    /// }
    /// ```
    pub fn scope<F: core::future::Future>(
        self,
        fut: F,
    ) -> impl core::future::Future<Output = F::Output> {
        CONTEXT.scope(self, fut)
    }
}
