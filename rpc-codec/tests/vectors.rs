//! Checks `docs/PROTOCOL.md` against the implementation byte for byte: every frame vector, every row of the
//! value-encoding table, every refused payload and every refused input. If the document and the code disagree,
//! this fails. (That the shipped servers answer what the document's running example says is checked against
//! the servers themselves, in `examples/tests/protocol_doc.rs`.)

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use rpc_codec::{
    Bincode, Flags, FrameCodec, FrameError, Header, HeaderError, LimitExceeded, Metadata,
    PayloadCodec, Received, Status, WriteBuf, method_id,
};
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

#[path = "support/protocol_doc.rs"]
mod protocol_doc;

use protocol_doc::{DOC, doc_vector, hex};

fn encode<T: Serialize + ?Sized>(header: Header, metadata: &Metadata, value: &T) -> Vec<u8> {
    let mut buf = WriteBuf::new();
    FrameCodec::default()
        .encode_value(&header, metadata, value, &Bincode, &mut buf)
        .unwrap();
    buf.as_slice().to_vec()
}

fn encode_raw(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut buf = WriteBuf::new();
    FrameCodec::default()
        .encode_bytes(&header, &Metadata::new(), payload, &mut buf)
        .unwrap();
    buf.as_slice().to_vec()
}

fn decode_one(bytes: &[u8]) -> rpc_codec::Frame {
    let mut buf = BytesMut::from(bytes);
    match FrameCodec::default().decode(&mut buf) {
        Ok(Some(Received::Frame(frame))) if buf.is_empty() => frame,
        other => panic!("{} did not decode to one frame: {other:?}", hex(bytes)),
    }
}

/// Asserts that the document's vector equals what the encoder writes, and that it decodes back to `header`.
fn check(name: &str, encoded: Vec<u8>, header: Header) -> rpc_codec::Frame {
    let doc = doc_vector(name);
    assert_eq!(
        hex(&doc),
        hex(&encoded),
        "vector {name}: document vs encoder"
    );
    let frame = decode_one(&doc);
    assert_eq!(frame.header, header, "vector {name}");
    frame
}

#[test]
fn request_vector() {
    let header =
        Header::request(1, method_id("Calc", "add")).with_deadline(Duration::from_millis(250));
    let md = Metadata::from_pairs([("trace-id", "abc123")]).unwrap();
    let frame = check("request", encode(header, &md, &(2i64, 3i64)), header);
    assert_eq!(frame.metadata.get_str("trace-id"), Some("abc123"));
    let args: (i64, i64) = Bincode.decode(&frame.payload).unwrap();
    assert_eq!(args, (2, 3));
    assert_eq!(frame.header.deadline(), Some(Duration::from_millis(250)));
}

/// `examples::calc::Answer`, the result of the document's running example, written out again.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Answer {
    value: i64,
    instance: String,
}

/// `examples::calc::CalcError`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum CalcError {
    DivisionByZero,
}

#[test]
fn response_vectors() {
    let answer = Answer {
        value: 5,
        instance: "127.0.0.1:7000".to_owned(),
    };
    let frame = check(
        "response",
        encode(Header::response(1), &Metadata::new(), &answer),
        Header::response(1),
    );
    assert_eq!(Bincode.decode::<Answer>(&frame.payload).unwrap(), answer);

    let header = Header::app_error(2);
    let frame = check(
        "response-app-error",
        encode(header, &Metadata::new(), &CalcError::DivisionByZero),
        header,
    );
    assert!(frame.header.flags.contains(rpc_codec::Flags::APP_ERROR));
    assert_eq!(
        Bincode.decode::<CalcError>(&frame.payload).unwrap(),
        CalcError::DivisionByZero
    );
}

#[test]
fn compressed_request_vector() {
    let mut packed = Vec::new();
    rpc_codec::compression::compress(rpc_codec::Encoding::Lz4, &[0x04, 0x06], &mut packed).unwrap();
    let header = Header {
        flags: rpc_codec::Flags::LZ4,
        ..Header::request(2, method_id("Calc", "add"))
    };
    let frame = check("request-lz4", encode_raw(header, &packed), header);
    assert_eq!(
        rpc_codec::compression::decompress(rpc_codec::Encoding::Lz4, &frame.payload, 1024).unwrap(),
        [0x04, 0x06]
    );
}

#[test]
fn stream_vectors() {
    let open = Header::stream(5, method_id("Feed", "count"));
    check("stream-open", encode_raw(open, &[0x05, 0x03]), open);
    let credit = Header::credit(5);
    let frame = check(
        "stream-credit",
        encode_raw(credit, &(3u32 * 65_536).to_le_bytes()),
        credit,
    );
    assert_eq!(frame.payload[..], 196_608u32.to_le_bytes());
    let item = Header::item(5);
    check("stream-item", encode_raw(item, &[0x05]), item);
    let app_error = Header::app_error_item(5);
    let frame = check(
        "stream-item-app-error",
        encode_raw(app_error, &[0x02, b'n', b'o']),
        app_error,
    );
    let value: String = rpc_codec::Bincode.decode(&frame.payload).unwrap();
    assert_eq!(value, "no");
    let batch = Header {
        flags: rpc_codec::Flags::BATCH,
        ..Header::item(5)
    };
    let mut items = Vec::new();
    for n in [5u8, 6, 7] {
        rpc_codec::items::push(&mut items, |out| {
            out.push(n);
            Ok::<_, ()>(())
        })
        .unwrap();
    }
    let frame = check("stream-batch", encode_raw(batch, &items), batch);
    let mut at = 0;
    let mut read = Vec::new();
    while let Some(item) = rpc_codec::items::next(&frame.payload, &mut at) {
        read.push(rpc_codec::Bincode.decode::<u64>(item.unwrap()).unwrap());
    }
    assert_eq!(read, [5, 6, 7]);
    let end = Header::end(5);
    check("stream-end", encode_raw(end, &[]), end);
}

/// The two JSON vectors of protocol 1.2 (section 12.12), with the JSON text as the document writes it. (That it
/// is what serde_json writes is checked with feature `json`, below.)
#[test]
fn json_call_vectors() {
    let header = Header {
        flags: Flags::JSON,
        ..Header::request(1, method_id("Calc", "add"))
    };
    let frame = check(
        "request-json",
        encode_raw(header, br#"{"a":2,"b":3}"#),
        header,
    );
    assert!(frame.header.flags.contains(Flags::JSON));
    assert_eq!(frame.header.deadline(), None);
    assert!(frame.metadata.is_empty());

    let header = Header {
        flags: Flags::APP_ERROR.with(Flags::JSON),
        ..Header::app_error(2)
    };
    assert_eq!(header.flags.bits(), 0x11);
    check(
        "response-app-error-json",
        encode_raw(header, br#""DivisionByZero""#),
        header,
    );
}

/// The JSON vectors are what the codec writes for the call and its answer, and read back as the method's
/// arguments and error.
#[cfg(feature = "json")]
#[test]
fn json_call_vectors_are_what_serde_json_writes() {
    use rpc_codec::JsonCall;

    fn encode_json<T: Serialize + ?Sized>(header: Header, value: &T) -> Vec<u8> {
        let mut buf = WriteBuf::new();
        FrameCodec::default()
            .encode_value(&header, &Metadata::new(), value, &JsonCall, &mut buf)
            .unwrap();
        buf.as_slice().to_vec()
    }

    /// A JSON tool's call of `Calc.add`: its arguments by name.
    #[derive(Serialize)]
    struct AddArgs {
        a: i64,
        b: i64,
    }

    let header = Header {
        flags: Flags::JSON,
        ..Header::request(1, method_id("Calc", "add"))
    };
    let frame = check(
        "request-json",
        encode_json(header, &AddArgs { a: 2, b: 3 }),
        header,
    );
    let (array, missing) = rpc_codec::json_call::named_args(&frame.payload, &["a", "b"]).unwrap();
    assert!(missing.is_empty());
    assert_eq!(JsonCall.decode::<(i64, i64)>(&array).unwrap(), (2, 3));

    let header = Header {
        flags: Flags::APP_ERROR.with(Flags::JSON),
        ..Header::app_error(2)
    };
    let frame = check(
        "response-app-error-json",
        encode_json(header, &CalcError::DivisionByZero),
        header,
    );
    assert_eq!(
        JsonCall.decode::<CalcError>(&frame.payload).unwrap(),
        CalcError::DivisionByZero
    );
}

/// `examples::hello::GreetError`.
#[cfg(feature = "json")]
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum GreetError {
    NobodyToGreet,
    TooMany { got: usize, max: usize },
}

/// Section 15's table of values in JSON, row by row, and each row's text read back as its value.
#[cfg(feature = "json")]
#[test]
fn json_value_table() {
    use rpc_codec::JsonCall;

    fn json<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        v: T,
    ) -> String {
        let len = JsonCall.encoded_len(&v).unwrap();
        let text = JsonCall.encode_to_vec(&v, len).unwrap();
        assert_eq!(JsonCall.decode::<T>(&text).unwrap(), v, "read back");
        String::from_utf8(text).unwrap()
    }

    let answer = Answer {
        value: 5,
        instance: "127.0.0.1:7000".to_owned(),
    };
    let bytes = json(serde_bytes::ByteBuf::from(vec![1u8, 2]));
    let vec = json(vec![1u8, 2]);
    assert_eq!(bytes, vec, "the bytes form and a Vec<u8> alike");
    let expected: Vec<(&str, String)> = vec![
        (
            "`Answer { value: 5, instance: \"127.0.0.1:7000\" }`",
            json(answer),
        ),
        (
            "`CalcError::DivisionByZero`",
            json(CalcError::DivisionByZero),
        ),
        (
            "`GreetError::TooMany { got: 101, max: 100 }`",
            json(GreetError::TooMany { got: 101, max: 100 }),
        ),
        ("`Shape::Circle(5u32)`", json(Shape::Circle(5))),
        (
            "`Shape::Rect { w: 2u32, h: 3u32 }`",
            json(Shape::Rect { w: 2, h: 3 }),
        ),
        ("`None::<u8>`", json(None::<u8>)),
        ("`()`", json(())),
        ("`vec![1u8, 2]`, or the bytes `[1, 2]`", vec),
        ("`18446744073709551615u64`", json(u64::MAX)),
        ("`(1u8, \"x\")`", json((1u8, "x".to_owned()))),
    ];
    let table = DOC
        .split_once("<!-- json-table -->")
        .and_then(|(_, rest)| rest.split_once("<!-- end json-table -->"))
        .expect("json table markers")
        .0;
    let rows: Vec<(String, String)> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            (cells[0].to_owned(), cells[1].trim_matches('`').to_owned())
        })
        .collect();
    let want: Vec<(String, String)> = expected
        .into_iter()
        .map(|(v, j)| (v.to_owned(), j))
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn error_vector() {
    let header = Header::error(3, Status::Unimplemented);
    let message = "no method with id 0x12345678 on this server";
    let frame = check("error", encode_raw(header, message.as_bytes()), header);
    assert_eq!(frame.message(), message);

    let header = Header::error(1, Status::Unimplemented);
    let message = "this peer serves no methods";
    let frame = check(
        "serves-nothing",
        encode_raw(header, message.as_bytes()),
        header,
    );
    assert_eq!(frame.message(), message);
}

#[test]
fn cancel_one_way_ping_pong_go_away_vectors() {
    check(
        "cancel",
        encode_raw(Header::cancel(4), b""),
        Header::cancel(4),
    );

    let header = Header::one_way(5, method_id("Log", "write"));
    let frame = check("one-way", encode(header, &Metadata::new(), "hello"), header);
    assert_eq!(Bincode.decode::<&str>(&frame.payload).unwrap(), "hello");

    let nonce = 0x0102_0304_0506_0708;
    check(
        "ping",
        encode_raw(Header::ping(nonce), b""),
        Header::ping(nonce),
    );
    check(
        "pong",
        encode_raw(Header::pong(nonce), b""),
        Header::pong(nonce),
    );

    let header = Header::go_away(5, Status::Ok);
    let frame = check(
        "go-away",
        encode_raw(header, b"server shutting down"),
        header,
    );
    assert_eq!(frame.message(), "server shutting down");
}

#[derive(Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[allow(dead_code)]
enum Shape {
    Empty,
    Circle(u32),
    Rect { w: u32, h: u32 },
}

fn enc<T: Serialize>(v: T) -> Vec<u8> {
    Bincode.to_vec(&v).unwrap()
}

#[test]
fn value_encoding_table() {
    let expected: Vec<(&str, Vec<u8>)> = vec![
        ("`true`", enc(true)),
        ("`200u8`", enc(200u8)),
        ("`-2i8`", enc(-2i8)),
        ("`250u32`", enc(250u32)),
        ("`251u32`", enc(251u32)),
        ("`65536u32`", enc(65536u32)),
        ("`4294967296u64`", enc(4_294_967_296u64)),
        ("`0i32`", enc(0i32)),
        ("`-1i32`", enc(-1i32)),
        ("`1i32`", enc(1i32)),
        ("`-200i64`", enc(-200i64)),
        ("`1.5f32`", enc(1.5f32)),
        ("`-0.25f64`", enc(-0.25f64)),
        ("`'é'`", enc('é')),
        ("`\"hi\"`", enc("hi")),
        ("`None::<u8>`", enc(None::<u8>)),
        ("`Some(7u8)`", enc(Some(7u8))),
        ("`vec![1u16, 300]`", enc(vec![1u16, 300])),
        ("`(1u8, \"x\")`", enc((1u8, "x"))),
        ("`[3u32, 4]`", enc([3u32, 4])),
        ("`Point { x: -1i32, y: 2i32 }`", enc(Point { x: -1, y: 2 })),
        ("`Shape::Circle(5u32)` (variant 1)", enc(Shape::Circle(5))),
        (
            "`Shape::Rect { w: 2u32, h: 3u32 }` (variant 2)",
            enc(Shape::Rect { w: 2, h: 3 }),
        ),
        ("`Ok::<u8, String>(9)`", enc(Ok::<u8, String>(9))),
        ("`BTreeMap {1u8: \"a\"}`", enc(BTreeMap::from([(1u8, "a")]))),
    ];
    let table = DOC
        .split_once("<!-- payload-table -->")
        .and_then(|(_, rest)| rest.split_once("<!-- end payload-table -->"))
        .expect("payload table markers")
        .0;
    let rows: Vec<(String, String)> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            (cells[0].to_owned(), cells[1].trim_matches('`').to_owned())
        })
        .collect();
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(v, b)| (v.to_string(), hex(b)))
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn the_python_example_builds_the_same_request() {
    // Section 11 builds this header by hand; it must be what the encoder writes. (`examples/tests/protocol_doc.rs`
    // runs the example itself against a Calc server.)
    let header = Header::request(1, method_id("Calc", "add")).with_deadline(Duration::from_secs(1));
    let mut expect = b"RP\x01\x01\x00\x00\x00\x00".to_vec();
    expect.extend_from_slice(&1u64.to_le_bytes());
    expect.extend_from_slice(&method_id("Calc", "add").to_le_bytes());
    expect.extend_from_slice(&1_000_000u32.to_le_bytes());
    expect.extend_from_slice(&2u32.to_le_bytes());
    expect.extend_from_slice(&[0x04, 0x06]);
    assert_eq!(
        hex(&encode(header, &Metadata::new(), &(2i64, 3i64))),
        hex(&expect)
    );
    assert!(DOC.contains("# 2 1 0 5 127.0.0.1:7000"));
}

/// Decodes `bytes` as the type named in the refused-payload table; `Ok` if it decoded.
fn decode_as(ty: &str, bytes: &[u8]) -> Result<(), rpc_codec::PayloadError> {
    match ty {
        "`u8`" => Bincode.decode::<u8>(bytes).map(drop),
        "`u16`" => Bincode.decode::<u16>(bytes).map(drop),
        "`u64`" => Bincode.decode::<u64>(bytes).map(drop),
        "`bool`" => Bincode.decode::<bool>(bytes).map(drop),
        "`String`" => Bincode.decode::<String>(bytes).map(drop),
        "`Vec<u8>`" => Bincode.decode::<Vec<u8>>(bytes).map(drop),
        "`Vec<u64>`" => Bincode.decode::<Vec<u64>>(bytes).map(drop),
        "`Shape`" => Bincode.decode::<Shape>(bytes).map(drop),
        other => panic!("refused-payload table: no type {other} in this test"),
    }
}

#[test]
fn refused_payloads_of_the_table() {
    let table = DOC
        .split_once("<!-- refused-payload-table -->")
        .and_then(|(_, rest)| rest.split_once("<!-- end refused-payload-table -->"))
        .expect("refused-payload table markers")
        .0;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert!(rows.len() >= 10, "{} rows", rows.len());
    for row in rows {
        let bytes: Vec<u8> = row[0]
            .trim_matches('`')
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        let decoded = decode_as(row[1], &bytes);
        assert!(
            decoded.is_err(),
            "{} as {} decoded, but the table says: {}",
            row[0],
            row[1],
            row[2]
        );
    }
    // Each refusal is for the reason the table gives, not for some other: the same bytes with the marker fixed
    // (or the value made whole) decode.
    assert_eq!(
        Bincode
            .decode::<u64>(&[0xfd, 0, 0, 0, 0, 1, 0, 0, 0])
            .unwrap(),
        1 << 32
    );
    assert_eq!(Bincode.decode::<u16>(&[0xfb, 0, 1]).unwrap(), 256);
    assert_eq!(
        Bincode
            .decode::<String>(&[0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0x61])
            .unwrap(),
        "a"
    );
    assert!(
        Bincode
            .decode::<Vec<u8>>(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0])
            .is_ok()
    );
    assert!(Bincode.decode::<Shape>(&[0xfc, 1, 0, 0, 0, 5]).is_ok());
    assert!(Bincode.decode::<Shape>(&[0x02, 2, 3]).is_ok());
    assert!(Bincode.decode::<u8>(&[0x01]).is_ok());
}

#[test]
fn refused_inputs_of_the_table() {
    let decode = |bytes: &[u8]| FrameCodec::default().decode(&mut BytesMut::from(bytes));

    let err = decode(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
    assert!(matches!(err, FrameError::BadMagic { got: [0x47, 0x45] }));
    assert!(err.to_string().contains("looks like HTTP/1"), "{err}");

    let mut v2 = doc_vector("cancel");
    v2[2] = 2;
    assert!(matches!(
        decode(&v2),
        Err(FrameError::UnsupportedVersion { got: 2 })
    ));

    let mut k12 = doc_vector("cancel");
    k12[3] = 0x0c;
    assert!(matches!(
        decode(&k12),
        Err(FrameError::UnknownKind { got: 0x0c })
    ));

    // Protocol 1.2: a stream carries no JSON.
    let mut json_stream = doc_vector("stream-open");
    json_stream[4] = 0x18;
    let err = decode(&json_stream).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Header(HeaderError::JsonStream { got: 0x18 })
        ),
        "{err}"
    );
    let message = err.to_string();
    let message = message.strip_prefix("invalid header: ").unwrap();
    assert!(
        DOC.contains(&format!("protocol error (protocol 1.2): `{message}`")),
        "{message}"
    );

    let mut zero_id = doc_vector("cancel");
    zero_id[8] = 0;
    let err = decode(&zero_id).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid header: request_id must not be 0 on a frame of kind cancel"
    );

    let mut huge = doc_vector("response")[..28].to_vec();
    huge[3] = 1; // Request
    huge[24..28].copy_from_slice(&[0xff; 4]);
    match decode(&huge) {
        Ok(Some(Received::Refused(r))) => {
            assert_eq!(
                r.reason,
                LimitExceeded::FrameTooLarge {
                    len: 4_294_967_323,
                    limit: 16_777_216
                }
            );
            assert_eq!(
                r.reason.to_string(),
                "frame length 4294967323 exceeds limit 16777216"
            );
        }
        other => panic!("{other:?}"),
    }

    for name in ["request", "response", "cancel", "go-away"] {
        let v = doc_vector(name);
        assert!(matches!(decode(&v[..27]), Ok(None)), "{name}");
    }

    // Limits are inclusive: a frame of exactly the limit is read, one byte more is refused on its header alone.
    let limit = rpc_codec::Config::default().max_frame_len;
    let at_limit = Header::request(7, 1).to_bytes(0, limit - 28);
    let mut stream = BytesMut::from(&at_limit[..]);
    stream.resize(limit as usize, 0);
    match FrameCodec::default().decode(&mut stream) {
        Ok(Some(Received::Frame(f))) => assert_eq!(f.payload.len() as u32, limit - 28),
        other => panic!("a frame of exactly the limit: {other:?}"),
    }
    let over = Header::request(7, 1).to_bytes(0, limit - 27);
    match decode(&over) {
        Ok(Some(Received::Refused(r))) => assert_eq!(
            r.reason.to_string(),
            "frame length 16777217 exceeds limit 16777216"
        ),
        other => panic!("a frame one byte over the limit: {other:?}"),
    }
}

#[test]
fn metadata_limits_are_inclusive() {
    let config = rpc_codec::Config {
        max_metadata_len: 22,
        max_metadata_entries: 2,
        ..rpc_codec::Config::default()
    };
    // Two entries of 11 bytes each (1 + key "k1" + 2 + value "abcdef"): exactly both limits.
    let two = Metadata::from_pairs([("k1", "abcdef"), ("k2", "abcdef")]).unwrap();
    let three = Metadata::from_pairs([("a", ""), ("b", ""), ("c", "")]).unwrap();
    let longer = Metadata::from_pairs([("k1", "abcdef"), ("k2", "abcdefg")]).unwrap();
    let outcome = |md: &Metadata| {
        let bytes = encode(Header::request(1, 1), md, &());
        match FrameCodec::new(config).decode(&mut BytesMut::from(&bytes[..])) {
            Ok(Some(Received::Frame(_))) => String::from("frame"),
            Ok(Some(Received::Refused(r))) => r.reason.to_string(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(two.as_bytes().len(), 22);
    assert_eq!(outcome(&two), "frame");
    assert_eq!(outcome(&three), "metadata has more than 2 entries");
    assert_eq!(outcome(&longer), "metadata length 23 exceeds limit 22");
}
