//! [`Traced`]: the `rpc.serve` span of each call, continuing the caller's W3C `traceparent` (or starting a
//! trace), with the call's status and duration recorded when it ends; the handler runs inside it and sees its
//! trace through [`crate::Context::trace`]. Built only when a subscriber records it: otherwise a call costs one
//! load of tracing's global level.

use rpc_codec::Status;
use tokio::time::Instant;

use super::super::response::Response;
use super::{Head, Intercept};
use crate::metrics::Ended;
use crate::trace::{TRACEPARENT, TraceContext, join, record_end};

/// Puts each call in a span, when one is recorded.
#[derive(Debug, Default)]
pub(crate) struct Traced;

/// A call's span, and when it started; records the call as cancelled if dropped before it ends.
pub(crate) struct Span {
    pub(crate) span: tracing::Span,
    started: Instant,
    done: bool,
}

impl Span {
    fn finish(&mut self, ended: Ended) {
        self.done = true;
        record_end(&self.span, ended, self.started);
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Ended::Status(Status::Cancelled));
        }
    }
}

/// The span of the call of `head`, with the trace the handler runs in set on `head`, or `None` when nobody
/// records it.
fn begin(head: &mut Head) -> Option<Box<Span>> {
    let method = head.method;
    let span = tracing::info_span!(
        "rpc.serve",
        service = method.service,
        method = method.name,
        request_id = head.request_id,
        status = tracing::field::Empty,
        duration_us = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return None;
    }
    let incoming = head
        .metadata
        .get_str(TRACEPARENT)
        .and_then(TraceContext::parse);
    let trace = join(&span, incoming);
    crate::context::Extras::set_trace(&mut head.extras, trace);
    Some(Box::new(Span {
        span,
        started: Instant::now(),
        done: false,
    }))
}

impl Intercept for Traced {
    /// Boxed: most calls are not traced, and what a call carries should stay small.
    type State = Option<Box<Span>>;

    #[inline]
    fn before(&self, head: &mut Head) -> Result<Option<Box<Span>>, Response> {
        // The level check is here, not in `begin`, so that an untraced call makes no call for it.
        Ok(match tracing::level_enabled!(tracing::Level::INFO) {
            true => begin(head),
            false => None,
        })
    }

    #[inline]
    fn after(&self, state: Option<Box<Span>>, ended: Ended) {
        if let Some(mut span) = state {
            span.finish(ended);
        }
    }
}
