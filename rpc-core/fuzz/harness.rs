//! The stream fuzz harness (protocol 1.1), shared by the cargo-fuzz target `stream_peer` and the `cargo test`
//! replay of its inputs (`rpc-core/tests/fuzz_streams.rs`): a hostile client drives a real server connection
//! ([`rpc_core::Server::serve_io`] over an in-memory pipe, on a paused clock) through random interleavings of
//! stream opens, items, credits, ends, cancels and unary calls, and reads what the server sends back.
//!
//! Input: up to [`MAX_OPS`] operations, each an opcode byte and four argument bytes. Opcodes (the byte modulo
//! 8): 0 open a stream of one of the service's methods (or a plain request for it), 1 an item (a valid one, or
//! garbage; plain, flagged `APP_ERROR`, in a batch whole or cut short, and compressed with lz4 or not), 2 a
//! credit of any size, 3 an end, 4 a cancel,
//! 5 a unary call, 6 read what the server sent, 7 let up to 255 ms pass.
//!
//! Besides "no panic" and "no hang", it checks every frame the server sends:
//! - it decodes as a frame of the protocol;
//! - an item belongs to a stream that the harness opened on a method that streams to it, and starts only while
//!   the credit the harness granted that stream is not spent (an item may overshoot it);
//! - nothing comes for a stream after the server ended it (an `End` or an `Error`);
//! - at the end, the connection still answers a unary call: no sequence of stream frames breaks it.

use std::collections::HashMap;
use std::time::Duration;

use rpc_core::codec::{
    Bincode, Flags, FrameCodec, Header, Kind, Metadata, PayloadCodec, Received, WriteBuf, method_id,
};
use rpc_core::{Server, ServerConfig, Stream, Streaming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Operations read from one input, at most.
pub(crate) const MAX_OPS: usize = 64;

/// The service under test: streams of every kind, a consumer that never reads, a unary method.
#[rpc_core::service]
pub(crate) trait Streams {
    async fn count(&self, n: u32) -> impl Stream<Item = u32>;
    async fn blocks(&self, n: u32, size: u16) -> impl Stream<Item = Vec<u8>>;
    async fn sum(&self, items: Streaming<u32>) -> Result<u64, String>;
    async fn echo(&self, items: Streaming<u32>) -> impl Stream<Item = Result<u32, String>>;
    async fn hold(&self, items: Streaming<u32>) -> u32;
    async fn ping(&self, n: u32) -> u32;
    async fn breaks(&self, n: u32) -> impl Stream<Item = u32>;
}

struct Impl;

impl Streams for Impl {
    async fn count(&self, n: u32) -> impl Stream<Item = u32> {
        futures_util::stream::iter(0..n % 2000)
    }

    async fn blocks(&self, n: u32, size: u16) -> impl Stream<Item = Vec<u8>> {
        futures_util::stream::iter((0..n % 64).map(move |i| vec![i as u8; usize::from(size)]))
    }

    async fn sum(&self, mut items: Streaming<u32>) -> Result<u64, String> {
        let mut total = 0u64;
        while let Some(item) = items.next().await {
            total += u64::from(item.map_err(|e| e.to_string())?);
        }
        Ok(total)
    }

    async fn echo(&self, items: Streaming<u32>) -> impl Stream<Item = Result<u32, String>> {
        use futures_util::StreamExt;
        items.map(|item| item.map_err(|e| e.to_string()))
    }

    async fn hold(&self, items: Streaming<u32>) -> u32 {
        let _held = items;
        std::future::pending().await
    }

    async fn ping(&self, n: u32) -> u32 {
        n
    }

    async fn breaks(&self, n: u32) -> impl Stream<Item = u32> {
        use futures_util::StreamExt;
        let n = n % 300;
        futures_util::stream::iter(0..=n).map(move |i| {
            assert!(i < n, "{BROKE} {n} items");
            i
        })
    }
}

/// The methods an `open` names, by the argument byte modulo their count, and whether each sends items to the
/// client and takes items from it.
const METHODS: [(&str, bool, bool); 7] = [
    ("count", true, false),
    ("blocks", true, false),
    ("sum", false, true),
    ("echo", true, true),
    ("hold", false, true),
    ("ping", false, false),
    ("breaks", true, false),
];

/// What the harness knows of a stream it opened.
#[derive(Debug, Default)]
struct Opened {
    /// The server sends it items.
    receives: bool,
    /// Credit granted: the initial 64 KiB and every `Credit` sent.
    granted: u64,
    /// What the items received cost.
    used: u64,
    /// The server ended it (`End` or `Error`): nothing more may come.
    ended: bool,
    /// For `count(n)` and `breaks(n)`: the items due, `0..n` in order, and the next one; and whether the
    /// stream must end with an error after them (`breaks`) rather than well.
    due: Option<Due>,
}

/// The items a stream must carry, in order.
#[derive(Debug)]
struct Due {
    n: u32,
    next: u32,
    breaks: bool,
}

/// The client side of the connection, and what it saw.
struct Peer {
    reader: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    codec: FrameCodec,
    received: bytes::BytesMut,
    streams: HashMap<u64, Opened>,
    next_id: u64,
    /// Request ids of unary calls, and whether each was answered.
    calls: HashMap<u64, bool>,
    /// Streams the harness cancelled: frames under way may still come for them, and are not checked.
    cancelled: std::collections::HashSet<u64>,
}

impl Peer {
    /// Writes `bytes`, reading what the server sends meanwhile (so that neither side waits on the other).
    async fn send(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while at < bytes.len() {
            let mut chunk = [0u8; 16 * 1024];
            tokio::select! {
                written = self.writer.write(&bytes[at..]) => match written {
                    Ok(0) | Err(_) => return,
                    Ok(n) => at += n,
                },
                read = self.reader.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                },
            }
        }
        self.check();
    }

    /// Reads what the server sent within `wait`, and checks it.
    async fn read(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.reader.read(&mut chunk)).await
        {
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&chunk[..n]);
            self.check();
        }
        self.check();
    }

    /// Checks every whole frame received so far.
    fn check(&mut self) {
        loop {
            let frame = match self.codec.decode_with(&mut self.received, |r| match r {
                rpc_core::codec::ReceivedRef::Frame(f) => Received::Frame(f.to_frame()),
                rpc_core::codec::ReceivedRef::Refused(r) => Received::Refused(r),
            }) {
                Ok(Some(Received::Frame(frame))) => frame,
                Ok(Some(Received::Refused(r))) => {
                    panic!("the server sent a frame over the limits: {r:?}")
                }
                Ok(None) => return,
                Err(e) => panic!("the server sent bytes that are not frames: {e}"),
            };
            let h = frame.header;
            if let Some(answered) = self.calls.get_mut(&h.request_id) {
                *answered = true;
                continue;
            }
            if self.cancelled.contains(&h.request_id) {
                continue;
            }
            let Some(stream) = self.streams.get_mut(&h.request_id) else {
                assert!(
                    h.request_id == 0 || matches!(h.kind, Kind::Pong | Kind::GoAway),
                    "a frame for request {} that was never sent: {h:?}",
                    h.request_id
                );
                continue;
            };
            assert!(!stream.ended, "a frame after the stream ended: {h:?}");
            match h.kind {
                Kind::Item => {
                    assert!(
                        stream.receives,
                        "an item on a stream of a method that sends none: {h:?}"
                    );
                    assert!(
                        stream.used < stream.granted,
                        "an item started with its credit spent: {} of {} used",
                        stream.used,
                        stream.granted
                    );
                    stream.used += (28 + frame.payload.len()) as u64;
                    if let Some(due) = &mut stream.due {
                        due.take(&frame);
                    }
                }
                Kind::End | Kind::Error | Kind::Response => {
                    stream.ended = true;
                    if let Some(due) = &stream.due {
                        due.ended(h.kind);
                    }
                }
                Kind::Credit => {}
                other => panic!("a frame of kind {other} on a stream"),
            }
        }
    }

    /// The id of a stream the harness opened, picked by `pick`; an unknown one if there is none.
    fn pick(&self, pick: u8) -> u64 {
        let mut ids: Vec<u64> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        match ids.len() {
            0 => u64::from(pick) + 1,
            n => ids[usize::from(pick) % n],
        }
    }
}

/// `value` in bincode.
fn encoded<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let len = Bincode
        .encoded_len(value)
        .expect("the harness's values encode");
    Bincode
        .encode_to_vec(value, len)
        .expect("the harness's values encode")
}

impl Due {
    /// Checks the items of `frame` (one, or a batch): the next ones due, in order.
    fn take(&mut self, frame: &rpc_core::codec::Frame) {
        let mut items = Vec::new();
        if frame.header.flags.contains(Flags::BATCH) {
            let mut at = 0;
            while let Some(item) = rpc_core::codec::items::next(&frame.payload, &mut at) {
                items.push(item.expect("the server's batches are well formed").to_vec());
            }
        } else {
            items.push(frame.payload.to_vec());
        }
        for item in items {
            let value: u32 = Bincode.decode(&item).expect("an item decodes as u32");
            assert_eq!(value, self.next, "items out of order, or lost");
            assert!(value < self.n, "more items than the stream has");
            self.next += 1;
        }
    }

    /// Checks how the stream ended (`kind`): well after every item, or, for a producer that breaks, with an
    /// error after every item it made.
    fn ended(&self, kind: Kind) {
        if self.breaks {
            assert_eq!(
                kind,
                Kind::Error,
                "a producer that broke ended its stream well"
            );
        } else if kind == Kind::End {
            assert_eq!(self.next, self.n, "the stream ended before its last item");
        }
    }
}

/// A frame with `header` and `payload`, as bytes.
fn frame(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut out = WriteBuf::new();
    FrameCodec::default()
        .encode_bytes(&header, &Metadata::new(), payload, &mut out)
        .expect("the harness's frames encode");
    out.as_slice().to_vec()
}

/// The message of the panic that `breaks` makes on purpose (the server catches it and ends the stream).
const BROKE: &str = "the producer broke after";

/// Runs one input; panics on a broken check.
pub(crate) fn run(data: &[u8]) {
    // libFuzzer's panic hook aborts on every panic, caught or not: the one `breaks` makes on purpose, which
    // the server catches, passes by it.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with(BROKE) {
                previous(info);
            }
        }));
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(drive(data));
}

async fn drive(data: &[u8]) {
    let config = ServerConfig {
        max_streams_per_connection: 4,
        stream_window: 0,
        ..ServerConfig::default()
    };
    let server = Server::builder()
        .config(config)
        .add_service(StreamsServer::new(Impl))
        .build()
        .expect("the server builds");
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let served = tokio::spawn(async move { server.serve_io(theirs).await });
    let (reader, writer) = tokio::io::split(ours);
    let mut peer = Peer {
        reader,
        writer,
        codec: FrameCodec::default(),
        received: bytes::BytesMut::new(),
        streams: HashMap::new(),
        next_id: 1,
        calls: HashMap::new(),
        cancelled: std::collections::HashSet::new(),
    };
    for op in data.chunks_exact(5).take(MAX_OPS) {
        let (code, args) = (op[0] % 8, [op[1], op[2], op[3], op[4]]);
        match code {
            0 => open(&mut peer, args).await,
            1 => item(&mut peer, args).await,
            2 => {
                let id = peer.pick(args[0]);
                let amount = u32::from_le_bytes(args) >> (args[1] % 24);
                if let Some(stream) = peer.streams.get_mut(&id) {
                    stream.granted = stream.granted.saturating_add(u64::from(amount));
                }
                peer.send(&frame(Header::credit(id), &amount.to_le_bytes()))
                    .await;
            }
            3 => {
                let id = peer.pick(args[0]);
                peer.send(&frame(Header::end(id), &[])).await;
            }
            4 => {
                let id = peer.pick(args[0]);
                peer.send(&frame(Header::cancel(id), &[])).await;
                // Frames under way may still come; the stream is no longer checked.
                if peer.streams.remove(&id).is_some() {
                    peer.cancelled.insert(id);
                }
            }
            5 => call(&mut peer, u32::from(args[0])).await,
            6 => peer.read(Duration::from_millis(u64::from(args[0]))).await,
            _ => tokio::time::sleep(Duration::from_millis(u64::from(args[0]))).await,
        }
    }
    // The connection still serves a unary call.
    let id = peer.next_id;
    call(&mut peer, 7).await;
    for _ in 0..100 {
        if peer.calls[&id] {
            break;
        }
        peer.read(Duration::from_millis(100)).await;
    }
    assert!(peer.calls[&id], "the connection no longer answers a call");
    drop(peer);
    tokio::time::timeout(Duration::from_secs(60), served)
        .await
        .expect("the connection ends once its peer leaves")
        .expect("the connection's task does not panic");
}

/// Opens a stream (or sends a plain request) of the method `args[0]` names.
async fn open(peer: &mut Peer, args: [u8; 4]) {
    let (name, sends, takes) = METHODS[usize::from(args[0]) % METHODS.len()];
    let id = peer.next_id;
    peer.next_id += 1;
    let method = method_id("Streams", name);
    // Mostly as the method asks; sometimes the other way, which the server must refuse on the stream alone.
    let streaming = sends || takes;
    let as_stream = if args[1].is_multiple_of(8) {
        !streaming
    } else {
        streaming
    };
    let header = match as_stream {
        true => Header::stream(id, method),
        false => Header::request(id, method),
    };
    let n = u32::from(args[2]) * 8;
    let payload = match name {
        "count" | "ping" | "breaks" => encoded(&(n,)),
        "blocks" => encoded(&(n, u16::from(args[3]) * 64)),
        _ => Vec::new(),
    };
    if as_stream {
        let due = match name {
            "count" => Some(Due {
                n: n % 2000,
                next: 0,
                breaks: false,
            }),
            "breaks" => Some(Due {
                n: n % 300,
                next: 0,
                breaks: true,
            }),
            _ => None,
        };
        peer.streams.insert(
            id,
            Opened {
                receives: sends,
                granted: 64 * 1024,
                due: due.filter(|_| streaming),
                ..Opened::default()
            },
        );
    } else {
        peer.calls.insert(id, false);
    }
    peer.send(&frame(header, &payload)).await;
}

/// Sends an item on a stream `args[0]` picks: a `u32` or garbage, plain, flagged or compressed.
async fn item(peer: &mut Peer, args: [u8; 4]) {
    let id = peer.pick(args[0]);
    let value = u32::from(args[2]) << (args[3] % 24);
    let mut payload = match args[1] % 4 {
        0 => vec![args[2]; usize::from(args[3]) * 4],
        _ => encoded(&value),
    };
    let mut flags = Flags::EMPTY;
    if args[1] & 0x10 != 0 {
        flags = flags.with(Flags::APP_ERROR);
    }
    if args[1] & 0x40 != 0 {
        // A batch of one to three copies of the item; with 0x80, cut short by a byte.
        let mut batch = Vec::new();
        for _ in 0..=args[3] % 3 {
            rpc_core::codec::items::push(&mut batch, |out| {
                out.extend_from_slice(&payload);
                Ok::<_, ()>(())
            })
            .expect("a batch builds");
        }
        if args[1] & 0x80 != 0 {
            batch.pop();
        }
        payload = batch;
        flags = flags.with(Flags::BATCH);
    }
    if args[1] & 0x20 != 0 {
        let mut packed = Vec::new();
        rpc_core::codec::compression::compress(rpc_core::Encoding::Lz4, &payload, &mut packed)
            .expect("lz4 compresses");
        payload = packed;
        flags = flags.with(Flags::LZ4);
    }
    let header = Header {
        flags,
        ..Header::item(id)
    };
    peer.send(&frame(header, &payload)).await;
}

/// Calls `ping(n)` with the next request id.
async fn call(peer: &mut Peer, n: u32) {
    let id = peer.next_id;
    peer.next_id += 1;
    peer.calls.insert(id, false);
    let payload = encoded(&(n,));
    peer.send(&frame(
        Header::request(id, method_id("Streams", "ping")),
        &payload,
    ))
    .await;
}
