//! [`Dispatch`]: the innermost service, below every layer: the call's service decodes its arguments and starts
//! its handler; [`Dispatching`] is the handler's answer to come. Calls come here straight from the connection
//! (their arguments borrowed from its read buffer) or, when the server has tower layers, as the tower
//! [`Service`](tower_service::Service) those layers wrap.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rpc_codec::Status;

use super::registry::Registry;
use super::request::Request;
use super::response::Response;
use super::service::{Answer, Call};

/// Hands each call to its service; always ready. What the server's tower layers wrap.
#[derive(Clone, Debug)]
pub struct Dispatch {
    registry: Arc<Registry>,
    max_decoded_len: usize,
}

impl Dispatch {
    pub(crate) fn new(registry: Arc<Registry>, codec: &rpc_codec::Config) -> Dispatch {
        Dispatch {
            registry,
            max_decoded_len: codec.max_decoded_len,
        }
    }

    /// Most memory a call's decoded arguments may take.
    pub(crate) fn max_decoded_len(&self) -> usize {
        self.max_decoded_len
    }
}

impl tower_service::Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Dispatching;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Dispatching {
        let deadline = request.deadline();
        let call = Call {
            request_id: request.request_id,
            method: request.method,
            metadata: request.metadata,
            deadline,
            peer: request.peer,
            extras: request.extras,
            payload: &request.payload,
            max_decoded_len: self.max_decoded_len,
            json: request.json,
        };
        // The connection named only methods of the registry.
        let answer = match self.registry.method(call.method.id) {
            Some(entry) => entry.service.dispatch(call).0,
            None => call.unimplemented().0,
        };
        Dispatching::new(answer, request.method)
    }
}

/// A handler's answer to come (or a refusal, at once).
pub struct Dispatching {
    answer: Answer,
    method: &'static crate::MethodInfo,
}

impl std::fmt::Debug for Dispatching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dispatching")
    }
}

impl Dispatching {
    pub(crate) fn new(answer: Answer, method: &'static crate::MethodInfo) -> Dispatching {
        Dispatching { answer, method }
    }

    /// The answer, taken out once it is known.
    fn answered(&mut self) -> Response {
        match &mut self.answer {
            Answer::Running(handler) => handler.take().map_or_else(polled_again, Response::handler),
            Answer::Ready(response) => response.take().map_or_else(polled_again, |r| *r),
        }
    }
}

fn polled_again() -> Response {
    Response::error(Status::Internal, "the call's answer was taken already")
}

impl Future for Dispatching {
    type Output = Result<Response, Infallible>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = match &mut self.answer {
            Answer::Running(Some(handler)) => match handler.as_mut().poll_answer(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => self.answered(),
                Poll::Ready(Err(why)) => {
                    let method = self.method;
                    Response::error(Status::Internal, format!("{method} panicked: {why}"))
                }
            },
            _ => self.answered(),
        };
        Poll::Ready(Ok(answer))
    }
}
