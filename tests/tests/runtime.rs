//! The runtime end to end, over real sockets on 127.0.0.1: multiplexing, deadlines, cancellation, panic
//! isolation, refusals, limits, graceful drain and reconnection. Timing runs on paused tokio time, so the tests
//! wait no wall-clock time for their timers (except the check that handlers run inline on a multi-threaded
//! runtime, which needs the real clock); every wait is bounded.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::{ClientConfig, Metadata, RpcError, Server, ServerConfig, Status, service};
use tests::lab::{LabClient, LabImpl, MathError, mirror_many};
use tests::serve::{serve_lab, until};
use tokio::task::JoinSet;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(30);

fn code(r: Result<impl std::fmt::Debug, RpcError>) -> Status {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_calls_on_one_connection_each_get_their_own_answer() {
    let lab = LabImpl::default();
    let server = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut calls = JoinSet::new();
    for i in 0..1000u64 {
        let client = client.clone();
        // Different delays, so answers come back in a different order than the requests went out.
        calls.spawn(async move { (i, client.delayed(i, (i * 37) % 100).await) });
    }
    let mut answered = 0;
    while let Some(joined) = calls.join_next().await {
        let (i, answer) = joined.unwrap();
        assert_eq!(answer, Ok(i), "call {i}");
        answered += 1;
    }
    assert_eq!(answered, 1000);
    assert_eq!(lab.observed.delayed_started.load(Ordering::SeqCst), 1000);
    assert_eq!(
        lab.observed.connections(),
        1,
        "all calls shared one connection"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_fails_on_time_and_its_handler_stops() {
    let lab = LabImpl::default();
    let server = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let start = Instant::now();
    let err = client
        .with_deadline(Duration::from_millis(250))
        .hang()
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Status::DeadlineExceeded, "{err}");
    assert!(err.message().contains("Lab.hang"), "{err}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(300),
        "{took:?}"
    );
    let observed = &lab.observed;
    assert!(until(|| observed.hangs_dropped.load(Ordering::SeqCst) == 1).await);
    assert_eq!(observed.hangs_started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_short_deadline_behind_a_long_one_still_fires_on_time() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let start = Instant::now();
    // The connection's deadline task first sleeps until the long call's deadline...
    let long = tokio::spawn({
        let client = client.with_deadline(Duration::from_secs(30));
        async move { client.hang().await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // ...and a call with a sooner deadline must wake it earlier.
    let short_start = Instant::now();
    let err = client
        .with_deadline(Duration::from_millis(100))
        .hang()
        .await
        .unwrap_err();
    let took = short_start.elapsed();
    assert_eq!(err.code(), Status::DeadlineExceeded, "{err}");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(110),
        "{took:?}"
    );
    let err = long.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Status::DeadlineExceeded, "{err}");
    assert_eq!(start.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn the_default_deadline_is_ten_seconds_and_configurable() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let start = Instant::now();
    assert_eq!(code(client.hang().await), Status::DeadlineExceeded);
    assert_eq!(start.elapsed().as_secs(), 10);

    let config = ClientConfig {
        default_deadline: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let client = LabClient::new(
        rpc_core::Client::connect_with(server.addr, config)
            .await
            .unwrap(),
    );
    let start = Instant::now();
    assert_eq!(code(client.hang().await), Status::DeadlineExceeded);
    assert_eq!(start.elapsed().as_secs(), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_cancels_its_handler_on_the_server() {
    let lab = LabImpl::default();
    let server = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.hang().await }
    });
    let observed = &lab.observed;
    assert!(until(|| observed.hangs_started.load(Ordering::SeqCst) == 1).await);
    assert_eq!(observed.hangs_dropped.load(Ordering::SeqCst), 0);
    call.abort();
    assert!(
        until(|| observed.hangs_dropped.load(Ordering::SeqCst) == 1).await,
        "the handler kept running"
    );
    // The connection is fine afterwards.
    assert_eq!(client.echo(7).await, Ok(7));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_fails_only_its_own_call() {
    let lab = LabImpl::default();
    let server = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.delayed(42, 50).await }
    });
    let err = client.boom().await.unwrap_err();
    assert_eq!(err.code(), Status::Internal);
    assert_eq!(err.message(), "Lab.boom panicked: the lab exploded");
    assert_eq!(
        slow.await.unwrap(),
        Ok(42),
        "a call in flight beside the panic"
    );
    assert_eq!(client.echo(9).await, Ok(9), "the connection lives on");
    assert_eq!(lab.observed.connections(), 1);
}

/// A newer version of `Lab`, as an updated client would have it.
#[service(name = "Lab")]
trait LabNext {
    async fn echo(&self, n: u64) -> u64;
    async fn brand_new(&self) -> u32;
}

/// A client whose idea of `Lab.echo`'s arguments is wrong.
#[service(name = "Lab")]
trait LabConfused {
    async fn echo(&self, n: String) -> u64;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_method_is_unimplemented_and_a_bad_payload_is_invalid_argument() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let next = LabNextClient::connect(server.addr).await.unwrap();
    assert_eq!(next.echo(3).await, Ok(3), "method ids depend on names only");
    let err = next.brand_new().await.unwrap_err();
    assert_eq!(err.code(), Status::Unimplemented);
    let id = rpc_codec::method_id("Lab", "brand_new");
    assert_eq!(
        err.message(),
        format!("no method with id {id:#010x} on this server")
    );

    let confused = LabConfusedClient::connect(server.addr).await.unwrap();
    let err = confused.echo("seven".to_owned()).await.unwrap_err();
    assert_eq!(err.code(), Status::InvalidArgument);
    assert!(
        err.message()
            .starts_with("the arguments of Lab.echo do not decode"),
        "{err}"
    );
    assert_eq!(next.echo(4).await, Ok(4), "the connection lives on");
}

#[tokio::test(start_paused = true)]
async fn an_oversize_frame_is_refused_while_other_clients_carry_on() {
    let config = ServerConfig {
        codec: rpc_codec::Config {
            max_frame_len: 64 * 1024,
            ..rpc_codec::Config::default()
        },
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let big_sender = LabClient::connect(server.addr).await.unwrap();
    let other = LabClient::connect(server.addr).await.unwrap();
    let others = tokio::spawn(async move {
        let mut ok = 0;
        for i in 0..200 {
            if other.echo(i).await == Ok(i) {
                ok += 1;
            }
        }
        ok
    });
    let blob = serde_bytes::ByteBuf::from(vec![7u8; 1024 * 1024]);
    let err = big_sender.blob(blob).await.unwrap_err();
    assert_eq!(err.code(), Status::ResourceExhausted);
    assert!(err.message().contains("exceeds limit 65536"), "{err}");
    assert_eq!(others.await.unwrap(), 200, "the other client's calls");
    // The refused frame was skipped, not the connection.
    assert_eq!(big_sender.echo(1).await, Ok(1));
    let small = serde_bytes::ByteBuf::from(vec![1u8; 1000]);
    assert_eq!(big_sender.blob(small).await, Ok(1000));
}

#[tokio::test(start_paused = true)]
async fn calls_over_the_in_flight_limit_are_resource_exhausted() {
    let config = ServerConfig {
        max_in_flight_per_connection: 4,
        ..ServerConfig::default()
    };
    let lab = LabImpl::default();
    let server = serve_lab(lab.clone(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut slow = JoinSet::new();
    for i in 0..4 {
        let client = client.clone();
        slow.spawn(async move { client.delayed(i, 1000).await });
    }
    let observed = &lab.observed;
    assert!(until(|| observed.delayed_started.load(Ordering::SeqCst) == 4).await);
    let err = client.echo(5).await.unwrap_err();
    assert_eq!(err.code(), Status::ResourceExhausted);
    assert_eq!(
        err.message(),
        "4 calls in flight on this connection, the limit"
    );
    let mut done = 0;
    while let Some(r) = slow.join_next().await {
        assert!(r.unwrap().is_ok());
        done += 1;
    }
    assert_eq!(done, 4);
    assert_eq!(client.echo(6).await, Ok(6), "room again once they finished");
}

#[tokio::test(start_paused = true)]
async fn metadata_reaches_the_handler_and_application_errors_come_back_typed() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    assert_eq!(client.trace_id().await, Ok(None));
    let traced = client.with_metadata(Metadata::from_pairs([("trace-id", "4bf92f35")]).unwrap());
    assert_eq!(traced.trace_id().await, Ok(Some("4bf92f35".to_owned())));
    assert_eq!(client.div(7, 2).await, Ok(Ok(3)));
    assert_eq!(
        client.div(7, 0).await,
        Ok(Err(MathError::DivisionByZero { dividend: 7 }))
    );
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_lets_calls_in_flight_finish_and_refuses_new_ones() {
    let lab = LabImpl::default();
    let mut server = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut in_flight = JoinSet::new();
    for i in 0..10 {
        let client = client.clone();
        in_flight.spawn(async move { client.delayed(i, 500).await });
    }
    let observed = &lab.observed;
    assert!(until(|| observed.delayed_started.load(Ordering::SeqCst) == 10).await);
    server.begin_shutdown();
    // The go-away retires the connection; the listener is closed: a new call cannot be served.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(code(client.echo(1).await), Status::Unavailable);
    let mut finished = 0;
    while let Some(r) = in_flight.join_next().await {
        assert!(matches!(r.unwrap(), Ok(i) if i < 10));
        finished += 1;
    }
    assert_eq!(finished, 10, "every call in flight finished");
    server.finished(LONG).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_drain_timeout_closes_connections_whose_calls_never_finish() {
    let config = ServerConfig {
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let lab = LabImpl::default();
    let mut server = serve_lab(lab.clone(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let stuck = tokio::spawn({
        let client = client.with_deadline(Duration::from_secs(60));
        async move { client.hang().await }
    });
    let observed = &lab.observed;
    assert!(until(|| observed.hangs_started.load(Ordering::SeqCst) == 1).await);
    let start = Instant::now();
    server.begin_shutdown();
    server.finished(LONG).await.unwrap();
    assert_eq!(
        start.elapsed().as_secs(),
        2,
        "returned at the drain timeout"
    );
    assert_eq!(code(stuck.await.unwrap()), Status::Unavailable);
    assert_eq!(observed.hangs_dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_connection_fails_every_call_at_once_and_the_next_call_reconnects() {
    let lab = LabImpl::default();
    let server = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let addr = server.addr;
    let client = LabClient::connect(addr).await.unwrap();
    assert_eq!(client.echo(1).await, Ok(1));

    let mut waiting = JoinSet::new();
    for _ in 0..5 {
        let client = client.clone();
        waiting.spawn(async move { client.hang().await });
    }
    let observed = &lab.observed;
    assert!(until(|| observed.hangs_started.load(Ordering::SeqCst) == 5).await);
    let start = Instant::now();
    server.kill();
    let mut failed = 0;
    while let Some(r) = waiting.join_next().await {
        assert_eq!(code(r.unwrap()), Status::Unavailable);
        failed += 1;
    }
    assert_eq!(failed, 5);
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "failed at once, not at the deadline"
    );

    // Nobody listens: the call fails at once, and the next attempt waits for the backoff.
    let err = client.echo(2).await.unwrap_err();
    assert_eq!(err.code(), Status::Unavailable);
    assert!(err.message().contains("cannot connect"), "{err}");
    let err = client.echo(3).await.unwrap_err();
    assert!(err.message().contains("next attempt in"), "{err}");

    // The server comes back on the same port.
    let again = serve_lab(lab.clone(), ServerConfig::default(), addr.port())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.echo(4).await, Ok(4));
    again.shut_down(LONG).await.unwrap();
}

/// A second service, to serve beside `Lab`.
#[service]
trait Clock {
    async fn ticks(&self) -> u64;
}

struct FixedClock;

impl Clock for FixedClock {
    async fn ticks(&self) -> u64 {
        1234
    }
}

#[tokio::test(start_paused = true)]
async fn several_services_share_one_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(tests::lab::LabServer::new(LabImpl::default()))
        .add_service(ClockServer::new(FixedClock))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let lab = LabClient::connect(addr).await.unwrap();
    let clock = ClockClient::new(lab.client().clone());
    assert_eq!(lab.echo(5).await, Ok(5));
    assert_eq!(clock.ticks().await, Ok(1234));

    let twice = Server::builder()
        .add_service(ClockServer::new(FixedClock))
        .add_service(ClockServer::new(FixedClock))
        .build()
        .unwrap_err();
    assert_eq!(twice.to_string(), "two services are named `Clock`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_from_several_threads_on_a_multi_threaded_runtime() {
    let lab = LabImpl::default();
    let server = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut calls = JoinSet::new();
    for i in 0..500u64 {
        let client = client.clone();
        calls.spawn(async move { (i, client.delayed(i, i % 3).await) });
    }
    let mut answered = 0;
    while let Some(joined) = tokio::time::timeout(LONG, calls.join_next()).await.unwrap() {
        let (i, answer) = joined.unwrap();
        assert_eq!(answer, Ok(i));
        answered += 1;
    }
    assert_eq!(answered, 500);
    assert_eq!(lab.observed.connections(), 1);
    server.shut_down(LONG).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn with_inline_handlers_off_the_calls_of_one_connection_run_in_parallel() {
    let lab = LabImpl::default();
    let config = ServerConfig {
        inline_handlers: false,
        ..ServerConfig::default()
    };
    let server = serve_lab(lab.clone(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    // Each handler blocks its thread until the other runs: they meet only if each has a task of its own.
    let (a, b) = tokio::join!(client.rendezvous(), client.rendezvous());
    assert_eq!((a, b), (Ok(true), Ok(true)));
    server.shut_down(LONG).await.unwrap();
}

/// A policy over a fixed list, taking the instances in turn and logging what it hears.
struct Fixed {
    state: std::sync::Mutex<FixedState>,
}

struct FixedState {
    list: Vec<std::sync::Arc<str>>,
    next: usize,
    reports: Vec<(String, rpc_core::balance::Outcome)>,
}

impl Fixed {
    fn new(addresses: &[String]) -> std::sync::Arc<Fixed> {
        std::sync::Arc::new(Fixed {
            state: std::sync::Mutex::new(FixedState {
                list: addresses
                    .iter()
                    .map(|a| std::sync::Arc::from(a.as_str()))
                    .collect(),
                next: 0,
                reports: Vec::new(),
            }),
        })
    }

    /// A balancer of this policy over its own list.
    fn balancer(self: &std::sync::Arc<Fixed>) -> rpc_core::balance::Balancer {
        let policy: std::sync::Arc<dyn rpc_core::balance::Policy> = self.clone();
        rpc_core::balance::Balancer::from_parts(policy, Box::new(Vec::new()))
    }

    fn reports(&self) -> Vec<(String, rpc_core::balance::Outcome)> {
        self.state.lock().unwrap().reports.clone()
    }

    fn first(&self) -> String {
        self.state.lock().unwrap().list[0].to_string()
    }
}

impl rpc_core::balance::Policy for Fixed {
    /// The list is fixed: what a feed says is ignored.
    fn update(&self, _: &[rpc_core::balance::Instance]) {}

    fn pick(
        &self,
        _: &rpc_core::balance::CallInfo<'_>,
        skip: &[std::sync::Arc<str>],
        _: tokio::time::Instant,
    ) -> Option<std::sync::Arc<str>> {
        let mut s = self.state.lock().unwrap();
        for _ in 0..s.list.len() {
            let candidate = std::sync::Arc::clone(&s.list[s.next % s.list.len()]);
            s.next += 1;
            if !skip.contains(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    fn report(
        &self,
        address: &str,
        outcome: rpc_core::balance::Outcome,
        _: Duration,
        _: tokio::time::Instant,
    ) {
        self.state
            .lock()
            .unwrap()
            .reports
            .push((address.to_owned(), outcome));
    }
}

/// An address where nothing listens: a port the OS assigned, then released.
async fn dead_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn a_balanced_client_retries_only_what_is_safe_to_retry() {
    use rpc_core::balance::Outcome;

    let lab = LabImpl::default();
    let alive = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let dead = dead_address().await;

    // A call that could not be sent is retried on another instance, even for a method that is not idempotent.
    let fixed = Fixed::new(&[dead.clone(), alive.addr.to_string()]);
    let client = LabClient::new(rpc_core::Client::balanced(
        fixed.balancer(),
        ClientConfig::default(),
    ));
    assert_eq!(client.echo(5).await, Ok(5));
    assert_eq!(
        fixed.reports(),
        vec![
            (dead.clone(), Outcome::Unreachable),
            (alive.addr.to_string(), Outcome::Success)
        ]
    );

    // A call that may have run (its connection died mid-call) is not retried unless its method is idempotent.
    let victim = serve_lab(lab.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let fixed = Fixed::new(&[victim.addr.to_string(), alive.addr.to_string()]);
    let client = LabClient::new(rpc_core::Client::balanced(
        fixed.balancer(),
        ClientConfig::default(),
    ));
    let call = tokio::spawn(async move { client.hang().await });
    let observed = &lab.observed;
    assert!(until(|| observed.hangs_started.load(Ordering::SeqCst) == 1).await);
    victim.kill();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Status::Unavailable);
    assert!(!err.is_not_processed());
    assert_eq!(fixed.reports(), vec![(fixed.first(), Outcome::Unreachable)]);

    // Retries are bounded: two, so three attempts in all.
    let deads = [
        dead_address().await,
        dead_address().await,
        dead_address().await,
        dead_address().await,
    ];
    let fixed = Fixed::new(&deads);
    let client = LabClient::new(rpc_core::Client::balanced(
        fixed.balancer(),
        ClientConfig::default(),
    ));
    let err = client.echo(1).await.unwrap_err();
    assert_eq!(err.code(), Status::Unavailable);
    assert!(err.is_not_processed());
    assert_eq!(fixed.reports().len(), 3);
}

/// `Lab.echo` as a client that knows it is safe to retry.
#[service(name = "Lab")]
trait LabIdempotent {
    #[idempotent]
    async fn echo(&self, n: u64) -> u64;
}

/// When each request reached which instance.
type Arrivals = std::sync::Arc<std::sync::Mutex<Vec<(usize, Instant)>>>;

/// Instance `index`: a server that takes each request and then drops its connection without an answer, as a
/// server that dies mid-call; notes when each request came.
async fn dropper(index: usize, arrivals: &Arrivals) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let arrivals = std::sync::Arc::clone(arrivals);
    tokio::spawn(async move {
        while let Ok(mut peer) = tests::peer::RawPeer::accept(&listener).await {
            let arrivals = std::sync::Arc::clone(&arrivals);
            tokio::spawn(async move {
                if let tests::peer::Next::Frame(_) = peer.next(LONG).await {
                    arrivals.lock().unwrap().push((index, Instant::now()));
                }
            });
        }
    });
    addr
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_call_is_retried_after_a_mid_call_unavailable_with_backoff() {
    let arrivals = Arrivals::default();
    let mut instances = Vec::new();
    for index in 0..6 {
        instances.push(dropper(index, &arrivals).await);
    }
    let config = ClientConfig {
        max_retries: 3,
        retry_backoff: Duration::from_millis(100),
        default_deadline: LONG,
        ..ClientConfig::default()
    };
    let balanced = rpc_core::Client::balanced(Fixed::new(&instances).balancer(), config);

    // Each attempt reaches its instance, which drops the connection mid-call: four attempts, one per instance.
    let err = LabIdempotentClient::new(balanced.clone())
        .echo(1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
    assert!(
        !err.is_not_processed(),
        "the last attempt may have run: {err}"
    );
    let seen = std::mem::take(&mut *arrivals.lock().unwrap());
    let reached: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(reached, [0, 1, 2, 3], "max_retries 3: four attempts");
    // Spaced by `retry_backoff` doubled per retry, less up to half at random.
    for (retry, pair) in (1u32..).zip(seen.windows(2)) {
        let base = Duration::from_millis(100) * 2u32.pow(retry - 1);
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= base / 2 && gap <= base + Duration::from_millis(1),
            "retry {retry}: {gap:?} after the attempt before, {base:?} at most"
        );
    }

    // The same failure of a call that is not idempotent is not retried: it may have run.
    let err = LabClient::new(balanced).echo(2).await.unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
    assert_eq!(arrivals.lock().unwrap().len(), 1, "one attempt");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_fails_the_call_at_the_connect_timeout_then_the_backoff_holds() {
    // A listener that never accepts: the kernel completes the TCP handshake, and nobody answers the TLS one
    // (which counts against `connect_timeout`).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ca = tests::certs::Ca::new("test CA");
    let connect_timeout = Duration::from_secs(2);
    let config = ClientConfig {
        connect_timeout,
        tls: Some(rpc_core::tls::ClientTls::from_pem(ca.pem.as_bytes(), None).unwrap()),
        ..ClientConfig::default()
    };
    let client = LabClient::new(rpc_core::Client::lazy_with(addr, config).await.unwrap());
    let start = Instant::now();
    let err = client.echo(1).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
    assert!(err.is_not_processed(), "{err}");
    assert!(err.message().ends_with("no answer in 2s"), "{err}");
    assert!(
        took >= connect_timeout && took <= connect_timeout + Duration::from_millis(1),
        "{took:?}"
    );
    let err = client.echo(2).await.unwrap_err();
    assert!(
        err.message().contains("no answer in 2s; next attempt in"),
        "{err}"
    );
    assert_eq!(start.elapsed(), took, "refused at once during the backoff");
    drop(listener);
}

/// The milliseconds of "next attempt in N ms" in an error.
fn next_attempt_ms(err: &RpcError) -> u64 {
    let (_, after) = err
        .message()
        .split_once("next attempt in ")
        .unwrap_or_else(|| panic!("no backoff in {err}"));
    after.trim_end_matches(" ms").parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn reconnection_waits_double_from_backoff_min_up_to_backoff_max() {
    let config = ClientConfig {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..ClientConfig::default()
    };
    let client = LabClient::new(
        rpc_core::Client::lazy_with(dead_address().await, config)
            .await
            .unwrap(),
    );
    for (attempt, base) in (1..).zip([100u64, 200, 400, 400]) {
        let err = client.echo(attempt).await.unwrap_err();
        assert!(
            err.message().contains("cannot connect") && !err.message().contains("next attempt"),
            "attempt {attempt} is made: {err}"
        );
        // A call during the backoff is refused at once, saying when the next attempt may come: the base wait,
        // less up to a quarter at random.
        let err = client.echo(attempt).await.unwrap_err();
        assert_eq!(err.code(), Status::Unavailable, "{err}");
        assert!(err.is_not_processed());
        let wait = next_attempt_ms(&err);
        assert!(
            wait <= base && wait + 1 >= base * 3 / 4,
            "after attempt {attempt}: {wait} ms, base {base} ms"
        );
        tokio::time::sleep(Duration::from_millis(wait + 1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_max_pending_output_wait_and_still_fail_at_their_deadline_unsent() {
    // A server that takes the connection and never reads: requests fill the sockets' buffers, then the queue.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut outcomes = Vec::new();
    for max_pending_output in [1 << 20, 1 << 30] {
        let config = ClientConfig {
            max_pending_output,
            default_deadline: Duration::from_secs(1),
            ..ClientConfig::default()
        };
        let (client, _silent) = tokio::join!(
            rpc_core::Client::connect_with(addr, config),
            listener.accept()
        );
        let client = LabClient::new(client.unwrap());
        let mut calls = JoinSet::new();
        for _ in 0..64 {
            let client = client.clone();
            let mib = serde_bytes::ByteBuf::from(vec![7u8; 1 << 20]);
            calls.spawn(async move { client.blob(mib).await });
        }
        let (mut unsent, mut timed_out) = (0, 0);
        while let Some(joined) = tokio::time::timeout(LONG, calls.join_next()).await.unwrap() {
            let err = joined.unwrap().unwrap_err();
            assert_eq!(err.code(), Status::DeadlineExceeded, "{err}");
            timed_out += 1;
            if err.is_not_processed() {
                assert!(err.message().contains("max_pending_output"), "{err}");
                unsent += 1;
            }
        }
        assert_eq!(timed_out, 64);
        outcomes.push(unsent);
    }
    // With 1 MiB of queue, most of the 64 MiB of requests never left this client (the sockets hold a few MiB);
    // with 1 GiB, every request was queued.
    assert!(outcomes[0] >= 32, "{outcomes:?}");
    assert_eq!(outcomes[1], 0, "{outcomes:?}");
}

/// 128 calls of 64 KiB in flight on one connection, both ways, through queues of 256 KiB (`max_pending_output` on
/// both sides) and so through the large-payload path (kept apart, written vectored) and reads sized by frame: every
/// call comes back whole and its own, none stalls waiting for room.
#[tokio::test]
async fn large_calls_beyond_max_pending_output_all_come_back_whole() {
    let queue = 256 << 10;
    let config = ServerConfig {
        max_pending_output: queue,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let config = ClientConfig {
        max_pending_output: queue,
        default_deadline: LONG,
        ..ClientConfig::default()
    };
    let client = LabClient::new(
        rpc_core::Client::connect_with(server.addr, config)
            .await
            .unwrap(),
    );
    for round in 0..3 {
        mirror_many(&client, 128, 64 << 10, LONG)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
}

/// Two services whose method ids collide: FNV-1a of "Alpha.m179377" and of "Beta.n283640" is 0x9677a890.
#[service]
trait Alpha {
    async fn m179377(&self) -> u32;
}

#[service]
trait Beta {
    async fn n283640(&self) -> u32;
}

struct Both;

impl Alpha for Both {
    async fn m179377(&self) -> u32 {
        1
    }
}

impl Beta for Both {
    async fn n283640(&self) -> u32 {
        2
    }
}

#[test]
fn a_method_id_collision_across_two_services_is_refused_at_start() {
    assert_eq!(
        rpc_codec::method_id("Alpha", "m179377"),
        rpc_codec::method_id("Beta", "n283640")
    );
    let err = Server::builder()
        .add_service(AlphaServer::new(Both))
        .add_service(BetaServer::new(Both))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            rpc_core::BuildError::MethodIdCollision { id: 0x9677_a890, first, second }
                if first == "Alpha.m179377" && second == "Beta.n283640"
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "method id collision: Alpha.m179377 and Beta.n283640 both hash to 0x9677a890; rename one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_refused_at_the_connection_limit_backs_off_longer_each_time() {
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let holder = LabClient::connect(server.addr).await.unwrap();
    assert_eq!(holder.echo(1).await, Ok(1));
    let client = LabClient::new(
        rpc_core::Client::lazy_with(server.addr, ClientConfig::default())
            .await
            .unwrap(),
    );
    for (refusal, base) in (1..).zip([50u64, 100, 200, 400]) {
        // An attempt: the connection is made, and refused.
        let err = client.echo(refusal).await.unwrap_err();
        assert_eq!(err.code(), Status::ResourceExhausted, "{err}");
        assert!(err.is_not_processed(), "{err}");
        assert!(
            err.message()
                .contains("server at its connection limit of 1 (max_connections)"),
            "{err}"
        );
        // The next call waits for the backoff, which doubles while the server keeps refusing.
        let err = client.echo(refusal).await.unwrap_err();
        assert_eq!(err.code(), Status::ResourceExhausted, "{err}");
        let wait = next_attempt_ms(&err);
        assert!(
            wait <= base && wait + 1 >= base * 3 / 4,
            "after refusal {refusal}: {wait} ms, base {base} ms"
        );
        tokio::time::sleep(Duration::from_millis(wait + 1)).await;
    }
    // Once a place is free, the next attempt is served, and the backoff starts over.
    drop(holder);
    let mut served = false;
    for n in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if client.echo(n).await == Ok(n) {
            served = true;
            break;
        }
    }
    assert!(served, "no place came free");
}
