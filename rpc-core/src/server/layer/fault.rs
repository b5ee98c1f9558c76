//! [`InjectFault`](crate::fault::InjectFault) on a server, as a [`Fault`](crate::fault::Fault) describes it. An
//! aborted call is answered with the fault's status and message, and its handler is not run; a delayed call
//! waits, then goes on (or is aborted), and a delay that would outlast the call's deadline ends at the deadline
//! with `DeadlineExceeded`, its handler not run either.

use std::pin::Pin;
use std::task::{Context, Poll};

use rpc_codec::Status;
use tokio::time::Instant;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;
use super::only::Either;
use crate::fault::FaultInjected;

/// The future of a delayed call.
type Delayed = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

impl<S> Service<Request> for FaultInjected<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future =
        Either<std::future::Ready<Result<Response, BoxError>>, Either<Delayed, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method();
        let injected = self.fault.draw(method, request.metadata());
        let Some(delay) = injected.delay else {
            return match injected.abort {
                Some((status, message)) => {
                    tracing::debug!(%method, %status, "fault injected: call aborted");
                    Either::Left {
                        future: std::future::ready(Ok(Response::error(status, message))),
                    }
                }
                None => Either::Right {
                    future: Either::Right {
                        future: self.inner.call(request),
                    },
                },
            };
        };
        tracing::debug!(%method, ?delay, aborted = injected.abort.is_some(), "fault injected: call delayed");
        // The service that was made ready goes with the call; this one keeps a clone for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let delayed = async move {
            let until = Instant::now() + delay;
            if let Some(deadline) = request.deadline()
                && deadline <= until
            {
                tokio::time::sleep_until(deadline).await;
                let message = format!(
                    "{method} did not finish within the caller's deadline: a fault delayed it by {} ms",
                    delay.as_millis()
                );
                return Ok(Response::error(Status::DeadlineExceeded, message));
            }
            tokio::time::sleep_until(until).await;
            match injected.abort {
                Some((status, message)) => Ok(Response::error(status, message)),
                None => inner.call(request).await.map_err(Into::into),
            }
        };
        Either::Right {
            future: Either::Left {
                future: Box::pin(delayed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::fault::{Fault, InjectFault};
    use crate::method::MethodInfo;
    use crate::server::layer::test_request;
    use tower_layer::Layer;

    const ADD: MethodInfo = MethodInfo {
        service: "Calc",
        name: "add",
        id: rpc_codec::method_id("Calc", "add"),
        idempotent: false,
    };

    /// A handler that counts its runs.
    fn counting(
        runs: Arc<AtomicUsize>,
    ) -> impl Service<
        Request,
        Response = Response,
        Error = BoxError,
        Future = impl Future<Output = Result<Response, BoxError>> + Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |_: Request| {
            runs.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(Response::value_bytes(vec![7])) }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_abort_answers_without_the_handler_and_a_delay_waits_then_goes_on() {
        let runs = Arc::new(AtomicUsize::new(0));
        let abort = InjectFault::new(Fault::new().abort(Status::Unavailable, "down", 100.0));
        let answer = abort
            .layer(counting(Arc::clone(&runs)))
            .call(test_request(&ADD))
            .await
            .unwrap();
        assert_eq!(answer.status(), Status::Unavailable);
        assert_eq!(answer.message(), Some("down"));
        assert_eq!(runs.load(Ordering::SeqCst), 0);

        let delay = InjectFault::new(Fault::new().delay(Duration::from_millis(300), 100.0));
        let start = Instant::now();
        let answer = delay
            .layer(counting(Arc::clone(&runs)))
            .call(test_request(&ADD))
            .await
            .unwrap();
        assert_eq!(answer.status(), Status::Ok);
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        // Both: delayed, then aborted.
        let both = InjectFault::new(Fault::new().delay(Duration::from_millis(300), 100.0).abort(
            Status::Internal,
            "boom",
            100.0,
        ));
        let start = Instant::now();
        let answer = both
            .layer(counting(Arc::clone(&runs)))
            .call(test_request(&ADD))
            .await
            .unwrap();
        assert_eq!(
            (answer.status(), start.elapsed()),
            (Status::Internal, Duration::from_millis(300))
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_past_the_deadline_ends_at_the_deadline_without_the_handler() {
        let runs = Arc::new(AtomicUsize::new(0));
        let delay = InjectFault::new(Fault::new().delay(Duration::from_secs(5), 100.0));
        let mut request = test_request(&ADD);
        let start = Instant::now();
        request.deadline = Some(start + Duration::from_millis(200));
        let answer = delay
            .layer(counting(Arc::clone(&runs)))
            .call(request)
            .await
            .unwrap();
        assert_eq!(answer.status(), Status::DeadlineExceeded);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert_eq!(
            answer.message(),
            Some(
                "Calc.add did not finish within the caller's deadline: a fault delayed it by 5000 ms"
            )
        );
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }
}
