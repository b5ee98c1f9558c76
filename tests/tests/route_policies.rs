//! What a route's (or a method's) policy in the rules sets, a balanced client applies to those calls alone, in
//! place of its own settings: hedging, a balancing policy, a retry budget, outlier detection. Each test makes
//! calls the policy takes and calls it does not, and checks that only the first behave as the policy says.
//! Real servers on 127.0.0.1, paused clock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::balance::{Balancer, Instance, OutlierConfig, SmoothWrr};
use rpc_core::client::layer::RetryBudgetConfig;
use rpc_core::rules::Rules;
use rpc_core::{Client, ClientConfig, Metadata};
use tests::store::{Behaviour, FAIL, SLOW, StoreClient, counter, instances, metered};
use tokio::time::Instant;

/// A balanced client over `set` (smooth weighted round-robin, as the client's own policy) with `config`,
/// following the rules `json`.
fn following(set: &[(String, Arc<Behaviour>)], config: ClientConfig, json: &str) -> StoreClient {
    let mut rules: Rules = serde_json::from_str(json).unwrap();
    rules.check().unwrap();
    let feed = tokio::sync::watch::channel(Some(Arc::new(rules))).1;
    let list: Vec<Instance> = set.iter().map(|(a, _)| Instance::new(a, 1)).collect();
    let balancer = Balancer::new(SmoothWrr::default(), list).with_rules(feed);
    StoreClient::new(Client::balanced(balancer, config))
}

fn with(key: &str, value: &str) -> Metadata {
    Metadata::from_pairs([(key.to_owned(), value.to_owned())]).unwrap()
}

/// Calls each instance of `set` started so far.
fn started(set: &[(String, Arc<Behaviour>)]) -> Vec<usize> {
    set.iter()
        .map(|(_, b)| b.started.load(Ordering::SeqCst))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_route_s_hedging_hedges_its_slow_calls_and_no_other() {
    let set = instances(2).await;
    set[0].1.mode.store(SLOW, Ordering::SeqCst);
    let (mut config, metrics) = metered();
    config.outliers = OutlierConfig::disabled();
    let client = following(
        &set,
        config,
        r#"{"service": "Store", "routes": [
            {"name": "hedged", "match": {"metadata": [{"key": "x-hedge", "exact": "1"}]},
             "policy": {"hedge": {"delay_ms": 20}}}
        ]}"#,
    );
    // Smooth round-robin sends the first call to the slow instance: the route hedges it after 20 ms.
    let start = Instant::now();
    assert_eq!(
        client.with_metadata(with("x-hedge", "1")).get(1).await,
        Ok(1)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(20) && took < Duration::from_millis(100),
        "{took:?}"
    );
    assert_eq!(counter(&metrics, "rpc_client_hedges_total"), 1);
    // The next pick is the fast one; the one after, the slow one again, for a call the route does not take:
    // the client hedges nothing, so it waits.
    assert_eq!(client.get(2).await, Ok(2));
    let start = Instant::now();
    assert_eq!(client.get(3).await, Ok(3));
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(counter(&metrics, "rpc_client_hedges_total"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_route_s_balancing_policy_picks_its_calls_and_the_client_s_picks_the_others() {
    let set = instances(3).await;
    let client = following(
        &set,
        ClientConfig::default(),
        r#"{"service": "Store", "routes": [
            {"name": "sticky", "match": {"metadata": [{"key": "x-user", "prefix": ""}]},
             "policy": {"balance": {"policy": "ring_hash", "key": "x-user"}}}
        ]}"#,
    );
    for k in 0..30 {
        assert_eq!(
            client.with_metadata(with("x-user", "alice")).get(k).await,
            Ok(k)
        );
    }
    let mut after = started(&set);
    after.sort_unstable();
    assert_eq!(after, [0, 0, 30], "one user's calls all on one instance");
    let before = started(&set);
    for k in 0..30 {
        assert_eq!(client.get(k).await, Ok(k));
    }
    let spread: Vec<usize> = started(&set)
        .iter()
        .zip(&before)
        .map(|(now, then)| now - then)
        .collect();
    assert_eq!(spread, [10, 10, 10], "the others by smooth round-robin");
}

/// A client that retries a slow read up to three times after a 10 ms attempt timeout, with a budget that
/// allows every retry.
fn retrying() -> ClientConfig {
    ClientConfig {
        attempt_timeout: Some(Duration::from_millis(10)),
        max_retries: 3,
        retry_budget: RetryBudgetConfig {
            ratio: 10.0,
            min_per_second: 0,
            ..RetryBudgetConfig::default()
        },
        outliers: OutlierConfig::disabled(),
        ..ClientConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_route_s_retry_budget_is_its_own() {
    let set = instances(4).await;
    for (_, b) in &set {
        b.mode.store(SLOW, Ordering::SeqCst);
    }
    let client = following(
        &set,
        retrying(),
        r#"{"service": "Store", "routes": [
            {"name": "tight", "match": {"metadata": [{"key": "x-tight", "exact": "1"}]},
             "policy": {"retry": {"budget_percent": 0}}}
        ]}"#,
    );
    let tight = client.with_metadata(with("x-tight", "1"));
    for k in 0..20 {
        assert!(tight.get(k).await.is_err());
    }
    let attempts: usize = started(&set).iter().sum();
    assert_eq!(attempts, 20, "the route's budget allows no retry");
    // The same client's other reads draw on its own budget, which the route's calls did not spend or
    // replace: each is tried four times.
    for k in 0..20 {
        assert!(client.get(k).await.is_err());
    }
    let attempts = started(&set).iter().sum::<usize>() - 20;
    assert_eq!(attempts, 80, "the client's budget allows every retry");
}

#[tokio::test(start_paused = true)]
async fn a_route_s_outlier_detection_is_its_own() {
    let set = instances(3).await;
    set[1].1.mode.store(FAIL, Ordering::SeqCst);
    let (config, _) = metered();
    let client = following(
        &set,
        config,
        r#"{"service": "Store", "routes": [
            {"name": "strict", "match": {"metadata": [{"key": "x-strict", "exact": "1"}]},
             "policy": {"outliers": {"consecutive_failures": 1}}}
        ]}"#,
    );
    // `put` is not retried after an Internal: each failure reaches the caller.
    let strict = client.with_metadata(with("x-strict", "1"));
    let mut failed = 0;
    for k in 0..30 {
        if strict.put(k).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "the route ejects after one failure");
    assert_eq!(set[1].1.started.load(Ordering::SeqCst), 1);
    // The client's own detector, for the other calls, ejects after five in a row; the route's ejection did not
    // close the instance's connection or count for it.
    let mut failed = 0;
    for k in 0..60 {
        if client.put(k).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 5, "the client ejects after five");
}
