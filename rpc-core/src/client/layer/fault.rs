//! [`InjectFault`](crate::fault::InjectFault) on a client, as a [`Fault`](crate::fault::Fault) describes it. An
//! aborted call fails here with the fault's status and message, marked not processed, and is not sent; a delayed
//! call waits before it is sent (or aborted), and a delay that would outlast the call's deadline fails it with
//! `DeadlineExceeded` at the deadline, unsent.

use std::pin::Pin;
use std::task::{Context, Poll};

use rpc_codec::Status;
use tokio::time::Instant;
use tower_service::Service;

use super::{BoxError, Request, Response};
use crate::error::RpcError;
use crate::fault::FaultInjected;

impl<S> Service<Request> for FaultInjected<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method();
        let injected = self.fault.draw(method, request.metadata());
        let aborted = injected
            .abort
            .map(|(status, message)| Response::Failed(RpcError::not_processed(status, message)));
        let (delay, aborted) = match (injected.delay, aborted) {
            (None, None) => {
                let future = self.inner.call(request);
                return Box::pin(async move { future.await.map_err(Into::into) });
            }
            (None, Some(aborted)) => {
                tracing::debug!(%method, "fault injected: call aborted before it was sent");
                return Box::pin(std::future::ready(Ok(aborted)));
            }
            (Some(delay), aborted) => (delay, aborted),
        };
        tracing::debug!(%method, ?delay, aborted = aborted.is_some(), "fault injected: call delayed");
        // The service that was made ready goes with the call; this one keeps a clone for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let until = Instant::now() + delay;
            let deadline = request.deadline();
            if deadline <= until {
                tokio::time::sleep_until(deadline).await;
                let message = format!(
                    "{method} did not complete within its deadline: a fault delayed it by {} ms, unsent",
                    delay.as_millis()
                );
                let error = RpcError::not_processed(Status::DeadlineExceeded, message);
                return Ok(Response::Failed(error));
            }
            tokio::time::sleep_until(until).await;
            match aborted {
                Some(aborted) => Ok(aborted),
                None => inner.call(request).await.map_err(Into::into),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::client::layer::test_request;
    use crate::fault::{Fault, InjectFault};
    use crate::method::MethodInfo;
    use tower_layer::Layer;

    const ADD: MethodInfo = MethodInfo {
        service: "Calc",
        name: "add",
        id: rpc_codec::method_id("Calc", "add"),
        idempotent: false,
    };

    /// A transport that counts the calls sent.
    fn counting(
        sent: Arc<AtomicUsize>,
    ) -> impl Service<
        Request,
        Response = Response,
        Error = BoxError,
        Future = impl Future<Output = Result<Response, BoxError>> + Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |_: Request| {
            sent.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(Response::Value(bytes::Bytes::from_static(&[7]))) }
        })
    }

    fn failed(response: Response) -> RpcError {
        match response {
            Response::Failed(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_call_fails_unsent_and_a_delayed_one_is_sent_late() {
        let sent = Arc::new(AtomicUsize::new(0));
        let abort = InjectFault::new(Fault::new().abort(Status::Unavailable, "injected", 100.0));
        let start = Instant::now();
        let e = failed(
            abort
                .layer(counting(Arc::clone(&sent)))
                .call(test_request(&ADD, start))
                .await
                .unwrap(),
        );
        assert_eq!((e.code(), e.message()), (Status::Unavailable, "injected"));
        assert!(e.is_not_processed());
        assert_eq!(sent.load(Ordering::SeqCst), 0);

        let delay = InjectFault::new(Fault::new().delay(Duration::from_millis(250), 100.0));
        let request = test_request(&ADD, start + Duration::from_secs(10));
        let answer = delay
            .layer(counting(Arc::clone(&sent)))
            .call(request)
            .await
            .unwrap();
        assert_eq!(answer.status(), Status::Ok);
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(sent.load(Ordering::SeqCst), 1);

        // Past the deadline: fails at the deadline, unsent.
        let start = Instant::now();
        let request = test_request(&ADD, start + Duration::from_millis(100));
        let e = failed(
            delay
                .layer(counting(Arc::clone(&sent)))
                .call(request)
                .await
                .unwrap(),
        );
        assert_eq!(e.code(), Status::DeadlineExceeded);
        assert!(e.is_not_processed());
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(sent.load(Ordering::SeqCst), 1);
    }
}
