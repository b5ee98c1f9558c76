//! Property tests: frames of every kind round-trip through any split of the byte stream; arbitrary bytes never
//! panic the decoder and whatever it accepts re-encodes to the same bytes; streams of frames and noise pass the
//! fuzz harness (every decoder agrees); payload values round-trip and match bare bincode byte for byte.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rpc_codec::{
    Bincode, Config, Flags, Frame, FrameCodec, Header, Kind, Metadata, PayloadCodec, Received,
    Status,
};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

#[path = "../fuzz/harness.rs"]
mod harness;

fn arb_status(nonzero: bool) -> impl Strategy<Value = Status> {
    let lo = usize::from(nonzero);
    (lo..Status::ALL.len()).prop_map(|i| Status::ALL[i])
}

fn arb_metadata() -> impl Strategy<Value = Metadata> {
    let key =
        proptest::collection::vec(0x21u8..=0x7e, 1..12).prop_map(|k| String::from_utf8(k).unwrap());
    let value = proptest::collection::vec(any::<u8>(), 0..24);
    proptest::collection::vec((key, value), 0..6)
        .prop_map(|pairs| Metadata::from_pairs(pairs).unwrap())
}

/// A valid frame of any kind.
fn arb_frame() -> impl Strategy<Value = Frame> {
    let payload = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
    (
        0..Kind::ALL.len(),
        any::<bool>(),
        arb_status(true),
        arb_status(false),
        1..=u64::MAX,
        any::<u32>(),
        any::<u32>(),
        arb_metadata(),
        payload,
    )
        .prop_map(
            |(k, flag, err_status, any_status, id, method, deadline, md, payload)| {
                let kind = Kind::ALL[k];
                let mut header = match kind {
                    Kind::Request if !flag => Header::request(id, method),
                    Kind::OneWay => Header::one_way(id, method),
                    Kind::Response if flag => Header::app_error(id),
                    Kind::Response => Header::response(id),
                    Kind::Error => Header::error(id, err_status),
                    Kind::Cancel => Header::cancel(id),
                    Kind::Ping => Header::ping(id),
                    Kind::Pong => Header::pong(id),
                    Kind::GoAway => Header::go_away(id, any_status),
                    Kind::Request => Header::stream(id, method),
                    Kind::Item if flag => Header::app_error_item(id),
                    Kind::Item => Header::item(id),
                    Kind::End => Header::end(id),
                    Kind::Credit => Header::credit(id),
                };
                if matches!(kind, Kind::Request | Kind::OneWay) {
                    header.deadline_us = deadline;
                }
                let (metadata, payload) = match kind {
                    Kind::Cancel | Kind::Ping | Kind::Pong | Kind::End => {
                        (Metadata::new(), Bytes::new())
                    }
                    Kind::GoAway | Kind::Item => (Metadata::new(), payload),
                    Kind::Credit => (
                        Metadata::new(),
                        Bytes::copy_from_slice(&method.to_le_bytes()),
                    ),
                    _ => (md, payload),
                };
                Frame {
                    header,
                    metadata,
                    payload,
                }
            },
        )
}

fn decode_all(bytes: &[u8], cuts: &[usize]) -> Vec<Received> {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    for cut in cuts {
        buf.extend_from_slice(&bytes[at..cut.max(at)]);
        at = cut.max(at);
        while let Some(item) = codec.decode(&mut buf).expect("valid stream") {
            out.push(item);
        }
    }
    assert!(
        codec
            .decode_eof(&mut buf)
            .expect("no partial frame")
            .is_none()
    );
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(i64),
    Tuple(u8, String),
    Struct { x: f64, tags: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Value {
    a: u64,
    b: i32,
    c: i128,
    d: u16,
    e: char,
    f: bool,
    text: String,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    list: Vec<u32>,
    opt: Option<Box<Value>>,
    map: BTreeMap<String, Shape>,
    shape: Shape,
    pair: (u8, i8),
    arr: [u16; 3],
    unit: (),
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<i64>().prop_map(Shape::Newtype),
        (any::<u8>(), ".{0,8}").prop_map(|(a, b)| Shape::Tuple(a, b)),
        (-1e9f64..1e9, proptest::collection::vec(".{0,5}", 0..4))
            .prop_map(|(x, tags)| Shape::Struct { x, tags }),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = (
        (
            any::<u64>(),
            any::<i32>(),
            any::<i128>(),
            any::<u16>(),
            any::<char>(),
            any::<bool>(),
        ),
        ".{0,20}",
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u32>(), 0..16),
        proptest::collection::btree_map(".{0,6}", arb_shape(), 0..4),
        arb_shape(),
        (any::<u8>(), any::<i8>(), any::<[u16; 3]>()),
    )
        .prop_map(
            |((a, b, c, d, e, f), text, blob, list, map, shape, (p0, p1, arr))| Value {
                a,
                b,
                c,
                d,
                e,
                f,
                text,
                blob,
                list,
                opt: None,
                map,
                shape,
                pair: (p0, p1),
                arr,
                unit: (),
            },
        );
    leaf.prop_recursive(3, 8, 1, |inner| {
        (inner.clone(), inner).prop_map(|(mut outer, nested)| {
            outer.opt = Some(Box::new(nested));
            outer
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip_through_any_split(
        frames in proptest::collection::vec(arb_frame(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut codec = FrameCodec::default();
        let mut bytes = BytesMut::new();
        for f in &frames {
            codec.encode(f, &mut bytes).unwrap();
        }
        let back: Vec<Received> = decode_all(&bytes, &cuts);
        let want: Vec<Received> = frames.into_iter().map(Received::Frame).collect();
        prop_assert_eq!(back, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_re_encodes_identically(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        valid_prefix in any::<bool>(),
    ) {
        let mut input = bytes;
        if valid_prefix && input.len() >= 4 {
            // Most random headers die at the magic; give half the cases a plausible start.
            input[..3].copy_from_slice(b"RP\x01");
            input[3] = 1 + input[3] % 8;
        }
        let mut codec = FrameCodec::new(Config { max_frame_len: 150, ..Config::default() });
        let mut buf = BytesMut::from(&input[..]);
        let mut consumed = 0;
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(Received::Frame(frame))) => {
                    let mut again = BytesMut::new();
                    codec.encode(&frame, &mut again).unwrap();
                    let raw = &input[consumed..consumed + again.len()];
                    // Unknown status codes are read as Unknown, the one field that is normalised.
                    if frame.header.status != Status::Unknown {
                        prop_assert_eq!(&again[..], raw);
                    }
                }
                Ok(Some(Received::Refused(_))) => {}
                Ok(None) | Err(_) => break,
            }
            consumed += before - buf.len();
        }
    }

    #[test]
    fn every_decoder_agrees_on_streams_of_frames_and_noise(
        frames in proptest::collection::vec(arb_frame(), 0..6),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        read in 1u8..=255,
        limit in 0u8..=255,
    ) {
        // The fuzz harness's checks (owned decoder, parse loop, re-encoding, buffer bound) on structured input.
        let mut input = vec![read, limit];
        let mut sender = FrameCodec::new(Config { max_frame_len: u32::MAX, ..Config::default() });
        let mut stream = BytesMut::new();
        for f in &frames {
            sender.encode(f, &mut stream).unwrap();
        }
        input.extend_from_slice(&stream);
        input.extend_from_slice(&noise);
        harness::run(&input);
    }

    #[test]
    fn payload_values_round_trip_and_match_bare_bincode(value in arb_value()) {
        let ours = Bincode.to_vec(&value).unwrap();
        let bare = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
        prop_assert_eq!(&ours, &bare);
        let back: Value = Bincode.decode(&ours).unwrap();
        prop_assert_eq!(back, value);
    }

    #[test]
    fn every_truncation_of_a_payload_is_an_error_not_a_panic(value in arb_value(), cut in any::<usize>()) {
        let bytes = Bincode.to_vec(&value).unwrap();
        let cut = cut % bytes.len().max(1);
        prop_assert!(Bincode.decode::<Value>(&bytes[..cut]).is_err());
    }

    #[test]
    fn arbitrary_payload_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Bincode.decode::<Value>(&bytes);
        let _ = Bincode.decode::<Vec<Shape>>(&bytes);
        let _ = Bincode.decode::<(String, BTreeMap<u32, Vec<()>>)>(&bytes);
    }

    #[test]
    fn app_error_flag_survives(id in 1..=u64::MAX) {
        let frame = Frame::new(Header::app_error(id), Bytes::from_static(b"e"));
        let mut buf = BytesMut::new();
        FrameCodec::default().encode(&frame, &mut buf).unwrap();
        let Some(Received::Frame(back)) = FrameCodec::default().decode(&mut buf).unwrap() else {
            return Err(TestCaseError::fail("no frame"));
        };
        prop_assert!(back.header.flags.contains(Flags::APP_ERROR));
    }
}
