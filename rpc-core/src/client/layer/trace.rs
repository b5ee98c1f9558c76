//! The client's `rpc.call` span: one per call when a subscriber records it, continuing the trace of the call
//! being served (a handler that calls on) or starting one, and sending it as the W3C `traceparent` metadata
//! entry; the call's status and duration are recorded when it ends. Otherwise a call costs one load of tracing's
//! global level.

use rpc_codec::Metadata;
use tokio::time::Instant;

use crate::context::Context;
use crate::method::MethodInfo;
use crate::metrics::Ended;
use crate::trace::{TRACEPARENT, TraceContext, join, record_end};

/// A call's span, and the metadata it sends (the caller's, with the span's `traceparent`).
pub(crate) struct Traced {
    pub(crate) span: tracing::Span,
    pub(crate) metadata: Metadata,
}

/// The span of a call of `method` with `metadata`, or `None` when nobody records it.
#[inline]
pub(crate) fn begin(method: &MethodInfo, metadata: &Metadata) -> Option<Box<Traced>> {
    // One load of tracing's global level: with no subscriber at INFO no span is built (building and dropping a
    // disabled span still costs a few hundred instructions when tracing's `log` feature is on).
    if !tracing::level_enabled!(tracing::Level::INFO) {
        return None;
    }
    begin_span(method, metadata)
}

fn begin_span(method: &MethodInfo, metadata: &Metadata) -> Option<Box<Traced>> {
    let span = tracing::info_span!(
        "rpc.call",
        service = method.service,
        method = method.name,
        request_id = tracing::field::Empty,
        status = tracing::field::Empty,
        duration_us = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return None;
    }
    // A call made while serving one continues its trace; any other starts a trace.
    let trace = join(&span, Context::current().and_then(|c| c.trace()));
    Some(Box::new(Traced {
        span,
        metadata: with_traceparent(metadata, &trace),
    }))
}

impl Traced {
    /// Records how the call ended, `started` being when it began.
    pub(crate) fn finish(&self, ended: Ended, started: Instant) {
        record_end(&self.span, ended, started);
    }
}

/// `metadata` with the `traceparent` of `trace` (in place of one already there).
fn with_traceparent(metadata: &Metadata, trace: &TraceContext) -> Metadata {
    let mut builder = Metadata::builder();
    for (key, value) in metadata.iter().filter(|(k, _)| *k != TRACEPARENT) {
        // The entries came from a valid section, so they are valid again.
        let _ = builder.insert(key, value);
    }
    let _ = builder.insert(TRACEPARENT, trace.to_traceparent());
    builder.build()
}
