//! A handler's task: runs the method's future with the call's context, stops it when the deadline passes or a
//! cancel arrives, turns a panic into `Internal` for that call alone, and sends the one answer.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use rpc_codec::Status;
use tokio::sync::oneshot;

use super::connection::ConnShared;
use super::service::Call;
use crate::context::Context;
use crate::method::MethodInfo;

/// How a handler ended.
enum Outcome<T> {
    Done(T),
    Panicked(String),
    DeadlineExceeded,
    /// The caller cancelled, or the connection closed: nobody waits for an answer.
    Cancelled,
}

/// Registers the call and spawns its handler; `reply` sends the handler's value back.
pub(crate) fn spawn<F, T, R, RF>(call: Call<'_>, method: &'static MethodInfo, handler: F, reply: R)
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
    R: FnOnce(Arc<ConnShared>, u64, T) -> RF + Send + 'static,
    RF: Future<Output = ()> + Send,
{
    let conn = Arc::clone(call.conn);
    let id = call.request_id;
    let one_way = call.one_way;
    let deadline = call.deadline;
    let context = Context {
        request_id: id,
        method,
        deadline,
        metadata: call.metadata.to_metadata(),
        peer: conn.peer,
    };
    // Registered before the task starts, so that a cancel arriving at once still finds it.
    let cancelled = conn.register(id);
    tokio::spawn(async move {
        let outcome = run(context.scope(handler), deadline, cancelled).await;
        if !one_way {
            match outcome {
                Outcome::Done(value) => reply(Arc::clone(&conn), id, value).await,
                Outcome::Panicked(why) => {
                    let message = format!("{method} panicked: {why}");
                    conn.reply_error(id, Status::Internal, &message).await;
                }
                Outcome::DeadlineExceeded => {
                    let message = format!("{method} did not finish within the caller's deadline");
                    conn.reply_error(id, Status::DeadlineExceeded, &message)
                        .await;
                }
                Outcome::Cancelled => {}
            }
        }
        conn.finish(id);
    });
}

/// Drives the handler until it ends, panics, runs out of time or is cancelled.
async fn run<T>(
    handler: impl Future<Output = T>,
    deadline: Option<tokio::time::Instant>,
    cancelled: oneshot::Receiver<()>,
) -> Outcome<T> {
    let mut handler = std::pin::pin!(handler);
    // A panic inside the handler is caught at each poll: the task, its connection and the other calls live on.
    let caught = std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    });
    let timed = async {
        match deadline {
            Some(at) => tokio::time::timeout_at(at, caught).await.ok(),
            None => Some(caught.await),
        }
    };
    tokio::select! {
        biased;
        // Fires on a cancel frame, and when the connection is torn down (the sender is dropped).
        _ = cancelled => Outcome::Cancelled,
        result = timed => match result {
            Some(Ok(value)) => Outcome::Done(value),
            Some(Err(why)) => Outcome::Panicked(why),
            None => Outcome::DeadlineExceeded,
        },
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("a panic without a message")
    }
}
