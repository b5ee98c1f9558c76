//! `#[service]` and the client API as a user meets them, end to end over 127.0.0.1: method names that are also
//! names of the generated code or of common traits, package-qualified service names, `Result` aliases, byte
//! buffers sent as bytes (with the same bytes on the wire as before), metadata set twice, a handler's context in
//! the tasks it spawns, and doc examples that need no crate but rpc-core (and tokio, serde).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rpc_codec::{Bincode, PayloadCodec, method_id, method_id_of};
use rpc_core::{
    CallOptions, Client, Context, Metadata, MetadataBuilder, MetadataError, MethodInfo, RpcError,
    Server, Service, Status, Stub, service,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Serves `service` on 127.0.0.1 at a port the OS assigns.
async fn serve(service: impl Service) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(service).build().unwrap();
    tokio::spawn(server.serve(listener));
    addr
}

// ---- Item 9: every method name works. ----

/// Methods named like every inherent item of a generated client, like the methods of common traits (called by
/// the generated code on the client, the server or `Arc<S>`), and a raw identifier.
#[service]
trait Names {
    // Clippy asks that methods named `new` or `from_*` take no `self`; an RPC method always does.
    #[allow(clippy::wrong_self_convention)]
    async fn new(&self, n: u32) -> u32;
    async fn connect(&self, peer: String) -> String;
    async fn discover(&self) -> u32;
    async fn discover_with(&self, a: u32, b: u32) -> u32;
    async fn client(&self) -> String;
    async fn with_deadline(&self, ms: u64) -> u64;
    async fn with_metadata(&self, key: String) -> Option<String>;
    #[allow(non_snake_case)]
    async fn SERVICE(&self) -> u32;
    #[allow(non_snake_case)]
    async fn METHODS(&self) -> u32;
    async fn clone(&self) -> u32;
    async fn into(&self, s: String) -> Vec<u8>;
    async fn to_owned(&self) -> String;
    async fn as_ref(&self) -> u32;
    async fn drop(&self);
    async fn fmt(&self) -> String;
    async fn from(&self, n: u8) -> u8;
    async fn default(&self) -> u32;
    async fn call(&self) -> u32;
    async fn decode(&self) -> u32;
    async fn spawn(&self) -> u32;
    async fn name(&self) -> String;
    async fn methods(&self) -> u32;
    async fn dispatch(&self) -> u32;
    #[allow(clippy::wrong_self_convention)]
    async fn from_arc(&self) -> u32;
    async fn options(&self) -> u32;
    #[allow(clippy::wrong_self_convention)]
    async fn from_parts(&self) -> u32;
    async fn r#type(&self, r#in: u32) -> u32;
}

struct Named;

impl Names for Named {
    async fn new(&self, n: u32) -> u32 {
        n + 1
    }
    async fn connect(&self, peer: String) -> String {
        format!("connected to {peer}")
    }
    async fn discover(&self) -> u32 {
        3
    }
    async fn discover_with(&self, a: u32, b: u32) -> u32 {
        a * b
    }
    async fn client(&self) -> String {
        "a client".to_owned()
    }
    async fn with_deadline(&self, ms: u64) -> u64 {
        ms * 2
    }
    async fn with_metadata(&self, key: String) -> Option<String> {
        Context::current().and_then(|c| c.metadata().get_str(&key).map(str::to_owned))
    }
    async fn SERVICE(&self) -> u32 {
        8
    }
    async fn METHODS(&self) -> u32 {
        9
    }
    async fn clone(&self) -> u32 {
        10
    }
    async fn into(&self, s: String) -> Vec<u8> {
        s.into_bytes()
    }
    async fn to_owned(&self) -> String {
        "owned".to_owned()
    }
    async fn as_ref(&self) -> u32 {
        13
    }
    async fn drop(&self) {}
    async fn fmt(&self) -> String {
        "formatted".to_owned()
    }
    async fn from(&self, n: u8) -> u8 {
        n.wrapping_add(1)
    }
    async fn default(&self) -> u32 {
        17
    }
    async fn call(&self) -> u32 {
        18
    }
    async fn decode(&self) -> u32 {
        19
    }
    async fn spawn(&self) -> u32 {
        20
    }
    async fn name(&self) -> String {
        "a name".to_owned()
    }
    async fn methods(&self) -> u32 {
        22
    }
    async fn dispatch(&self) -> u32 {
        23
    }
    async fn from_arc(&self) -> u32 {
        24
    }
    async fn options(&self) -> u32 {
        25
    }
    async fn from_parts(&self) -> u32 {
        26
    }
    async fn r#type(&self, r#in: u32) -> u32 {
        r#in + 27
    }
}

#[tokio::test]
async fn methods_named_like_generated_items_or_trait_methods_are_called_end_to_end() {
    let addr = serve(NamesServer::new(Named)).await;
    // The stub's constructor and options, reached through `Stub` where a method took the inherent name.
    let names = <NamesClient as Stub>::connect(addr).await.unwrap();
    let names = Stub::with_deadline(&names, Duration::from_secs(5));
    let names = Stub::with_metadata(&names, Metadata::from_pairs([("k", "v")]).unwrap());
    assert_eq!(
        Stub::client(&names).config().default_deadline,
        Duration::from_secs(10)
    );

    assert_eq!(names.new(1).await, Ok(2));
    assert_eq!(
        names.connect("10.0.0.7:4000".to_owned()).await,
        Ok("connected to 10.0.0.7:4000".to_owned())
    );
    assert_eq!(names.discover().await, Ok(3));
    assert_eq!(names.discover_with(4, 5).await, Ok(20));
    assert_eq!(names.client().await, Ok("a client".to_owned()));
    assert_eq!(names.with_deadline(3).await, Ok(6));
    assert_eq!(
        names.with_metadata("k".to_owned()).await,
        Ok(Some("v".to_owned()))
    );
    assert_eq!(names.SERVICE().await, Ok(8));
    assert_eq!(names.METHODS().await, Ok(9));
    assert_eq!(names.clone().await, Ok(10));
    // `names.into(..)` is `Into::into` (method lookup tries `self` before `&self`), as for any type with an
    // inherent `into(&self, ..)`: name the method, or call it on a reference.
    assert_eq!(
        NamesClient::into(&names, "ab".to_owned()).await,
        Ok(b"ab".to_vec())
    );
    assert_eq!(names.to_owned().await, Ok("owned".to_owned()));
    assert_eq!(names.as_ref().await, Ok(13));
    assert_eq!(names.drop().await, Ok(()));
    assert_eq!(names.fmt().await, Ok("formatted".to_owned()));
    assert_eq!(names.from(255).await, Ok(0));
    assert_eq!(names.default().await, Ok(17));
    assert_eq!(names.call().await, Ok(18));
    assert_eq!(names.decode().await, Ok(19));
    assert_eq!(names.spawn().await, Ok(20));
    assert_eq!(names.name().await, Ok("a name".to_owned()));
    assert_eq!(names.methods().await, Ok(22));
    assert_eq!(names.dispatch().await, Ok(23));
    assert_eq!(names.from_arc().await, Ok(24));
    assert_eq!(names.options().await, Ok(25));
    assert_eq!(names.from_parts().await, Ok(26));
    assert_eq!(names.r#type(1).await, Ok(28));

    // The wire name of a raw identifier has no `r#`.
    let ty = <NamesClient as Stub>::METHODS
        .iter()
        .find(|m| m.name == "type");
    assert_eq!(ty.map(|m| m.id), Some(method_id("Names", "type")));
    assert_eq!(<NamesClient as Stub>::SERVICE, "Names");
    // The stub's items, reached through the trait, work as the inherent shortcuts do.
    let other = <NamesClient as Stub>::new(Client::connect(addr).await.unwrap());
    assert_eq!(other.clone().await, Ok(10));
}

#[tokio::test]
async fn a_client_keeps_its_shortcuts_when_no_method_takes_their_names() {
    let addr = serve(CalcServer::new(Calculator)).await;
    let calc = CalcClient::connect(addr).await.unwrap();
    let calc = calc
        .with_deadline(Duration::from_secs(5))
        .with_metadata(Metadata::new());
    assert_eq!(
        calc.client().config().default_deadline,
        Duration::from_secs(10)
    );
    assert_eq!(CalcClient::SERVICE, "calc.v1.Calc");
    assert_eq!(CalcClient::METHODS.len(), 2);
    assert_eq!(
        CalcClient::new(calc.client().clone()).add(2, 3).await,
        Ok(5)
    );
}

// ---- Item 10: package-qualified service names. ----

/// The name `#[service]`'s own docs use: gRPC's `package.Service`.
#[service(name = "calc.v1.Calc")]
trait Calc {
    async fn add(&self, a: i32, b: i32) -> i32;
    async fn div(&self, a: i32, b: i32) -> Result<i32, String>;
}

struct Calculator;

impl Calc for Calculator {
    async fn add(&self, a: i32, b: i32) -> i32 {
        a + b
    }
    async fn div(&self, a: i32, b: i32) -> Result<i32, String> {
        a.checked_div(b).ok_or_else(|| format!("{a} / {b}"))
    }
}

#[tokio::test]
async fn a_package_qualified_service_name_hashes_the_full_name_and_serves() {
    let add = &CalcClient::METHODS[0];
    assert_eq!((add.service, add.name), ("calc.v1.Calc", "add"));
    assert_eq!(add.id, method_id_of("calc.v1.Calc.add"));
    assert_eq!(add.id, 0xbf95_9a13);
    assert_eq!(add.to_string(), "calc.v1.Calc.add");

    let addr = serve(CalcServer::new(Calculator)).await;
    let calc = CalcClient::connect(addr).await.unwrap();
    assert_eq!(calc.add(2, 3).await, Ok(5));
    assert_eq!(calc.div(7, 0).await, Ok(Err("7 / 0".to_owned())));
    // A peer that knows only the protocol names the method by the hash of "calc.v1.Calc.add".
    static BY_HAND: MethodInfo = MethodInfo {
        service: "calc.v1.Calc",
        name: "add",
        id: method_id_of("calc.v1.Calc.add"),
        idempotent: false,
    };
    let raw = Client::connect(addr).await.unwrap();
    let sum: Result<i32, RpcError> = raw.call(&BY_HAND, &(40, 2), &CallOptions::default()).await;
    assert_eq!(sum, Ok(42));
}

// ---- Item 11: `Result` aliases. ----

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum StoreError {
    Missing(String),
}

mod store {
    /// A crate's own result alias, as many crates have.
    pub(crate) type Result<T> = std::result::Result<T, super::StoreError>;
}

#[service]
trait Store {
    async fn get(&self, key: String) -> store::Result<u32>;
    async fn raw(&self, key: String) -> Result<u32, errors::Oops>;
}

mod errors {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub(crate) struct Oops;
}

struct Shelf;

impl Store for Shelf {
    async fn get(&self, key: String) -> store::Result<u32> {
        if key == "one" {
            Ok(1)
        } else {
            Err(StoreError::Missing(key))
        }
    }
    async fn raw(&self, _key: String) -> Result<u32, errors::Oops> {
        Err(errors::Oops)
    }
}

#[tokio::test]
async fn a_result_alias_sends_its_error_as_the_application_error() {
    let addr = serve(StoreServer::new(Shelf)).await;
    let store = StoreClient::connect(addr).await.unwrap();
    assert_eq!(store.get("one".to_owned()).await, Ok(Ok(1)));
    assert_eq!(
        store.get("two".to_owned()).await,
        Ok(Err(StoreError::Missing("two".to_owned())))
    );
    assert_eq!(store.raw("x".to_owned()).await, Ok(Err(errors::Oops)));

    // On the wire the error is an application error (flag APP_ERROR), not a value: a caller that expects a
    // plain value is told so.
    let raw = Client::connect(addr).await.unwrap();
    let as_value: Result<Result<u32, StoreError>, RpcError> = raw
        .call(&StoreClient::METHODS[0], &("two",), &CallOptions::default())
        .await;
    let err = as_value.unwrap_err();
    assert_eq!(err.code(), Status::Internal);
    assert!(err.message().contains("application error"), "{err}");
}

// ---- Item 12: byte buffers travel as bytes. ----

#[service]
trait Blob {
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    async fn shared(&self, data: Bytes, tail: std::vec::Vec<u8>) -> bytes::Bytes;
    async fn checked(&self, data: Vec<u8>) -> Result<Vec<u8>, Vec<u8>>;
}

/// A plain sequence: what `Vec<u8>` was through serde before, element by element.
type Seq = Vec<u8>;

/// The same service and methods (so the same method ids), its byte buffers hidden behind an alias so that they
/// go through serde as sequences: the encoding of a `Vec<u8>` before byte buffers were sent as bytes.
#[service(name = "Blob")]
trait SeqBlob {
    async fn echo(&self, data: Seq) -> Seq;
}

struct Mirror;

impl Blob for Mirror {
    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    async fn shared(&self, data: Bytes, tail: Vec<u8>) -> Bytes {
        let mut all = data.to_vec();
        all.extend_from_slice(&tail);
        Bytes::from(all)
    }
    async fn checked(&self, data: Vec<u8>) -> Result<Vec<u8>, Vec<u8>> {
        if data.first() == Some(&0) {
            Err(data)
        } else {
            Ok(data)
        }
    }
}

impl SeqBlob for Mirror {
    async fn echo(&self, data: Seq) -> Seq {
        data
    }
}

/// Lengths on both sides of each size class of bincode's variable-length integers.
const LENGTHS: [usize; 8] = [0, 1, 250, 251, 65_535, 65_536, 100_000, 1 << 20];

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn bytes_and_a_sequence_of_u8_have_the_same_encoding() {
    for len in LENGTHS {
        let data = pattern(len);
        let as_sequence = Bincode.to_vec(&(data.clone(), 7u8)).unwrap();
        let as_bytes = Bincode.to_vec(&(ByteBuf::from(data.clone()), 7u8)).unwrap();
        assert_eq!(as_sequence, as_bytes, "length {len}");
        let back: (ByteBuf, u8) = Bincode.decode(&as_sequence).unwrap();
        assert_eq!(back.0.into_vec(), data, "length {len}");
    }
}

#[tokio::test]
async fn byte_buffers_round_trip_and_old_and_new_encodings_understand_each_other() {
    let bytes_server = serve(BlobServer::new(Mirror)).await;
    let seq_server = serve(SeqBlobServer::new(Mirror)).await;
    let blob = BlobClient::connect(bytes_server).await.unwrap();
    let blob_to_seq = BlobClient::connect(seq_server).await.unwrap();
    let seq_to_blob = SeqBlobClient::connect(bytes_server).await.unwrap();
    for len in LENGTHS {
        let data = pattern(len);
        assert_eq!(
            blob.echo(data.clone()).await.as_ref(),
            Ok(&data),
            "length {len}"
        );
        assert_eq!(
            blob_to_seq.echo(data.clone()).await.as_ref(),
            Ok(&data),
            "length {len}"
        );
        assert_eq!(
            seq_to_blob.echo(data.clone()).await.as_ref(),
            Ok(&data),
            "length {len}"
        );
    }
    let joined = blob
        .shared(Bytes::from_static(b"head "), b"tail".to_vec())
        .await;
    assert_eq!(joined, Ok(Bytes::from_static(b"head tail")));
    assert_eq!(blob.checked(vec![1, 2]).await, Ok(Ok(vec![1, 2])));
    assert_eq!(blob.checked(vec![0, 2]).await, Ok(Err(vec![0, 2])));
}

// ---- Item 13: metadata set twice, the context in spawned tasks, what rpc_core exports. ----

#[service]
trait Probe {
    /// The value of `key` in the call's metadata, read in the handler and in a task the handler spawns.
    async fn seen(&self, key: String) -> (Option<String>, Option<String>);
}

struct Prober;

impl Probe for Prober {
    async fn seen(&self, key: String) -> (Option<String>, Option<String>) {
        let read = |key: &str| {
            Context::current()?
                .metadata()
                .get_str(key)
                .map(str::to_owned)
        };
        let here = read(&key);
        let ctx = Context::current().expect("inside a handler");
        let spawned = tokio::spawn(ctx.scope(async move { read(&key) }));
        (here, spawned.await.unwrap())
    }
}

#[tokio::test]
async fn metadata_set_twice_is_merged_by_key_and_the_later_value_wins() {
    let addr = serve(ProbeServer::new(Prober)).await;
    let probe = ProbeClient::connect(addr)
        .await
        .unwrap()
        .with_metadata(Metadata::from_pairs([("auth", "token"), ("tenant", "a")]).unwrap())
        .with_metadata(Metadata::from_pairs([("tenant", "b")]).unwrap());
    let seen = |key: &str| probe.seen(key.to_owned());
    assert_eq!(
        seen("auth").await.map(|s| s.0),
        Ok(Some("token".to_owned()))
    );
    assert_eq!(seen("tenant").await.map(|s| s.0), Ok(Some("b".to_owned())));
}

#[tokio::test]
async fn a_task_spawned_by_a_handler_sees_the_call_context_through_scope() {
    let addr = serve(ProbeServer::new(Prober)).await;
    let probe = ProbeClient::connect(addr)
        .await
        .unwrap()
        .with_metadata(Metadata::from_pairs([("tenant", "a")]).unwrap());
    assert_eq!(
        probe.seen("tenant".to_owned()).await,
        Ok((Some("a".to_owned()), Some("a".to_owned())))
    );
}

#[tokio::test]
async fn merged_metadata_over_the_wire_limit_fails_the_call_and_sends_nothing() {
    let addr = serve(ProbeServer::new(Prober)).await;
    let big = "x".repeat(40_000);
    let probe = ProbeClient::connect(addr)
        .await
        .unwrap()
        .with_metadata(Metadata::from_pairs([("a", &big)]).unwrap())
        .with_metadata(Metadata::from_pairs([("b", &big)]).unwrap());
    let err = probe.seen("a".to_owned()).await.unwrap_err();
    assert_eq!(err.code(), Status::InvalidArgument);
    assert!(err.message().contains("over the wire's limit"), "{err}");
}

#[test]
fn the_types_a_user_needs_are_exported_by_rpc_core() {
    let mut builder: MetadataBuilder = Metadata::builder();
    let refused: Result<&mut MetadataBuilder, MetadataError> = builder.insert("bad key", "v");
    assert!(refused.is_err());
    builder.insert("good-key", "v").unwrap();
    assert_eq!(builder.build().get_str("good-key"), Some("v"));
}

/// Crates a user of rpc-core does not depend on: doc examples must reach what they need through `rpc_core`.
const NOT_A_USER_DEPENDENCY: [&str; 10] = [
    "rpc_codec",
    "rpc_macros",
    "rpc_registry",
    "bytes",
    "tokio_util",
    "tracing",
    "thiserror",
    "tokio_rustls",
    "rustls_webpki",
    "serde_bytes",
];

/// The code of the fenced Rust blocks of `text` (doc comments already stripped of `///`), each with the line it
/// starts on; hidden lines (`# `) are code too.
fn rust_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    // `Some(Some(code))` inside a Rust block, `Some(None)` inside a block of another language.
    let mut open: Option<Option<(usize, String)>> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(block) => blocks.extend(block),
                None => {
                    let lang = info.split(',').next().unwrap_or("").trim();
                    let rust = matches!(
                        lang,
                        "" | "rust" | "ignore" | "no_run" | "should_panic" | "compile_fail"
                    );
                    open = Some(rust.then(|| (n + 1, String::new())));
                }
            }
            continue;
        }
        if let Some(Some((_, code))) = &mut open {
            code.push_str(trimmed.strip_prefix("# ").unwrap_or(trimmed));
            code.push('\n');
        }
    }
    blocks
}

/// The crates of `NOT_A_USER_DEPENDENCY` that `code` names at the start of a path.
fn foreign_crates(code: &str) -> Vec<&'static str> {
    NOT_A_USER_DEPENDENCY
        .into_iter()
        .filter(|krate| {
            code.match_indices(&format!("{krate}::")).any(|(at, _)| {
                let before = code[..at].chars().next_back();
                !before.is_some_and(|c| c == ':' || c == '_' || c.is_alphanumeric())
            })
        })
        .collect()
}

fn doc_text(source: &str) -> String {
    source
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("//!").or_else(|| l.strip_prefix("///"))
        })
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn doc_examples_of_rpc_core_and_the_readme_need_no_other_crate_of_ours() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    sources(&root.join("rpc-core/src"), &mut files);
    let mut texts: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f.display().to_string(),
                doc_text(&std::fs::read_to_string(f).unwrap()),
            )
        })
        .collect();
    texts.push((
        "README.md".to_owned(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    ));
    let mut examples = 0;
    let mut offenders = Vec::new();
    for (file, text) in &texts {
        for (line, code) in rust_blocks(text) {
            examples += 1;
            let foreign = foreign_crates(&code);
            if !foreign.is_empty() {
                offenders.push(format!("{file}, example at doc line {line}: {foreign:?}"));
            }
        }
    }
    assert!(
        examples >= 10,
        "found only {examples} examples: is the scan broken?"
    );
    assert!(offenders.is_empty(), "{offenders:#?}");
    // The scan itself sees a foreign crate at the start of a path, and not inside a path of rpc_core.
    assert_eq!(foreign_crates("let b = bytes::Bytes::new();"), ["bytes"]);
    assert!(foreign_crates("let b = rpc_core::codec::bytes::Bytes::new();").is_empty());
    assert_eq!(
        rust_blocks("```\nuse rpc_codec::Metadata;\n```\n```text\nbytes::X\n```")
            .into_iter()
            .map(|(_, code)| foreign_crates(&code))
            .collect::<Vec<_>>(),
        [vec!["rpc_codec"]]
    );
}
