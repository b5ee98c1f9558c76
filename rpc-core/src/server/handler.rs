//! One call being served, its layers and handler together: polled once at once, in the connection's read
//! loop; a call that finishes there (most do: they compute and return) is answered without a task of its own.
//! One that is still pending (or every one, with `ServerConfig::inline_handlers` off) moves to its own task,
//! which stops it when the deadline passes or a cancel arrives. Either way a panic yields `Internal` for that
//! call alone, and exactly one answer is sent.
//!
//! The first poll uses a no-op waker: a handler left pending is polled again by its task straight away, which
//! registers the task's waker (a future need only wake the waker of its latest poll).

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rpc_codec::Status;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::connection::ConnShared;
use super::layer::Started;
use super::response::Response;
use crate::metrics::Ended;

/// How a call ended.
pub(crate) enum Outcome {
    Done(Response),
    Panicked(String),
    DeadlineExceeded,
    /// The caller cancelled, or the connection closed: nobody waits for an answer.
    Cancelled,
}

impl Outcome {
    /// How the call ended, as the layers that note it name it.
    pub(crate) fn ended(&self) -> Ended {
        match self {
            Outcome::Done(response) => response.ended(),
            Outcome::Panicked(_) => Ended::Status(Status::Internal),
            Outcome::DeadlineExceeded => Ended::Status(Status::DeadlineExceeded),
            Outcome::Cancelled => Ended::Status(Status::Cancelled),
        }
    }
}

/// What the connection knows of a call it serves.
pub(crate) struct Serving {
    pub(crate) id: u64,
    pub(crate) method: &'static crate::MethodInfo,
    pub(crate) one_way: bool,
    pub(crate) deadline: Option<Instant>,
    /// Poll it once in place before giving it a task ([`crate::ServerConfig::inline_handlers`]).
    pub(crate) inline: bool,
}

/// Serves a call that the server's own layers started (`started`) and whose user layers and handler are
/// `call`: polls it once here, and if it is not done, spawns the rest on a task that stops it at its deadline
/// or on a cancel. The layers then hear how it ended, and exactly one answer is queued (none for a one-way call
/// or a cancelled one).
pub(crate) fn serve<F>(conn: &Arc<ConnShared>, serving: Serving, started: Started, mut call: F)
where
    F: Future<Output = Result<Response, std::convert::Infallible>> + Unpin + Send + 'static,
{
    if !serving.inline {
        spawn_pending(conn, serving, started, call);
        return;
    }
    let polled = {
        let _entered = started.span().map(tracing::Span::enter);
        poll_once(Pin::new(&mut call))
    };
    let outcome = match polled {
        Poll::Ready(Ok(Ok(response))) => Outcome::Done(response),
        Poll::Ready(Ok(Err(never))) => match never {},
        Poll::Ready(Err(why)) => Outcome::Panicked(why),
        Poll::Pending => {
            spawn_pending(conn, serving, started, call);
            return;
        }
    };
    drop(call);
    conn.own.end(started, || outcome.ended());
    // Queued even past the outbox's limit: the read loop takes no request while the queue is full, so an
    // inline answer goes at most one over it.
    if !serving.one_way {
        answer(conn, &serving, outcome);
    }
}

/// Polls `call` once, catching a panic.
fn poll_once<F: Future>(call: Pin<&mut F>) -> Poll<Result<F::Output, String>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| call.poll(&mut cx))) {
        Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
    }
}

/// Moves a pending call to its own task, registered so that a cancel or the connection's end stops it.
fn spawn_pending<F>(conn: &Arc<ConnShared>, serving: Serving, started: Started, call: F)
where
    F: Future<Output = Result<Response, std::convert::Infallible>> + Unpin + Send + 'static,
{
    let conn = Arc::clone(conn);
    // Registered before the task starts, so that a cancel arriving at once still finds it.
    let cancelled = conn.register(serving.id);
    let span = started.span().cloned().unwrap_or_else(tracing::Span::none);
    let task = async move {
        let outcome = run(call, serving.deadline, cancelled).await;
        conn.own.end(started, || outcome.ended());
        if !serving.one_way && !matches!(outcome, Outcome::Cancelled) {
            conn.outbox.wait_for_room().await;
            answer(&conn, &serving, outcome);
        }
        conn.finish(serving.id);
    };
    tokio::spawn(task.instrument(span));
}

/// Queues the one answer of the call.
fn answer(conn: &ConnShared, serving: &Serving, outcome: Outcome) {
    let (id, method) = (serving.id, serving.method);
    match outcome {
        Outcome::Done(response) => conn.send_response(id, &response),
        Outcome::Panicked(why) => {
            let message = format!("{method} panicked in a layer: {why}");
            conn.send_error(id, Status::Internal, &message);
        }
        Outcome::DeadlineExceeded => {
            let message = format!("{method} did not finish within the caller's deadline");
            conn.send_error(id, Status::DeadlineExceeded, &message);
        }
        Outcome::Cancelled => {}
    }
}

/// `future`, with a panic of any of its polls caught: the call ends with its message, and the task, its
/// connection and the other calls live on.
async fn catch_panics<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    })
    .await
}

/// Drives the call until it ends, panics, runs out of time or is cancelled; the call's future is dropped
/// before this returns, so that its layers have recorded how it ended.
pub(crate) async fn run<F>(
    call: F,
    deadline: Option<Instant>,
    cancelled: oneshot::Receiver<()>,
) -> Outcome
where
    F: Future<Output = Result<Response, std::convert::Infallible>>,
{
    let caught = catch_panics(call);
    let timed = async {
        match deadline {
            Some(at) => tokio::time::timeout_at(at, caught).await.ok(),
            None => Some(caught.await),
        }
    };
    tokio::select! {
        biased;
        // Fires on a cancel frame, and when the connection is torn down (the sender is dropped). A cancel that
        // comes once the deadline has passed is the client's echo of that deadline (its deadline task cancels
        // every call it times out): the call ended by its deadline, whichever of the two this task saw first.
        _ = cancelled => match deadline {
            Some(at) if Instant::now() >= at => Outcome::DeadlineExceeded,
            _ => Outcome::Cancelled,
        },
        result = timed => match result {
            Some(Ok(Ok(response))) => Outcome::Done(response),
            Some(Ok(Err(never))) => match never {},
            Some(Err(why)) => Outcome::Panicked(why),
            None => Outcome::DeadlineExceeded,
        },
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("a panic without a message")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    /// What `run` decides for a handler that never ends, given whether its deadline has passed and whether a
    /// cancel came.
    async fn outcome(deadline_passed: bool, cancel: bool) -> &'static str {
        let now = Instant::now();
        let deadline = if deadline_passed {
            now
        } else {
            now + Duration::from_secs(60)
        };
        let (tx, rx) = oneshot::channel();
        if cancel {
            tx.send(()).unwrap();
        } else {
            std::mem::forget(tx);
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        let never = std::future::pending::<Result<Response, std::convert::Infallible>>();
        let ran = run(never, Some(deadline), rx);
        match tokio::time::timeout(Duration::from_secs(1), ran).await {
            Ok(Outcome::DeadlineExceeded) => "deadline exceeded",
            Ok(Outcome::Cancelled) => "cancelled",
            Ok(_) => "other",
            Err(_) => "still running",
        }
    }

    /// The client's deadline task cancels each call it times out, so that cancel may reach the server before
    /// the server's own timer fires: the call still ended by its deadline. A cancel before the deadline is a
    /// cancel.
    #[tokio::test(start_paused = true)]
    async fn a_cancel_after_the_deadline_counts_as_the_deadline_and_one_before_as_a_cancel() {
        assert_eq!(outcome(true, true).await, "deadline exceeded");
        assert_eq!(outcome(false, true).await, "cancelled");
        assert_eq!(outcome(true, false).await, "deadline exceeded");
    }
}
