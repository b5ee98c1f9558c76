//! The registry's view of services' methods over its HTTP port: `GET /v1/services/{name}/methods` answers what
//! the `Calc` trait declares, as an instance describes it, and again from what it kept once that instance is
//! gone; `404` without instances, `503` when none answers (and the failure kept: asked again, the instance is
//! not), the caller's text escaped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rpc_core::Service;
use rpc_core::reflect::{ServiceDescription, Streaming};
use rpc_registry::{RegistrationConfig, RegistryConfig};
use tests::calc::start_calc;
use tests::cluster::{register, start_registry};
use tests::http::{JsonAnswer, json_request};

/// `GET path` on the registry's HTTP port at `http`.
async fn get(http: SocketAddr, path: &str) -> JsonAnswer {
    json_request(http, "GET", path, &[], "").await
}

/// An address where nothing listens (a port the OS gave, then closed).
async fn closed_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

#[tokio::test]
async fn the_methods_of_a_service_are_those_its_trait_declares() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let calc = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let answer = get(registry.http, "/v1/services/Calc/methods").await;
    assert_eq!(answer.code, 200, "{}", answer.body);
    let described: ServiceDescription = serde_json::from_value(answer.body).unwrap();
    let declared = examples::calc::CalcServer::new(examples::calc::Calculator {
        instance: String::new(),
    });
    assert_eq!(
        Some(&described),
        declared.description(),
        "what the trait declares"
    );
    let signatures: Vec<String> = described.methods.iter().map(|m| m.signature()).collect();
    assert_eq!(
        signatures,
        [
            "add(a: i64, b: i64) -> Answer",
            "div(a: i64, b: i64) -> Result<Answer, CalcError>"
        ]
    );
    let div = described.method("div").unwrap();
    assert_eq!(div.error.as_deref(), Some("CalcError"));
    assert!(div.idempotent);
    assert_eq!(div.streaming, Streaming::Unary);
    assert_eq!(div.docs, "`a / b`, or why not.");
    // Asked again once the instance is gone (killed, still listed until its lease ends): the registry answers
    // what it kept, as nothing is left to ask.
    calc.kill();
    let again = get(registry.http, "/v1/services/Calc/methods").await;
    assert_eq!(again.code, 200, "{}", again.body);
    let kept: ServiceDescription = serde_json::from_value(again.body).unwrap();
    assert_eq!(kept, described);
}

#[tokio::test]
async fn a_service_without_instances_is_404_and_one_whose_instances_do_not_answer_503() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let unknown = get(registry.http, "/v1/services/Nope/methods").await;
    assert_eq!(unknown.code, 404);
    assert_eq!(
        unknown.body["error"],
        "no instances of service `Nope` are registered"
    );
    // The caller's text comes back escaped and cut.
    let long = format!("%07{}", "x".repeat(300));
    let path = format!("/v1/services/{long}/methods");
    let escaped = get(registry.http, &path).await;
    assert_eq!(escaped.code, 404);
    let why = escaped.body["error"].as_str().unwrap();
    assert!(why.contains("`\\u{7}xxx"), "{why}");
    assert!(why.contains("... (301 bytes)"), "{why}");
    assert!(why.len() < 200, "{why}");

    let dead = closed_address().await;
    let _held = register(registry.addr, "Gone", &dead).await;
    let gone = get(registry.http, "/v1/services/Gone/methods").await;
    assert_eq!(gone.code, 503, "{}", gone.body);
    let why = gone.body["error"].as_str().unwrap();
    assert!(
        why.starts_with(&format!(
            "no instance of service `Gone` described it: {dead}: unavailable:"
        )),
        "{why}"
    );
}

#[tokio::test]
async fn an_instance_that_did_not_describe_is_not_asked_again_at_once() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    // Takes each connection and closes it: no description, and a count of the times it was asked.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let _held = register(registry.addr, "Mute", &address).await;
    let first = get(registry.http, "/v1/services/Mute/methods").await;
    assert_eq!(first.code, 503, "{}", first.body);
    let asked_first = asked.load(Ordering::SeqCst);
    assert!(asked_first >= 1, "the instance was asked");
    let second = get(registry.http, "/v1/services/Mute/methods").await;
    assert_eq!(second.code, 503, "{}", second.body);
    let why = second.body["error"].as_str().unwrap();
    assert!(why.contains(" ms ago)"), "the failure kept: {why}");
    assert_eq!(asked.load(Ordering::SeqCst), asked_first, "not asked again");
}
