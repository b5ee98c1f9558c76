//! What the registry shows its operators, over its HTTP port and its RPC API: `GET /healthz`, each instance's
//! state (up, then late without heartbeats, then gone), Prometheus metrics that count registrations,
//! heartbeats, evictions, refusals and watchers (and pass promtool), the overview long poll the dashboard
//! makes, and its bound, its pages and filters, and the history of changes it shows; on shutdown, waiting watches are answered and open HTTP connections stop being
//! served. Real time with short TTLs: these tests wait on sockets and the clock together.

use std::time::Duration;

use rpc_core::Client;
use rpc_registry::{
    InstanceState, RegistrationConfig, RegistryClient, RegistryConfig, RegistryError,
};
use tests::cluster::{new_instance, start_instance, start_registry};
use tests::prom::{self, http_get};

/// Short enough that a test sees an instance go late (after 300 ms) and be evicted (at 600 ms).
const TTL: Duration = Duration::from_millis(600);

fn config() -> RegistryConfig {
    RegistryConfig {
        ttl: TTL,
        ..RegistryConfig::default()
    }
}

async fn registry_client(addr: std::net::SocketAddr) -> RegistryClient {
    RegistryClient::new(Client::lazy_with(addr, Default::default()).await.unwrap())
}

async fn json(http: std::net::SocketAddr, path: &str) -> (String, serde_json::Value) {
    let (status, _, body) = http_get(http, path).await.unwrap();
    let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, value)
}

async fn metric(http: std::net::SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, _, body) = http_get(http, "/metrics").await.unwrap();
    prom::value(&prom::parse(&body).unwrap(), name, labels)
}

/// Polls `condition` every 10 ms of real time, at most 300 times.
async fn eventually<F: Future<Output = bool>>(mut condition: impl FnMut() -> F) -> bool {
    for _ in 0..300 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn health_and_instance_states_follow_heartbeats_until_eviction() {
    // Real time: a TTL long enough that the late half (750 ms) is not missed between two polls on a busy machine.
    let ttl = Duration::from_millis(1500);
    let registry = start_registry(RegistryConfig { ttl, ..config() }, 0)
        .await
        .unwrap();
    let http = registry.http;
    let live = start_instance(registry.addr, 4, RegistrationConfig::default())
        .await
        .unwrap();
    let (status, health) = json(http, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        (health["status"].as_str(), health["instances"].as_u64()),
        (Some("ok"), Some(1))
    );
    // The store: this process alone, taking writes, no replicas.
    assert_eq!(health["store"]["kind"], "memory", "{health}");
    assert_eq!(health["store"]["healthy"], true);
    assert_eq!(health["store"]["replicas"], serde_json::json!([]));

    // An instance registered by hand never heartbeats: up, late after half the TTL, then evicted.
    let client = registry_client(registry.addr).await;
    let mut ghost = new_instance("10.0.0.9:9", 2);
    ghost.service = String::from("Ghost");
    client.register(ghost).await.unwrap().unwrap();
    let (_, view) = json(http, "/v1/services/Ghost").await;
    assert_eq!(view["instances"][0]["state"], "up", "{view}");
    assert_eq!(view["instances"][0]["weight"], 2);
    let went_late = eventually(|| async {
        let (_, view) = json(http, "/v1/services/Ghost").await;
        view["instances"][0]["state"] == "late"
    })
    .await;
    assert!(went_late);
    let status = client.status(Some(String::from("Ghost"))).await.unwrap();
    assert_eq!(status[0].instances[0].state, InstanceState::Late);
    assert!(status[0].instances[0].heartbeat_age_ms >= (ttl / 2).as_millis() as u64);
    let evicted = eventually(|| async {
        json(http, "/v1/services/Ghost").await.0 == "HTTP/1.1 404 Not Found"
    })
    .await;
    assert!(evicted);
    assert_eq!(
        metric(http, "rpc_registry_evictions_total", &[]).await,
        Some(1.0)
    );

    // The heartbeating instance stays up through several TTLs.
    tokio::time::sleep(ttl * 2).await;
    let all = client.status(None).await.unwrap();
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Where"]);
    assert_eq!(all[0].instances[0].instance.address, live.address);
    assert_eq!(all[0].instances[0].state, InstanceState::Up);
    let (_, health) = json(http, "/healthz").await;
    assert_eq!(
        (health["services"].as_u64(), health["instances"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn metrics_count_what_the_registry_did_and_pass_promtool() {
    let registry = start_registry(config(), 0).await.unwrap();
    let http = registry.http;
    let _live = start_instance(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let client = registry_client(registry.addr).await;
    let invalid = client.register(new_instance("", 1)).await.unwrap();
    assert!(
        matches!(invalid, Err(RegistryError::Invalid(_))),
        "{invalid:?}"
    );

    // A watch waiting for a change counts as a watcher until its caller gives up.
    let snapshot = client.instances(String::from("Where")).await.unwrap();
    let watch = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .watch(
                    String::from("Where"),
                    snapshot.epoch,
                    snapshot.revision,
                    30_000,
                )
                .await
        })
    };
    let rpc_watchers = [("api", "rpc")];
    assert!(
        eventually(|| async {
            metric(http, "rpc_registry_watchers", &rpc_watchers).await == Some(1.0)
        })
        .await
    );
    watch.abort();
    assert!(
        eventually(|| async {
            metric(http, "rpc_registry_watchers", &rpc_watchers).await == Some(0.0)
        })
        .await
    );

    // Heartbeats come every third of the TTL.
    assert!(
        eventually(|| async {
            metric(http, "rpc_registry_heartbeats_total", &[]).await >= Some(2.0)
        })
        .await
    );

    let (body, s) = prom::scrape(http).await;
    assert_eq!(
        prom::value(&s, "rpc_registry_instances", &[("service", "Where")]),
        Some(1.0)
    );
    assert_eq!(prom::value(&s, "rpc_registry_services", &[]), Some(1.0));
    assert_eq!(
        prom::value(&s, "rpc_registry_registrations_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        prom::value(&s, "rpc_registry_refused_total", &[("reason", "invalid")]),
        Some(1.0)
    );
    assert_eq!(
        prom::value(
            &s,
            "rpc_registry_refused_total",
            &[("reason", "unauthenticated")]
        ),
        Some(0.0)
    );
    assert_eq!(prom::value(&s, "rpc_registry_ttl_seconds", &[]), Some(0.6));
    // The registry's metrics and its RPC server's come from one writer: each family is announced once, under
    // its exposed name (counters with `_total`), and the text format 0.0.4 has no end marker.
    for family in [
        "rpc_registry_instances gauge",
        "rpc_registry_services gauge",
        "rpc_registry_heartbeats_total counter",
        "rpc_registry_refused_total counter",
        "rpc_registry_watchers gauge",
        "rpc_registry_ttl_seconds gauge",
        "rpc_server_calls_total counter",
        "rpc_server_call_duration_seconds histogram",
    ] {
        assert_eq!(
            body.matches(&format!("# TYPE {family}\n")).count(),
            1,
            "{family}: {body}"
        );
    }
    assert!(!body.contains("# EOF"), "{body}");
    // The registry's RPC server counts its own calls too: the refused registration is the method's own
    // error, not a success.
    for (status, count) in [("Ok", 1.0), ("AppError", 1.0)] {
        let registered = [
            ("service", "Registry"),
            ("method", "register"),
            ("status", status),
        ];
        assert_eq!(
            prom::value(&s, "rpc_server_calls_total", &registered),
            Some(count),
            "{status}: {body}"
        );
    }
}

#[tokio::test]
async fn the_overview_long_poll_answers_at_a_change_or_after_its_wait() {
    let registry = start_registry(config(), 0).await.unwrap();
    let http = registry.http;
    let (_, first) = json(http, "/v1/overview").await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    let revision = first["revision"].as_u64().unwrap();
    assert_eq!(first["ttl_ms"], 600);
    assert_eq!(first["services"].as_array().map(Vec::len), Some(0));

    // Nothing changes: answered unchanged after the wait.
    let asked = std::time::Instant::now();
    let (_, same) = json(
        http,
        &format!("/v1/overview?epoch={epoch}&since={revision}&wait_ms=50"),
    )
    .await;
    assert_eq!(same["revision"].as_u64(), Some(revision));
    assert!(
        asked.elapsed() >= Duration::from_millis(50),
        "answered before its wait: {:?}",
        asked.elapsed()
    );

    // A poll waiting at the current revision is answered by the next registration, with it.
    let waiting = overview_poll(http, &epoch, &revision).await;
    let instance = start_instance(registry.addr, 5, RegistrationConfig::default())
        .await
        .unwrap();
    let (_, changed) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered at the change, not after 30 s")
        .unwrap();
    assert!(changed["revision"].as_u64() > Some(revision));
    let service = &changed["services"][0];
    assert_eq!(service["name"], "Where");
    assert_eq!(
        service["instances"][0]["address"],
        instance.address.as_str()
    );
    assert_eq!(service["instances"][0]["weight"], 5);
    assert_eq!(changed["totals"]["instances"], 1);

    // Another registry process's epoch is answered at once.
    let (_, other) = json(
        http,
        &format!("/v1/overview?epoch=1&since={revision}&wait_ms=30000"),
    )
    .await;
    assert_eq!(other["services"][0]["name"], "Where");
}

/// A long poll of `/v1/overview` from (`epoch`, `revision`), waiting up to 30 s on a task of its own; returned
/// once the registry counts it among its HTTP watchers.
async fn overview_poll(
    http: std::net::SocketAddr,
    epoch: &str,
    revision: &dyn std::fmt::Display,
) -> tokio::task::JoinHandle<(String, serde_json::Value)> {
    let path = format!("/v1/overview?epoch={epoch}&since={revision}&wait_ms=30000");
    let waiting = tokio::spawn(async move { json(http, &path).await });
    let http_watchers = [("api", "http")];
    assert!(eventually(|| async { prom_watchers(http, &http_watchers).await == Some(1.0) }).await);
    waiting
}

async fn prom_watchers(http: std::net::SocketAddr, labels: &[(&str, &str)]) -> Option<f64> {
    metric(http, "rpc_registry_watchers", labels).await
}

#[tokio::test]
async fn dashboards_waiting_at_once_are_bounded() {
    let registry = start_registry(
        RegistryConfig {
            max_http_watchers: 1,
            ..config()
        },
        0,
    )
    .await
    .unwrap();
    let http = registry.http;
    let (_, first) = json(http, "/v1/overview").await;
    let path = format!(
        "/v1/overview?epoch={}&since={}&wait_ms=30000",
        first["epoch"].as_str().unwrap(),
        first["revision"]
    );
    let waiting = {
        let path = path.clone();
        tokio::spawn(async move { http_get(http, &path).await })
    };
    assert!(
        eventually(|| async { prom_watchers(http, &[("api", "http")]).await == Some(1.0) }).await
    );
    let (status, headers, body) = http_get(http, &path).await.unwrap();
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(body.contains("max_http_watchers"), "{body}");
    assert!(
        headers.iter().any(|(k, v)| k == "retry-after" && v == "5"),
        "{headers:?}"
    );
    waiting.abort();
    // The poll that went away no longer counts.
    assert!(
        eventually(|| async { prom_watchers(http, &[("api", "http")]).await == Some(0.0) }).await
    );
}

#[tokio::test]
async fn shutdown_answers_waiting_watches_with_every_instance_still_there() {
    let rpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, http) = (rpc.local_addr().unwrap(), {
        let a = http.local_addr().unwrap();
        (http, a)
    });
    let (listener, http) = http;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = tokio::spawn(rpc_registry::serve(config(), rpc, Some(listener), async {
        let _ = stopped.await;
    }));
    let live = start_instance(addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let client = registry_client(addr).await;
    let snapshot = client.instances(String::from("Where")).await.unwrap();
    let rpc_watch = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .watch(
                    String::from("Where"),
                    snapshot.epoch,
                    snapshot.revision,
                    60_000,
                )
                .await
        })
    };
    let (_, first) = json(http, "/v1/overview").await;
    let poll = format!(
        "/v1/overview?epoch={}&since={}&wait_ms=60000",
        first["epoch"].as_str().unwrap(),
        first["revision"]
    );
    let http_watch = tokio::spawn(async move { json(http, &poll).await });
    let both_wait = eventually(|| async {
        prom_watchers(http, &[("api", "rpc")]).await == Some(1.0)
            && prom_watchers(http, &[("api", "http")]).await == Some(1.0)
    })
    .await;
    assert!(both_wait);

    // Shutting down answers both watches now, not after their minute, with the live instance still listed:
    // the registry evicts no one while it drains (and refuses heartbeats).
    stop.send(()).unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(5), rpc_watch)
        .await
        .expect("the RPC watch is answered at shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(answered.instances.len(), 1);
    assert_eq!(answered.instances[0].address, live.address);
    let (_, overview) = tokio::time::timeout(Duration::from_secs(5), http_watch)
        .await
        .expect("the dashboard's poll is answered at shutdown")
        .unwrap();
    assert_eq!(
        overview["services"][0]["instances"][0]["address"],
        live.address.as_str()
    );
    let finished = tokio::time::timeout(Duration::from_secs(5), registry).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the registry returns once drained: {finished:?}"
    );
}

/// Sends `GET /healthz` on a kept-alive connection and reads the answer; `None` once the server closed it.
async fn healthz_on(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = "GET /healthz HTTP/1.1\r\nhost: registry\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>())
                })
                .and_then(Result::ok)?;
            if body.len() >= length {
                return Some(text);
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
            Err(_) => panic!("neither an answer nor a close within 5 s"),
        }
    }
    panic!("no whole answer in 100 reads")
}

#[tokio::test]
async fn a_dropped_registry_stops_answering_on_its_open_http_connections() {
    let registry = start_registry(config(), 0).await.unwrap();
    let mut kept = tokio::net::TcpStream::connect(registry.http).await.unwrap();
    let first = healthz_on(&mut kept).await.expect("the registry answers");
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    registry.kill();
    // Let the aborted registry be dropped before the next request (one already read would still be answered).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = tokio::time::timeout(Duration::from_secs(5), healthz_on(&mut kept)).await;
    assert_eq!(
        after.ok(),
        Some(None),
        "the kept-alive connection is closed, not answered"
    );
}

/// The instances on an overview page, as `service address`, in page order.
fn page_rows(overview: &serde_json::Value) -> Vec<String> {
    let mut rows = Vec::new();
    for service in overview["services"].as_array().into_iter().flatten() {
        for instance in service["instances"].as_array().into_iter().flatten() {
            rows.push(format!(
                "{} {}",
                service["name"].as_str().unwrap_or("?"),
                instance["address"].as_str().unwrap_or("?")
            ));
        }
    }
    rows
}

#[tokio::test]
async fn the_overview_sends_one_page_of_the_instances_and_filters_them_at_the_registry() {
    // A long TTL: the instances registered by hand never heartbeat, and stay for the whole test.
    let registry = start_registry(
        RegistryConfig {
            ttl: Duration::from_secs(120),
            ..config()
        },
        0,
    )
    .await
    .unwrap();
    let http = registry.http;
    let client = registry_client(registry.addr).await;
    // 1,200 instances in three services of 400: more than a page of 500.
    let mut all = Vec::new();
    for i in 0..1200u32 {
        let mut new = new_instance(&format!("10.0.{}.{}:7000", i / 256, i % 256), 1 + i % 3);
        new.service = format!("S{}", i / 400);
        new.metadata = [(String::from("n"), i.to_string())].into();
        all.push(format!("{} {}", new.service, new.address));
        client.register(new).await.unwrap().unwrap();
    }
    // The registry's order: services by name, then addresses by their bytes.
    all.sort();

    let (_, first) = json(http, "/v1/overview").await;
    let mut paged = page_rows(&first);
    assert_eq!(paged.len(), 500, "one page, not every instance");
    assert_eq!(first["totals"]["instances"], 1200);
    assert_eq!(first["page"]["instances"], 1200);
    assert_eq!(first["page"]["services"], 3);
    assert_eq!(first["page"]["limit"], 500);
    // A service cut by the page still gives its full numbers, for the shares of the instances shown.
    let cut = &first["services"][1];
    assert_eq!(
        (&cut["name"], &cut["instance_count"], &cut["total_weight"]),
        (&"S1".into(), &400.into(), &800.into())
    );
    assert_eq!(cut["instances"].as_array().map(Vec::len), Some(100));
    for offset in [500, 1000] {
        let (_, page) = json(http, &format!("/v1/overview?offset={offset}")).await;
        assert_eq!(page["page"]["offset"], offset);
        paged.extend(page_rows(&page));
    }
    assert_eq!(
        paged, all,
        "the pages together hold every instance once, in order"
    );
    let (_, past) = json(http, "/v1/overview?offset=1200").await;
    assert_eq!(page_rows(&past).len(), 0);
    let (status, far) = json(http, &format!("/v1/overview?offset={}", usize::MAX)).await;
    assert_eq!(
        (status.as_str(), page_rows(&far).len()),
        ("HTTP/1.1 200 OK", 0)
    );
    let (_, large) = json(http, "/v1/overview?limit=1000000").await;
    assert_eq!(large["page"]["limit"], 2000, "a page holds at most 2,000");
    assert_eq!(page_rows(&large), all);

    // Filters: a service's name (all its instances), an address, a metadata value; ASCII case ignored.
    let (_, s2) = json(http, "/v1/overview?q=s2&limit=1000").await;
    assert_eq!(
        (&s2["page"]["services"], &s2["page"]["instances"]),
        (&1.into(), &400.into())
    );
    assert!(page_rows(&s2).iter().all(|r| r.starts_with("S2 ")));
    let (_, one) = json(http, "/v1/overview?q=10.0.4.175:").await;
    assert_eq!(page_rows(&one), ["S2 10.0.4.175:7000"]);
    let (_, by_meta) = json(http, "/v1/overview?q=n%3D1199").await;
    assert_eq!(page_rows(&by_meta), ["S2 10.0.4.175:7000"]);
    let (_, none) = json(http, "/v1/overview?q=nothing-like-this").await;
    assert_eq!(
        (&none["page"]["instances"], &none["page"]["services"]),
        (&0.into(), &0.into())
    );
}

#[tokio::test]
async fn the_overview_shows_the_registrys_last_changes_with_why_each_instance_left() {
    let registry = start_registry(config(), 0).await.unwrap();
    let http = registry.http;
    let client = registry_client(registry.addr).await;
    let lease_of = |new: &rpc_registry::NewInstance, lease: rpc_registry::Lease| {
        lease.reference(&new.service, &new.address)
    };
    // Before any dashboard looks: a registers and deregisters; b and c never heartbeat (evicted); c registers
    // a second time first (it supersedes its first incarnation).
    let [a, b, c] = ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"].map(|at| new_instance(at, 2));
    let mut leases = Vec::new();
    for new in [&a, &b, &c, &c] {
        leases.push(lease_of(
            new,
            client.register(new.clone()).await.unwrap().unwrap(),
        ));
    }
    client.deregister(leases[0].clone()).await.unwrap().unwrap();
    let evicted = eventually(|| async {
        json(http, "/v1/services/Where").await.0 == "HTTP/1.1 404 Not Found"
    })
    .await;
    assert!(evicted, "b and c are evicted within the TTL");

    let kinds = |overview: &serde_json::Value| -> Vec<String> {
        let changes = overview["changes"].as_array().cloned().unwrap_or_default();
        changes
            .iter()
            .map(|c| {
                let superseded = match &c["superseded"] {
                    serde_json::Value::Null => String::new(),
                    old => format!(" superseding {old}"),
                };
                format!(
                    "{} {} {} #{}{superseded}",
                    c["kind"].as_str().unwrap_or("?"),
                    c["service"].as_str().unwrap_or("?"),
                    c["address"].as_str().unwrap_or("?"),
                    c["incarnation"]
                )
            })
            .collect()
    };
    // A first load shows what happened before it, with why each instance left, oldest first.
    let (_, first) = json(http, "/v1/overview").await;
    let mut shown = kinds(&first);
    assert_eq!(
        shown.len(),
        7,
        "every change since the registry started: {first}"
    );
    // b and c expire within a millisecond or so of each other: either may go first.
    shown[5..].sort();
    assert_eq!(
        shown,
        [
            "registered Where 10.0.0.1:1 #1",
            "registered Where 10.0.0.2:1 #1",
            "registered Where 10.0.0.3:1 #1",
            "registered Where 10.0.0.3:1 #2 superseding 1",
            "deregistered Where 10.0.0.1:1 #1",
            "evicted Where 10.0.0.2:1 #1",
            "evicted Where 10.0.0.3:1 #2",
        ],
        "{first}"
    );
    assert_eq!(first["changes_complete"], true);
    let revisions: Vec<u64> = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["revision"].as_u64())
        .collect();
    assert_eq!(revisions, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(first["revision"], 7);

    // A long poll from the revision shown gets only what came after it.
    let (epoch, revision) = (
        first["epoch"].as_str().unwrap().to_owned(),
        first["revision"].clone(),
    );
    let waiting = overview_poll(http, &epoch, &revision).await;
    let d = new_instance("10.0.0.4:1", 5);
    client.register(d).await.unwrap().unwrap();
    let (_, next) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered at the change")
        .unwrap();
    assert_eq!(kinds(&next), ["registered Where 10.0.0.4:1 #1"]);
    assert_eq!(next["changes"][0]["weight"], 5);
}
