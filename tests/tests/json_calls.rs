//! Calls in JSON on the binary transport (protocol 1.2) and the built-in `rpc.Reflection`: a method called with
//! its arguments as an object keyed by name answers in JSON, its application error too; bad objects are
//! refused by name; streams refuse JSON; reflection says what the trait declares.

use std::time::Duration;

use rpc_core::client::JsonAnswer;
use rpc_core::reflect::Streaming as Shape;
use rpc_core::server::reflection::ReflectionClient;
use rpc_core::{CallOptions, Client, MethodInfo, Server, ServerConfig, Status, Streaming, service};
use serde::{Deserialize, Serialize};
use tests::serve::serve_builder;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Refused {
    Negative(i64),
}

/// Shapes and sums, for tests.
///
/// Two lines of docs.
#[service(name = "test.Shapes")]
trait Shapes {
    /// Moves `p` by `dx` (and `dy`, if given).
    #[idempotent]
    async fn shift(&self, p: Point, dx: i32, dy: Option<i32>) -> Point;
    /// The square root, or why not.
    async fn root(&self, r#type: i64) -> Result<u64, Refused>;
    async fn nothing(&self);
    async fn total(&self, items: Vec<u64>) -> u64;
    async fn same(&self, items: Vec<u64>) -> Vec<u64>;
    async fn count(&self, to: u64) -> impl rpc_core::Stream<Item = u64>;
    async fn sum(&self, items: Streaming<u64>) -> u64;
}

struct Impl;

impl Shapes for Impl {
    async fn shift(&self, p: Point, dx: i32, dy: Option<i32>) -> Point {
        Point {
            x: p.x + dx,
            y: p.y + dy.unwrap_or(0),
        }
    }
    async fn root(&self, r#type: i64) -> Result<u64, Refused> {
        match r#type {
            n if n < 0 => Err(Refused::Negative(n)),
            n => Ok((n as f64).sqrt() as u64),
        }
    }
    async fn nothing(&self) {}
    async fn total(&self, items: Vec<u64>) -> u64 {
        items.iter().sum()
    }
    async fn same(&self, items: Vec<u64>) -> Vec<u64> {
        items
    }
    async fn count(&self, to: u64) -> impl rpc_core::Stream<Item = u64> {
        futures_util::stream::iter(0..to)
    }
    async fn sum(&self, mut items: Streaming<u64>) -> u64 {
        let mut total = 0;
        while let Some(Ok(n)) = items.next().await {
            total += n;
        }
        total
    }
}

async fn serve(config: ServerConfig) -> Client {
    let builder = Server::builder()
        .config(config)
        .add_service(ShapesServer::new(Impl));
    let addr = serve_builder(builder).await;
    Client::connect(addr).await.unwrap()
}

fn method(name: &str) -> &'static MethodInfo {
    MethodInfo::intern("test.Shapes", name, false).unwrap()
}

async fn call(client: &Client, name: &str, args: &str) -> Result<JsonAnswer, rpc_core::RpcError> {
    let options = CallOptions::default().deadline(Duration::from_secs(5));
    client
        .call_json(method(name), args.as_bytes(), &options)
        .await
}

fn value(answer: JsonAnswer) -> serde_json::Value {
    match answer {
        JsonAnswer::Value(bytes) => serde_json::from_slice(&bytes).unwrap(),
        other => panic!("expected a value, got {other:?}"),
    }
}

#[tokio::test]
async fn a_method_called_in_json_answers_in_json_beside_bincode_calls() {
    let client = serve(ServerConfig::default()).await;
    let moved = call(
        &client,
        "shift",
        r#"{"dx": 2, "p": {"x": 1, "y": 1}, "dy": -5}"#,
    )
    .await;
    assert_eq!(value(moved.unwrap()), serde_json::json!({"x": 3, "y": -4}));
    // An `Option` argument left out is `None`.
    let moved = call(&client, "shift", r#"{"p": {"x": 1, "y": 1}, "dx": 2}"#).await;
    assert_eq!(value(moved.unwrap()), serde_json::json!({"x": 3, "y": 1}));
    // A raw identifier is named without `r#`; the application's error comes back as JSON.
    assert_eq!(
        value(call(&client, "root", r#"{"type": 16}"#).await.unwrap()),
        4
    );
    assert_eq!(
        call(&client, "root", r#"{"type": -3}"#).await.unwrap(),
        JsonAnswer::AppError(bytes::Bytes::from_static(br#"{"Negative":-3}"#))
    );
    // No arguments: `{}` or nothing at all; `()` is `null`.
    assert_eq!(
        value(call(&client, "nothing", "").await.unwrap()),
        serde_json::Value::Null
    );
    assert_eq!(
        value(call(&client, "nothing", "{}").await.unwrap()),
        serde_json::Value::Null
    );
    // The same connection's bincode calls are untouched.
    let shapes = ShapesClient::new(client.clone());
    assert_eq!(shapes.total(vec![1, 2, 3]).await.unwrap(), 6);
    assert_eq!(
        value(
            call(&client, "total", r#"{"items": [1, 2, 3]}"#)
                .await
                .unwrap()
        ),
        6
    );
}

#[tokio::test]
async fn bad_objects_are_refused_by_name_and_cost_the_connection_nothing() {
    let client = serve(ServerConfig::default()).await;
    let cases = [
        (
            r#"{"p": {"x": 1, "y": 1}, "dx": 1, "dz": 3}"#,
            r#"unknown argument "dz": expected one of p, dx, dy"#,
        ),
        (r#"{"dx": 1, "dx": 2}"#, r#"argument "dx" given twice"#),
        (r#"{"dx": 1}"#, "arguments missing: p"),
        (
            r#"[{"x": 1, "y": 1}, 1, null]"#,
            "expected an object of the arguments keyed by name (p, dx, dy)",
        ),
        (r#"{"p": {"x": "one", "y": 1}, "dx": 1}"#, "invalid type"),
        (r#"{"p": "#, "payload"),
    ];
    for (args, says) in cases {
        let e = call(&client, "shift", args).await.unwrap_err();
        assert_eq!(e.code(), Status::InvalidArgument, "{args}: {e}");
        assert!(e.message().contains(says), "{args}: {e}");
        assert!(e.message().contains("test.Shapes.shift"), "{e}");
    }
    // The connection still serves.
    let moved = call(&client, "shift", r#"{"p": {"x": 0, "y": 0}, "dx": 1}"#).await;
    assert_eq!(value(moved.unwrap()), serde_json::json!({"x": 1, "y": 0}));
}

#[tokio::test]
async fn a_json_value_past_the_servers_memory_limit_is_resource_exhausted() {
    let mut config = ServerConfig::default();
    config.codec.max_decoded_len = 1024;
    let client = serve(config).await;
    // 2 bytes of text, 8 bytes of memory each: 4,000 bytes of text decode to 16,000.
    let items = vec!["1"; 2000].join(",");
    let e = call(&client, "total", &format!(r#"{{"items": [{items}]}}"#))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Status::ResourceExhausted, "{e}");
}

#[tokio::test]
async fn streaming_methods_and_unknown_methods_refuse_json() {
    let client = serve(ServerConfig::default()).await;
    for name in ["count", "sum"] {
        let e = call(&client, name, r#"{"to": 3}"#).await.unwrap_err();
        assert_eq!(e.code(), Status::Unimplemented, "{e}");
        assert!(e.message().contains("streams take no calls in JSON"), "{e}");
    }
    let e = call(&client, "nope", "{}").await.unwrap_err();
    assert_eq!(e.code(), Status::Unimplemented, "{e}");
}

#[tokio::test]
async fn reflection_says_what_the_trait_declares() {
    let client = serve(ServerConfig::default()).await;
    let reflection = ReflectionClient::new(client.clone());
    let mut services = reflection.services().await.unwrap();
    services.sort();
    assert_eq!(services, ["rpc.Reflection", "test.Shapes"]);
    let shapes = reflection
        .describe("test.Shapes".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shapes.name, "test.Shapes");
    assert_eq!(
        shapes.docs,
        "Shapes and sums, for tests.\n\nTwo lines of docs."
    );
    let names: Vec<&str> = shapes.methods.iter().map(|m| m.name.as_ref()).collect();
    assert_eq!(
        names,
        ["shift", "root", "nothing", "total", "same", "count", "sum"]
    );
    let shift = shapes.method("shift").unwrap();
    assert_eq!(
        shift.signature(),
        "shift(p: Point, dx: i32, dy: Option<i32>) -> Point"
    );
    assert_eq!(shift.docs, "Moves `p` by `dx` (and `dy`, if given).");
    assert!(shift.idempotent);
    assert_eq!(shift.id, rpc_core::codec::method_id("test.Shapes", "shift"));
    let root = shapes.method("root").unwrap();
    assert_eq!(root.signature(), "root(type: i64) -> Result<u64, Refused>");
    assert_eq!(
        (root.value.as_ref(), root.error.as_deref()),
        ("u64", Some("Refused"))
    );
    assert!(!root.idempotent);
    assert_eq!(shapes.method("nothing").unwrap().returns, "()");
    let kinds: Vec<Shape> = shapes.methods.iter().map(|m| m.streaming).collect();
    use Shape::*;
    assert_eq!(kinds, [Unary, Unary, Unary, Unary, Unary, Server, Client]);
    assert_eq!(
        shapes.method("count").unwrap().returns,
        "impl Stream<Item = u64>"
    );
    assert_eq!(shapes.method("sum").unwrap().args[0].ty, "Streaming<u64>");
    // Reflection describes itself, and names what it serves when asked for what it does not.
    let own = reflection
        .describe("rpc.Reflection".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        own.method("describe").unwrap().signature(),
        "describe(service: String) -> Result<ServiceDescription, String>"
    );
    let missing = reflection
        .describe("Nope\u{7}".into())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        missing.contains(
            "no service \"Nope\\u{7}\" on this server; it serves test.Shapes, rpc.Reflection"
        ),
        "{missing}"
    );
    // Reflection answers in JSON too.
    let describe = MethodInfo::intern("rpc.Reflection", "describe", true).unwrap();
    let options = CallOptions::default();
    let answer = client
        .call_json(describe, br#"{"service": "test.Shapes"}"#, &options)
        .await
        .unwrap();
    assert_eq!(value(answer)["methods"][0]["args"][1]["name"], "dx");
}

#[tokio::test]
async fn a_server_may_serve_no_reflection() {
    let builder = Server::builder()
        .add_service(ShapesServer::new(Impl))
        .reflection(false);
    let client = Client::connect(serve_builder(builder).await).await.unwrap();
    let e = ReflectionClient::new(client).services().await.unwrap_err();
    assert_eq!(e.code(), Status::Unimplemented, "{e}");
}

#[tokio::test]
async fn json_calls_and_answers_compress_like_bincode_ones() {
    let metrics = rpc_core::Metrics::server();
    let builder = Server::builder()
        .add_service(ShapesServer::new(Impl))
        .metrics(metrics.clone());
    let addr = serve_builder(builder).await;
    let bytes = || {
        let samples = tests::prom::parse(&metrics.render()).unwrap();
        let get = |name| tests::prom::value(&samples, name, &[]).unwrap_or(0.0);
        (
            get("rpc_server_received_bytes_total"),
            get("rpc_server_sent_bytes_total"),
        )
    };
    let config = rpc_core::ClientConfig {
        compression: rpc_core::CompressionConfig::with(&[rpc_core::Encoding::Lz4]),
        ..Default::default()
    };
    let client = Client::connect_with(addr, config).await.unwrap();
    // Large enough to pass the compression threshold both ways: `same` answers its 20 KB argument. Twice: the
    // second call is compressed once the server's encodings are known. The counts of compressed bytes say
    // both directions were.
    let items = vec!["4096"; 4096].join(",");
    let args = format!(r#"{{"items": [{items}]}}"#);
    let mut moved = (0.0, 0.0);
    for _ in 0..2 {
        let before = bytes();
        let same = call(&client, "same", &args).await;
        assert_eq!(value(same.unwrap()), serde_json::json!(vec![4096; 4096]));
        let after = bytes();
        moved = (after.0 - before.0, after.1 - before.1);
    }
    let text = args.len() as f64;
    assert!(
        moved.0 < text / 4.0 && moved.1 < text / 4.0,
        "{moved:?} bytes for {text} of JSON each way"
    );
    let err = call(&client, "root", r#"{"type": -7}"#).await.unwrap();
    assert_eq!(err, JsonAnswer::AppError(br#"{"Negative":-7}"#[..].into()));
}

#[tokio::test]
async fn layers_on_both_sides_see_a_call_is_in_json_and_keep_it_so() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (server_saw, client_saw) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let seen = std::sync::Arc::clone(&server_saw);
    let server_layer =
        rpc_core::server::layer::intercept(move |request: &mut rpc_core::server::Request| {
            if request.is_json() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
    let builder = Server::builder()
        .add_service(ShapesServer::new(Impl))
        .layer(server_layer);
    let addr = serve_builder(builder).await;
    let seen = std::sync::Arc::clone(&client_saw);
    let client_layer =
        tower::util::MapRequestLayer::new(move |request: rpc_core::client::layer::Request| {
            if request.is_json() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            request
        });
    let config = rpc_core::ClientConfig::default().layer(client_layer);
    let client = Client::connect_with(addr, config).await.unwrap();
    // Through the user's layers (payloads cut into requests of their own) the call stays in JSON both ways.
    let moved = call(&client, "shift", r#"{"p": {"x": 1, "y": 2}, "dx": 3}"#).await;
    assert_eq!(value(moved.unwrap()), serde_json::json!({"x": 4, "y": 2}));
    ShapesClient::new(client.clone()).nothing().await.unwrap();
    assert_eq!(
        (
            server_saw.load(Ordering::Relaxed),
            client_saw.load(Ordering::Relaxed)
        ),
        (1, 1),
        "only the JSON call is seen as one, on each side"
    );
}
