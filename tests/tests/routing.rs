//! Routes of rules applied by a balanced client, end to end against Lab servers on 127.0.0.1: a 90/10 split
//! between two versions holds within 2 points over 10,000 calls, calls with a matching metadata entry all go to
//! their subset, a change of the rules applies to the next call, and a subset with no instance fails the call
//! naming the subset and the route. Each server counts the `delayed` calls that reach it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rpc_core::balance::{Balancer, Instance, SmoothWrr};
use rpc_core::rules::Rules;
use rpc_core::{ClientConfig, Metadata, ServerConfig, Status};
use tests::lab::{LabClient, LabImpl};
use tests::serve::{Running, serve_lab};

/// Three Lab servers: two labelled version=v1, one version=v2.
struct Versions {
    labs: Vec<LabImpl>,
    instances: Vec<Instance>,
    _running: Vec<Running>,
}

impl Versions {
    async fn start() -> Versions {
        let mut versions = Versions {
            labs: Vec::new(),
            instances: Vec::new(),
            _running: Vec::new(),
        };
        for version in ["v1", "v1", "v2"] {
            let lab = LabImpl::default();
            let running = serve_lab(lab.clone(), ServerConfig::default(), 0)
                .await
                .unwrap();
            versions.instances.push(
                Instance::new(&running.addr.to_string(), 1).with_labels([("version", version)]),
            );
            versions.labs.push(lab);
            versions._running.push(running);
        }
        versions
    }

    /// Calls that reached the v1 servers and the v2 server so far.
    fn counts(&self) -> (usize, usize) {
        let count = |lab: &LabImpl| lab.observed.delayed_started.load(Ordering::SeqCst);
        (
            count(&self.labs[0]) + count(&self.labs[1]),
            count(&self.labs[2]),
        )
    }
}

fn rules(json: &str) -> Option<Arc<Rules>> {
    let mut rules: Rules = serde_json::from_str(json).unwrap();
    rules.check().unwrap();
    Some(Arc::new(rules))
}

/// A balanced client over `versions` (smooth round-robin) following the rules `feed` holds.
fn following(versions: &Versions, feed: rpc_core::client::RulesFeed) -> LabClient {
    let balancer = Balancer::new(SmoothWrr::default(), versions.instances.clone()).with_rules(feed);
    LabClient::new(rpc_core::Client::balanced(
        balancer,
        ClientConfig::default(),
    ))
}

/// `calls` calls of `delayed` (no delay) through `client`, 50 at a time: the errors of those that failed
/// (each that succeeds must answer its own number).
async fn delayed_calls(client: &LabClient, calls: u64) -> Vec<rpc_core::RpcError> {
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..50 {
        let client = client.clone();
        workers.spawn(async move {
            let mut failed = Vec::new();
            for i in 0..calls / 50 {
                let n = worker * 1_000 + i;
                match client.delayed(n, 0).await {
                    Ok(answer) => assert_eq!(answer, n),
                    Err(e) => failed.push(e),
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = workers.join_next().await {
        failed.extend(done.unwrap());
    }
    failed
}

const CANARY: &str = r#"{"service": "Lab", "routes": [
    {"name": "canary", "match": {"metadata": [{"key": "x-canary", "exact": "1"}]},
     "to": [{"subset": "version=v2", "weight": 1}]},
    {"name": "split", "to": [{"subset": "version=v1", "weight": 90}, {"subset": "version=v2", "weight": 10}]}
]}"#;

#[tokio::test]
async fn routes_split_by_weight_follow_metadata_and_apply_changes_at_once() {
    let versions = Versions::start().await;
    let (updates, feed) = tokio::sync::watch::channel(rules(CANARY));
    let client = following(&versions, feed);

    let calls: u64 = 10_000;
    let failed = delayed_calls(&client, calls).await;
    assert!(failed.is_empty(), "{failed:?}");
    let (v1, v2) = versions.counts();
    assert_eq!(v1 + v2, calls as usize);
    let share = v2 as f64 * 100.0 / calls as f64;
    assert!(
        (8.0..=12.0).contains(&share),
        "v2 took {share}% of the calls, not 10 +/- 2"
    );

    let canary = client.with_metadata(Metadata::from_pairs([("x-canary", "1")]).unwrap());
    for i in 0..500 {
        canary.delayed(i, 0).await.unwrap();
    }
    assert_eq!(versions.counts(), (v1, v2 + 500), "every canary call to v2");

    updates
        .send(rules(
            r#"{"service": "Lab", "routes": [{"name": "all-v1", "to": [{"subset": "version=v1", "weight": 1}]}]}"#,
        ))
        .unwrap();
    for i in 0..200 {
        canary.delayed(i, 0).await.unwrap();
    }
    assert_eq!(
        versions.counts(),
        (v1 + 200, v2 + 500),
        "the new rules, from the next call"
    );

    updates.send(None).unwrap();
    for i in 0..300 {
        client.delayed(i, 0).await.unwrap();
    }
    let (after_v1, after_v2) = versions.counts();
    assert_eq!(
        (after_v1 - v1 - 200, after_v2 - v2 - 500),
        (200, 100),
        "no rules: round-robin over all three"
    );
}

#[tokio::test]
async fn a_subset_without_instances_fails_the_call_naming_it() {
    let versions = Versions::start().await;
    let (_updates, feed) = tokio::sync::watch::channel(rules(
        r#"{"service": "Lab", "routes": [{"name": "next", "to": [{"subset": "version=v3", "weight": 1}]}]}"#,
    ));
    let client = following(&versions, feed);
    let error = client.delayed(1, 0).await.unwrap_err();
    assert_eq!(error.code(), Status::Unavailable);
    assert_eq!(
        error.message(),
        "no instance of Lab in the subset version=v3 of route `next` is available"
    );
    assert_eq!(versions.counts(), (0, 0));
}

#[tokio::test]
async fn the_rules_faults_abort_their_share_of_a_methods_calls_unsent() {
    let versions = Versions::start().await;
    let (_updates, feed) = tokio::sync::watch::channel(rules(
        r#"{"service": "Lab", "methods": {"delayed": {"fault": {"abort_percent": 10, "abort_status": "resource_exhausted"}}}}"#,
    ));
    let client = following(&versions, feed);
    let calls: u64 = 10_000;
    let failed = delayed_calls(&client, calls).await;
    for e in &failed {
        assert_eq!(e.code(), Status::ResourceExhausted);
        assert_eq!(
            e.message(),
            "a fault was injected by the rules (route `default`)"
        );
    }
    let aborted = failed.len() as u64;
    let share = aborted as f64 * 100.0 / calls as f64;
    assert!(
        (8.0..=12.0).contains(&share),
        "{share}% aborted, not 10 +/- 2"
    );
    let (v1, v2) = versions.counts();
    assert_eq!(
        v1 + v2,
        (calls - aborted) as usize,
        "an aborted call is never sent"
    );
    assert_eq!(client.echo(7).await.unwrap(), 7, "other methods untouched");
}

#[tokio::test(start_paused = true)]
async fn the_rules_delays_hold_a_call_back_and_one_past_its_deadline_fails() {
    let versions = Versions::start().await;
    let (_updates, feed) = tokio::sync::watch::channel(rules(
        r#"{"service": "Lab", "methods": {"echo": {"fault": {"delay_ms": 200}}}}"#,
    ));
    let client = following(&versions, feed);
    let start = tokio::time::Instant::now();
    assert_eq!(client.echo(1).await.unwrap(), 1);
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    let error = client
        .with_deadline(std::time::Duration::from_millis(50))
        .echo(2)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Status::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_rules_deadline_bounds_calls_without_their_own_and_its_attempt_timeout_each_attempt() {
    let versions = Versions::start().await;
    let (_updates, feed) = tokio::sync::watch::channel(rules(
        r#"{"service": "Lab", "methods": {
            "delayed": {"deadline_ms": 50},
            "hang": {"retry": {"attempt_timeout_ms": 100}}
        }}"#,
    ));
    let client = following(&versions, feed);
    let error = client.delayed(1, 200).await.unwrap_err();
    assert_eq!(error.code(), Status::DeadlineExceeded, "{error}");
    let own = client.with_deadline(std::time::Duration::from_secs(1));
    assert_eq!(
        own.delayed(2, 100).await.unwrap(),
        2,
        "a deadline of the caller's own wins"
    );
    let error = client.hang().await.unwrap_err();
    assert_eq!(error.code(), Status::DeadlineExceeded, "{error}");
    assert!(
        error
            .message()
            .contains("took longer than the attempt timeout of 100 ms"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rules_deadline_bounds_calls_that_go_through_user_layers_unless_a_layer_chose_one() {
    let versions = Versions::start().await;
    let (_updates, feed) = tokio::sync::watch::channel(rules(
        r#"{"service": "Lab", "methods": {"delayed": {"deadline_ms": 50}}}"#,
    ));
    let through = |config: ClientConfig| {
        let balancer = Balancer::new(SmoothWrr::default(), versions.instances.clone())
            .with_rules(feed.clone());
        LabClient::new(rpc_core::Client::balanced(balancer, config))
    };
    // A layer that only looks at the calls: the rule's deadline still bounds them.
    let looking = through(ClientConfig::default().layer(tower::layer::layer_fn(|inner| inner)));
    let error = looking.delayed(1, 100).await.unwrap_err();
    assert_eq!(error.code(), Status::DeadlineExceeded, "{error}");
    // A layer that sets a deadline chose it, as a caller does: the rule's no longer applies.
    let choosing = through(
        ClientConfig::default().layer(tower::util::MapRequestLayer::new(
            |mut request: rpc_core::client::layer::Request| {
                let later = request.deadline() + std::time::Duration::from_millis(500);
                request.set_deadline(later);
                request
            },
        )),
    );
    assert_eq!(choosing.delayed(2, 100).await.unwrap(), 2);
}

#[tokio::test]
async fn a_rules_retries_replace_the_clients() {
    let versions = Versions::start().await;
    // An address where nothing listens, first in line for smooth round-robin.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let instances = vec![Instance::new(&dead_addr, 1), versions.instances[0].clone()];
    let call_with = |json: &'static str| {
        let (updates, feed) = tokio::sync::watch::channel(rules(json));
        let balancer = Balancer::new(SmoothWrr::default(), instances.clone()).with_rules(feed);
        (
            updates,
            LabClient::new(rpc_core::Client::balanced(
                balancer,
                ClientConfig::default(),
            )),
        )
    };
    let (_keep, retried) = call_with(r#"{"service": "Lab"}"#);
    assert_eq!(
        retried.echo(1).await.unwrap(),
        1,
        "the client's own retry reaches the live instance"
    );
    let (_keep, once) =
        call_with(r#"{"service": "Lab", "methods": {"echo": {"retry": {"max_retries": 0}}}}"#);
    let error = once.echo(2).await.unwrap_err();
    assert_eq!(error.code(), Status::Unavailable, "{error}");
}
