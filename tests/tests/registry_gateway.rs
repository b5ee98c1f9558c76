//! The registry as a gateway, over its HTTP port: `POST /call/{Service}/{method}` (with `gateway` on; `404` when
//! off, as by default) routes by weight and the registry's rules, retries a call whose instance died on another
//! instance only if it is idempotent, maps a method's own error to `422` and a deadline to `504`, passes the
//! caller's deadline (bounded by `gateway_max_deadline`, which calls without one get) and headers as metadata
//! (not the registry's credential nor a connection's settings), needs the read credential (or, with `callers`,
//! a caller's granted the service), answers `429` past
//! `gateway_max_in_flight`, and refuses an unknown service or method, a streaming method, a body over its
//! limit, a malformed timeout and a cross-site request, each with a JSON body saying why, the caller's text
//! escaped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::{Client, Server, service};
use rpc_registry::{Credentials, Registration, RegistrationConfig, RegistryClient, RegistryConfig};
use serde_json::{Value, json};
use tests::calc::start_calc;
use tests::cluster::{register, start_registry};
use tests::http::{JsonAnswer, json_request, request};
use tests::serve::until;
use tests::store::{Behaviour, STALL, StoreServer, Stored};
use tokio::task::JoinHandle;

/// `method path` on the registry's HTTP port at `http`, with a JSON `body` and `headers` besides
/// `content-type: application/json`.
async fn send(
    http: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> JsonAnswer {
    json_request(http, method, path, headers, body).await
}

async fn call(http: SocketAddr, path: &str, body: &str) -> JsonAnswer {
    send(http, "POST", path, &[], body).await
}

fn gateway() -> RegistryConfig {
    RegistryConfig {
        gateway: true,
        ..RegistryConfig::default()
    }
}

/// Applies `rules` (JSON) to the open registry at `registry`.
async fn apply_rules(registry: SocketAddr, rules: &str) {
    let admin = RegistryClient::new(Client::connect(registry).await.unwrap());
    admin.apply_rules(rules.to_owned()).await.unwrap().unwrap();
}

/// Rules that balance every call of `service` by smooth weighted round-robin: calls split exactly by weight.
fn round_robin(service: &str) -> String {
    format!(
        r#"{{"service": "{service}", "methods": {{"*": {{"balance": {{"policy": "round_robin"}}}}}}}}"#
    )
}

#[tokio::test]
async fn the_gateway_is_off_by_default_and_says_so() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let _calc = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let off = call(registry.http, "/call/Calc/add", r#"{"a": 1, "b": 2}"#).await;
    assert_eq!(off.code, 404);
    assert_eq!(off.body["code"], "not_found");
    assert!(
        off.body["message"].as_str().unwrap().contains("--gateway"),
        "{}",
        off.body
    );
    let health = send(registry.http, "GET", "/healthz", &[], "").await;
    assert_eq!(health.body["gateway"], false);
    let overview = send(registry.http, "GET", "/v1/overview", &[], "").await;
    assert_eq!(overview.body["gateway"], false);

    let on = start_registry(gateway(), 0).await.unwrap();
    let health = send(on.http, "GET", "/healthz", &[], "").await;
    assert_eq!(health.body["gateway"], true);
    let overview = send(on.http, "GET", "/v1/overview", &[], "").await;
    assert_eq!(overview.body["gateway"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_splits_calls_by_weight_following_the_registrys_rules() {
    let registry = start_registry(gateway(), 0).await.unwrap();
    apply_rules(registry.addr, &round_robin("Calc")).await;
    let heavy = start_calc(registry.addr, 3, RegistrationConfig::default())
        .await
        .unwrap();
    let light = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..400 {
        let answer = call(
            registry.http,
            "/call/Calc/add",
            &format!(r#"{{"a": {n}, "b": 1}}"#),
        )
        .await;
        assert_eq!(answer.code, 200, "{}", answer.body);
        assert_eq!(answer.body["value"], n + 1);
        let by = answer.body["instance"].as_str().unwrap().to_owned();
        *served.entry(by).or_default() += 1;
    }
    let (heavy, light) = (served[&heavy.address], served[&light.address]);
    assert_eq!(heavy + light, 400, "{served:?}");
    assert!(
        (280..=320).contains(&heavy) && (80..=120).contains(&light),
        "weights 3 and 1 split 400 calls about 300 and 100: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_retries_an_idempotent_call_on_another_instance_when_one_dies() {
    let registry = start_registry(gateway(), 0).await.unwrap();
    apply_rules(registry.addr, &round_robin("Calc")).await;
    let doomed = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let survivor = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let answer = call(registry.http, "/call/Calc/add", r#"{"a": 1, "b": 1}"#).await;
        assert_eq!(answer.code, 200, "{}", answer.body);
        seen.insert(answer.body["instance"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 2, "both instances served: {seen:?}");
    let survivor_address = survivor.address.clone();
    // Killed without deregistering: the registry still lists it, and round-robin still picks it.
    doomed.kill();
    for n in 0..20 {
        let answer = call(
            registry.http,
            "/call/Calc/div",
            &format!(r#"{{"a": {n}, "b": 1}}"#),
        )
        .await;
        assert_eq!(answer.code, 200, "call {n}: {}", answer.body);
        assert_eq!(answer.body["instance"], survivor_address.as_str());
    }
    drop(survivor);
}

#[tokio::test]
async fn a_methods_own_error_is_422_with_its_type_and_a_value_200() {
    let registry = start_registry(gateway(), 0).await.unwrap();
    let calc = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let value = call(registry.http, "/call/Calc/div", r#"{"a": 6, "b": 3}"#).await;
    assert_eq!(value.code, 200);
    assert_eq!(
        value.body,
        json!({"value": 2, "instance": calc.address.as_str()})
    );
    let refused = call(registry.http, "/call/Calc/div", r#"{"a": 1, "b": 0}"#).await;
    assert_eq!(refused.code, 422);
    assert_eq!(
        refused.body,
        json!({"code": "application_error", "error": "CalcError", "detail": "DivisionByZero"})
    );
    // A bad argument is the instance's refusal, by name.
    let bad = call(registry.http, "/call/Calc/div", r#"{"a": 6, "c": 3}"#).await;
    assert_eq!(bad.code, 400, "{}", bad.body);
    assert_eq!(bad.body["code"], "invalid_argument");
}

#[tokio::test]
async fn the_gateway_refuses_what_it_cannot_call_saying_why() {
    let config = RegistryConfig {
        gateway_max_body: 64,
        ..gateway()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let _calc = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let http = registry.http;

    let unknown = call(http, "/call/Nope/add", "{}").await;
    assert_eq!(
        (unknown.code, unknown.body["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(
        unknown.body["message"],
        "no instances of service `Nope` are registered"
    );
    // The caller's text comes back escaped and cut.
    let hostile = call(
        http,
        &format!("/call/%07Nope%1B{}/add", "x".repeat(300)),
        "{}",
    )
    .await;
    assert_eq!(hostile.code, 404, "{}", hostile.body);
    let why = hostile.body["message"].as_str().unwrap();
    assert!(
        why.starts_with("no instances of service `\\u{7}Nope\\u{1b}xxx"),
        "{why}"
    );
    assert!(!why.chars().any(char::is_control), "{why}");
    assert!(why.len() < 200, "{why}");
    let no_method = call(http, "/call/Calc/mul", "{}").await;
    assert_eq!(no_method.code, 404);
    assert_eq!(
        no_method.body["message"],
        "service `Calc` has no method `mul`: expected one of add, div"
    );
    let large = format!(r#"{{"a": 1, "b": 2, "pad": "{}"}}"#, "x".repeat(64));
    let too_large = call(http, "/call/Calc/add", &large).await;
    assert_eq!(too_large.code, 413);
    assert_eq!(too_large.body["code"], "resource_exhausted");
    assert!(
        too_large.body["message"]
            .as_str()
            .unwrap()
            .contains("over the gateway's limit of 64 (--gateway-max-body)"),
        "{}",
        too_large.body
    );
    let not_object = call(http, "/call/Calc/add", "[1, 2]").await;
    assert_eq!(not_object.code, 400);
    assert_eq!(
        not_object.body["message"],
        "the body must be a JSON object of the arguments keyed by name, not [1, 2]"
    );
    let malformed = send(
        http,
        "POST",
        "/call/Calc/add",
        &[("rpc-timeout-ms", "soon")],
        "{}",
    )
    .await;
    assert_eq!(malformed.code, 400);
    assert!(
        malformed.body["message"]
            .as_str()
            .unwrap()
            .starts_with("header rpc-timeout-ms is \"soon\": expected 1 to 10 ASCII digits"),
        "{}",
        malformed.body
    );
    // A page of another site cannot call through a visitor's browser.
    let cross = send(
        http,
        "POST",
        "/call/Calc/add",
        &[("origin", "http://evil.example")],
        "{}",
    )
    .await;
    assert_eq!(cross.code, 403);
    assert_eq!(cross.body["code"], "permission_denied");
    let (status, _, body) = request(
        http,
        "POST",
        "/call/Calc/add",
        &[("content-type", "text/plain")],
        r#"{"a": 1, "b": 2}"#,
    )
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 415"), "{status}: {body}");
}

/// A service with a method that streams, which the gateway does not call.
#[service]
trait Ticker {
    /// Counts to `to`.
    async fn count(&self, to: u64) -> impl rpc_core::Stream<Item = u64>;
    /// Answers `n`.
    async fn once(&self, n: u64) -> u64;
}

struct Ticks;

impl Ticker for Ticks {
    async fn count(&self, to: u64) -> impl rpc_core::Stream<Item = u64> {
        futures_util::stream::iter(0..to)
    }
    async fn once(&self, n: u64) -> u64 {
        n
    }
}

#[tokio::test]
async fn a_streaming_method_is_not_called_501() {
    let registry = start_registry(gateway(), 0).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = Server::builder()
        .add_service(TickerServer::new(Ticks))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let _held = register(registry.addr, "Ticker", &address).await;
    let streams = call(registry.http, "/call/Ticker/count", r#"{"to": 3}"#).await;
    assert_eq!(streams.code, 501, "{}", streams.body);
    assert_eq!(streams.body["code"], "unimplemented");
    assert_eq!(
        streams.body["message"],
        "`Ticker.count` streams (Server): the gateway calls unary methods only"
    );
    let once = call(registry.http, "/call/Ticker/once", r#"{"n": 3}"#).await;
    assert_eq!((once.code, once.body), (200, json!(3)));
}

#[tokio::test]
async fn a_deadline_header_bounds_the_call_504() {
    // The gateway's own longest deadline is far past the test's 5 s wait: only the caller's 100 ms ends the call.
    let config = RegistryConfig {
        gateway_max_deadline: Duration::from_secs(600),
        ..gateway()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let stores = tests::store::instances(1).await;
    let (address, behaviour) = &stores[0];
    behaviour.mode.store(STALL, Ordering::SeqCst);
    let _held = register(registry.addr, "Store", address).await;
    let answer = send(
        registry.http,
        "POST",
        "/call/Store/put",
        &[("rpc-timeout-ms", "5000"), ("connect-timeout-ms", "100")],
        r#"{"key": 7}"#,
    )
    .await;
    assert_eq!(answer.code, 504, "{}", answer.body);
    assert_eq!(answer.body["code"], "deadline_exceeded");
    assert_eq!(behaviour.started.load(Ordering::SeqCst), 1);
    assert!(
        answer.headers.iter().all(|(k, _)| k != "retry-after"),
        "{:?}",
        answer.headers
    );
    // The instance let go of the call too.
    assert!(until(|| behaviour.dropped.load(Ordering::SeqCst) == 1).await);
}

/// A `Lab` instance registered with the registry at `registry`; its server and its registration, held.
async fn start_lab(registry: SocketAddr) -> (tests::serve::Running, Registration) {
    let lab = tests::serve::serve_lab(
        tests::lab::LabImpl::default(),
        rpc_core::ServerConfig::default(),
        0,
    )
    .await
    .unwrap();
    let held = register(registry, "Lab", &lab.addr.to_string()).await;
    (lab, held)
}

#[tokio::test]
async fn the_callers_budget_reaches_the_instance_within_the_gateways_longest() {
    // 600 s: far above rpc-core's client default of 10 s, so a call given it is told apart from one given that.
    let longest = 600_000;
    let config = RegistryConfig {
        gateway_max_deadline: Duration::from_millis(longest),
        ..gateway()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let (_lab, _held) = start_lab(registry.addr).await;
    let left = async |headers: &[(&str, &str)]| {
        let answer = send(
            registry.http,
            "POST",
            "/call/Lab/deadline_left_ms",
            headers,
            "{}",
        )
        .await;
        assert_eq!(answer.code, 200, "{}", answer.body);
        answer.body.as_u64().expect("the instance saw a deadline")
    };
    let given = left(&[("rpc-timeout-ms", "1500")]).await;
    assert!((1..=1500).contains(&given), "{given}");
    let none = left(&[]).await;
    assert!((10_001..=longest).contains(&none), "{none}");
    let beyond = left(&[("rpc-timeout-ms", "9999999999")]).await;
    assert!((10_001..=longest).contains(&beyond), "{beyond}");
}

/// A `Store` instance whose server a test can abort (a crash: its connections close), registered as `Store`.
struct Killable {
    behaviour: Arc<Behaviour>,
    server: JoinHandle<std::io::Result<()>>,
    _held: Registration,
}

async fn killable_store(registry: SocketAddr, mode: u8) -> Killable {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.mode.store(mode, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = Server::builder()
        .add_service(StoreServer::new(Stored(Arc::clone(&behaviour))))
        .build()
        .unwrap();
    let server = tokio::spawn(server.serve(listener));
    let held = register(registry, "Store", &address).await;
    Killable {
        behaviour,
        server,
        _held: held,
    }
}

/// Calls `Store.{method}` through the gateway while its only instance stalls, starts a second instance, kills
/// the first mid-call, and answers what the caller got and how many calls the second instance started.
async fn call_while_its_instance_dies(method: &str) -> (JsonAnswer, usize) {
    let registry = start_registry(gateway(), 0).await.unwrap();
    let doomed = killable_store(registry.addr, STALL).await;
    let http = registry.http;
    let path = format!("/call/Store/{method}");
    let answer = tokio::spawn(async move {
        send(
            http,
            "POST",
            &path,
            &[("rpc-timeout-ms", "4000")],
            r#"{"key": 7}"#,
        )
        .await
    });
    assert!(until(|| doomed.behaviour.started.load(Ordering::SeqCst) == 1).await);
    let survivor = killable_store(registry.addr, tests::store::SERVE).await;
    doomed.server.abort();
    let answer = answer.await.unwrap();
    let started = survivor.behaviour.started.load(Ordering::SeqCst);
    (answer, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_instance_dies_mid_call_is_retried_elsewhere_only_if_idempotent() {
    let (read, survivor_reads) = call_while_its_instance_dies("get").await;
    assert_eq!((read.code, &read.body), (200, &json!(7)));
    assert_eq!(survivor_reads, 1, "the idempotent read was sent again");

    let (write, survivor_writes) = call_while_its_instance_dies("put").await;
    assert_eq!(write.code, 503, "{}", write.body);
    assert_eq!(write.body["code"], "unavailable");
    assert_eq!(survivor_writes, 0, "the write, which may have run, was not");
}

#[tokio::test]
async fn calls_past_the_in_flight_limit_are_429_with_retry_after() {
    let config = RegistryConfig {
        gateway_max_in_flight: 1,
        ..gateway()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let stalled = killable_store(registry.addr, STALL).await;
    let http = registry.http;
    let first = tokio::spawn(async move {
        send(
            http,
            "POST",
            "/call/Store/put",
            &[("rpc-timeout-ms", "2000")],
            r#"{"key": 1}"#,
        )
        .await
    });
    assert!(until(|| stalled.behaviour.started.load(Ordering::SeqCst) == 1).await);
    let refused = call(http, "/call/Store/put", r#"{"key": 2}"#).await;
    assert_eq!(refused.code, 429, "{}", refused.body);
    assert_eq!(refused.body["code"], "resource_exhausted");
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("1 gateway calls are running, the limit (--gateway-max-in-flight)"),
        "{}",
        refused.body
    );
    assert!(
        refused
            .headers
            .iter()
            .any(|(k, v)| k == "retry-after" && v == "1"),
        "{:?}",
        refused.headers
    );
    assert_eq!(stalled.behaviour.started.load(Ordering::SeqCst), 1);
    assert_eq!(first.await.unwrap().code, 504);
    // Its permit came back with its answer.
    let again = send(
        http,
        "POST",
        "/call/Store/get",
        &[("rpc-timeout-ms", "50")],
        r#"{"key": 3}"#,
    )
    .await;
    assert_eq!(again.code, 504, "{}", again.body);
}

#[tokio::test]
async fn the_callers_headers_become_metadata_but_not_the_registrys_credential() {
    const READER: &str = "gateway-reader-token";
    let credentials = Credentials::from_json(
        &format!(r#"{{"tokens": [], "readers": {{"tokens": ["{READER}"]}}}}"#),
        "test",
    )
    .unwrap();
    let config = RegistryConfig {
        credentials,
        ..gateway()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let lab = tests::serve::serve_lab(
        tests::lab::LabImpl::default(),
        rpc_core::ServerConfig::default(),
        0,
    )
    .await
    .unwrap();
    let _held = register(registry.addr, "Lab", &lab.addr.to_string()).await;
    let bearer = format!("Bearer {READER}");

    // Without the read credential: refused, like every read of this registry.
    let anonymous = call(registry.http, "/call/Lab/header", r#"{"key": "x-tenant"}"#).await;
    assert_eq!(anonymous.code, 401, "{}", anonymous.body);
    let header = async |key: &str| {
        let answer = send(
            registry.http,
            "POST",
            "/call/Lab/header",
            &[
                ("authorization", &bearer),
                ("cookie", "session=registry"),
                ("x-tenant", "blue"),
                ("rpc-accept-encoding", "zstd"),
                ("retry-after-ms", "5"),
            ],
            &format!(r#"{{"key": "{key}"}}"#),
        )
        .await;
        assert_eq!(answer.code, 200, "{}", answer.body);
        answer.body
    };
    assert_eq!(header("x-tenant").await, "blue");
    // Neither the registry's credentials nor what sets a connection the gateway shares between callers (its
    // compression) reaches the instance.
    for not_passed in [
        "authorization",
        "cookie",
        "rpc-accept-encoding",
        "retry-after-ms",
        "host",
        "content-type",
        "content-length",
    ] {
        assert_eq!(header(not_passed).await, Value::Null, "{not_passed}");
    }
    // The methods endpoint wants the same credential.
    let methods = send(registry.http, "GET", "/v1/services/Lab/methods", &[], "").await;
    assert_eq!(methods.code, 401);
    let methods = send(
        registry.http,
        "GET",
        "/v1/services/Lab/methods",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(methods.code, 200);
}

#[tokio::test]
async fn with_callers_only_a_callers_token_granted_the_service_may_call_and_readers_may_not() {
    const READER: &str = "gateway-reader-token";
    const CALC_CALLER: &str = "calc-caller-token";
    const LAB_CALLER: &str = "lab-caller-token";
    let credentials = Credentials::from_json(
        &format!(
            r#"{{"tokens": [], "readers": {{"tokens": ["{READER}"]}},
                "callers": [{{"token": "{CALC_CALLER}", "services": ["Calc"]}},
                            {{"token": "{LAB_CALLER}", "services": ["Lab"]}}]}}"#
        ),
        "test",
    )
    .unwrap();
    let config = RegistryConfig {
        credentials,
        token: Some(String::from("registry-own-token")),
        ..gateway()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let _calc = start_calc(
        registry.addr,
        1,
        RegistrationConfig {
            token: Some(String::from("registry-own-token")),
            ..RegistrationConfig::default()
        },
    )
    .await
    .unwrap();
    let add = async |token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        send(
            registry.http,
            "POST",
            "/call/Calc/add",
            &headers,
            r#"{"a": 2, "b": 3}"#,
        )
        .await
    };
    // A caller granted Calc, and the registry's own token, may call it.
    for token in [CALC_CALLER, "registry-own-token"] {
        let answer = add(Some(token)).await;
        assert_eq!(
            (answer.code, &answer.body["value"]),
            (200, &json!(5)),
            "{}",
            answer.body
        );
    }
    // No token, a reader's, or one nobody granted: 401, saying what is needed, never showing the token.
    for token in [None, Some(READER), Some("nobody-s-token")] {
        let answer = add(token).await;
        assert_eq!(answer.code, 401, "{token:?}: {}", answer.body);
        assert_eq!(answer.body["code"], "unauthenticated");
        let text = answer.body.to_string();
        assert!(
            !text.contains(READER) && !text.contains("nobody-s-token"),
            "{text}"
        );
        assert!(
            answer
                .headers
                .iter()
                .any(|(k, v)| k == "www-authenticate" && v == "Bearer")
        );
    }
    // A caller of another service: 403, naming the service.
    let answer = add(Some(LAB_CALLER)).await;
    assert_eq!(
        (answer.code, answer.body["code"].as_str()),
        (403, Some("permission_denied"))
    );
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("\"Calc\""),
        "{}",
        answer.body
    );
    // Reads still take the reader's token, and a caller's is not a reader's.
    let (status, _, _) = request(
        registry.http,
        "GET",
        "/v1/services/Calc",
        &[("authorization", &format!("Bearer {READER}"))],
        "",
    )
    .await
    .unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let (status, _, _) = request(
        registry.http,
        "GET",
        "/v1/services/Calc",
        &[("authorization", &format!("Bearer {CALC_CALLER}"))],
        "",
    )
    .await
    .unwrap();
    assert!(status.contains(" 401 "), "{status}");
}
