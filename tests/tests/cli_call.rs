//! `rpc-registry call` and `describe` as their runners (`rpc_registry::cli::{call, describe}`) do them, against
//! live servers on 127.0.0.1: examples' `Calc` (a value, its own error, an unknown method, its description), the
//! lab (metadata that reaches the handler, a call that hangs past its deadline), a streaming method, a server
//! without reflection, `Calc` found through a registry, and a server that wants a token over TLS. The binary's
//! flags and exit codes are tested in `rpc-registry/tests/cli_call.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use examples::calc::{CalcServer, Calculator};
use rpc_core::reflect::ServiceDescription;
use rpc_core::server::layer::{Authorize, Grant};
use rpc_core::tls::{ClientTls, ServerTls};
use rpc_core::{Server, Status};
use rpc_registry::cli::{Answered, CallError, Target, call, describe};
use rpc_registry::{NewInstance, Registration, RegistrationConfig, RegistryClient, RegistryConfig};
use tests::certs::Ca;
use tests::cluster::start_registry;
use tests::feed::{FeedImpl, FeedServer};
use tests::lab::{LabImpl, LabServer};
use tests::serve::serve_builder;

/// Serves examples' `Calc` on 127.0.0.1; its address.
async fn calc() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calc = CalcServer::new(Calculator {
        instance: addr.to_string(),
    });
    let server = Server::builder().add_service(calc).build().unwrap();
    tokio::spawn(server.serve(listener));
    addr
}

/// Runs `call` (within 30 s); what it returned and printed.
async fn run(target: &Target, method: &str, args: &str) -> (Result<Answered, CallError>, String) {
    let mut out = Vec::new();
    let called = tokio::time::timeout(
        Duration::from_secs(30),
        call(target, method, args, &mut out),
    )
    .await
    .expect("call ends within 30 s");
    (called, String::from_utf8(out).unwrap())
}

/// Runs `describe` (within 30 s); what it printed, or its error.
async fn described(
    target: &Target,
    service: Option<&str>,
    json: bool,
) -> Result<String, CallError> {
    let mut out = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        describe(target, service, json, &mut out),
    )
    .await
    .expect("describe ends within 30 s")?;
    Ok(String::from_utf8(out).unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// An address nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn a_value_prints_as_json_and_the_methods_own_error_names_its_type() {
    let addr = calc().await;
    let target = Target::server(addr.to_string());
    let (called, out) = run(&target, "Calc.add", r#"{"a": 2, "b": 3}"#).await;
    assert_eq!(called.unwrap().exit_code(), 0);
    assert_eq!(
        json(&out),
        serde_json::json!({"value": 5, "instance": addr.to_string()})
    );
    // Pretty, in the order the server wrote the fields.
    assert!(
        out.starts_with("{\n  \"value\": 5,\n  \"instance\": "),
        "{out}"
    );

    let (called, out) = run(&target, "Calc.div", r#"{"a": 1, "b": 0}"#).await;
    assert_eq!(called.unwrap(), Answered::AppError);
    assert_eq!(Answered::AppError.exit_code(), 1);
    assert_eq!(
        json(&out),
        serde_json::json!({"error": "CalcError", "detail": "DivisionByZero"})
    );
}

#[tokio::test]
async fn an_unknown_method_or_service_names_what_there_is_and_nothing_is_called() {
    let addr = calc().await;
    let target = Target::server(addr.to_string());
    let (called, out) = run(&target, "Calc.mul", r#"{"a": 2, "b": 3}"#).await;
    let e = called.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "expected a method of Calc, got `mul`; it has add, div"
    );
    assert!(out.is_empty());

    let e = run(&target, "Calculator.add", "{}").await.0.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string().contains("it serves Calc, rpc.Reflection"),
        "{e}"
    );

    // Arguments that are not a JSON object, or no SERVICE.METHOD: refused before connecting (nothing listens).
    let nowhere = Target::server(closed_port().await);
    for (method, args, expected) in [
        ("Calc.add", "[2, 3]", "got an array"),
        ("Calc.add", "{\"a\": 2", "got text that is not JSON"),
        ("add", "{}", "expected SERVICE.METHOD"),
    ] {
        let e = run(&nowhere, method, args).await.0.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(expected), "{e}");
    }
}

#[tokio::test]
async fn metadata_reaches_the_handler_and_a_call_past_its_deadline_exits_68() {
    let addr =
        serve_builder(Server::builder().add_service(LabServer::new(LabImpl::default()))).await;
    let target = Target {
        metadata: vec![("x-tenant".into(), "blue".into())],
        ..Target::server(addr.to_string())
    };
    let (called, out) = run(&target, "Lab.header", r#"{"key": "x-tenant"}"#).await;
    assert_eq!(called.unwrap(), Answered::Value);
    assert_eq!(json(&out), "blue");

    let target = Target {
        deadline: Duration::from_millis(500),
        ..Target::server(addr.to_string())
    };
    let e = run(&target, "Lab.hang", "{}").await.0.unwrap_err();
    assert!(
        matches!(&e, CallError::Failed(f) if f.code() == Status::DeadlineExceeded),
        "{e}"
    );
    assert_eq!(e.exit_code(), 64 + 4);
    assert!(e.to_string().starts_with("deadline_exceeded: "), "{e}");

    let bad = Target {
        metadata: vec![("bad key".into(), "v".into())],
        ..Target::server(addr.to_string())
    };
    let e = run(&bad, "Lab.echo", r#"{"n": 1}"#).await.0.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().starts_with("--metadata: "), "{e}");
}

#[tokio::test]
async fn a_streaming_method_cannot_be_called_and_a_server_without_reflection_says_so() {
    let addr =
        serve_builder(Server::builder().add_service(FeedServer::new(FeedImpl::default()))).await;
    let e = run(
        &Target::server(addr.to_string()),
        "Feed.count",
        r#"{"from": 0, "n": 3}"#,
    )
    .await
    .0
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "Feed.count takes or returns a stream (server stream): it cannot be called in JSON, only unary methods \
         can"
    );

    let builder = Server::builder()
        .add_service(LabServer::new(LabImpl::default()))
        .reflection(false);
    let addr = serve_builder(builder).await;
    let e = run(&Target::server(addr.to_string()), "Lab.echo", r#"{"n": 1}"#)
        .await
        .0
        .unwrap_err();
    assert_eq!(e.exit_code(), 64 + 12);
    assert!(
        e.to_string().contains("does not serve rpc.Reflection"),
        "{e}"
    );
}

#[tokio::test]
async fn describe_prints_signatures_tags_and_docs_or_the_services_or_json() {
    let addr = calc().await;
    let target = Target::server(addr.to_string());
    let text = described(&target, Some("Calc"), false).await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Calc");
    assert!(lines[1].starts_with("  Arithmetic over RPC."), "{text}");
    assert!(
        lines.contains(&"add(a: i64, b: i64) -> Answer [idempotent]"),
        "{text}"
    );
    let div = lines
        .iter()
        .position(|l| *l == "div(a: i64, b: i64) -> Result<Answer, CalcError> [idempotent]")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(lines[div + 1], "    `a / b`, or why not.");

    let text = described(&target, Some("Calc"), true).await.unwrap();
    let description: ServiceDescription = serde_json::from_str(&text).unwrap();
    let own = rpc_core::Service::description(&CalcServer::new(Calculator {
        instance: String::new(),
    }))
    .cloned()
    .unwrap();
    assert_eq!(description, own);

    let text = described(&target, None, false).await.unwrap();
    assert_eq!(text, "Calc\nrpc.Reflection\n");
    let text = described(&target, None, true).await.unwrap();
    assert_eq!(json(&text), serde_json::json!(["Calc", "rpc.Reflection"]));

    let e = described(&target, Some("Nope"), false).await.unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

#[tokio::test]
async fn through_a_registry_the_instances_of_the_service_are_called() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let addr = calc().await;
    let instance = NewInstance {
        service: "Calc".into(),
        address: addr.to_string(),
        weight: 1,
        metadata: Default::default(),
    };
    let registration =
        Registration::register(registry.addr, instance, RegistrationConfig::default())
            .await
            .unwrap();
    let target = Target::registry(registry.addr.to_string());
    let (called, out) = run(&target, "Calc.add", r#"{"a": 40, "b": 2}"#).await;
    assert_eq!(called.unwrap(), Answered::Value);
    assert_eq!(
        json(&out),
        serde_json::json!({"value": 42, "instance": addr.to_string()})
    );
    let text = described(&target, Some("Calc"), false).await.unwrap();
    assert!(text.contains("add(a: i64, b: i64) -> Answer [idempotent]"));

    // A service without instances: unavailable, said so; `describe` alone needs one server.
    let e = run(&target, "Nope.add", "{}").await.0.unwrap_err();
    assert_eq!(e.exit_code(), 64 + 14);
    assert!(
        e.to_string()
            .starts_with("unavailable: no instance of Nope is registered with the registry at "),
        "{e}"
    );
    let e = described(&target, None, false).await.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn through_a_registry_the_calls_follow_its_rules_from_the_first() {
    const TOKEN: &str = "the-registry-token";
    let config = RegistryConfig {
        token: Some(TOKEN.into()),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let mut registrations = Vec::new();
    let mut v2 = String::new();
    for version in ["v1", "v2"] {
        let addr = calc().await.to_string();
        let instance = NewInstance {
            service: "Calc".into(),
            address: addr.clone(),
            weight: 1,
            metadata: [("version".to_owned(), version.to_owned())].into(),
        };
        let config = RegistrationConfig {
            token: Some(TOKEN.into()),
            ..RegistrationConfig::default()
        };
        registrations.push(
            Registration::register(registry.addr, instance, config)
                .await
                .unwrap(),
        );
        v2 = addr;
    }
    let admin = RegistryClient::new(rpc_core::Client::connect(registry.addr).await.unwrap())
        .with_metadata(
            rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {TOKEN}"))]).unwrap(),
        );
    let all_v2 = r#"{"service": "Calc", "routes": [
        {"name": "all-v2", "to": [{"subset": "version=v2", "weight": 1}]}
    ]}"#;
    admin.apply_rules(all_v2.into()).await.unwrap().unwrap();

    // Each run is a new process's first call: it goes to v2.
    let target = Target::registry(registry.addr.to_string());
    for _ in 0..4 {
        let (called, out) = run(&target, "Calc.add", r#"{"a": 1, "b": 1}"#).await;
        assert_eq!(called.unwrap(), Answered::Value);
        assert_eq!(json(&out)["instance"], v2.as_str());
    }
}

#[tokio::test]
async fn a_server_that_wants_a_token_over_tls_answers_the_one_that_carries_it() {
    const TOKEN: &str = "the-calc-token";
    let ca = Ca::new("test CA");
    let id = ca.server(&["127.0.0.1", "localhost"]);
    let tls = ServerTls::from_pem(id.cert.as_bytes(), id.key.as_bytes(), None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .layer(Authorize::new().token("cli", TOKEN, Grant::all()))
        .add_service(CalcServer::new(Calculator {
            instance: addr.to_string(),
        }))
        .tls(tls)
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let trusts = ClientTls::from_pem(ca.pem.as_bytes(), None).unwrap();

    let anonymous = Target {
        tls: Some(trusts.clone()),
        ..Target::server(addr.to_string())
    };
    let e = run(&anonymous, "Calc.add", r#"{"a": 2, "b": 3}"#)
        .await
        .0
        .unwrap_err();
    assert_eq!(e.exit_code(), 64 + 16, "{e}");
    assert!(!e.to_string().contains(TOKEN));

    // By name: the server's certificate names localhost too.
    let holder = Target {
        token: Some(TOKEN.into()),
        tls: Some(trusts),
        ..Target::server(format!("localhost:{}", addr.port()))
    };
    let (called, out) = run(&holder, "Calc.add", r#"{"a": 2, "b": 3}"#).await;
    assert_eq!(called.unwrap(), Answered::Value, "{out}");
    assert_eq!(json(&out)["value"], 5);
    assert!(!format!("{holder:?}").contains(TOKEN));

    let plain = Target {
        token: Some(TOKEN.into()),
        ..Target::server(addr.to_string())
    };
    let e = run(&plain, "Calc.add", r#"{"a": 2, "b": 3}"#)
        .await
        .0
        .unwrap_err();
    assert!(matches!(e, CallError::Failed(_)), "{e}");
}
