//! The spans of calls and the trace context that joins them: a call's `rpc.call` span and the server's
//! `rpc.serve` span of it share one trace, the server's parent being the client's span; a handler that calls
//! another server continues the trace; statuses and durations are recorded. Current-thread runtimes, so that
//! the collecting subscriber sees every task's spans. (That a call without a subscriber carries nothing is in
//! `untraced.rs`: tracing caches a callsite's interest for the whole process, so it needs a process with no
//! subscriber at all.)

use std::time::Duration;

use rpc_core::ServerConfig;
use tests::lab::{LabClient, LabImpl};
use tests::serve::{serve_lab, until};
use tests::spans::Spans;

#[tokio::test]
async fn a_call_and_its_serving_share_one_trace() {
    let (spans, _guard) = Spans::collect();
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    assert_eq!(client.echo(7).await, Ok(7));
    let calls = spans.named("rpc.call");
    let serves = spans.named("rpc.serve");
    assert_eq!((calls.len(), serves.len()), (1, 1), "{calls:?} {serves:?}");
    let (call, serve) = (&calls[0], &serves[0]);
    for span in [call, serve] {
        assert_eq!((span.get("service"), span.get("method")), ("Lab", "echo"));
        assert_eq!(span.get("status"), "Ok");
        assert!(span.get("duration_us").parse::<u64>().is_ok(), "{span:?}");
    }
    assert_eq!(call.get("request_id"), serve.get("request_id"));
    assert_eq!(call.get("trace_id").len(), 32);
    assert_eq!(call.get("trace_id"), serve.get("trace_id"), "one trace");
    assert_eq!(
        serve.get("parent_id"),
        call.get("span_id"),
        "the server's span is the client's child"
    );
    assert_ne!(serve.get("span_id"), call.get("span_id"));
    assert_eq!(call.get("parent_id"), "", "the first call starts the trace");
}

#[tokio::test]
async fn a_handler_that_calls_another_server_continues_the_trace() {
    let (spans, _guard) = Spans::collect();
    let back = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let front = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(front.addr).await.unwrap();
    assert_eq!(client.relay(back.addr.to_string(), 9).await, Ok(Ok(9)));
    let calls = spans.named("rpc.call");
    let serves = spans.named("rpc.serve");
    let find = |spans: &[tests::spans::SpanRecord], method: &str| {
        spans
            .iter()
            .find(|s| s.get("method") == method)
            .unwrap_or_else(|| panic!("no {method} span in {spans:?}"))
            .clone()
    };
    let (relay_call, relay_serve) = (find(&calls, "relay"), find(&serves, "relay"));
    let (echo_call, echo_serve) = (find(&calls, "echo"), find(&serves, "echo"));
    let trace = relay_call.get("trace_id");
    for span in [&relay_serve, &echo_call, &echo_serve] {
        assert_eq!(span.get("trace_id"), trace, "{span:?}");
    }
    assert_eq!(relay_serve.get("parent_id"), relay_call.get("span_id"));
    assert_eq!(
        echo_call.get("parent_id"),
        relay_serve.get("span_id"),
        "the handler's call is its child"
    );
    assert_eq!(echo_serve.get("parent_id"), echo_call.get("span_id"));
}

#[tokio::test]
async fn failed_calls_record_their_status_and_how_long_they_took() {
    let (spans, _guard) = Spans::collect();
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let deadline = Duration::from_millis(50);
    let err = client.with_deadline(deadline).hang().await.unwrap_err();
    assert_eq!(err.code(), rpc_core::Status::DeadlineExceeded);
    assert!(client.boom().await.is_err());
    assert!(client.div(1, 0).await.unwrap().is_err());
    // The server ends the hang's span when the call's deadline stops its handler, at about the time the client
    // gave up: wait for that span to close.
    let closed = until(|| {
        let serves = spans.named("rpc.serve");
        ["hang", "boom", "div"]
            .iter()
            .all(|m| serves.iter().any(|s| s.get("method") == *m))
    })
    .await;
    assert!(closed, "{:?}", spans.named("rpc.serve"));
    for kind in ["rpc.call", "rpc.serve"] {
        let spans = spans.named(kind);
        let span = |method: &str| {
            spans
                .iter()
                .find(|s| s.get("method") == method)
                .unwrap_or_else(|| panic!("no {kind} span of {method} in {spans:?}"))
                .clone()
        };
        let hang = span("hang");
        assert!(
            ["DeadlineExceeded", "Cancelled"].contains(&hang.get("status")),
            "{hang:?}"
        );
        let took = Duration::from_micros(hang.get("duration_us").parse().unwrap());
        if kind == "rpc.call" {
            assert_eq!(hang.get("status"), "DeadlineExceeded");
            assert!(
                took >= deadline,
                "the call waited for its deadline: {took:?}"
            );
        } else {
            // The server's deadline counts from the request's arrival, a moment after the client started it.
            assert!(
                took >= deadline / 2,
                "the handler ran until stopped: {took:?}"
            );
        }
        assert_eq!(span("boom").get("status"), "Internal", "{kind}");
        assert_eq!(
            span("div").get("status"),
            "AppError",
            "{kind}: the method's own error is not Ok"
        );
    }
}
