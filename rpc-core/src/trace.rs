//! Tracing: the spans of calls (`rpc.call` on the client, `rpc.serve` on the server, through `tracing`) and the
//! trace context that joins them, carried in a call's metadata as a W3C `traceparent` (version 00), so that a
//! call and the server's handling of it, and the calls that handler makes in turn, belong to one trace.
//!
//! Spans are `INFO`. With no subscriber interested in them, a call costs one static level check and carries
//! no trace context; with one, the client sends `traceparent` and both spans record `trace_id`, `span_id` and
//! `parent_id` (the caller's span), and at their end `status` (named as the metrics name it: `Ok`, a status of
//! `docs/PROTOCOL.md` section 6, or `AppError`) and `duration_us`.
//!
//! ```
//! use rpc_core::TraceContext;
//! let root = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(root.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
//! let child = root.child();
//! assert_eq!(child.trace_id, root.trace_id);
//! assert_ne!(child.span_id, root.span_id);
//! assert_eq!(TraceContext::parse(&child.to_traceparent()), Some(child));
//! ```

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// The metadata key that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A span's place in a distributed trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace, shared by every span in it; never 0.
    pub trace_id: u128,
    /// This span; never 0.
    pub span_id: u64,
    /// Whether the trace is being recorded (W3C flag `01`).
    pub sampled: bool,
}

/// A random non-zero 64-bit value: a counter hashed with a per-process random key.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one(n) | 1
}

impl TraceContext {
    /// The first span of a new trace.
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: (u128::from(random_u64()) << 64) | u128::from(random_u64()),
            span_id: random_u64(),
            sampled: true,
        }
    }

    /// A new span in the same trace, whose parent is this one.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: random_u64(),
            ..*self
        }
    }

    /// Reads a `traceparent` value: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`. `None` if it is
    /// not one (a wrong length, version or digit, or an all-zero id), as the W3C specification asks.
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut parts = value.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || version != "00"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(hex(trace) && hex(span) && hex(flags)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// This context as a `traceparent` value.
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// Records on a call's `span` the trace it belongs to, a child of `parent` (the caller's span, recorded as
/// `parent_id`) or else a new root, and returns it: what the `rpc.call` and `rpc.serve` spans share.
pub(crate) fn join(span: &tracing::Span, parent: Option<TraceContext>) -> TraceContext {
    let trace = match parent {
        Some(parent) => {
            span.record("parent_id", format_args!("{:016x}", parent.span_id));
            parent.child()
        }
        None => TraceContext::new_root(),
    };
    span.record("trace_id", format_args!("{:032x}", trace.trace_id));
    span.record("span_id", format_args!("{:016x}", trace.span_id));
    trace
}

/// Records on a call's `span` how it ended, `started` being when it began.
pub(crate) fn record_end(
    span: &tracing::Span,
    ended: crate::metrics::Ended,
    started: tokio::time::Instant,
) {
    span.record("status", ended.label());
    span.record("duration_us", started.elapsed().as_micros() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_traceparents_are_refused() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(TraceContext::parse(good).is_some());
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            "",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        assert!(
            !TraceContext::parse(&good.replace("-01", "-00"))
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn ids_are_random_and_never_zero() {
        let ids: std::collections::HashSet<u64> = (0..1000).map(|_| random_u64()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&0));
    }
}
