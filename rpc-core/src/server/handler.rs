//! A call's handler: polled once at once, in the connection's read loop, with the call's context; a handler
//! that finishes there (most do: they compute and return) is answered without a task of its own. One that is
//! still pending (or every one, with `ServerConfig::inline_handlers` off) moves to its own task, which stops it
//! when the deadline passes or a cancel arrives. Either way a panic yields `Internal` for that call alone, and
//! exactly one answer is sent.
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
use super::service::Call;
use crate::context::Context;
use crate::method::MethodInfo;
use crate::metrics::{Ended, MethodStats, Metrics};
use crate::trace::{TRACEPARENT, TraceContext};

/// How a handler ended.
enum Outcome<T> {
    Done(T),
    Panicked(String),
    DeadlineExceeded,
    /// The caller cancelled, or the connection closed: nobody waits for an answer.
    Cancelled,
}

impl<T> Outcome<T> {
    /// How the call ended, for its counters and span: a value the method's `is_app_error` picks out is its own
    /// error (`AppError`), any other value `Ok`.
    fn ended(&self, is_app_error: fn(&T) -> bool) -> Ended {
        match self {
            Outcome::Done(value) if is_app_error(value) => Ended::AppError,
            Outcome::Done(_) => Ended::Status(Status::Ok),
            Outcome::Panicked(_) => Ended::Status(Status::Internal),
            Outcome::DeadlineExceeded => Ended::Status(Status::DeadlineExceeded),
            Outcome::Cancelled => Ended::Status(Status::Cancelled),
        }
    }
}

/// A call's counters, when the server has metrics: counted in flight from dispatch to its end. One dropped
/// unfinished (its task stopped with the runtime) counts as cancelled.
struct Counted {
    stats: Arc<MethodStats>,
    metrics: Metrics,
    arrived: Instant,
    done: std::cell::Cell<bool>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if !self.done.get() {
            self.finish(Ended::Status(Status::Cancelled));
        }
    }
}

impl Counted {
    fn begin(call: &Call<'_>) -> Option<Counted> {
        let (stats, metrics) = (call.stats?, call.metrics?);
        metrics.call_started();
        Some(Counted {
            stats: Arc::clone(stats),
            metrics: metrics.clone(),
            arrived: call.arrived,
            done: std::cell::Cell::new(false),
        })
    }

    fn finish(&self, ended: Ended) {
        self.done.set(true);
        self.stats.record(ended, self.arrived.elapsed());
        self.metrics.call_ended();
    }
}

/// What records a call's end: its span and its counters, each if there is one, and how to tell the method's
/// own error among its values.
struct Recorders<T> {
    traced: Option<Traced>,
    counted: Option<Counted>,
    is_app_error: fn(&T) -> bool,
}

impl<T> Recorders<T> {
    /// Ends the call's span and counters with its outcome.
    fn finish(&self, outcome: &Outcome<T>) {
        if self.traced.is_none() && self.counted.is_none() {
            return;
        }
        let ended = outcome.ended(self.is_app_error);
        if let Some(traced) = &self.traced {
            traced.finish(ended.label());
        }
        if let Some(counted) = &self.counted {
            counted.finish(ended);
        }
    }
}

/// The `rpc.serve` span of a call being served, and when it started; made only when a subscriber records it.
struct Traced {
    span: tracing::Span,
    started: Instant,
}

impl Traced {
    /// The span of `call`, and the trace context the handler runs in (continuing the caller's `traceparent`),
    /// or `None` and no clock read when nobody records the span.
    fn begin(call: &Call<'_>, method: &MethodInfo) -> Option<(Traced, TraceContext)> {
        let span = tracing::info_span!(
            "rpc.serve",
            service = method.service,
            method = method.name,
            request_id = call.request_id,
            status = tracing::field::Empty,
            duration_us = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_id = tracing::field::Empty,
        );
        if span.is_disabled() {
            return None;
        }
        let incoming = call
            .metadata
            .get_str(TRACEPARENT)
            .and_then(TraceContext::parse);
        let trace = match incoming {
            Some(parent) => {
                span.record("parent_id", format_args!("{:016x}", parent.span_id));
                parent.child()
            }
            None => TraceContext::new_root(),
        };
        span.record("trace_id", format_args!("{:032x}", trace.trace_id));
        span.record("span_id", format_args!("{:016x}", trace.span_id));
        let started = Instant::now();
        Some((Traced { span, started }, trace))
    }

    fn finish(&self, status: &str) {
        self.span.record("status", status);
        self.span
            .record("duration_us", self.started.elapsed().as_micros() as u64);
    }
}

/// Runs the handler of `call`: polls it once here, and if it is not done, spawns the rest. `reply` queues the
/// handler's value as the answer (the caller of `reply` has waited for room in the outbox); `is_app_error`
/// says whether a value is the method's own error, which the call's counters and span record as `AppError`.
pub(crate) fn spawn<F, T, R>(
    call: Call<'_>,
    method: &'static MethodInfo,
    handler: F,
    reply: R,
    is_app_error: fn(&T) -> bool,
) where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
    R: FnOnce(&ConnShared, u64, T) + Send + 'static,
{
    let conn = call.conn;
    let id = call.request_id;
    let one_way = call.one_way;
    let deadline = call.deadline;
    // The level check is here, not in `Traced::begin`, so that an untraced call makes no call for it.
    let (traced, trace) = match tracing::level_enabled!(tracing::Level::INFO) {
        true => match Traced::begin(&call, method) {
            Some((traced, trace)) => (Some(traced), Some(Box::new(trace))),
            None => (None, None),
        },
        false => (None, None),
    };
    let recorders = Recorders {
        traced,
        counted: Counted::begin(&call),
        is_app_error,
    };
    let context = Context {
        request_id: id,
        method,
        deadline,
        metadata: call.metadata.to_metadata(),
        peer: conn.peer.clone(),
        client_names: conn.client_names.clone(),
        trace,
    };
    let mut handler = Box::pin(handler);
    if !call.inline {
        spawn_pending(conn, context, one_way, handler, reply, recorders);
        return;
    }
    let polled = {
        let _entered = recorders.traced.as_ref().map(|t| t.span.enter());
        poll_once(&context, handler.as_mut())
    };
    let outcome = match polled {
        Poll::Ready(Ok(value)) => Outcome::Done(value),
        Poll::Ready(Err(why)) => Outcome::Panicked(why),
        Poll::Pending => {
            spawn_pending(conn, context, one_way, handler, reply, recorders);
            return;
        }
    };
    recorders.finish(&outcome);
    // Queued even past the outbox's limit: the read loop takes no request while the queue is full, so an
    // inline answer goes at most one over it.
    if !one_way {
        answer(conn, id, method, outcome, reply);
    }
}

/// Polls `handler` once with `context` as the current call, catching a panic.
fn poll_once<F: Future>(
    context: &Context,
    handler: Pin<&mut F>,
) -> Poll<Result<F::Output, String>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    context.sync_scope(|| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.poll(&mut cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    })
}

/// Moves a pending handler to its own task, registered so that a cancel or the connection's end stops it.
fn spawn_pending<F, T, R>(
    conn: &Arc<ConnShared>,
    context: Context,
    one_way: bool,
    handler: Pin<Box<F>>,
    reply: R,
    recorders: Recorders<T>,
) where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
    R: FnOnce(&ConnShared, u64, T) + Send + 'static,
{
    let conn = Arc::clone(conn);
    let (id, method, deadline) = (context.request_id, context.method, context.deadline);
    // Registered before the task starts, so that a cancel arriving at once still finds it.
    let cancelled = conn.register(id);
    let span = recorders
        .traced
        .as_ref()
        .map_or_else(tracing::Span::none, |t| t.span.clone());
    let task = async move {
        let outcome = run(context.scope(handler), deadline, cancelled).await;
        recorders.finish(&outcome);
        if !one_way && !matches!(outcome, Outcome::Cancelled) {
            conn.outbox.wait_for_room().await;
            answer(&conn, id, method, outcome, reply);
        }
        conn.finish(id);
    };
    tokio::spawn(task.instrument(span));
}

/// Queues the one answer of call `id`.
fn answer<T, R>(conn: &ConnShared, id: u64, method: &MethodInfo, outcome: Outcome<T>, reply: R)
where
    R: FnOnce(&ConnShared, u64, T),
{
    match outcome {
        Outcome::Done(value) => reply(conn, id, value),
        Outcome::Panicked(why) => {
            let message = format!("{method} panicked: {why}");
            conn.send_error(id, Status::Internal, &message);
        }
        Outcome::DeadlineExceeded => {
            let message = format!("{method} did not finish within the caller's deadline");
            conn.send_error(id, Status::DeadlineExceeded, &message);
        }
        Outcome::Cancelled => {}
    }
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
        // Fires on a cancel frame, and when the connection is torn down (the sender is dropped). A cancel that
        // comes once the deadline has passed is the client's echo of that deadline (its deadline task cancels
        // every call it times out): the call ended by its deadline, whichever of the two this task saw first.
        _ = cancelled => match deadline {
            Some(at) if tokio::time::Instant::now() >= at => Outcome::DeadlineExceeded,
            _ => Outcome::Cancelled,
        },
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
        let ran = run(std::future::pending::<()>(), Some(deadline), rx);
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
