//! Checks `docs/PROTOCOL.md` against the shipped servers over real sockets, byte for byte: the answers of its
//! running example (`Calc` of `calc-server`, `Greeter` of `hello-server`: section 7.3 and the vectors of section
//! 12), the request-id rules of section 5, the refusal of an oversized request at its header (section 9), the
//! go-away of a drain (section 10), and the Python client of section 11, run against `calc-server`.
//! (`rpc-codec/tests/vectors.rs` checks the same document against the codec alone.)

use std::net::SocketAddr;
use std::time::Duration;

use examples::calc::{CalcServer, Calculator};
use examples::hello::{GreeterServer, Greetings};
use rpc_codec::{Bincode, FrameCodec, Header, Metadata, WriteBuf, method_id};
use rpc_core::{Server, ServerConfig, Service};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::oneshot;

#[path = "../../rpc-codec/tests/support/protocol_doc.rs"]
mod protocol_doc;

use protocol_doc::{DOC, doc_vector, hex, hex_bytes};

mod support;

/// How long any one answer may take before the test gives up (a bound, not a measurement).
const PATIENCE: Duration = Duration::from_secs(30);

/// A request frame for `Service.method` with `args`, as any client would send it.
fn request<A: Serialize>(id: u64, service: &str, method: &str, args: &A) -> Vec<u8> {
    let mut out = WriteBuf::new();
    FrameCodec::default()
        .encode_value(
            &Header::request(id, method_id(service, method)),
            &Metadata::new(),
            args,
            &Bincode,
            &mut out,
        )
        .unwrap();
    out.as_slice().to_vec()
}

/// Serves `service` on 127.0.0.1, port 0, until the returned sender fires or is dropped.
async fn serve(
    service: impl Service,
    config: ServerConfig,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(service)
        .config(config)
        .build()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve_with_shutdown(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, task)
}

/// The next whole frame from `stream`, or `None` if the peer closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut frame = vec![0; 28];
    let read = tokio::time::timeout(PATIENCE, stream.read_exact(&mut frame))
        .await
        .expect("a frame or the end within the test's patience");
    if read.is_err() {
        return None;
    }
    let metadata_len = usize::from(u16::from_le_bytes([frame[6], frame[7]]));
    let payload_len = u32::from_le_bytes(frame[24..28].try_into().unwrap()) as usize;
    frame.resize(28 + metadata_len + payload_len, 0);
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut frame[28..]))
        .await
        .expect("the rest of the frame within the test's patience")
        .expect("the rest of the frame");
    Some(frame)
}

/// Sends `frame` and returns the next frame that comes back.
async fn exchange(stream: &mut TcpStream, frame: &[u8]) -> Vec<u8> {
    stream.write_all(frame).await.unwrap();
    read_frame(stream).await.expect("an answer")
}

/// The rows of section 7.3's table of the shipped servers' answers: (call, answer, payload).
fn answers_table() -> Vec<(String, String, Vec<u8>)> {
    let table = DOC
        .split_once("| call | answer | payload |")
        .expect("section 7.3's table of answers")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                hex_bytes(cells[2].trim_matches('`')),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_shipped_servers_answer_what_the_running_example_says() {
    let calculator = Calculator {
        instance: String::from("127.0.0.1:7000"),
    };
    let (calc, _stop_calc, _) = serve(CalcServer::new(calculator), ServerConfig::default()).await;
    let (greeter, _stop_greeter, _) =
        serve(GreeterServer::new(Greetings), ServerConfig::default()).await;
    let mut calc = TcpStream::connect(calc).await.unwrap();
    let mut greeter = TcpStream::connect(greeter).await.unwrap();

    // Section 12's vectors: request 1 (with its metadata) and the answer, div(7, 0), an unknown method.
    let answer = exchange(&mut calc, &doc_vector("request")).await;
    assert_eq!(
        hex(&answer),
        hex(&doc_vector("response")),
        "vector response"
    );
    let answer = exchange(&mut calc, &request(2, "Calc", "div", &(7i64, 0i64))).await;
    assert_eq!(
        hex(&answer),
        hex(&doc_vector("response-app-error")),
        "vector response-app-error"
    );
    let mut unknown = request(3, "Calc", "add", &(1i64, 1i64));
    unknown[16..20].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    let answer = exchange(&mut calc, &unknown).await;
    assert_eq!(hex(&answer), hex(&doc_vector("error")), "vector error");

    // Section 7.3's table, row by row.
    let rows = answers_table();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let mut next_id = 10;
    for (call, kind, payload) in rows {
        next_id += 1;
        let names: Vec<String> = (0..101).map(|i| format!("n{i}")).collect();
        let (stream, frame) = match call.as_str() {
            "`Calc.add(2, 3)` to the server at `127.0.0.1:7000`" => {
                (&mut calc, request(next_id, "Calc", "add", &(2i64, 3i64)))
            }
            "`Calc.div(7, 0)`" => (&mut calc, request(next_id, "Calc", "div", &(7i64, 0i64))),
            "`Greeter.greet_all([])`" => (
                &mut greeter,
                request(next_id, "Greeter", "greet_all", &(Vec::<String>::new(),)),
            ),
            "`Greeter.greet_all` with 101 names" => (
                &mut greeter,
                request(next_id, "Greeter", "greet_all", &(names,)),
            ),
            other => panic!("section 7.3 has a row this test does not know how to call: {other}"),
        };
        let answer = exchange(stream, &frame).await;
        let flags = if kind.starts_with("`Response`, `APP_ERROR`") {
            1
        } else {
            assert!(kind.starts_with("`Response`, no flags"), "{kind}");
            0
        };
        assert_eq!(answer[3], 0x02, "{call}: a Response");
        assert_eq!(answer[4], flags, "{call}: flags");
        assert_eq!(
            u64::from_le_bytes(answer[8..16].try_into().unwrap()),
            next_id
        );
        assert_eq!(hex(&answer[28..]), hex(&payload), "{call}: payload");
    }
}

#[tokio::test]
async fn request_ids_may_skip_must_increase_and_a_refused_request_uses_its_id() {
    let config = ServerConfig {
        codec: rpc_codec::Config {
            max_frame_len: 1024,
            ..rpc_codec::Config::default()
        },
        ..ServerConfig::default()
    };
    let (addr, _stop, _) = serve(GreeterServer::new(Greetings), config).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let hello = |id| request(id, "Greeter", "hello", &("Ada",));

    // Gaps are allowed.
    for id in [1, 2, 7] {
        let answer = exchange(&mut stream, &hello(id)).await;
        assert_eq!((answer[3], &answer[8..16]), (0x02, &id.to_le_bytes()[..]));
    }

    // A request over the limit is answered from its header alone, before the rest of it is sent.
    let oversized = Header::request(8, method_id("Greeter", "hello")).to_bytes(0, 2000);
    let answer = exchange(&mut stream, &oversized).await;
    let message = String::from_utf8_lossy(&answer[28..]).into_owned();
    assert_eq!(
        (answer[3], answer[5], &answer[8..16]),
        (0x03, 8, &8u64.to_le_bytes()[..]),
        "{message}"
    );
    assert_eq!(
        message,
        "request refused: frame length 2028 exceeds limit 1024"
    );
    // The connection stays in sync once the skipped bytes have come.
    stream.write_all(&[0; 2000]).await.unwrap();
    let answer = exchange(&mut stream, &hello(9)).await;
    assert_eq!((answer[3], &answer[8..16]), (0x02, &9u64.to_le_bytes()[..]));

    // A refused request uses its id: on a new connection, request 1 refused, then another request 1 is a
    // protocol error (its id is not greater than the highest read), and the server closes the connection.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let oversized = Header::request(1, method_id("Greeter", "hello")).to_bytes(0, 2000);
    let answer = exchange(&mut stream, &oversized).await;
    assert_eq!(
        (answer[3], answer[5]),
        (0x03, 8),
        "refused: ResourceExhausted"
    );
    stream.write_all(&[0; 2000]).await.unwrap();
    let answer = exchange(&mut stream, &hello(1)).await;
    assert_eq!(
        (answer[3], answer[5], &answer[8..16]),
        (0x03, 3, &[0u8; 8][..]),
        "Error, InvalidArgument, request_id 0"
    );
    assert_eq!(
        String::from_utf8_lossy(&answer[28..]),
        "request id 1 does not follow 1 (ids must increase)"
    );
    assert_eq!(
        read_frame(&mut stream).await,
        None,
        "then the server closes"
    );
    assert!(DOC.contains("`request id 3 does not follow 5 (ids must increase)`"));
}

#[tokio::test]
async fn a_drain_says_go_away_with_the_last_request_id_then_closes() {
    let (addr, stop, served) = serve(GreeterServer::new(Greetings), ServerConfig::default()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for id in 1..=5 {
        let answer = exchange(&mut stream, &request(id, "Greeter", "hello", &("Ada",))).await;
        assert_eq!(answer[3], 0x02);
    }
    stop.send(()).unwrap();
    // Nothing is in flight: the vector of section 12.8, then the connection closes at once.
    let go_away = read_frame(&mut stream).await.expect("a go-away");
    assert_eq!(hex(&go_away), hex(&doc_vector("go-away")));
    assert_eq!(read_frame(&mut stream).await, None);
    tokio::time::timeout(PATIENCE, served)
        .await
        .expect("the server returns once its connections closed")
        .unwrap();
}

/// Runs the Python client of section 11 against `calc-server` (with a registry to register with), as the
/// document says to. Needs `python3`: without it the test says so and passes, unless `RPC_REQUIRE_PYTHON` is set
/// (CI sets it), when it fails.
#[tokio::test]
async fn the_python_client_of_section_11_calls_calc_server() {
    if !support::python3_runs("section 11's Python client") {
        return;
    }
    let (mut server, address) = support::calc_server(&[], PATIENCE).await;
    let port = address.rsplit_once(':').unwrap().1;

    let code = DOC
        .split_once("```python\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("section 11's Python block")
        .0;
    let connect = r#"socket.create_connection(("127.0.0.1", 7000))"#;
    assert!(code.contains(connect));
    let code = code.replace(
        connect,
        &format!(r#"socket.create_connection(("127.0.0.1", {port}))"#),
    );
    let expected = code
        .lines()
        .find_map(|l| l.strip_prefix("print(")?.split_once("# ").map(|(_, c)| c))
        .expect("the print line's comment says what it prints")
        .replace("127.0.0.1:7000", &address);
    let run = tokio::time::timeout(
        PATIENCE,
        Command::new("python3").arg("-c").arg(&code).output(),
    )
    .await
    .expect("the Python client finishes")
    .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), expected);
    server.kill().await.unwrap();
}
