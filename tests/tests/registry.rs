//! The registry end to end, over real sockets on 127.0.0.1 with paused tokio time: eviction at the TTL,
//! recovery after a registry restart within one heartbeat, weighted distribution over real servers, no failed
//! call while an instance dies mid-run, discovery serving from cache while the registry is down, credentials,
//! superseded incarnations, watches answered at the change (and why each instance left), and the HTTP view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::Client;
use rpc_registry::cli::Tracker;
use rpc_registry::client::registration::Status as RegistrationStatus;
use rpc_registry::{
    Discovery, DiscoveryConfig, RegistrationConfig, RegistrationError, RegistryClient,
    RegistryConfig, RegistryError, RemovalReason,
};
use tests::cluster::{WhereClient, http_get, new_instance, start_instance, start_registry};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(3);

fn config() -> RegistryConfig {
    RegistryConfig {
        ttl: TTL,
        ..RegistryConfig::default()
    }
}

async fn registry_client(addr: std::net::SocketAddr) -> RegistryClient {
    RegistryClient::new(Client::lazy_with(addr, Default::default()).await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_stops_heartbeating_is_evicted_at_its_ttl() {
    let registry = start_registry(config(), 0).await.unwrap();
    let client = registry_client(registry.addr).await;
    // A registration that never heartbeats.
    let lease = client
        .register(new_instance("10.0.0.9:9", 1))
        .await
        .unwrap()
        .unwrap();
    let registered = Instant::now();
    assert_eq!(lease.ttl_ms, 3000);
    assert_eq!(lease.heartbeat_ms, 1000);
    // An instance that heartbeats stays.
    let alive = start_instance(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();

    let mut snapshot = client.instances("Where".into()).await.unwrap();
    assert_eq!(snapshot.instances.len(), 2);
    for _ in 0..100 {
        let next = client
            .watch("Where".into(), snapshot.epoch, snapshot.revision, 60_000)
            .await
            .unwrap();
        snapshot = next;
        if snapshot.instances.len() == 1 || registered.elapsed() > TTL * 3 {
            break;
        }
    }
    let evicted_after = registered.elapsed();
    assert_eq!(snapshot.instances.len(), 1);
    assert_eq!(snapshot.instances[0].address, alive.address);
    // The wheel's resolution is a millisecond: eviction comes at the TTL, plus at most that.
    assert!(
        evicted_after >= TTL && evicted_after <= TTL + Duration::from_millis(5),
        "{evicted_after:?}"
    );

    tokio::time::sleep(TTL * 3).await;
    let still = client.instances("Where".into()).await.unwrap();
    assert_eq!(
        still.instances.len(),
        1,
        "the heartbeating instance outlives many TTLs"
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_registry_restart_every_instance_is_back_within_one_heartbeat_interval() {
    let registry = start_registry(config(), 0).await.unwrap();
    let port = registry.addr.port();
    let mut instances = Vec::new();
    for weight in [5, 1, 1] {
        instances.push(
            start_instance(registry.addr, weight, RegistrationConfig::default())
                .await
                .unwrap(),
        );
    }
    let client = registry_client(registry.addr).await;
    assert_eq!(
        client
            .instances("Where".into())
            .await
            .unwrap()
            .instances
            .len(),
        3
    );

    registry.kill();
    // The registry is gone for a while: heartbeats fail.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted = start_registry(config(), port).await.unwrap();
    let back_at = Instant::now();
    let fresh = registry_client(restarted.addr).await;
    let mut seen = 0;
    for _ in 0..2000 {
        seen = fresh
            .instances("Where".into())
            .await
            .map(|s| s.instances.len())
            .unwrap_or(0);
        if seen == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = back_at.elapsed();
    assert_eq!(seen, 3);
    assert!(
        took <= Duration::from_millis(1000),
        "all back in {took:?}; heartbeats come every 1000 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_are_spread_by_weight_across_real_servers() {
    let registry = start_registry(config(), 0).await.unwrap();
    let mut names = BTreeMap::new();
    let mut instances = Vec::new();
    for (name, weight) in [("a", 5), ("b", 1), ("c", 1)] {
        let instance = start_instance(registry.addr, weight, RegistrationConfig::default())
            .await
            .unwrap();
        names.insert(instance.address.clone(), name);
        instances.push(instance);
    }
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    assert_eq!(
        discovery
            .wait_for("Where", 3, Duration::from_secs(5))
            .await
            .len(),
        3
    );
    let client = tests::cluster::round_robin(&discovery);
    let mut sequence = String::new();
    for n in 0..700 {
        let served = client.serve(n).await.unwrap();
        assert_eq!(served.n, n);
        sequence.push_str(names[served.by.as_str()]);
    }
    let count = |c| sequence.chars().filter(|&x| x == c).count();
    assert_eq!((count('a'), count('b'), count('c')), (500, 100, 100));
    // Smooth: the weight-5 instance never gets its five calls of a cycle in a row, as plain weighted
    // round-robin would give them (`aaaaabc`); at most four, where two cycles meet.
    assert!(!sequence.contains("aaaaa"), "{}", &sequence[..21]);
}

#[tokio::test(start_paused = true)]
async fn killing_an_instance_during_10000_idempotent_calls_fails_none() {
    let registry = start_registry(config(), 0).await.unwrap();
    let mut instances = Vec::new();
    for weight in [5, 1, 1] {
        instances.push(
            start_instance(registry.addr, weight, RegistrationConfig::default())
                .await
                .unwrap(),
        );
    }
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    assert_eq!(
        discovery
            .wait_for("Where", 3, Duration::from_secs(5))
            .await
            .len(),
        3
    );
    let client = WhereClient::discover(&discovery, "Where");
    let victim = instances.remove(0);
    let victim_address = victim.address.clone();
    let done = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, done, next) = (client.clone(), Arc::clone(&done), Arc::clone(&next));
        workers.spawn(async move {
            let (mut ok, mut failed, mut after_death) = (0u64, Vec::new(), 0u64);
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= 10_000 {
                    return (ok, failed, after_death);
                }
                match client.serve(n).await {
                    Ok(served) if served.n == n => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                if done.fetch_add(1, Ordering::SeqCst) >= 3000 {
                    after_death += 1;
                }
                // Spread the calls over time, so that the death and the eviction both fall inside the run.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    while done.load(Ordering::SeqCst) < 3000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    victim.kill();
    let (mut ok, mut failed, mut after_death) = (0, Vec::new(), 0);
    while let Some(joined) = workers.join_next().await {
        let (o, f, a) = joined.unwrap();
        ok += o;
        failed.extend(f);
        after_death += a;
    }
    assert_eq!(failed, Vec::<String>::new());
    assert_eq!(ok, 10_000);
    assert!(
        after_death >= 6000,
        "most calls ran after the death: {after_death}"
    );
    let remaining = discovery.instances("Where");
    assert!(
        remaining.iter().all(|i| i.address != victim_address),
        "the dead instance was evicted during the run"
    );
}

#[tokio::test(start_paused = true)]
async fn discovery_keeps_serving_from_its_cache_while_the_registry_is_down() {
    let registry = start_registry(config(), 0).await.unwrap();
    let port = registry.addr.port();
    let first = start_instance(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    assert_eq!(
        discovery
            .wait_for("Where", 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    let client = WhereClient::discover(&discovery, "Where");
    assert!(client.serve(1).await.is_ok());

    registry.kill();
    for n in 0..100 {
        let served = client.serve(n).await.unwrap();
        assert_eq!(served.by, first.address);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        discovery.instances("Where").len(),
        1,
        "10 s without a registry, the cache still holds"
    );

    // The registry comes back; a new instance registers and the discovery hears of it.
    let restarted = start_registry(config(), port).await.unwrap();
    let second = start_instance(restarted.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    assert_eq!(
        discovery
            .wait_for("Where", 2, Duration::from_secs(10))
            .await
            .len(),
        2
    );
    let mut by = std::collections::HashSet::new();
    for n in 0..10 {
        by.insert(client.serve(n).await.unwrap().by);
    }
    assert!(by.contains(&second.address) && by.contains(&first.address));
}

#[tokio::test(start_paused = true)]
async fn writes_without_the_token_are_refused_with_a_clear_error() {
    let config = RegistryConfig {
        token: Some("s3cret-token".into()),
        ..config()
    };
    let registry = start_registry(config, 0).await.unwrap();

    let err = start_instance(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the registry refused: registration of Where refused: this registry needs a token \
         (metadata `authorization: Bearer <token>`) or a client certificate, and the call carried neither"
    );
    let wrong = RegistrationConfig {
        token: Some("a-wrong-guess".into()),
        ..RegistrationConfig::default()
    };
    let err = start_instance(registry.addr, 1, wrong).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the registry refused: registration of Where refused: the token the call carried is not one of this \
         registry's"
    );
    let right = RegistrationConfig {
        token: Some("s3cret-token".into()),
        ..RegistrationConfig::default()
    };
    let instance = start_instance(registry.addr, 1, right).await.unwrap();

    // Reads are open; a heartbeat without the token is a write and is refused.
    let anonymous = registry_client(registry.addr).await;
    assert_eq!(
        anonymous
            .instances("Where".into())
            .await
            .unwrap()
            .instances
            .len(),
        1
    );
    let lease = instance.registration.lease();
    let err = anonymous
        .heartbeat(rpc_registry::LeaseRef {
            lease: lease.id,
            incarnation: lease.incarnation,
            service: "Where".into(),
            address: instance.address.clone(),
        })
        .await
        .unwrap();
    assert!(
        matches!(err, Err(RegistryError::Unauthenticated(m)) if m.starts_with("heartbeat of Where refused"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_incarnation_supersedes_the_old_registration_and_its_heartbeats() {
    let registry = start_registry(config(), 0).await.unwrap();
    let address = "127.0.0.1:9";
    let old = rpc_registry::Registration::register(
        registry.addr,
        new_instance(address, 1),
        Default::default(),
    )
    .await
    .unwrap();
    let new = rpc_registry::Registration::register(
        registry.addr,
        new_instance(address, 2),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!((old.lease().incarnation, new.lease().incarnation), (1, 2));
    let mut status = old.status();
    let superseded = tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| matches!(s, RegistrationStatus::Superseded(_))),
    )
    .await;
    assert!(
        superseded.is_ok(),
        "the old registration stopped at its next heartbeat"
    );
    let client = registry_client(registry.addr).await;
    tokio::time::sleep(TTL * 2).await;
    let snapshot = client.instances("Where".into()).await.unwrap();
    assert_eq!(snapshot.instances.len(), 1);
    assert_eq!(
        (
            snapshot.instances[0].incarnation,
            snapshot.instances[0].weight
        ),
        (2, 2)
    );
    // Deregistering the old lease cannot remove the new instance.
    let err = old.deregister().await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistrationError::Refused(RegistryError::Superseded { current: 2, .. })
        ),
        "{err}"
    );
    assert_eq!(
        client
            .instances("Where".into())
            .await
            .unwrap()
            .instances
            .len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_watch_is_answered_when_the_service_changes_not_at_a_polling_interval() {
    let registry = start_registry(config(), 0).await.unwrap();
    let client = registry_client(registry.addr).await;
    let initial = client.instances("Where".into()).await.unwrap();
    let watcher = tokio::spawn({
        let client = client.with_deadline(Duration::from_secs(60));
        async move {
            let asked = Instant::now();
            let answer = client
                .watch("Where".into(), initial.epoch, initial.revision, 50_000)
                .await
                .unwrap();
            (asked.elapsed(), answer)
        }
    });
    tokio::time::sleep(Duration::from_secs(7)).await;
    let writer = registry_client(registry.addr).await;
    let lease = writer
        .register(new_instance("10.0.0.1:1", 1))
        .await
        .unwrap()
        .unwrap();
    let (waited, answer) = watcher.await.unwrap();
    assert_eq!(answer.instances.len(), 1);
    assert_eq!(answer.instances[0].lease, lease.id);
    assert!(answer.revision > initial.revision);
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_millis(7010),
        "answered at the change, not at the 50 s wait: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_http_view_lists_services_and_instances() {
    let registry = start_registry(config(), 0).await.unwrap();
    let instance = start_instance(registry.addr, 3, RegistrationConfig::default())
        .await
        .unwrap();
    let (status, body) = http_get(registry.http, "/v1/services").await.unwrap();
    assert_eq!(status, 200);
    let services: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(services[0]["name"], "Where");
    assert_eq!(services[0]["instances"], 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = http_get(registry.http, "/v1/services/Where").await.unwrap();
    assert_eq!(status, 200);
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = &view["instances"][0];
    assert_eq!(first["address"], instance.address.as_str());
    assert_eq!(first["weight"], 3);
    assert_eq!(first["incarnation"], 1);
    assert_eq!(first["heartbeat_age_ms"], 400);
    assert_eq!(first["state"], "up");

    let (status, body) = http_get(registry.http, "/v1/services/Nothing")
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (404, "no instances of service `Nothing` are registered")
    );
}

#[tokio::test(start_paused = true)]
async fn a_watch_says_why_each_instance_left_and_watch_answers_as_before() {
    let registry = start_registry(config(), 0).await.unwrap();
    let client = registry_client(registry.addr).await;
    let lease_of = |new: &rpc_registry::NewInstance, lease: rpc_registry::Lease| {
        lease.reference(&new.service, &new.address)
    };
    let [a, b, c] = ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"].map(|at| new_instance(at, 1));
    let mut leases = Vec::new();
    for new in [&a, &b, &c] {
        let lease = client.register(new.clone()).await.unwrap().unwrap();
        leases.push(lease_of(new, lease));
    }
    let first = client.watch_changes("Where".into(), 0, 0, 0).await.unwrap();
    assert_eq!(first.snapshot.instances.len(), 3);
    assert!(first.removed.is_empty() && first.complete, "{first:?}");
    let mut tracker = Tracker::new(TTL);
    assert_eq!(
        tracker
            .update(first.clone(), std::time::Instant::now())
            .len(),
        3
    );

    // a deregisters; b stops heartbeating and is evicted; c heartbeats, then registers again (a restart).
    client.deregister(leases[0].clone()).await.unwrap().unwrap();
    for _ in 0..2 {
        tokio::time::sleep(TTL * 6 / 10).await;
        client.heartbeat(leases[2].clone()).await.unwrap().unwrap();
    }
    let again = client.register(c.clone()).await.unwrap().unwrap();
    assert_eq!(again.incarnation, 2);

    let (epoch, since) = (first.snapshot.epoch, first.snapshot.revision);
    let answer = client
        .watch_changes("Where".into(), epoch, since, 0)
        .await
        .unwrap();
    let removed: Vec<(&str, u64, RemovalReason)> = answer
        .removed
        .iter()
        .map(|r| (r.address.as_str(), r.incarnation, r.reason))
        .collect();
    assert_eq!(
        removed,
        [
            (a.address.as_str(), 1, RemovalReason::Deregistered),
            (b.address.as_str(), 1, RemovalReason::Evicted),
            (c.address.as_str(), 1, RemovalReason::Superseded),
        ]
    );
    assert!(answer.complete);
    let lines: Vec<String> = tracker
        .update(answer.clone(), std::time::Instant::now())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "- 10.0.0.1:1 deregistered",
            "- 10.0.0.2:1 evicted (no heartbeat within the TTL)",
            "~ 10.0.0.3:1 incarnation 1 -> 2",
        ]
    );

    // `watch`, which clients built before `watch_changes` call, answers the same instances as a bare snapshot.
    let old = client.watch("Where".into(), epoch, since, 0).await.unwrap();
    assert_eq!(old, answer.snapshot);
    // A watcher of another registry process learns the instances, with no removal to explain.
    let other = client
        .watch_changes("Where".into(), epoch ^ 1, since, 0)
        .await
        .unwrap();
    assert_eq!(other.snapshot, answer.snapshot);
    assert!(other.removed.is_empty());
}
