//! A tour of wire protocol v1: encodes a frame of every kind, prints it field by field, decodes it back, shows
//! the codec refusing hostile input without losing the connection, and measures encode + decode throughput.
//!
//! Run with `cargo run --release -p examples --bin wire-tour`.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rpc_codec::{
    Bincode, Config, FrameCodec, Header, Metadata, PayloadCodec, ReceivedRef, Status, WriteBuf,
    method_id,
};
use serde::{Deserialize, Serialize};

/// The argument of the throughput run: a small call of about 32 bytes.
#[derive(Serialize, Deserialize)]
struct Reading {
    sensor: u64,
    value: f64,
    name: String,
    urgent: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "wire protocol v1: a 28-byte header, then metadata, then the payload (docs/PROTOCOL.md)\n"
    );
    frames_of_every_kind()?;
    hostile_input()?;
    throughput()?;
    Ok(())
}

/// Prints `frame` as header fields, metadata and payload.
fn show(frame: &[u8]) {
    const FIELDS: [(&str, usize); 10] = [
        ("magic", 2),
        ("version", 1),
        ("kind", 1),
        ("flags", 1),
        ("status", 1),
        ("metadata_len", 2),
        ("request_id", 8),
        ("method_id", 4),
        ("deadline_us", 4),
        ("payload_len", 4),
    ];
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut at = 0;
    for (name, len) in FIELDS {
        println!("    {:<24} {name}", hex(&frame[at..at + len]));
        at += len;
    }
    let metadata_len = usize::from(u16::from_le_bytes([frame[6], frame[7]]));
    if metadata_len > 0 {
        println!("    {:<24} metadata", hex(&frame[at..at + metadata_len]));
        at += metadata_len;
    }
    if at < frame.len() {
        println!("    {:<24} payload", hex(&frame[at..]));
    }
}

fn frames_of_every_kind() -> Result<(), Box<dyn std::error::Error>> {
    let codec = FrameCodec::default();
    let add = method_id("Calc", "add");
    let trace = Metadata::from_pairs([("trace-id", "abc123")])?;
    let none = Metadata::new();
    let mut out = WriteBuf::new();
    let mut described = Vec::new();
    let mut put = |label: &str, r: Result<(), rpc_codec::EncodeError>, out: &WriteBuf| {
        described.push((label.to_owned(), out.len()));
        r
    };
    let r = codec.encode_value(
        &Header::request(1, add).with_deadline(Duration::from_millis(250)),
        &trace,
        &(2i32, 3i32),
        &Bincode,
        &mut out,
    );
    put(
        "request: Calc.add(2, 3), deadline 250 ms, trace-id",
        r,
        &out,
    )?;
    let r = codec.encode_value(&Header::response(1), &none, &5i32, &Bincode, &mut out);
    put("response: 5", r, &out)?;
    let r = codec.encode_value(
        &Header::app_error(2),
        &none,
        "division by zero",
        &Bincode,
        &mut out,
    );
    put("response with APP_ERROR: the application's error", r, &out)?;
    let r = codec.encode_bytes(
        &Header::error(3, Status::Unimplemented),
        &none,
        b"no such method",
        &mut out,
    );
    put("error: status 12 unimplemented", r, &out)?;
    let r = codec.encode_bytes(&Header::cancel(4), &none, b"", &mut out);
    put("cancel request 4", r, &out)?;
    let r = codec.encode_value(
        &Header::one_way(5, method_id("Log", "write")),
        &none,
        "hello",
        &Bincode,
        &mut out,
    );
    put("one-way: Log.write(\"hello\")", r, &out)?;
    let r = codec.encode_bytes(&Header::ping(7), &none, b"", &mut out);
    put("ping, nonce 7", r, &out)?;
    let r = codec.encode_bytes(&Header::pong(7), &none, b"", &mut out);
    put("pong, nonce 7", r, &out)?;
    let r = codec.encode_bytes(
        &Header::go_away(5, Status::Ok),
        &none,
        b"draining",
        &mut out,
    );
    put(
        "go-away: nothing above request 5 will be processed",
        r,
        &out,
    )?;

    let bytes = out.as_slice();
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut start = 0;
    for (i, (label, end)) in described.iter().enumerate() {
        println!("  {label}");
        if i == 0 {
            show(&bytes[start..*end]);
        } else {
            println!("    {}", hex(&bytes[start..*end]));
        }
        start = *end;
    }
    println!("\n  decoded back, in one pass over the buffer:");
    let mut reader = FrameCodec::default();
    let mut at = 0;
    while let (n @ 1.., item) = reader.parse(&bytes[at..])? {
        if let Some(ReceivedRef::Frame(f)) = item {
            let h = f.header();
            let detail = match h.kind {
                rpc_codec::Kind::Request => {
                    format!("args {:?}", Bincode.decode::<(i32, i32)>(f.payload)?)
                }
                rpc_codec::Kind::Response if h.flags.contains(rpc_codec::Flags::APP_ERROR) => {
                    format!("app error {:?}", Bincode.decode::<&str>(f.payload)?)
                }
                rpc_codec::Kind::Response => format!("value {}", Bincode.decode::<i32>(f.payload)?),
                rpc_codec::Kind::OneWay => format!("args {:?}", Bincode.decode::<&str>(f.payload)?),
                _ if f.payload.is_empty() => String::new(),
                _ => format!("{:?}", String::from_utf8_lossy(f.payload)),
            };
            let md: Vec<_> = f
                .metadata
                .iter()
                .map(|(k, v)| format!(" {k}={}", String::from_utf8_lossy(v)))
                .collect();
            println!(
                "    {:<9} id {:<3} {detail}{}",
                h.kind.as_str(),
                h.request_id,
                md.concat()
            );
        }
        at += n;
    }
    println!();
    Ok(())
}

fn hostile_input() -> Result<(), Box<dyn std::error::Error>> {
    println!("  hostile input costs a clear error, never a panic or an allocation:");
    let mut codec = FrameCodec::default();
    let err = codec.parse(b"GET / HTTP/1.1\r\n").unwrap_err();
    println!("    an HTTP client on the port      -> {err}");

    // A frame over the receiver's limit, then a ping: the first is refused from its header and its bytes are
    // skipped as they arrive, without being stored; the ping after it is read normally.
    let mut stream = Header::request(9, method_id("Calc", "add"))
        .to_bytes(0, 100_000)
        .to_vec();
    stream.extend_from_slice(&[0xAB; 100_000]);
    stream.extend_from_slice(&Header::ping(42).to_bytes(0, 0));
    let mut limited = FrameCodec::new(Config {
        max_frame_len: 64 * 1024,
        ..Config::default()
    });
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    for read in stream.chunks(16 * 1024) {
        buf.extend_from_slice(read);
        while let Some(item) = limited.decode_with(&mut buf, |item| match item {
            ReceivedRef::Refused(r) => format!("refused: {}", r.reason),
            ReceivedRef::Frame(f) => format!("then a {} frame, read normally", f.header().kind),
        })? {
            seen.push(item);
        }
    }
    println!("    a 100 kB frame, limit 64 KiB    -> {}", seen.join("; "));
    println!(
        "                                       (its bytes skipped as they came, never buffered whole)"
    );

    // A payload whose string claims 2^62 bytes: refused before anything is allocated for it.
    let mut forged = vec![0xfd];
    forged.extend_from_slice(&(1u64 << 62).to_le_bytes());
    forged.extend_from_slice(b"abc");
    let err = Bincode.decode::<String>(&forged).unwrap_err();
    println!("    a string claiming 2^62 bytes    -> {err}");
    let mut forged = vec![0xfd];
    forged.extend_from_slice(&u64::MAX.to_le_bytes());
    let err = Bincode.decode::<Vec<u64>>(&forged).unwrap_err();
    println!("    a list claiming 2^64-1 elements -> {err}\n");
    Ok(())
}

fn throughput() -> Result<(), Box<dyn std::error::Error>> {
    const FRAMES: u64 = 1_000_000;
    let reading = Reading {
        sensor: 1_234_567,
        value: 21.5,
        name: "boiler-3".to_owned(),
        urgent: false,
    };
    let codec = FrameCodec::default();
    let method = method_id("Telemetry", "report");
    let mut out = WriteBuf::with_capacity(64 * 1024);
    let mut reader = FrameCodec::default();
    let (mut encode, mut decode, mut bytes) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut id = 0;
    while id < FRAMES {
        out.clear();
        let start = Instant::now();
        for _ in 0..1000 {
            id += 1;
            codec.encode_value(
                &Header::request(id, method),
                &Metadata::new(),
                &reading,
                &Bincode,
                &mut out,
            )?;
        }
        encode += start.elapsed();
        bytes += out.len() as u64;
        let start = Instant::now();
        let (mut at, buf) = (0, out.as_slice());
        while let (n @ 1.., Some(ReceivedRef::Frame(f))) = reader.parse(&buf[at..])? {
            std::hint::black_box(Bincode.decode::<Reading>(f.payload)?);
            at += n;
        }
        decode += start.elapsed();
    }
    let rate = |d: Duration| FRAMES as f64 / d.as_secs_f64() / 1e6;
    println!(
        "  throughput, {FRAMES} request frames of {} bytes:",
        bytes / FRAMES
    );
    println!("    encode: {:>6.1} M frames/s", rate(encode));
    println!(
        "    decode: {:>6.1} M frames/s  (frame parsed in place, value deserialized)",
        rate(decode)
    );
    println!("    (criterion figures: cargo bench -p benches --bench serialization)");
    Ok(())
}
