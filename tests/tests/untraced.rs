//! With no tracing subscriber in the process, a call carries no trace context (no `traceparent` metadata);
//! once one collects spans, calls carry it. Alone in its test binary: tracing caches a callsite's
//! interest for the whole process, so a subscriber in another test would change what this one sees.

use rpc_core::{ServerConfig, TRACEPARENT, TraceContext};
use tests::lab::{LabClient, LabImpl};
use tests::serve::serve_lab;
use tests::spans::Spans;

#[tokio::test]
async fn without_a_subscriber_a_call_carries_no_trace_context() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    assert_eq!(client.header(TRACEPARENT.to_owned()).await, Ok(None));
    let (_spans, _guard) = Spans::collect();
    let sent = client.header(TRACEPARENT.to_owned()).await.unwrap();
    assert!(
        sent.as_deref().and_then(TraceContext::parse).is_some(),
        "with a subscriber, the call carries a traceparent: {sent:?}"
    );
}
