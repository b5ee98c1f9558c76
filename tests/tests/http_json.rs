//! HTTP/1.1 and JSON on a server's own port (feature `http`, `docs/PROTOCOL.md` section 16), spoken raw over
//! TCP (and TLS) to 127.0.0.1: a `POST` calls the method its path names and answers its JSON; every refusal and
//! failure has its HTTP status (400 to 504) and a JSON body naming its code; headers reach the handler as
//! metadata and pass through the same layers as a binary call (authorization, rate limits, metrics, drain);
//! CORS answers browsers only when configured; one port serves binary calls and HTTP, with TLS too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::http::{Cors, HttpConfig};
use rpc_core::server::layer::{Authorize, Grant, Layers, Rate, RateLimit, intercept};
use rpc_core::server::{Request, Response};
use rpc_core::tls::{ClientCa, ServerTls};
use rpc_core::{Context, Metrics, Server, ServerBuilder, Status, service};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tests::certs::{Ca, Identity};
use tests::http::{Answer, header, read_answer, request};
use tests::serve::{serve_builder, until};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Why `half` refused.
#[derive(Debug, Serialize, Deserialize)]
enum Refusal {
    Odd(i64),
}

/// What the tests call over HTTP; its name has dots, as versioned services' names do.
#[service(name = "test.v1.Probe")]
trait Probe {
    /// `"pong"`.
    async fn ping(&self) -> String;
    /// The metadata entry `key` as the handler sees it.
    async fn header(&self, key: String) -> Option<String>;
    /// `n / 2`, or why not.
    async fn half(&self, n: i64) -> Result<i64, Refusal>;
    /// Waits until the test opens the gate (never, unless it does); then 7.
    async fn wait(&self) -> u32;
    /// `0..to`, a stream.
    async fn count(&self, to: u64) -> impl rpc_core::Stream<Item = u64>;
    /// Panics.
    async fn boom(&self) -> u32;
    /// The names of the client's certificate.
    async fn whoami(&self) -> Vec<String>;
}

#[derive(Clone)]
struct Impl {
    gate: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Default for Impl {
    /// The gate shut.
    fn default() -> Impl {
        Impl {
            gate: Arc::new(Semaphore::new(0)),
            waiting: Arc::default(),
        }
    }
}

impl Probe for Impl {
    async fn ping(&self) -> String {
        String::from("pong")
    }
    async fn header(&self, key: String) -> Option<String> {
        let context = Context::current()?;
        context.metadata().get_str(&key).map(str::to_owned)
    }
    async fn half(&self, n: i64) -> Result<i64, Refusal> {
        match n % 2 {
            0 => Ok(n / 2),
            _ => Err(Refusal::Odd(n)),
        }
    }
    async fn wait(&self) -> u32 {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        7
    }
    async fn count(&self, to: u64) -> impl rpc_core::Stream<Item = u64> {
        futures_util::stream::iter(0..to)
    }
    async fn boom(&self) -> u32 {
        panic!("boom")
    }
    async fn whoami(&self) -> Vec<String> {
        Context::current().map_or_else(Vec::new, |c| c.client_names().to_vec())
    }
}

/// Serves `Probe` with `builder`'s layers and HTTP `config`; its address.
async fn serve_http<L: Layers>(builder: ServerBuilder<L>, config: HttpConfig) -> SocketAddr {
    serve_builder(
        builder
            .add_service(ProbeServer::new(Impl::default()))
            .http(config),
    )
    .await
}

/// Serves `Probe` with HTTP's defaults and no layer.
async fn serve() -> SocketAddr {
    serve_http(Server::builder(), HttpConfig::default()).await
}

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    request(addr, "POST", path, headers, body).await.unwrap()
}

fn status(answer: &Answer) -> u16 {
    let code = answer.0.split(' ').nth(1).unwrap_or_default();
    code.parse()
        .unwrap_or_else(|_| panic!("no status in {answer:?}"))
}

fn body(answer: &Answer) -> Value {
    serde_json::from_str(&answer.2).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

/// The status, the body's `code` and its `message`, of a failure.
fn failure(answer: &Answer) -> (u16, String, String) {
    assert_eq!(
        header(answer, "content-type"),
        Some("application/json"),
        "{answer:?}"
    );
    let body = body(answer);
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
    (status(answer), text("code"), text("message"))
}

#[tokio::test]
async fn a_post_calls_the_method_its_path_names_and_answers_its_json() {
    let addr = serve().await;
    let json_utf8 = [("content-type", "application/json; charset=utf-8")];
    let halved = post(addr, "/test.v1.Probe/half", &json_utf8, r#"{"n": 8}"#).await;
    assert_eq!(status(&halved), 200, "{halved:?}");
    assert_eq!(header(&halved, "content-type"), Some("application/json"));
    assert_eq!(body(&halved), json!(4));
    // No content-type and no body: the arguments `{}`.
    let pong = post(addr, "/test.v1.Probe/ping", &[], "").await;
    assert_eq!((status(&pong), body(&pong)), (200, json!("pong")));
    // The built-in reflection is a service like any other.
    let services = post(addr, "/rpc.Reflection/services", &[], "{}").await;
    assert!(
        body(&services)
            .as_array()
            .unwrap()
            .contains(&json!("test.v1.Probe"))
    );
}

#[tokio::test]
async fn arguments_that_do_not_decode_are_400_invalid_argument() {
    let addr = serve().await;
    for args in [
        r#"{"n": "eight"}"#,
        "[8]",
        "not json",
        r#"{"n": 8, "m": 1}"#,
    ] {
        let answer = post(addr, "/test.v1.Probe/half", &[], args).await;
        let (code, name, message) = failure(&answer);
        assert_eq!(
            (code, name.as_str()),
            (400, "invalid_argument"),
            "{args}: {message}"
        );
        assert!(message.contains("test.v1.Probe.half"), "{message}");
    }
}

#[tokio::test]
async fn unknown_services_methods_and_paths_are_404_not_found() {
    let addr = serve().await;
    let cases = [
        (
            "/test.v1.Probe/nope",
            r#"service "test.v1.Probe" has no method "nope""#,
        ),
        (
            "/test.v2.Probe/ping",
            r#"no service "test.v2.Probe" on this server"#,
        ),
        (
            "/ping",
            r#"path "/ping" names no method: expected /{Service}/{method}"#,
        ),
        (
            "/test.v1.Probe/",
            r#"path "/test.v1.Probe/" names no method"#,
        ),
    ];
    for (path, said) in cases {
        let (code, name, message) = failure(&post(addr, path, &[], "{}").await);
        assert_eq!((code, name.as_str()), (404, "not_found"), "{path}");
        assert!(message.starts_with(said), "{path}: {message}");
    }
}

#[tokio::test]
async fn verbs_other_than_post_are_405_with_allow() {
    let addr = serve().await;
    for verb in ["GET", "PUT", "DELETE", "OPTIONS"] {
        let answer = request(addr, verb, "/test.v1.Probe/ping", &[], "")
            .await
            .unwrap();
        let (code, name, message) = failure(&answer);
        assert_eq!((code, name.as_str()), (405, "unimplemented"), "{verb}");
        assert_eq!(
            message,
            format!("method \"{verb}\" is not allowed: expected POST")
        );
        assert_eq!(header(&answer, "allow"), Some("POST"));
    }
}

#[tokio::test]
async fn a_body_declared_as_anything_but_json_is_415() {
    let addr = serve().await;
    let answer = post(
        addr,
        "/test.v1.Probe/ping",
        &[("content-type", "text/plain")],
        "{}",
    )
    .await;
    let (code, name, message) = failure(&answer);
    assert_eq!((code, name.as_str()), (415, "invalid_argument"));
    assert_eq!(
        message,
        "content-type \"text/plain\" is not JSON: expected application/json (parameters allowed) or none"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_whether_declared_or_chunked() {
    let config = HttpConfig {
        max_body_len: Some(16),
        ..HttpConfig::default()
    };
    let addr = serve_http(Server::builder(), config).await;
    // Within the limit.
    let halved = post(addr, "/test.v1.Probe/half", &[], r#"{"n":8}"#).await;
    assert_eq!(status(&halved), 200);
    // Declared over it: refused before a byte of the body is sent.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /test.v1.Probe/half HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (code, name, message) = failure(&read_answer(&mut stream).await.unwrap());
    assert_eq!((code, name.as_str()), (413, "resource_exhausted"));
    assert_eq!(
        message,
        "the body is 1000000 bytes, over the limit of 16 (max_body_len)"
    );
    // Chunked, with no length declared: cut off past the limit.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let chunked = "POST /test.v1.Probe/half HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
                   20\r\n{\"n\":8}                         \r\n0\r\n\r\n";
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let (code, _, message) = failure(&read_answer(&mut stream).await.unwrap());
    assert_eq!(code, 413);
    assert_eq!(
        message,
        "the body is over the limit of 16 bytes (max_body_len)"
    );
}

#[tokio::test]
async fn a_body_slower_than_body_timeout_is_408_and_the_server_serves_on() {
    let config = HttpConfig {
        body_timeout: std::time::Duration::from_millis(100),
        ..HttpConfig::default()
    };
    let addr = serve_http(Server::builder(), config).await;
    // Declares 7 bytes, sends 3, then waits: refused once the body's time is up (the read gives up after 5 s).
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /test.v1.Probe/half HTTP/1.1\r\nhost: x\r\ncontent-length: 7\r\n\r\n{\"n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (code, name, message) = failure(&read_answer(&mut stream).await.unwrap());
    assert_eq!(
        (code, name.as_str()),
        (408, "deadline_exceeded"),
        "{message}"
    );
    assert!(message.contains("body"), "{message}");
    // A whole body on a new connection is served.
    let halved = post(addr, "/test.v1.Probe/half", &[], r#"{"n":8}"#).await;
    assert_eq!(status(&halved), 200);
}

#[tokio::test]
async fn the_methods_own_error_is_422_with_its_json_naming_its_type() {
    let addr = serve().await;
    let answer = post(addr, "/test.v1.Probe/half", &[], r#"{"n": 3}"#).await;
    assert_eq!(status(&answer), 422);
    assert_eq!(header(&answer, "content-type"), Some("application/json"));
    assert_eq!(
        body(&answer),
        json!({"code": "application_error", "error": "Refusal", "detail": {"Odd": 3}})
    );
}

#[tokio::test]
async fn authorize_answers_401_without_a_credential_and_403_for_one_not_granted() {
    let authorize =
        Authorize::new().token("ops", "s3cret-token", Grant::to(["test.v1.Probe.ping"]));
    let addr = serve_http(Server::builder().layer(authorize), HttpConfig::default()).await;
    let (code, name, _) = failure(&post(addr, "/test.v1.Probe/ping", &[], "").await);
    assert_eq!((code, name.as_str()), (401, "unauthenticated"));
    let bearer = [("authorization", "Bearer s3cret-token")];
    let (code, name, message) =
        failure(&post(addr, "/test.v1.Probe/half", &bearer, r#"{"n":2}"#).await);
    assert_eq!(
        (code, name.as_str()),
        (403, "permission_denied"),
        "{message}"
    );
    assert!(
        !message.contains("s3cret"),
        "no message shows a token: {message}"
    );
    let pong = post(addr, "/test.v1.Probe/ping", &bearer, "").await;
    assert_eq!((status(&pong), body(&pong)), (200, json!("pong")));
}

#[tokio::test]
async fn a_rate_limit_answers_429_with_retry_after() {
    let limit = RateLimit::per_method(Rate::per_second(1.0));
    let addr = serve_http(Server::builder().layer(limit), HttpConfig::default()).await;
    let first = post(addr, "/test.v1.Probe/ping", &[], "").await;
    assert_eq!(status(&first), 200);
    let second = post(addr, "/test.v1.Probe/ping", &[], "").await;
    let (code, name, _) = failure(&second);
    assert_eq!((code, name.as_str()), (429, "resource_exhausted"));
    assert_eq!(header(&second, "retry-after"), Some("1"));
}

/// A front proxy marks the calls whose client hung up before they were forwarded; a layer answers those
/// `Cancelled` rather than run them: HTTP's 499, "client closed request".
#[tokio::test]
async fn a_layer_answering_cancelled_is_499() {
    let abandoned =
        intercept(
            |request: &mut Request| match request.metadata().get_str("x-client-closed") {
                Some("1") => Err(Response::error(
                    Status::Cancelled,
                    "the client hung up at the proxy",
                )),
                _ => Ok(()),
            },
        );
    let addr = serve_http(Server::builder().layer(abandoned), HttpConfig::default()).await;
    let answer = post(addr, "/test.v1.Probe/ping", &[("x-client-closed", "1")], "").await;
    let (code, name, message) = failure(&answer);
    assert_eq!(
        (code, name.as_str(), message.as_str()),
        (499, "cancelled", "the client hung up at the proxy")
    );
    assert_eq!(
        status(&post(addr, "/test.v1.Probe/ping", &[], "").await),
        200
    );
}

#[tokio::test]
async fn json_to_a_streaming_method_is_501_unimplemented() {
    let addr = serve().await;
    let (code, name, message) =
        failure(&post(addr, "/test.v1.Probe/count", &[], r#"{"to":3}"#).await);
    assert_eq!((code, name.as_str()), (501, "unimplemented"));
    assert_eq!(
        message,
        "test.v1.Probe.count streams, and streams take no calls in JSON: call it in bincode"
    );
}

#[tokio::test]
async fn a_panicking_handler_is_500_internal_and_the_server_serves_on() {
    let addr = serve().await;
    let (code, name, message) = failure(&post(addr, "/test.v1.Probe/boom", &[], "").await);
    assert_eq!((code, name.as_str()), (500, "internal"));
    assert!(message.contains("panicked: boom"), "{message}");
    assert_eq!(
        status(&post(addr, "/test.v1.Probe/ping", &[], "").await),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_rpc_timeout_ms_is_504_deadline_exceeded() {
    let addr = serve().await;
    let answer = post(addr, "/test.v1.Probe/wait", &[("rpc-timeout-ms", "50")], "").await;
    let (code, name, message) = failure(&answer);
    assert_eq!((code, name.as_str()), (504, "deadline_exceeded"));
    assert_eq!(
        message,
        "test.v1.Probe.wait did not finish within the caller's deadline"
    );
    // Connect's header counts too, the smaller of the two.
    let both = [("connect-timeout-ms", "20"), ("rpc-timeout-ms", "3600000")];
    assert_eq!(
        failure(&post(addr, "/test.v1.Probe/wait", &both, "").await).0,
        504
    );
}

#[tokio::test]
async fn a_timeout_header_that_is_not_milliseconds_is_400_naming_it() {
    let addr = serve().await;
    for (name, value) in [
        ("rpc-timeout-ms", "1.5"),
        ("connect-timeout-ms", "12345678901"),
    ] {
        let (code, status_name, message) =
            failure(&post(addr, "/test.v1.Probe/ping", &[(name, value)], "").await);
        assert_eq!((code, status_name.as_str()), (400, "invalid_argument"));
        assert_eq!(
            message,
            format!("header {name} is \"{value}\": expected 1 to 10 ASCII digits (milliseconds)")
        );
    }
}

/// The value the handler of `header` sees for the metadata entry `key`, the request carrying `headers`.
async fn seen(addr: SocketAddr, key: &str, headers: &[(&str, &str)]) -> Value {
    let args = json!({ "key": key }).to_string();
    let answer = post(addr, "/test.v1.Probe/header", headers, &args).await;
    assert_eq!(status(&answer), 200, "{answer:?}");
    body(&answer)
}

#[tokio::test]
async fn headers_reach_the_handler_as_metadata_and_those_of_http_do_not() {
    let addr = serve().await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers = [
        ("X-Tenant", "acme"),
        ("authorization", "Bearer abc"),
        ("traceparent", traceparent),
        ("content-type", "application/json"),
        ("rpc-timeout-ms", "60000"),
        ("accept", "application/json"),
    ];
    assert_eq!(seen(addr, "x-tenant", &headers).await, json!("acme"));
    assert_eq!(
        seen(addr, "authorization", &headers).await,
        json!("Bearer abc")
    );
    assert_eq!(
        seen(addr, "traceparent", &headers).await,
        json!(traceparent)
    );
    for http_own in [
        "host",
        "content-type",
        "content-length",
        "rpc-timeout-ms",
        "accept",
        "connection",
    ] {
        assert_eq!(
            seen(addr, http_own, &headers).await,
            Value::Null,
            "{http_own}"
        );
    }
}

#[tokio::test]
async fn headers_that_cannot_be_metadata_are_400_or_431_naming_them() {
    let addr = serve().await;
    // More entries than the server's metadata takes (64 by default).
    let names: Vec<String> = (0..65).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let (code, name, message) = failure(&post(addr, "/test.v1.Probe/ping", &many, "").await);
    assert_eq!((code, name.as_str()), (431, "resource_exhausted"));
    assert_eq!(
        message,
        "header \"x-h64\" would be metadata entry 65, over the server's limit of 64 (max_metadata_entries)"
    );
    // More bytes than it takes (8 KiB by default).
    let big = "v".repeat(9000);
    let (code, _, message) =
        failure(&post(addr, "/test.v1.Probe/ping", &[("x-big", &big)], "").await);
    assert_eq!(code, 431);
    assert!(
        message.starts_with("header \"x-big\" would take the metadata to 9008 bytes"),
        "{message}"
    );
    // A name longer than a metadata key may be (255 bytes): named, cut to 64 characters.
    let long = "k".repeat(300);
    let (code, name, message) =
        failure(&post(addr, "/test.v1.Probe/ping", &[(&long, "1")], "").await);
    assert_eq!((code, name.as_str()), (400, "invalid_argument"));
    let cut = format!(
        "header \"{}…\" cannot be call metadata: metadata key is 300 bytes",
        "k".repeat(64)
    );
    assert!(message.starts_with(&cut), "{message}");
}

#[tokio::test]
async fn the_metrics_layer_counts_an_http_call() {
    let metrics = Metrics::server();
    let addr = serve_http(
        Server::builder().metrics(metrics.clone()),
        HttpConfig::default(),
    )
    .await;
    assert_eq!(
        status(&post(addr, "/test.v1.Probe/ping", &[], "").await),
        200
    );
    assert_eq!(
        status(&post(addr, "/test.v1.Probe/half", &[], r#"{"n":1}"#).await),
        422
    );
    let samples = tests::prom::parse(&metrics.render()).unwrap();
    let calls = |method: &str, status: &str| {
        let labels = [
            ("service", "test.v1.Probe"),
            ("method", method),
            ("status", status),
        ];
        tests::prom::value(&samples, "rpc_server_calls_total", &labels)
    };
    assert_eq!(calls("ping", "Ok"), Some(1.0));
    assert_eq!(calls("half", "AppError"), Some(1.0));
}

#[tokio::test]
async fn cors_answers_preflights_from_allowed_origins_and_names_them_in_answers() {
    let cors = Cors {
        allowed_headers: vec![String::from("x-tenant")],
        ..Cors::allow(["https://app.example"])
    };
    let config = HttpConfig {
        cors: Some(cors),
        ..HttpConfig::default()
    };
    let addr = serve_http(Server::builder(), config).await;
    let asking = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type, x-tenant"),
    ];
    let preflight = request(addr, "OPTIONS", "/test.v1.Probe/ping", &asking, "")
        .await
        .unwrap();
    assert_eq!(status(&preflight), 204, "{preflight:?}");
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-methods"),
        Some("POST")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-headers"),
        Some(
            "content-type, authorization, rpc-timeout-ms, connect-timeout-ms, traceparent, x-tenant"
        )
    );
    assert_eq!(header(&preflight, "access-control-max-age"), Some("600"));
    // Another origin's preflight is refused, and names no origin.
    let other = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "POST"),
    ];
    let refused = request(addr, "OPTIONS", "/test.v1.Probe/ping", &other, "")
        .await
        .unwrap();
    assert_eq!(failure(&refused).0, 403);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    // An answer to the allowed origin names it; one to another origin does not.
    let answer = post(
        addr,
        "/test.v1.Probe/ping",
        &[("origin", "https://app.example")],
        "",
    )
    .await;
    assert_eq!(status(&answer), 200);
    assert_eq!(
        header(&answer, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(header(&answer, "vary"), Some("Origin"));
    assert_eq!(
        header(&answer, "access-control-expose-headers"),
        Some("Retry-After")
    );
    let answer = post(
        addr,
        "/test.v1.Probe/ping",
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    // Other verbs are refused, naming OPTIONS as allowed too.
    let get = request(addr, "GET", "/test.v1.Probe/ping", &[], "")
        .await
        .unwrap();
    assert_eq!(header(&get, "allow"), Some("POST, OPTIONS"));
}

#[tokio::test]
async fn without_cors_no_cors_header_is_sent_and_options_is_405() {
    let addr = serve().await;
    let asking = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    let preflight = request(addr, "OPTIONS", "/test.v1.Probe/ping", &asking, "")
        .await
        .unwrap();
    assert_eq!(failure(&preflight).0, 405);
    let answer = post(
        addr,
        "/test.v1.Probe/ping",
        &[("origin", "https://app.example")],
        "",
    )
    .await;
    assert_eq!(status(&answer), 200);
    for answer in [&preflight, &answer] {
        let cors: Vec<_> = answer
            .1
            .iter()
            .filter(|(k, _)| k.starts_with("access-control-") || k == "vary")
            .collect();
        assert!(cors.is_empty(), "{cors:?}");
    }
}

/// A request for `path` with `body` on a connection kept alive.
fn kept_alive(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `requests` one after the other on `stream`, reading each answer before the next; their statuses and
/// bodies.
async fn exchange<S>(stream: &mut S, requests: &[String]) -> Vec<(u16, Value)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut answers = Vec::new();
    for request in requests {
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(stream).await.unwrap();
        answers.push((status(&answer), body(&answer)));
    }
    answers
}

#[tokio::test]
async fn one_port_serves_binary_calls_and_http_kept_alive() {
    let addr = serve().await;
    let probe = ProbeClient::connect(addr).await.unwrap();
    assert_eq!(probe.half(8).await.unwrap().unwrap(), 4);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let requests = [
        kept_alive("/test.v1.Probe/half", r#"{"n":10}"#),
        kept_alive("/test.v1.Probe/ping", ""),
    ];
    assert_eq!(
        exchange(&mut stream, &requests).await,
        [(200, json!(5)), (200, json!("pong"))]
    );
    // The binary client's connection still serves, beside the HTTP one.
    assert_eq!(probe.ping().await.unwrap(), "pong");
}

#[tokio::test]
async fn serve_io_answers_http_over_any_byte_stream() {
    let server = Server::builder()
        .add_service(ProbeServer::new(Impl::default()))
        .http(HttpConfig::default())
        .build()
        .unwrap();
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move { server.serve_io(theirs).await });
    let requests = [kept_alive("/test.v1.Probe/half", r#"{"n":4}"#)];
    assert_eq!(exchange(&mut ours, &requests).await, [(200, json!(2))]);
}

/// A TLS connection to `addr` that trusts `ca` and presents `identity`.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Ca,
    identity: &Identity,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rpc_core::tls::certificates_from_pem(ca.pem.as_bytes(), "the CA").unwrap() {
        roots.add(cert).unwrap();
    }
    let chain =
        rpc_core::tls::certificates_from_pem(identity.cert.as_bytes(), "the client").unwrap();
    let key = rpc_core::tls::key_from_pem(identity.key.as_bytes(), "the client key").unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn http_goes_over_tls_beside_binary_calls_and_handlers_see_the_clients_names() {
    let ca = Ca::new("test CA");
    let id = ca.server(&["localhost"]);
    let client_ca = ClientCa {
        pem: ca.pem.as_bytes(),
        required: true,
    };
    let tls = ServerTls::from_pem(id.cert.as_bytes(), id.key.as_bytes(), Some(client_ca)).unwrap();
    let addr = serve_http(Server::builder().tls(tls), HttpConfig::default()).await;
    let client = ca.client(&["web.example"]);
    let mut stream = tls_connect(addr, &ca, &client).await;
    let requests = [
        kept_alive("/test.v1.Probe/whoami", ""),
        kept_alive("/test.v1.Probe/half", r#"{"n":6}"#),
    ];
    assert_eq!(
        exchange(&mut stream, &requests).await,
        [(200, json!(["web.example"])), (200, json!(3))]
    );
    let client_tls = rpc_core::tls::ClientTls::from_pem(
        ca.pem.as_bytes(),
        Some((client.cert.as_bytes(), client.key.as_bytes())),
    )
    .unwrap()
    .with_server_name("localhost")
    .unwrap();
    let config = rpc_core::ClientConfig {
        tls: Some(client_tls),
        ..rpc_core::ClientConfig::default()
    };
    let probe = ProbeClient::new(rpc_core::Client::connect_with(addr, config).await.unwrap());
    assert_eq!(probe.whoami().await.unwrap(), ["web.example"]);
}

#[tokio::test]
async fn draining_answers_new_requests_503_and_lets_those_in_flight_finish() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probe = Impl::default();
    let (gate, waiting) = (Arc::clone(&probe.gate), Arc::clone(&probe.waiting));
    let server = Server::builder()
        .add_service(ProbeServer::new(probe))
        .http(HttpConfig::default())
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    // In flight: a call that waits at the gate.
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    let wait = kept_alive("/test.v1.Probe/wait", "");
    in_flight.write_all(wait.as_bytes()).await.unwrap();
    assert!(
        until(|| waiting.load(Ordering::SeqCst) == 1).await,
        "the call reaches its handler"
    );
    // Under way: a request whose head the server has read (it asked for the body), its body still to come.
    let mut arriving = TcpStream::connect(addr).await.unwrap();
    let head = "POST /test.v1.Probe/ping HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n";
    arriving.write_all(head.as_bytes()).await.unwrap();
    let continued = read_answer(&mut arriving).await.unwrap();
    assert_eq!(status(&continued), 100);
    // Idle: a connection kept alive after its call; it closes when the drain begins.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        exchange(&mut idle, &[kept_alive("/test.v1.Probe/ping", "")]).await[0].0,
        200
    );

    stop.send(()).unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert_eq!(closed.expect("the idle connection closes").unwrap(), 0);
    arriving.write_all(b"{}").await.unwrap();
    let refused = read_answer(&mut arriving).await.unwrap();
    let (code, name, message) = failure(&refused);
    assert_eq!((code, name.as_str()), (503, "unavailable"));
    assert_eq!(
        message,
        "the server is draining; this call was not processed"
    );
    assert_eq!(header(&refused, "connection"), Some("close"));
    gate.add_permits(1);
    let finished = read_answer(&mut in_flight).await.unwrap();
    assert_eq!((status(&finished), body(&finished)), (200, json!(7)));
    assert_eq!(header(&finished, "connection"), Some("close"));
    let returned = tokio::time::timeout(Duration::from_secs(5), serving).await;
    returned
        .expect("the server returns once its connections closed")
        .unwrap()
        .unwrap();
}
