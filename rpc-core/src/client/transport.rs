//! The innermost service of a client's user layers: a call's [`Request`], its arguments already encoded, sent
//! as it is to the client's target (one address, or the instances of a balanced client, with their retries),
//! and [`through`], which takes a typed call through the layers.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use super::Kind;
use super::connection::Reply;
use super::layer::{BoxError, Request, Response, Stack, error_of};
use crate::balance::CallInfo;
use crate::error::{PayloadSide, RpcError, payload_status};
use crate::payload::{Encoded, Payload};

/// Sends encoded requests to a client's target.
#[derive(Clone)]
pub(crate) struct Transport(Kind);

impl Transport {
    /// The transport to `target`, as the innermost service of a stack.
    pub(crate) fn stack(target: Kind) -> Stack {
        BoxCloneSyncService::new(Transport(target))
    }
}

impl Service<Request> for Transport {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let target = self.0.clone();
        Box::pin(async move {
            let payload = Encoded(&request.payload, request.flags);
            let method = request.method;
            let call = CallInfo::new(method, &request.metadata)
                .with_key(request.key)
                .with_deadline_chosen(request.deadline_chosen);
            let now = Instant::now();
            let reply = target
                .round_trip(call, &payload, request.deadline, now, None)
                .await;
            Ok(match reply {
                Ok(Reply::Value(bytes)) => Response::Value(bytes),
                Ok(Reply::AppError(bytes)) => Response::AppError(bytes),
                Ok(Reply::Failed(e)) | Err(e) => Response::Failed(e),
                Ok(Reply::DeadlineExceeded) => {
                    Response::Failed(super::direct::deadline_exceeded(method))
                }
            })
        })
    }
}

/// Takes a call through the user's layers: its arguments are encoded into its request, and its response comes
/// back as the reply the typed call decodes.
pub(crate) async fn through<P: Payload + ?Sized>(
    mut stack: Stack,
    call: CallInfo<'_>,
    args: &P,
    deadline: Instant,
) -> Result<Reply, RpcError> {
    let method = call.method;
    let payload = args.to_bytes().map_err(|e| {
        let status = payload_status(PayloadSide::Request, &e);
        RpcError::not_processed(
            status,
            format!("the arguments of {method} do not encode: {e}"),
        )
    })?;
    let request = Request {
        method,
        metadata: call.metadata.clone(),
        deadline,
        deadline_chosen: call.deadline_chosen,
        payload,
        key: call.key,
        flags: args.flags(),
    };
    std::future::poll_fn(|cx| stack.poll_ready(cx))
        .await
        .map_err(error_of)?;
    match stack.call(request).await.map_err(error_of)? {
        Response::Value(bytes) => Ok(Reply::Value(bytes)),
        Response::AppError(bytes) => Ok(Reply::AppError(bytes)),
        Response::Failed(e) => Err(e),
    }
}
