//! [`Only`]: a client layer for the calls of some services or methods alone; the client's other calls pass
//! beside it.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, Request, Response, Stack};
use crate::method::Selection;

/// `layer` for the calls of some services or methods only.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::client::layer::Only;
///
/// // Calc.slow gives up after 50 ms; every other call passes beside the timeout.
/// let timeout = Only::methods(["Calc.slow"], tower::timeout::TimeoutLayer::new(Duration::from_millis(50)));
/// let config = rpc_core::ClientConfig::default().layer(timeout);
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct Only<L> {
    selection: Selection,
    layer: L,
}

impl<L> Only<L> {
    /// `layer` for every method of the services named `services`.
    pub fn services<I: IntoIterator<Item = N>, N: Into<String>>(services: I, layer: L) -> Only<L> {
        Only {
            selection: Selection::services(services),
            layer,
        }
    }

    /// `layer` for the methods named `methods` (`"Service.method"`, as on the wire).
    pub fn methods<I: IntoIterator<Item = N>, N: AsRef<str>>(methods: I, layer: L) -> Only<L> {
        Only {
            selection: Selection::methods(methods),
            layer,
        }
    }
}

impl<L> Layer<Stack> for Only<L>
where
    L: Layer<Stack>,
    L::Service: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Error: Into<BoxError>,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    type Service = OnlyService;

    fn layer(&self, inner: Stack) -> OnlyService {
        let layered = self.layer.layer(inner.clone());
        OnlyService {
            layered: Stack::new(super::MapError(layered)),
            inner,
            selection: self.selection.clone(),
        }
    }
}

/// The service of [`Only`]: the layered stack for the calls selected, the plain one for the others.
#[derive(Clone)]
pub struct OnlyService {
    layered: Stack,
    inner: Stack,
    selection: Selection,
}

impl std::fmt::Debug for OnlyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlyService")
            .field("selection", &self.selection)
            .finish_non_exhaustive()
    }
}

impl Service<Request> for OnlyService {
    type Response = Response;
    type Error = BoxError;
    type Future = <Stack as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let layered = self.layered.poll_ready(cx)?;
        let inner = self.inner.poll_ready(cx)?;
        match (layered, inner) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.selection.contains(request.method()) {
            true => self.layered.call(request),
            false => self.inner.call(request),
        }
    }
}
