//! Byte-level behaviour of the frame codec: partial frames wait, oversize frames are skipped without
//! allocating, wrong peers are refused on their first bytes, every kind round-trips, payloads are not copied,
//! and the encoder never leaves half a frame behind.

use bytes::{BufMut, Bytes, BytesMut};
use rpc_codec::{
    Bincode, Config, EncodeError, Flags, Frame, FrameCodec, FrameError, HEADER_LEN, Header,
    HeaderError, Kind, LimitExceeded, Metadata, PayloadError, Received, Status, WriteBuf,
};
use tokio_util::codec::{Decoder, Encoder};

/// One frame of every kind, with metadata and payloads where the kind allows them.
fn every_kind() -> Vec<Frame> {
    let md = Metadata::from_pairs([("trace-id", "t-1"), ("auth", "secret")]).unwrap();
    let with = |header: Header, metadata: &Metadata, payload: &'static [u8]| Frame {
        header,
        metadata: metadata.clone(),
        payload: Bytes::from_static(payload),
    };
    let none = Metadata::new();
    vec![
        with(
            Header::request(1, 0xdead_beef).with_deadline(std::time::Duration::from_millis(5)),
            &md,
            b"\x04\x06",
        ),
        with(Header::response(1), &md, b"\x0a"),
        with(Header::app_error(2), &none, b"\x03err"),
        with(Header::error(3, Status::ResourceExhausted), &md, b"too big"),
        with(Header::error(0, Status::InvalidArgument), &none, b""),
        with(Header::cancel(4), &none, b""),
        with(Header::one_way(0, 7), &md, b"x"),
        with(Header::ping(u64::MAX), &none, b""),
        with(Header::pong(u64::MAX), &none, b""),
        with(Header::go_away(9, Status::Ok), &none, b"bye"),
        with(Header::stream(11, 0xfeed_f00d), &md, b"\x00"),
        with(Header::item(11), &none, b"\x05"),
        with(Header::app_error_item(11), &none, b"\x01e"),
        with(Header::credit(11), &none, b"\x00\x00\x01\x00"),
        with(Header::end(11), &none, b""),
    ]
}

fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f, &mut buf).unwrap();
    }
    buf
}

/// Feeds `bytes` to a decoder in chunks of `chunk` bytes and collects what comes out.
fn decode_in_chunks(
    codec: &mut FrameCodec,
    bytes: &[u8],
    chunk: usize,
) -> Result<Vec<Received>, FrameError> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf)? {
            out.push(item);
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf)? {
        out.push(item);
    }
    Ok(out)
}

fn frames_of(items: Vec<Received>) -> Vec<Frame> {
    items
        .into_iter()
        .map(|r| match r {
            Received::Frame(f) => f,
            Received::Refused(r) => panic!("unexpected refusal {r:?}"),
        })
        .collect()
}

#[test]
fn every_kind_round_trips() {
    let frames = every_kind();
    let bytes = encode_all(&frames);
    let back =
        frames_of(decode_in_chunks(&mut FrameCodec::default(), &bytes, bytes.len()).unwrap());
    assert_eq!(back, frames);
    let kinds: Vec<Kind> = back.iter().map(|f| f.header.kind).collect();
    for kind in Kind::ALL {
        assert!(kinds.contains(&kind), "{kind} missing from the sample");
    }
}

#[test]
fn a_partial_frame_waits_for_more_at_every_split() {
    let frames = every_kind();
    let bytes = encode_all(&frames);
    for chunk in [1, 2, 3, 7, 27, 28, 29, 64] {
        let back = frames_of(decode_in_chunks(&mut FrameCodec::default(), &bytes, chunk).unwrap());
        assert_eq!(back, frames, "chunk size {chunk}");
    }
    // Byte by byte, nothing comes out before the last byte of the first frame.
    let first_len = encode_all(&frames[..1]).len();
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    for (i, b) in bytes[..first_len].iter().enumerate() {
        buf.put_u8(*b);
        let got = codec.decode(&mut buf).unwrap();
        assert_eq!(got.is_some(), i == first_len - 1, "byte {i}");
    }
}

#[test]
fn a_partial_frame_reserves_room_for_exactly_that_frame() {
    let frame = Frame::new(Header::response(1), Bytes::from(vec![7u8; 10_000]));
    let bytes = encode_all(std::slice::from_ref(&frame));
    let mut buf = BytesMut::from(&bytes[..HEADER_LEN]);
    assert!(FrameCodec::default().decode(&mut buf).unwrap().is_none());
    assert!(buf.capacity() >= bytes.len(), "capacity {}", buf.capacity());
}

#[test]
fn payload_and_metadata_are_slices_of_the_read_buffer() {
    let frames = every_kind();
    let mut buf = encode_all(&frames[..1]);
    let range = buf.as_ptr_range();
    let Some(Received::Frame(f)) = FrameCodec::default().decode(&mut buf).unwrap() else {
        panic!("one frame")
    };
    assert!(range.contains(&f.payload.as_ptr()));
    assert!(range.contains(&f.metadata.as_bytes().as_ptr()));
}

#[test]
fn an_oversize_frame_is_refused_from_its_header_and_skipped_without_allocating() {
    let config = Config {
        max_frame_len: 1024,
        ..Config::default()
    };
    let big = Frame::new(Header::request(7, 1), Bytes::from(vec![0xab; 100_000]));
    let small = Frame::new(Header::request(8, 1), Bytes::from_static(b"ok"));
    let mut stream = BytesMut::new();
    // The sender has no limit here; the receiver does.
    let mut unlimited = FrameCodec::new(Config {
        max_frame_len: u32::MAX,
        ..Config::default()
    });
    unlimited.encode(&big, &mut stream).unwrap();
    unlimited.encode(&small, &mut stream).unwrap();

    let mut codec = FrameCodec::new(config);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut max_capacity = 0;
    for piece in stream.chunks(4096) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
        max_capacity = max_capacity.max(buf.capacity());
    }
    assert_eq!(out.len(), 2, "{out:?}");
    let Received::Refused(r) = &out[0] else {
        panic!("{:?}", out[0])
    };
    assert_eq!(r.header, big.header);
    assert_eq!(
        r.reason,
        LimitExceeded::FrameTooLarge {
            len: 100_028,
            limit: 1024
        }
    );
    assert_eq!(out[1], Received::Frame(small));
    assert!(
        max_capacity <= 8192,
        "the receive buffer grew to {max_capacity}"
    );
}

#[test]
fn a_frame_of_exactly_the_limit_is_accepted() {
    let config = Config {
        max_frame_len: 100,
        ..Config::default()
    };
    let mut codec = FrameCodec::new(config);
    let exact = Frame::new(
        Header::response(1),
        Bytes::from(vec![1u8; 100 - HEADER_LEN]),
    );
    let mut buf = BytesMut::new();
    codec.encode(&exact, &mut buf).unwrap();
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Received::Frame(exact))
    );
}

#[test]
fn metadata_over_its_limits_is_refused_and_the_stream_stays_in_sync() {
    let config = Config {
        max_metadata_len: 16,
        max_metadata_entries: 2,
        ..Config::default()
    };
    let long = Metadata::from_pairs([("key", [0u8; 40])]).unwrap();
    let many = Metadata::from_pairs([("a", ""), ("b", ""), ("c", "")]).unwrap();
    let ok = Frame::new(Header::response(3), Bytes::from_static(b"fine"));
    let frames = vec![
        Frame {
            header: Header::request(1, 1),
            metadata: long,
            payload: Bytes::from_static(b"p"),
        },
        Frame {
            header: Header::request(2, 1),
            metadata: many,
            payload: Bytes::new(),
        },
        ok.clone(),
    ];
    let bytes = encode_all(&frames);
    let out = decode_in_chunks(&mut FrameCodec::new(config), &bytes, 5).unwrap();
    let reasons: Vec<_> = out
        .iter()
        .map(|r| match r {
            Received::Refused(r) => Some(r.reason.clone()),
            Received::Frame(_) => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            Some(LimitExceeded::MetadataTooLarge { len: 46, limit: 16 }),
            Some(LimitExceeded::TooManyMetadataEntries { limit: 2 }),
            None
        ]
    );
    assert_eq!(out[2], Received::Frame(ok));
}

fn header_bytes(kind: u8) -> Vec<u8> {
    let mut b = vec![b'R', b'P', 1, kind, 0, 0, 0, 0];
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&[0; 12]);
    b
}

#[test]
fn wrong_peers_are_refused_on_their_first_bytes() {
    let first = |bytes: &[u8]| FrameCodec::default().decode(&mut BytesMut::from(bytes));
    assert!(matches!(first(b"R"), Ok(None)));
    assert!(matches!(first(b"RP"), Ok(None)));
    assert!(matches!(first(b"RP\x01"), Ok(None)));
    assert!(matches!(first(b"RP\x01\x01"), Ok(None)));

    let err = first(b"GET / HTTP/1.0\r\n\r\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad magic: expected 52 50 (\"RP\"), got 47 45 (this looks like HTTP/1: wrong port?)"
    );
    let err = first(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap_err();
    assert!(err.to_string().contains("this looks like TLS"), "{err}");
    // What a TLS server sends back to a plaintext client: an alert record.
    let err = first(&[0x15, 0x03, 0x03, 0x00, 0x02]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad magic: expected 52 50 (\"RP\"), got 15 03 (this looks like TLS: is only one side configured for TLS?)"
    );
    let err = first(b"PRI * HTTP/2.0").unwrap_err();
    assert!(err.to_string().contains("HTTP/2"), "{err}");
    let err = first(b"xy").unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad magic: expected 52 50 (\"RP\"), got 78 79"
    );
    let err = first(b"RP\x07").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported protocol version 7 (this peer speaks version 1)"
    );
    for kind in [0u8, 0x0c, 0x80, 0xff] {
        let err = first(&[b'R', b'P', 1, kind]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unknown frame kind 0x{kind:02x} (expected 0x01..=0x0b)")
        );
    }
}

#[test]
fn header_fields_a_kind_does_not_allow_are_refused() {
    let decode = |b: &[u8]| FrameCodec::default().decode(&mut BytesMut::from(b));

    let mut b = header_bytes(Kind::Request as u8);
    b[4] = 0x01; // APP_ERROR on a request
    let err = decode(&b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid header: flags 0b00000001 not allowed on a frame of kind request (allowed bits: 0b00011110)"
    );
    b[4] = 0x18; // a stream of JSON (protocol 1.2 refuses it)
    let err = decode(&b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid header: flags 0b00011000 on a request both open a stream (0b1000) and carry JSON (0b10000): \
         expected one at most"
    );
    b[4] = 0x10; // JSON alone
    assert!(matches!(decode(&b), Ok(Some(Received::Frame(_)))));
    b[4] = 0x06; // lz4 and zstd at once
    let err = decode(&b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid header: flags 0b00000110 on a frame of kind request name two compressions (lz4 0b010 and \
         zstd 0b100): expected one at most"
    );

    let mut b = header_bytes(Kind::Response as u8);
    b[4] = 0x80;
    assert!(matches!(
        decode(&b),
        Err(FrameError::Header(HeaderError::UnknownFlags {
            got: 0x80,
            ..
        }))
    ));

    let mut b = header_bytes(Kind::Error as u8);
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        "invalid header: status must not be 0 on a frame of kind error"
    );
    b[5] = 3;
    assert!(matches!(decode(&b), Ok(Some(Received::Frame(_)))));

    let mut b = header_bytes(Kind::Response as u8);
    b[16] = 1; // method id on a response
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        "invalid header: method_id must be 0 on a frame of kind response, got 1"
    );

    // Protocol 1.1's stream frames: a credit is one u32, an end carries nothing, an item no metadata.
    let mut b = header_bytes(Kind::Credit as u8);
    b[24] = 3;
    b.extend_from_slice(&[0, 0, 1]);
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        "invalid header: payload_len of a frame of kind credit must be 4 (a u32 increment), got 3"
    );
    let mut b = header_bytes(Kind::End as u8);
    b[4] = 0x01;
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        "invalid header: flags 0b00000001 not allowed on a frame of kind end (allowed bits: 0b00000000)"
    );
    let mut b = header_bytes(Kind::Item as u8);
    b[8] = 0; // header_bytes gives request id 1
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        "invalid header: request_id must not be 0 on a frame of kind item"
    );
    b[8] = 1;
    b[4] = 0x10;
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        "invalid header: flags 0b00010000 not allowed on a frame of kind item (allowed bits: 0b00001111)"
    );

    let mut b = header_bytes(Kind::Ping as u8);
    b[24] = 1; // a payload on a ping
    b.push(0);
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        "invalid header: payload_len must be 0 on a frame of kind ping, got 1"
    );

    let mut b = header_bytes(Kind::Request as u8);
    b[8] = 0; // request id 0
    assert!(matches!(
        decode(&b),
        Err(FrameError::Header(HeaderError::MustBeNonZero {
            field: "request_id",
            ..
        }))
    ));
}

#[test]
fn malformed_metadata_is_a_protocol_error() {
    let mut b = header_bytes(Kind::Request as u8);
    b[6] = 4; // metadata_len 4
    b.extend_from_slice(b"\x09abc"); // key_len 9 in a 4-byte section
    let err = FrameCodec::default()
        .decode(&mut BytesMut::from(&b[..]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid frame of kind request: metadata truncated: entry at offset 0 needs 12 bytes, 4 left"
    );
}

#[test]
fn a_stream_that_ends_mid_frame_says_how_much_came() {
    let bytes = encode_all(&every_kind()[..1]);
    let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
    let mut codec = FrameCodec::default();
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "connection closed mid-frame: {} of {} bytes received",
            bytes.len() - 1,
            bytes.len()
        )
    );
    let mut short = BytesMut::from(&bytes[..10]);
    let err = FrameCodec::default().decode_eof(&mut short).unwrap_err();
    assert_eq!(
        err.to_string(),
        "connection closed mid-frame: 10 of 28 bytes received"
    );
    assert!(matches!(
        FrameCodec::default().decode_eof(&mut BytesMut::new()),
        Ok(None)
    ));

    // A refused frame still being skipped when the stream ends is cut short too.
    let mut codec = FrameCodec::new(Config {
        max_frame_len: 64,
        ..Config::default()
    });
    let mut huge = header_bytes(Kind::Request as u8);
    huge[24..28].copy_from_slice(&1000u32.to_le_bytes());
    huge.extend_from_slice(&[0; 100]);
    let mut buf = BytesMut::from(&huge[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Received::Refused(_)))
    ));
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "connection closed mid-frame: 128 of 1028 bytes received"
    );
    assert_eq!(
        codec.end_of_stream(b"").unwrap_err().to_string(),
        err.to_string()
    );
}

#[test]
fn the_encoder_refuses_what_the_decoder_would_and_leaves_the_buffer_as_it_was() {
    let mut codec = FrameCodec::new(Config {
        max_frame_len: 64,
        ..Config::default()
    });
    let mut buf = WriteBuf::new();
    buf.extend_from_slice(b"earlier");

    let err = codec
        .encode_value(
            &Header::request(1, 1),
            &Metadata::new(),
            &vec![1u64; 100],
            &Bincode,
            &mut buf,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::Payload(PayloadError::TooLarge { limit: 36 })
        ),
        "{err}"
    );
    assert_eq!(buf.as_slice(), b"earlier");

    // A buffer with plenty of room still gets no payload over the limit (a slice: a length byte, then the bytes).
    let mut roomy = WriteBuf::with_capacity(4096);
    let err = codec
        .encode_value(
            &Header::response(1),
            &Metadata::new(),
            &[7u8; 36][..],
            &Bincode,
            &mut roomy,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::Payload(PayloadError::TooLarge { limit: 36 })
        ),
        "{err}"
    );
    assert!(roomy.is_empty());
    codec
        .encode_value(
            &Header::response(1),
            &Metadata::new(),
            &[7u8; 35][..],
            &Bincode,
            &mut roomy,
        )
        .unwrap();
    assert_eq!(roomy.len(), 64);

    let err = codec
        .encode_bytes(&Header::response(1), &Metadata::new(), &[0; 40], &mut buf)
        .unwrap_err();
    assert_eq!(err.to_string(), "frame length 68 exceeds limit 64");
    assert_eq!(buf.as_slice(), b"earlier");

    let err = codec
        .encode_bytes(
            &Header::cancel(1),
            &Metadata::new(),
            b"no payload allowed",
            &mut buf,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid header: payload_len must be 0 on a frame of kind cancel, got 18"
    );
    assert_eq!(buf.as_slice(), b"earlier");

    let err = codec
        .encode_bytes(&Header::request(0, 1), &Metadata::new(), b"", &mut buf)
        .unwrap_err();
    assert!(matches!(
        err,
        EncodeError::Header(HeaderError::MustBeNonZero { .. })
    ));

    let mut bad_flags = Header::response(1);
    bad_flags.flags = Flags::from_bits(0x40);
    assert!(
        codec
            .encode_bytes(&bad_flags, &Metadata::new(), b"", &mut buf)
            .is_err()
    );

    let many = Metadata::from_pairs((0..65).map(|i| (format!("k{i}"), ""))).unwrap();
    let err = FrameCodec::default()
        .encode_bytes(&Header::request(1, 1), &many, b"", &mut buf)
        .unwrap_err();
    assert_eq!(err.to_string(), "metadata has more than 64 entries");
    assert_eq!(buf.as_slice(), b"earlier");

    // tokio-util's Encoder refuses the same frames and leaves its BytesMut alone too.
    let mut out = BytesMut::from(&b"earlier"[..]);
    let big = Frame::new(Header::response(1), Bytes::from(vec![0; 40]));
    let err = codec.encode(&big, &mut out).unwrap_err();
    assert_eq!(err.to_string(), "frame length 68 exceeds limit 64");
    let bad = Frame::new(Header::cancel(1), Bytes::from_static(b"x"));
    assert!(matches!(
        codec.encode(bad, &mut out),
        Err(EncodeError::Header(_))
    ));
    assert_eq!(&out[..], b"earlier");
}

#[test]
fn both_encoders_write_the_same_bytes() {
    let mut codec = FrameCodec::default();
    for frame in every_kind() {
        let mut via_bytes_mut = BytesMut::new();
        codec.encode(&frame, &mut via_bytes_mut).unwrap();
        let mut via_write_buf = WriteBuf::new();
        codec
            .encode_bytes(
                &frame.header,
                &frame.metadata,
                &frame.payload,
                &mut via_write_buf,
            )
            .unwrap();
        assert_eq!(
            &via_bytes_mut[..],
            via_write_buf.as_slice(),
            "{:?}",
            frame.header.kind
        );
    }
}

#[test]
fn unknown_status_codes_read_as_unknown() {
    let mut b = header_bytes(Kind::Error as u8);
    b[5] = 200;
    let Some(Received::Frame(f)) = FrameCodec::default()
        .decode(&mut BytesMut::from(&b[..]))
        .unwrap()
    else {
        panic!("a frame")
    };
    assert_eq!(f.header.status, Status::Unknown);
}
