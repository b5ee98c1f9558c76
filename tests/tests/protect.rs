//! Servers protecting themselves, seen from a client over 127.0.0.1: a concurrency limit sheds the call past it
//! at once, a rate limit refuses one caller past its burst while another passes, and an adaptive limit sheds
//! under a load that makes latency climb. Every refusal is `ResourceExhausted` with a retry-after, so the
//! caller knows its call was not processed; the server's metrics count them. On paused time; every loop is
//! bounded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_core::server::layer::{
    AdaptiveConfig, AdaptiveLimit, Authorize, ConcurrencyLimit, DEFAULT_CONCURRENCY_RETRY_AFTER,
    Grant, Rate, RateLimit,
};
use rpc_core::server::{Request, Response};
use rpc_core::{Metadata, Metrics, Server, Status};
use tests::lab::{LabClient, LabImpl, LabServer};
use tests::serve::serve_builder as serve;
use tests::serve::until;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::Service;

const LONG: Duration = Duration::from_secs(30);

/// A concurrency limit of 2 per method: two `hang` calls run; the third is shed at once, before its handler,
/// with a retry-after the client sees as pushback, and the metrics count it. Once the two are cancelled, their
/// places are free again.
#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_of_two_sheds_the_third_call_at_once() {
    let lab = LabImpl::default();
    let limit = ConcurrencyLimit::per_method(2);
    let metrics = Metrics::server();
    let addr = serve(
        Server::builder()
            .add_service(LabServer::new(lab.clone()))
            .metrics(metrics.clone())
            .layer(limit.clone()),
    )
    .await;
    let client = LabClient::connect(addr).await.unwrap().with_deadline(LONG);
    let mut hanging = JoinSet::new();
    for _ in 0..2 {
        let client = client.clone();
        hanging.spawn(async move { client.hang().await });
    }
    let observed = Arc::clone(&lab.observed);
    assert!(until(|| observed.hangs_started.load(Ordering::SeqCst) == 2).await);
    assert_eq!(limit.in_flight("Lab.hang"), 2);

    let start = Instant::now();
    let shed = client.hang().await.unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(5), "shed at once");
    assert_eq!(shed.code(), Status::ResourceExhausted);
    assert_eq!(
        shed.message(),
        "Lab.hang has 2 calls under way, its limit: this one is shed"
    );
    assert_eq!(shed.retry_after(), Some(DEFAULT_CONCURRENCY_RETRY_AFTER));
    assert!(shed.is_not_processed(), "{shed:?}");
    assert_eq!(lab.observed.hangs_started.load(Ordering::SeqCst), 2);
    // Another method has a limit of its own.
    assert_eq!(client.echo(5).await, Ok(5));
    let shed_counted =
        "rpc_server_calls_total{service=\"Lab\",method=\"hang\",status=\"ResourceExhausted\"} 1";
    assert!(
        metrics.render().contains(shed_counted),
        "{}",
        metrics.render()
    );

    // The two calls cancelled: their places are given back.
    hanging.shutdown().await;
    assert!(until(|| limit.in_flight("Lab.hang") == 0).await);
    let timed_out = client
        .with_deadline(Duration::from_millis(100))
        .hang()
        .await
        .unwrap_err();
    assert_eq!(timed_out.code(), Status::DeadlineExceeded, "{timed_out}");
    assert_eq!(lab.observed.hangs_started.load(Ordering::SeqCst), 3);
}

/// A rate limit of 1 call/s per caller in bursts of 2, callers told apart by their tokens: one caller's burst
/// passes, its next call is refused with the wait until its next token, while another caller still passes;
/// after that wait, the first passes again.
#[tokio::test(start_paused = true)]
async fn a_rate_limit_refuses_one_caller_past_its_burst_while_another_passes() {
    let authorize = Authorize::new()
        .token("alice", "alice-secret-token", Grant::all())
        .token("bob", "bob-secret-token", Grant::all());
    let limit = RateLimit::per_method(Rate::per_second(1.0).with_burst(2));
    let addr = serve(
        Server::builder()
            .add_service(LabServer::new(LabImpl::default()))
            .layer(authorize)
            .layer(limit.clone()),
    )
    .await;
    let anonymous = LabClient::connect(addr).await.unwrap();
    let bearer = |token: &str| {
        let value = format!("Bearer {token}");
        anonymous.with_metadata(Metadata::from_pairs([("authorization", value.as_str())]).unwrap())
    };
    let (alice, bob) = (bearer("alice-secret-token"), bearer("bob-secret-token"));

    assert_eq!(alice.echo(1).await, Ok(1));
    assert_eq!(alice.echo(2).await, Ok(2));
    let refused = alice.echo(3).await.unwrap_err();
    assert_eq!(refused.code(), Status::ResourceExhausted);
    assert!(refused.is_not_processed(), "{refused:?}");
    let wait = refused.retry_after().expect("a retry-after");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    assert!(
        refused.message().starts_with(
            "Lab.echo allows 1 calls/s per caller in bursts of 2; token alice is over it"
        ),
        "{refused}"
    );

    assert_eq!(
        bob.echo(4).await,
        Ok(4),
        "another caller has its own bucket"
    );
    assert_eq!(limit.tracked(), 2);

    tokio::time::sleep(wait).await;
    assert_eq!(alice.echo(5).await, Ok(5), "a token is back after the wait");
}

/// A server whose calls each take 10 ms for every call under way through it (a queue behind one worker):
/// latency climbs with load.
#[derive(Clone)]
struct Saturating<S> {
    inner: S,
    running: Arc<AtomicUsize>,
}

impl<S> Service<Request> for Saturating<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let running = Arc::clone(&self.running);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(10 * now as u64)).await;
            let answer = answer.await;
            running.fetch_sub(1, Ordering::SeqCst);
            answer
        })
    }
}

/// The adaptive limit learns the server's latency under a light load, then, under waves of calls that make
/// latency climb, lowers its limit and sheds the calls past it, each with a retry-after.
#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_sheds_under_a_load_that_makes_latency_climb() {
    let adaptive = AdaptiveLimit::new(AdaptiveConfig {
        initial_limit: 10,
        min_limit: 2,
        ..AdaptiveConfig::default()
    });
    let running = Arc::new(AtomicUsize::new(0));
    let saturating = tower::layer::layer_fn(move |inner| Saturating {
        inner,
        running: Arc::clone(&running),
    });
    let addr = serve(
        Server::builder()
            .add_service(LabServer::new(LabImpl::default()))
            .layer(adaptive.clone())
            .layer(saturating),
    )
    .await;
    let client = LabClient::connect(addr).await.unwrap().with_deadline(LONG);

    // One call at a time: the latency of an idle server, and no call shed.
    for n in 0..100 {
        assert_eq!(client.echo(n).await, Ok(n));
    }
    assert_eq!(adaptive.limit(), 10);

    // Waves of 16 calls at once: latency climbs with the calls let in.
    let mut shed = 0;
    for _ in 0..20 {
        let mut calls = JoinSet::new();
        for n in 0..16 {
            let client = client.clone();
            calls.spawn(async move { client.echo(n).await });
        }
        while let Some(answer) = calls.join_next().await {
            if let Err(e) = answer.unwrap() {
                assert_eq!(e.code(), Status::ResourceExhausted, "{e}");
                assert!(e.retry_after().is_some() && e.is_not_processed(), "{e:?}");
                shed += 1;
            }
        }
    }
    // More than the 6 a wave that the initial limit of 10 would shed: the limit came down.
    assert!(shed > 6 * 20, "{shed} calls shed");
    assert!(
        adaptive.limit() < 8,
        "the limit came down only to {}",
        adaptive.limit()
    );
    assert_eq!(adaptive.in_flight(), 0);
}
