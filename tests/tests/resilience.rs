//! A balanced client routes around failing, slow and stalled instances: outlier ejection (failures in a row, a
//! stall) with calls in flight failed over at once, attempt timeouts, hedging with the loser cancelled, server
//! pushback, the retry budget, and an instance the feed drops. Real servers on 127.0.0.1, paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::balance::{Balancer, Instance, OutlierConfig, SmoothWrr};
use rpc_core::client::layer::{HedgeConfig, HedgeDelay, RetryBudgetConfig};
use rpc_core::server::{Request, Response};
use rpc_core::{Client, ClientConfig, Server, Status};
use tests::store::{
    FAIL, SERVE, SLOW, STALL, StoreClient, StoreServer, Stored, client_of, counter, instances,
    metered,
};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn a_stalled_instance_is_ejected_and_its_calls_in_flight_fail_over_or_fail_unavailable() {
    let set = instances(3).await;
    set[0].1.mode.store(STALL, Ordering::SeqCst);
    let (config, metrics) = metered();
    let client = client_of(&set, config);
    let start = Instant::now();
    // 12 reads and 12 writes at once: a third of each lands on the stalled instance first.
    let reads = (0..12).map(|k| {
        let c = client.clone();
        tokio::spawn(async move { c.get(k).await })
    });
    let writes = (0..12).map(|k| {
        let c = client.clone();
        tokio::spawn(async move { c.put(k).await })
    });
    let (reads, writes): (Vec<_>, Vec<_>) = (reads.collect(), writes.collect());
    for (k, r) in reads.into_iter().enumerate() {
        assert_eq!(r.await.unwrap(), Ok(k as u64), "every read succeeds");
    }
    let mut refused = 0;
    for (k, w) in writes.into_iter().enumerate() {
        match w.await.unwrap() {
            Ok(v) => assert_eq!(v, k as u64),
            Err(e) => {
                // A write that reached the stalled instance may have run: it is not sent twice.
                assert_eq!(e.code(), Status::Unavailable, "{e}");
                assert!(
                    e.message().contains("ejected") && e.message().contains("no answer"),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 4, "the writes sent to the stalled instance");
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "failed over after {took:?}, not at the 1 s deadline"
    );
    assert_eq!(counter(&metrics, "rpc_client_ejections_total"), 1);
    assert_eq!(
        counter(&metrics, "rpc_client_retries_total"),
        4,
        "the four reads"
    );
    // Ejected: later calls go to the two others only.
    let before = set[0].1.started.load(Ordering::SeqCst);
    for k in 0..10 {
        assert_eq!(client.get(k).await, Ok(k));
    }
    assert_eq!(set[0].1.started.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn five_failures_in_a_row_eject_an_instance_until_a_probe_succeeds() {
    let set = instances(3).await;
    set[1].1.mode.store(FAIL, Ordering::SeqCst);
    let (config, metrics) = metered();
    let client = client_of(&set, config);
    let mut failed = 0;
    for k in 0..60 {
        // `put` is not retried after an Internal: each failure reaches the caller.
        if client.put(k).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 5, "ejected after five");
    assert_eq!(set[1].1.started.load(Ordering::SeqCst), 5);
    assert_eq!(counter(&metrics, "rpc_client_ejections_total"), 1);
    // After the 30 s ejection one probe goes; the instance is healthy again, so it serves once more.
    set[1].1.mode.store(SERVE, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(31)).await;
    for k in 0..30 {
        assert_eq!(client.put(k).await, Ok(k));
    }
    assert!(
        set[1].1.started.load(Ordering::SeqCst) > 6,
        "back in the rotation"
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_sends_a_slow_read_elsewhere_and_cancels_it_there() {
    let set = instances(2).await;
    set[0].1.mode.store(SLOW, Ordering::SeqCst);
    let config = ClientConfig {
        attempt_timeout: Some(Duration::from_millis(50)),
        outliers: OutlierConfig::disabled(),
        ..ClientConfig::default()
    };
    let client = client_of(&set, config);
    let start = Instant::now();
    // The first pick of smooth WRR over equal weights is the first instance.
    assert_eq!(client.get(7).await, Ok(7));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_millis(200),
        "{took:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        set[0].1.dropped.load(Ordering::SeqCst),
        1,
        "the slow attempt was stopped on its server"
    );
    // A write that times out on the slow instance may have run there: it fails rather than go elsewhere.
    let writes = [client.put(8).await, client.put(9).await];
    let errors: Vec<_> = writes.iter().filter_map(|w| w.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{writes:?}");
    assert_eq!(errors[0].code(), Status::DeadlineExceeded);
    assert!(
        errors[0].message().contains("attempt timeout of 50 ms"),
        "{}",
        errors[0]
    );
}

#[tokio::test(start_paused = true)]
async fn hedging_answers_from_the_second_instance_and_cancels_the_first() {
    let set = instances(2).await;
    set[0].1.mode.store(SLOW, Ordering::SeqCst);
    let (mut config, metrics) = metered();
    config.hedge = Some(HedgeConfig {
        delay: HedgeDelay::After(Duration::from_millis(20)),
        ..HedgeConfig::default()
    });
    config.outliers = OutlierConfig::disabled();
    let client = client_of(&set, config);
    let start = Instant::now();
    assert_eq!(client.get(3).await, Ok(3));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(20) && took < Duration::from_millis(100),
        "{took:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        set[0].1.dropped.load(Ordering::SeqCst),
        1,
        "the loser was cancelled"
    );
    assert_eq!(counter(&metrics, "rpc_client_hedges_total"), 1);
    // A write is never hedged: it waits for the slow instance.
    let start = Instant::now();
    assert_eq!(
        client.put(4).await,
        Ok(4),
        "the second pick of smooth WRR: the fast one"
    );
    assert_eq!(client.put(5).await, Ok(5));
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(counter(&metrics, "rpc_client_hedges_total"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_pushes_back_is_left_alone_for_the_time_it_asked() {
    let shed_calls = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&shed_calls);
    let shed = rpc_core::server::layer::intercept(move |_: &mut Request| {
        seen.fetch_add(1, Ordering::SeqCst);
        Err(
            Response::error(Status::ResourceExhausted, "over the rate limit")
                .with_retry_after(Duration::from_millis(500)),
        )
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pushing = listener.local_addr().unwrap().to_string();
    let server = Server::builder()
        .layer(shed)
        .add_service(StoreServer::new(Stored(Arc::default())))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let mut set = instances(1).await;
    set.insert(0, (pushing, Arc::default()));
    let client = client_of(&set, ClientConfig::default());
    // Writes too: a call refused with a retry-after did not run.
    for k in 0..20 {
        assert_eq!(client.put(k).await, Ok(k));
    }
    assert_eq!(
        shed_calls.load(Ordering::SeqCst),
        1,
        "asked once, then left alone"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    for k in 0..4 {
        assert_eq!(client.put(k).await, Ok(k));
    }
    assert_eq!(
        shed_calls.load(Ordering::SeqCst),
        2,
        "tried again after the wait"
    );
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_retries_when_everything_fails() {
    let set = instances(4).await;
    for (_, b) in &set {
        b.mode.store(SLOW, Ordering::SeqCst);
    }
    let config = ClientConfig {
        attempt_timeout: Some(Duration::from_millis(10)),
        max_retries: 3,
        retry_budget: RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 0,
            ..RetryBudgetConfig::default()
        },
        outliers: OutlierConfig::disabled(),
        ..ClientConfig::default()
    };
    let client = client_of(&set, config);
    for k in 0..50 {
        assert!(client.get(k).await.is_err());
    }
    let attempts: usize = set
        .iter()
        .map(|(_, b)| b.started.load(Ordering::SeqCst))
        .sum();
    // 50 calls; retries are at most a fifth of them, where unbudgeted retries would make 200 attempts.
    assert!((50..=60).contains(&attempts), "{attempts} attempts");
}

/// Sends one call (`read`: a `get`, else a `put`) while the first instance stalls, then drops that instance from
/// the feed; the call's result and how long it took after the drop.
async fn dropped_from_the_feed(read: bool) -> (Result<u64, rpc_core::RpcError>, Duration) {
    let set = instances(2).await;
    set[0].1.mode.store(STALL, Ordering::SeqCst);
    let list: Vec<Instance> = set.iter().map(|(a, _)| Instance::new(a, 1)).collect();
    let (tx, rx) = tokio::sync::watch::channel(list.clone());
    let config = ClientConfig {
        outliers: OutlierConfig::disabled(),
        default_deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = StoreClient::new(Client::balanced(
        Balancer::new(SmoothWrr::default(), rx),
        config,
    ));
    // Smooth WRR over equal weights picks the first instance first: the call stalls there.
    let call = tokio::spawn(async move {
        if read {
            client.get(1).await
        } else {
            client.put(1).await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        set[0].1.started.load(Ordering::SeqCst),
        1,
        "the call stalls"
    );
    let start = Instant::now();
    tx.send(list[1..].to_vec()).unwrap();
    let result = call.await.unwrap();
    (result, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn an_instance_the_feed_drops_has_its_calls_in_flight_failed_over() {
    let (read, took) = dropped_from_the_feed(true).await;
    assert_eq!(read, Ok(1), "a read fails over to the instance left");
    assert!(
        took <= Duration::from_millis(50),
        "within a tick or two: {took:?}"
    );
    let (write, took) = dropped_from_the_feed(false).await;
    let e = write.unwrap_err();
    assert_eq!(e.code(), Status::Unavailable, "{e}");
    assert!(e.message().contains("left the service"), "{e}");
    assert!(took <= Duration::from_millis(50), "{took:?}");
}
