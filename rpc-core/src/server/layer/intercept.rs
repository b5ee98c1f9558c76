//! [`intercept`]: a tower layer from a closure (or any [`Interceptor`]) that sees each call's [`Request`]
//! before its service does: it may read and rewrite the metadata, or refuse the call with a [`Response`] of its
//! choosing. The shortest way to write an authentication check (tonic's interceptors are the model);
//! [`super::Authorize`] is one.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;
use super::only::Either;

/// A layer that runs `check` on each call first: `Err(response)` answers the call with it, `Ok(())` passes the
/// call on.
///
/// ```
/// use rpc_core::server::{layer::intercept, Request, Response};
/// use rpc_core::Status;
///
/// let api_key = intercept(|request: &mut Request| match request.metadata().get_str("x-api-key") {
///     Some("let-me-in") => Ok(()),
///     _ => Err(Response::error(Status::Unauthenticated, "an x-api-key is needed")),
/// });
/// # let _ = rpc_core::Server::builder().layer(api_key);
/// ```
pub fn intercept<F>(check: F) -> Intercepted<F>
where
    F: Fn(&mut Request) -> Result<(), Response> + Clone,
{
    Intercepted { check, inner: () }
}

/// What an interceptor does with each call before its service: `Err(response)` answers the call with it,
/// `Ok(())` passes the call on. Closures of that signature are interceptors.
pub trait Interceptor {
    /// Looks at (and may rewrite) `request` before its service does.
    fn intercept(&self, request: &mut Request) -> Result<(), Response>;
}

impl<F: Fn(&mut Request) -> Result<(), Response>> Interceptor for F {
    fn intercept(&self, request: &mut Request) -> Result<(), Response> {
        self(request)
    }
}

impl<F, S> Intercepted<F, S> {
    /// `check` in front of `inner`.
    pub(crate) fn new(check: F, inner: S) -> Intercepted<F, S> {
        Intercepted { check, inner }
    }
}

/// The layer (and the service) of [`intercept`].
#[derive(Clone, Debug)]
pub struct Intercepted<F, S = ()> {
    check: F,
    inner: S,
}

impl<F: Clone, S> Layer<S> for Intercepted<F> {
    type Service = Intercepted<F, S>;

    fn layer(&self, inner: S) -> Intercepted<F, S> {
        Intercepted {
            check: self.check.clone(),
            inner,
        }
    }
}

impl<F, S> Service<Request> for Intercepted<F, S>
where
    F: Interceptor,
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Either<std::future::Ready<Result<Response, BoxError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.check.intercept(&mut request) {
            Ok(()) => Either::Right {
                future: self.inner.call(request),
            },
            Err(refused) => Either::Left {
                future: std::future::ready(Ok(refused)),
            },
        }
    }
}
