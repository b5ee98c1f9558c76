//! [`Only`]: a layer for some services or methods alone; the server's other calls pass beside it. How a user
//! gives one method a timeout, or one service an authorization check.

use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;
use crate::method::Selection;

/// `layer` for the calls of some services or methods only.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::server::layer::Only;
///
/// // Calc.slow gets 50 ms; every other call passes beside the timeout.
/// let timeout = Only::methods(["Calc.slow"], tower::timeout::TimeoutLayer::new(Duration::from_millis(50)));
/// # let _ = rpc_core::Server::builder().layer(timeout);
/// ```
#[derive(Clone, Debug)]
pub struct Only<L> {
    selector: Selection,
    layer: L,
}

impl<L> Only<L> {
    /// `layer` for every method of the services named `services`.
    pub fn services<I: IntoIterator<Item = N>, N: Into<String>>(services: I, layer: L) -> Only<L> {
        Only {
            selector: Selection::services(services),
            layer,
        }
    }

    /// `layer` for the methods named `methods` (`"Service.method"`, as on the wire).
    pub fn methods<I: IntoIterator<Item = N>, N: AsRef<str>>(methods: I, layer: L) -> Only<L> {
        Only {
            selector: Selection::methods(methods),
            layer,
        }
    }
}

impl<L: Layer<S>, S: Clone> Layer<S> for Only<L> {
    type Service = OnlyService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        OnlyService {
            layered: self.layer.layer(inner.clone()),
            inner,
            selector: self.selector.clone(),
        }
    }
}

/// The service of [`Only`]: the layered stack for the calls selected, the plain one for the others.
#[derive(Clone, Debug)]
pub struct OnlyService<A, B> {
    layered: A,
    inner: B,
    selector: Selection,
}

impl<A, B> Service<Request> for OnlyService<A, B>
where
    A: Service<Request, Response = Response>,
    A::Error: Into<BoxError>,
    B: Service<Request, Response = Response>,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Either<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let layered = self.layered.poll_ready(cx).map_err(Into::into)?;
        let inner = self.inner.poll_ready(cx).map_err(Into::into)?;
        match (layered, inner) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.selector.contains(request.method) {
            Either::Left {
                future: self.layered.call(request),
            }
        } else {
            Either::Right {
                future: self.inner.call(request),
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of one of two stacks. (Its fields are its variants' futures; pin-project-lite takes no docs
    /// on them.)
    #[allow(missing_docs)]
    #[project = EitherProj]
    pub enum Either<A, B> {
        /// The layered stack's.
        Left { #[pin] future: A },
        /// The plain stack's.
        Right { #[pin] future: B },
    }
}

impl<A, B, EA, EB> Future for Either<A, B>
where
    A: Future<Output = Result<Response, EA>>,
    B: Future<Output = Result<Response, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EitherProj::Left { future } => future.poll(cx).map_err(Into::into),
            EitherProj::Right { future } => future.poll(cx).map_err(Into::into),
        }
    }
}
