//! The registry as a control plane, end to end on 127.0.0.1: rules applied to the registry reach the clients
//! that discover through it, which split calls between labelled instances by the rules' weights and follow a
//! change of the rules while calls are under way, without failing one; a registry's watch of rules answers a
//! change at once, and a client keeps the last rules while the registry is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_registry::{Discovery, DiscoveryConfig, RegistrationConfig, RegistryConfig};
use tests::cluster::{WhereClient, start_labelled_instance, start_registry};

const TOKEN: &str = "control-plane-token";

fn registration() -> RegistrationConfig {
    RegistrationConfig {
        token: Some(TOKEN.to_owned()),
        ..RegistrationConfig::default()
    }
}

async fn apply(registry: std::net::SocketAddr, json: &str) -> u64 {
    let client =
        rpc_registry::RegistryClient::new(rpc_core::Client::connect(registry).await.unwrap())
            .with_metadata(
                rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {TOKEN}"))])
                    .unwrap(),
            );
    client
        .apply_rules(json.to_owned())
        .await
        .unwrap()
        .unwrap()
        .revision
}

const SPLIT: &str = r#"{"service": "Where", "routes": [
    {"name": "split", "to": [{"subset": "version=v1", "weight": 90}, {"subset": "version=v2", "weight": 10}]}
]}"#;

const ALL_V2: &str = r#"{"service": "Where", "routes": [
    {"name": "all-v2", "to": [{"subset": "version=v2", "weight": 1}]}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_rules_split_calls_and_a_change_under_load_fails_none() {
    let config = RegistryConfig {
        token: Some(TOKEN.to_owned()),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let mut instances = Vec::new();
    for version in ["v1", "v1", "v2"] {
        let instance =
            start_labelled_instance(registry.addr, 1, &[("version", version)], registration())
                .await
                .unwrap();
        instances.push((instance.address.clone(), version, instance));
    }
    let version_of: HashMap<String, &str> =
        instances.iter().map(|(a, v, _)| (a.clone(), *v)).collect();
    assert_eq!(apply(registry.addr, SPLIT).await, 1);

    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    assert_eq!(
        discovery
            .wait_for("Where", 3, Duration::from_secs(10))
            .await
            .len(),
        3
    );
    assert!(
        discovery
            .wait_for_rules("Where", Duration::from_secs(10))
            .await,
        "the registry answered"
    );
    let mut rules = discovery.rules("Where");
    assert!(rules.borrow().is_some(), "answered with the rules applied");
    tokio::time::timeout(Duration::from_secs(10), rules.wait_for(|r| r.is_some()))
        .await
        .expect("the rules reach the client")
        .unwrap();
    let client = WhereClient::discover(&discovery, "Where");

    // 10,000 calls, 50 at a time; halfway, the rules send everything to v2.
    let counts: Arc<Mutex<[HashMap<&str, u64>; 2]>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, counts, next) = (client.clone(), Arc::clone(&counts), Arc::clone(&next));
        let (seen, version_of) = (rules.clone(), version_of.clone());
        workers.spawn(async move {
            let mut failed = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= 10_000 {
                    return failed;
                }
                // Calls started once the client had the change count apart (a call in the moment the change
                // lands may go either way: the tolerance below covers the few).
                let after = seen
                    .borrow()
                    .as_ref()
                    .is_some_and(|r| r.routes[0].name == "all-v2");
                match client.serve(n).await {
                    Ok(served) => {
                        let version = version_of[&served.by];
                        *counts.lock().unwrap()[usize::from(after)]
                            .entry(version)
                            .or_default() += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
        });
    }
    while next.load(std::sync::atomic::Ordering::SeqCst) < 5_000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let applied = Instant::now();
    assert_eq!(apply(registry.addr, ALL_V2).await, 2);
    tokio::time::timeout(
        Duration::from_secs(10),
        rules.wait_for(|r| r.as_ref().is_some_and(|r| r.routes[0].name == "all-v2")),
    )
    .await
    .expect("the change reaches the client")
    .unwrap();
    let took = applied.elapsed();
    let mut failed = 0;
    while let Some(done) = workers.join_next().await {
        failed += done.unwrap();
    }
    eprintln!(
        "the change reached the client {} ms after it was applied",
        took.as_millis()
    );
    assert_eq!(failed, 0, "no call failed");
    let counts = counts.lock().unwrap().clone();
    let before_v2 = counts[0].get("v2").copied().unwrap_or(0) as f64;
    let before_all = counts[0].values().sum::<u64>() as f64;
    let share = before_v2 * 100.0 / before_all;
    assert!(
        (8.0..=12.0).contains(&share),
        "v2 took {share}% of {before_all} calls, not 10 +/- 2"
    );
    assert_eq!(
        counts[1].get("v1"),
        None,
        "after the change, no call to v1: {:?}",
        counts[1]
    );
    assert!(
        counts[1].get("v2").copied().unwrap_or(0) > 0,
        "{:?}",
        counts[1]
    );

    // The registry gone, the client keeps the last rules and calls on.
    registry.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rules
            .borrow()
            .as_ref()
            .is_some_and(|r| r.routes[0].name == "all-v2")
    );
    let served = client.serve(1).await.unwrap();
    assert_eq!(version_of[&served.by], "v2");
    drop(instances);
}

#[tokio::test]
async fn a_server_following_the_rules_refuses_a_denied_caller_naming_the_rule() {
    use rpc_core::server::layer::{Authorize, FollowRules, Grant};
    use tests::cluster::{Here, WhereServer};

    let config = RegistryConfig {
        token: Some(TOKEN.to_owned()),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    apply(
        registry.addr,
        r#"{"service": "Where", "authorization": {"default": "deny", "grants": [
            {"name": "no-dev", "callers": ["token:dev"], "methods": ["serve"], "access": "deny"},
            {"name": "staff", "callers": ["token:*"], "methods": ["*"], "access": "allow"}
        ]}}"#,
    )
    .await;
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    assert!(
        discovery
            .wait_for_rules("Where", Duration::from_secs(10))
            .await
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rpc_core::Server::builder()
        .layer(
            Authorize::new()
                .anonymous(Grant::all())
                .token("dev", "a-token-for-dev", Grant::all())
                .token("ops", "a-token-for-ops", Grant::all()),
        )
        .layer(FollowRules::new(discovery.rules("Where")))
        .add_service(WhereServer::new(Here {
            address: addr.to_string(),
        }))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let client = WhereClient::connect(addr).await.unwrap();
    let with_token = |token: &str| {
        client.with_metadata(
            rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {token}"))]).unwrap(),
        )
    };

    assert_eq!(with_token("a-token-for-ops").serve(1).await.unwrap().n, 1);
    let denied = with_token("a-token-for-dev").serve(2).await.unwrap_err();
    assert_eq!(denied.code(), rpc_core::Status::PermissionDenied);
    assert_eq!(
        denied.message(),
        "Where.serve refused for token:dev by rule `no-dev` of the rules of Where"
    );
    let anonymous = client.serve(3).await.unwrap_err();
    assert_eq!(anonymous.code(), rpc_core::Status::PermissionDenied);
    assert_eq!(
        anonymous.message(),
        "Where.serve refused for a caller without an identity by rule `default` of the rules of Where"
    );

    // The rules change: dev may call now, from the server's next call.
    apply(
        registry.addr,
        r#"{"service": "Where", "authorization": {"default": "allow"}}"#,
    )
    .await;
    let mut rules = discovery.rules("Where");
    tokio::time::timeout(
        Duration::from_secs(10),
        rules.wait_for(|r| {
            r.as_ref()
                .and_then(|r| r.authorization.as_ref())
                .is_some_and(|a| a.grants.is_empty())
        }),
    )
    .await
    .expect("the change reaches the server")
    .unwrap();
    assert_eq!(with_token("a-token-for-dev").serve(4).await.unwrap().n, 4);
}

#[tokio::test(start_paused = true)]
async fn a_server_following_the_rules_sheds_calls_past_their_limits_per_caller() {
    use rpc_core::server::layer::{Authorize, FollowRules, Grant};
    use std::sync::atomic::Ordering;
    use tests::lab::{LabClient, LabImpl, LabServer};

    let mut rules: rpc_core::rules::Rules = serde_json::from_str(
        r#"{"service": "Lab", "limits": [
            {"methods": ["echo"], "per_caller": true, "rate_per_second": 10, "burst": 5},
            {"methods": ["delayed"], "max_concurrency": 1}
        ]}"#,
    )
    .unwrap();
    rules.check().unwrap();
    let (_updates, feed) = tokio::sync::watch::channel(Some(Arc::new(rules)));
    let lab = LabImpl::default();
    let addr = tests::serve::serve_builder(
        rpc_core::Server::builder()
            .layer(
                Authorize::new()
                    .anonymous(Grant::all())
                    .token("dev", "a-token-for-dev", Grant::all())
                    .token("ops", "a-token-for-ops", Grant::all()),
            )
            .layer(FollowRules::new(feed))
            .add_service(LabServer::new(lab.clone())),
    )
    .await;
    let client = LabClient::connect(addr).await.unwrap();
    let as_caller = |token: &str| {
        client.with_metadata(
            rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {token}"))]).unwrap(),
        )
    };
    let dev = as_caller("a-token-for-dev");
    for n in 0..5 {
        assert_eq!(dev.echo(n).await.unwrap(), n, "within the burst");
    }
    let shed = dev.echo(5).await.unwrap_err();
    assert_eq!(shed.code(), rpc_core::Status::ResourceExhausted);
    assert_eq!(
        shed.message(),
        "Lab.echo shed for token:dev: over limits[0] of the rules of Lab, 10 calls a second per caller"
    );
    assert_eq!(shed.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(
        as_caller("a-token-for-ops").echo(6).await.unwrap(),
        6,
        "each caller its own bucket"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        dev.echo(7).await.unwrap(),
        7,
        "a token back after a tenth of a second"
    );

    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.delayed(1, 500).await }
    });
    for _ in 0..1_000 {
        if lab.observed.delayed_started.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let shed = client.delayed(2, 0).await.unwrap_err();
    assert_eq!(shed.code(), rpc_core::Status::ResourceExhausted);
    assert!(
        shed.message()
            .ends_with("over limits[1] of the rules of Lab, 1 calls at once"),
        "{shed}"
    );
    assert_eq!(slow.await.unwrap().unwrap(), 1);
    assert_eq!(
        client.delayed(3, 0).await.unwrap(),
        3,
        "its place is free again"
    );
}
