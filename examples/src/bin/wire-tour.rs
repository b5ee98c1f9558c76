//! A tour of wire protocol v1: encodes a frame of every kind (the calls and answers of `docs/PROTOCOL.md`'s
//! running example, the `Calc` service of `calc-server`), prints it field by field, decodes it back, shows the
//! codec refusing hostile input without losing the connection, and measures encode + decode throughput. It
//! checks what it shows: if a frame does not decode back to what was encoded, or hostile input is not refused
//! as shown, it says which and exits with status 1.
//!
//! Run with `cargo run --release -p examples --bin wire-tour`.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use examples::calc::{Answer, CalcError};
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

type Error = Box<dyn std::error::Error>;

fn main() -> std::process::ExitCode {
    println!(
        "wire protocol v1: a 28-byte header, then metadata, then the payload (docs/PROTOCOL.md)\n"
    );
    match frames_of_every_kind()
        .and_then(|()| hostile_input())
        .and_then(|()| throughput())
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wire-tour: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `Ok` if `holds`, else an error saying what did not hold.
fn check(holds: bool, what: impl FnOnce() -> String) -> Result<(), Error> {
    if holds {
        Ok(())
    } else {
        Err(format!("this did not hold: {}", what()).into())
    }
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

fn frames_of_every_kind() -> Result<(), Error> {
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
        &(2i64, 3i64),
        &Bincode,
        &mut out,
    );
    put(
        "request: Calc.add(2, 3), deadline 250 ms, trace-id",
        r,
        &out,
    )?;
    let answer = Answer {
        value: 5,
        instance: String::from("127.0.0.1:7000"),
    };
    let r = codec.encode_value(&Header::response(1), &none, &answer, &Bincode, &mut out);
    put(
        "response: Answer { value: 5, instance: \"127.0.0.1:7000\" }",
        r,
        &out,
    )?;
    let r = codec.encode_value(
        &Header::app_error(2),
        &none,
        &CalcError::DivisionByZero,
        &Bincode,
        &mut out,
    );
    put(
        "response with APP_ERROR: Calc.div(7, 0) answers CalcError::DivisionByZero",
        r,
        &out,
    )?;
    let r = codec.encode_bytes(
        &Header::error(3, Status::Unimplemented),
        &none,
        b"no method with id 0x12345678 on this server",
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
        b"server shutting down",
        &mut out,
    );
    put(
        "go-away: the last request id is 5; nothing above it will be processed",
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
    let mut decoded = Vec::new();
    while let (n @ 1.., item) = reader.parse(&bytes[at..])? {
        if let Some(ReceivedRef::Frame(f)) = item {
            let h = f.header();
            decoded.push((h.kind, h.request_id));
            let detail = match h.kind {
                rpc_codec::Kind::Request => {
                    let args = Bincode.decode::<(i64, i64)>(f.payload)?;
                    check(args == (2, 3), || {
                        format!("the request's arguments: {args:?}")
                    })?;
                    format!("args {args:?}")
                }
                rpc_codec::Kind::Response if h.flags.contains(rpc_codec::Flags::APP_ERROR) => {
                    let error = Bincode.decode::<CalcError>(f.payload)?;
                    check(error == CalcError::DivisionByZero, || {
                        format!("the application error: {error:?}")
                    })?;
                    format!("app error {error:?}")
                }
                rpc_codec::Kind::Response => {
                    let value = Bincode.decode::<Answer>(f.payload)?;
                    check(value == answer, || format!("the response: {value:?}"))?;
                    format!("value {value:?}")
                }
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
    use rpc_codec::Kind::*;
    let expected = [
        (Request, 1),
        (Response, 1),
        (Response, 2),
        (Error, 3),
        (Cancel, 4),
        (OneWay, 5),
        (Ping, 7),
        (Pong, 7),
        (GoAway, 5),
    ];
    check(decoded == expected && at == bytes.len(), || {
        format!(
            "the frames decoded back ({decoded:?}, {at} of {} bytes) are those encoded",
            bytes.len()
        )
    })?;
    println!();
    Ok(())
}

fn hostile_input() -> Result<(), Error> {
    println!("  hostile input costs a clear error, never a panic or an allocation:");
    let mut codec = FrameCodec::default();
    let Err(err) = codec.parse(b"GET / HTTP/1.1\r\n") else {
        return Err("an HTTP request was not refused".into());
    };
    check(err.to_string().contains("looks like HTTP/1"), || {
        format!("the refusal of HTTP names it: {err}")
    })?;
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
    check(
        seen == [
            "refused: frame length 100028 exceeds limit 65536",
            "then a ping frame, read normally",
        ],
        || format!("a frame over the limit is refused and the next one read: {seen:?}"),
    )?;
    check(buf.capacity() < 64 * 1024, || {
        format!(
            "the refused frame was not buffered: the buffer holds {} bytes",
            buf.capacity()
        )
    })?;
    println!("    a 100 kB frame, limit 64 KiB    -> {}", seen.join("; "));
    println!(
        "                                       (its bytes skipped as they came, never buffered whole)"
    );

    // A payload whose string claims 2^62 bytes: refused before anything is allocated for it.
    let mut forged = vec![0xfd];
    forged.extend_from_slice(&(1u64 << 62).to_le_bytes());
    forged.extend_from_slice(b"abc");
    let Err(err) = Bincode.decode::<String>(&forged) else {
        return Err("a string claiming 2^62 bytes decoded".into());
    };
    println!("    a string claiming 2^62 bytes    -> {err}");
    let mut forged = vec![0xfd];
    forged.extend_from_slice(&u64::MAX.to_le_bytes());
    let Err(err) = Bincode.decode::<Vec<u64>>(&forged) else {
        return Err("a list claiming 2^64-1 elements decoded".into());
    };
    println!("    a list claiming 2^64-1 elements -> {err}\n");
    Ok(())
}

fn throughput() -> Result<(), Error> {
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
