//! Operators' weights and the dashboard's writes over HTTP, end to end on 127.0.0.1: a drained instance gets no
//! call from clients that discover through the registry, stays drained when it registers again and when the
//! registry restarts, and gets calls again once restored; a write from a page of another site (by `Host`,
//! `Origin`, `Sec-Fetch-Site` or content type) or without the registry's own token is refused and changes
//! nothing; rules roll back over HTTP; the CLI sets and undoes a weight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rpc_registry::{Discovery, DiscoveryConfig, RegistrationConfig, RegistryConfig};
use tests::cluster::{WhereClient, start_instance, start_registry};
use tests::http::request;

const TOKEN: &str = "registry-weights-token";

fn registration() -> RegistrationConfig {
    RegistrationConfig {
        token: Some(TOKEN.to_owned()),
        ..RegistrationConfig::default()
    }
}

fn config(data_dir: Option<PathBuf>) -> RegistryConfig {
    RegistryConfig {
        token: Some(TOKEN.to_owned()),
        data_dir,
        http_allowed_hosts: vec![String::from("registry.internal")],
        ..RegistryConfig::default()
    }
}

/// A data directory of this test alone.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rpc-weights-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `POST path` with `body` as the dashboard sends it: JSON, the admin token, from the registry's own page.
async fn post(http: SocketAddr, path: &str, body: &str) -> (String, String) {
    let origin = format!("http://{http}");
    let bearer = format!("Bearer {TOKEN}");
    let headers = [
        ("content-type", "application/json"),
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("authorization", bearer.as_str()),
    ];
    let (status, _, body) = request(http, "POST", path, &headers, body).await.unwrap();
    (status, body)
}

/// The weight clients see for `address` of `Where`, and its own, as `GET /v1/services/Where` shows them.
async fn weights_of(http: SocketAddr, address: &str) -> Option<(u64, u64)> {
    let (_, _, body) = request(http, "GET", "/v1/services/Where", &[], "")
        .await
        .unwrap();
    let view: serde_json::Value = serde_json::from_str(&body).ok()?;
    let instance = view["instances"]
        .as_array()?
        .iter()
        .find(|i| i["address"] == address)?;
    Some((
        instance["weight"].as_u64()?,
        instance["registered_weight"].as_u64()?,
    ))
}

/// Waits (at most 10 s) until discovery shows `address` with weight `weight`.
async fn until_weight(discovery: &Discovery, address: &str, weight: u32) {
    let mut watched = discovery.watch("Where");
    tokio::time::timeout(
        Duration::from_secs(10),
        watched.wait_for(|s| {
            s.instances
                .iter()
                .any(|i| i.address == address && i.weight == weight)
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{address} never showed weight {weight}"))
    .unwrap();
}

/// Calls `Where.serve` `n` times; how many each instance answered.
async fn spread(client: &WhereClient, n: u64) -> HashMap<String, u64> {
    let mut by = HashMap::new();
    for i in 0..n {
        let served = client.serve(i).await.unwrap();
        *by.entry(served.by).or_default() += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_gets_no_calls_through_re_registration_and_restart_until_restored() {
    let dir = data_dir("drain");
    let registry = start_registry(config(Some(dir.clone())), 0).await.unwrap();
    let a = start_instance(registry.addr, 1, registration())
        .await
        .unwrap();
    let b = start_instance(registry.addr, 1, registration())
        .await
        .unwrap();
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    assert_eq!(
        discovery
            .wait_for("Where", 2, Duration::from_secs(10))
            .await
            .len(),
        2
    );
    let client = tests::cluster::round_robin(&discovery);
    assert_eq!(spread(&client, 100).await.get(&a.address), Some(&50));

    let drain = format!(r#"{{"address": "{}", "weight": 0}}"#, a.address);
    let (status, body) = post(registry.http, "/v1/services/Where/weights", &drain).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["instance"]["weight"], 0, "{body}");
    until_weight(&discovery, &a.address, 0).await;
    let calls = spread(&client, 200).await;
    assert_eq!(calls.get(&b.address), Some(&200), "{calls:?}");
    assert_eq!(weights_of(registry.http, &a.address).await, Some((0, 1)));
    let (_, _, listed) = request(registry.http, "GET", "/v1/weights", &[], "")
        .await
        .unwrap();
    assert!(
        listed.contains(&format!(
            r#""address":"{}","service":"Where","weight":0"#,
            a.address
        )),
        "{listed}"
    );

    // The instance registers again (a restart of it): still drained.
    let address = a.address.clone();
    a.registration.deregister().await.unwrap();
    let again = rpc_registry::Registration::register(
        registry.addr,
        tests::cluster::new_instance(&address, 1),
        registration(),
    )
    .await
    .unwrap();
    assert_eq!(weights_of(registry.http, &address).await, Some((0, 1)));

    // The registry restarts on the same port with the same data directory: the instances come back by
    // registering again, and the weight set is still in force.
    let port = registry.addr.port();
    registry.kill();
    let mut restarted = None;
    for _ in 0..100 {
        // The killed registry's listener closes once its task is dropped: a moment.
        match start_registry(config(Some(dir.clone())), port).await {
            Ok(registry) => {
                restarted = Some(registry);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let registry = restarted.expect("the port is free again within 5 s");
    let mut shown = None;
    for _ in 0..100 {
        shown = weights_of(registry.http, &address).await;
        if shown.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, Some((0, 1)), "drained after the restart");

    // Restored: its own weight again, and calls again.
    let restore = format!(r#"{{"address": "{address}", "weight": null}}"#);
    let (status, body) = post(registry.http, "/v1/services/Where/weights", &restore).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    until_weight(&discovery, &address, 1).await;
    assert_eq!(spread(&client, 200).await.get(&address), Some(&100));
    drop((again, b));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A refused write: what it plays, its headers, the status code expected and what the refusal says.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_another_site_or_without_the_registry_s_token_are_refused_and_change_nothing() {
    let registry = start_registry(config(None), 0).await.unwrap();
    let a = start_instance(registry.addr, 3, registration())
        .await
        .unwrap();
    let http = registry.http;
    let own_origin = format!("http://{http}");
    let bearer = format!("Bearer {TOKEN}");
    let drain = format!(r#"{{"address": "{}", "weight": 0}}"#, a.address);
    let path = "/v1/services/Where/weights";
    let json = ("content-type", "application/json");
    let admin = ("authorization", bearer.as_str());
    let evil_host = format!("evil.example:{}", http.port());
    let cases: Vec<Case<'_>> = vec![
        (
            "a name pointed at the registry (DNS rebinding)",
            vec![("host", evil_host.as_str()), json, admin],
            "403",
            "writes addressed to host evil.example:",
        ),
        (
            "a page of another site",
            vec![("origin", "http://evil.example"), json, admin],
            "403",
            "a write from origin http://evil.example is refused",
        ),
        (
            "another site, by fetch metadata",
            vec![("sec-fetch-site", "cross-site"), json, admin],
            "403",
            "sec-fetch-site: cross-site",
        ),
        (
            "a form's content type",
            vec![("content-type", "text/plain"), admin],
            "415",
            "must be `content-type: application/json`, not text/plain",
        ),
        (
            "no token",
            vec![json, ("origin", own_origin.as_str())],
            "401",
            "writing rules or weights needs the registry's own token",
        ),
        (
            "a wrong token",
            vec![json, ("authorization", "Bearer not-the-admin-token")],
            "401",
            "and the call did not carry it",
        ),
    ];
    for (what, headers, code, says) in cases {
        let (status, _, body) = request(http, "POST", path, &headers, &drain).await.unwrap();
        assert!(
            status.starts_with(&format!("HTTP/1.1 {code}")),
            "{what}: {status} {body}"
        );
        assert!(body.contains(says), "{what}: {body}");
    }
    // A token in the URL is no credential.
    let in_url = format!("{path}?token={TOKEN}");
    let (status, _, _) = request(http, "POST", &in_url, &[json], &drain)
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    // A body too large, and one that is not the JSON expected (what came quoted, escaped).
    let large = format!(r#"{{"address": "{}", "weight": 0}}"#, "x".repeat(5000));
    let (status, _, _) = request(http, "POST", path, &[json, admin], &large)
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let odd = r#"{"address": "a", "weight": 0, "evil\u001b[2J": 1}"#;
    let (status, _, body) = request(http, "POST", path, &[json, admin], odd)
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 400"), "{status} {body}");
    assert!(
        body.contains("the body is not the JSON expected: unknown field"),
        "{body}"
    );
    assert!(!body.contains('\u{1b}'), "{body}");
    assert_eq!(
        weights_of(http, &a.address).await,
        Some((3, 3)),
        "nothing changed"
    );

    // No instance at an address: nothing to drain.
    let nowhere = r#"{"address": "127.0.0.1:1", "weight": 0}"#;
    let (status, body) = post(http, path, nowhere).await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status} {body}");
    assert!(
        body.contains("no instance of Where is registered at 127.0.0.1:1"),
        "{body}"
    );

    // A name given to --http-allowed-host, with the page's own origin, and the token: done.
    let headers = [
        ("host", "registry.internal"),
        ("origin", "http://registry.internal"),
        json,
        admin,
    ];
    let (status, _, body) = request(http, "POST", path, &headers, &drain).await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(weights_of(http, &a.address).await, Some((0, 3)));
}

#[tokio::test]
async fn rules_roll_back_over_http_with_the_registry_s_token() {
    let registry = start_registry(config(None), 0).await.unwrap();
    let client =
        rpc_registry::RegistryClient::new(rpc_core::Client::connect(registry.addr).await.unwrap())
            .with_metadata(
                rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {TOKEN}"))])
                    .unwrap(),
            );
    for route in ["first", "second"] {
        let rules = format!(
            r#"{{"service": "Where", "routes": [{{"name": "{route}", "to": [{{"subset": "version=v1", "weight": 1}}]}}]}}"#
        );
        client.apply_rules(rules).await.unwrap().unwrap();
    }
    let path = "/v1/rules/Where/rollback";
    let json = ("content-type", "application/json");
    let bearer = format!("Bearer {TOKEN}");
    for (what, headers, code) in [
        ("no token", vec![json], "401"),
        (
            "another site",
            vec![
                json,
                ("origin", "http://evil.example"),
                ("authorization", bearer.as_str()),
            ],
            "403",
        ),
    ] {
        let (status, _, body) =
            request(registry.http, "POST", path, &headers, r#"{"revision": 1}"#)
                .await
                .unwrap();
        assert!(
            status.starts_with(&format!("HTTP/1.1 {code}")),
            "{what}: {status} {body}"
        );
    }
    let unchanged = client.rules(String::from("Where")).await.unwrap().unwrap();
    assert_eq!(
        unchanged.revision, 2,
        "the refused rollbacks changed nothing"
    );
    let (status, body) = post(registry.http, path, r#"{"revision": 7}"#).await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status} {body}");
    assert!(
        body.contains("the rules of Where have no revision 7"),
        "{body}"
    );
    let (status, body) = post(registry.http, path, r#"{"revision": 1}"#).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let current = client.rules(String::from("Where")).await.unwrap().unwrap();
    assert_eq!(
        (current.revision, current.origin.as_str()),
        (3, "rollback to 1")
    );
    assert!(current.rules.contains("\"first\""), "{}", current.rules);
}
