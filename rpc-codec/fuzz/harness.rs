//! The frame-decoder fuzz harness, shared by the cargo-fuzz target and the `cargo test` replay of seeds and
//! past crashes (`rpc-codec/tests/fuzz_regressions.rs`).
//!
//! Input: byte 0 picks the read size, byte 1 the frame limit; the rest is the stream. The harness feeds the
//! stream in reads of that size to two decoders, the tokio-util `Decoder` (owned frames) and a read loop over
//! `FrameCodec::parse` (borrowed frames, one advance per read), and checks, besides "no panic":
//! - both see the same frames, refusals and errors, in the same order;
//! - a frame re-encodes to exactly the bytes it came from (unknown status codes aside);
//! - the receive buffer never grows past what the limit allows;
//! - every accepted payload can be handed to the payload codec as several types without panicking, with and
//!   without a limit on the decoded value's memory;
//! - a payload flagged as compressed (protocol 1.1) decompresses within the decoded-memory limit or is refused,
//!   never panicking and never yielding more than the limit; what it yields goes to the payload codec too;
//! - a batch of stream items (protocol 1.1) is walked within its payload, each item to the payload codec.

use std::collections::BTreeMap;

use bytes::{Buf, BytesMut};
use rpc_codec::compression::decompress;
use rpc_codec::{Bincode, Config, FrameCodec, PayloadCodec, Received, ReceivedRef, Status};
use serde::Deserialize;
use tokio_util::codec::{Decoder, Encoder};

#[derive(Deserialize)]
#[allow(dead_code)]
enum Probe<'a> {
    A(u64, i32, bool),
    B {
        name: String,
        tags: Vec<String>,
        data: &'a [u8],
    },
    C(Option<Box<Probe<'a>>>, BTreeMap<u16, Vec<()>>),
    D(char, f64, u128, (u8, i8)),
}

/// What a decoder saw: each item with the stream offset it ended at, then the error that stopped it, if any.
type Seen = (Vec<(Received, usize)>, Option<String>);

/// Runs one input; panics if a property does not hold.
pub(crate) fn run(data: &[u8]) {
    let [read, limit, stream @ ..] = data else {
        return;
    };
    let read = usize::from(*read).max(1);
    let config = Config {
        max_frame_len: 28 + u32::from(*limit) * 8,
        max_metadata_len: 64,
        max_metadata_entries: 4,
        max_decoded_len: 4096,
    };
    let owned = with_decoder(stream, read, config);
    let borrowed = with_parse(stream, read, config);
    assert_eq!(owned, borrowed, "the two decoders disagree");

    let mut codec = FrameCodec::new(config);
    for (item, end) in &owned.0 {
        let Received::Frame(frame) = item else {
            continue;
        };
        let mut again = BytesMut::new();
        codec
            .encode(frame, &mut again)
            .expect("a decoded frame encodes");
        if frame.header.status != Status::Unknown {
            assert_eq!(
                &again[..],
                &stream[end - again.len()..*end],
                "re-encoding differs"
            );
        }
        let _ = Bincode.decode::<Probe<'_>>(&frame.payload);
        // The same under the decoded-memory limit: refused or decoded, never a panic.
        let _ = Bincode.decode_within::<Probe<'_>>(&frame.payload, config.max_decoded_len);
        let _ = Bincode.decode_within::<Vec<Vec<String>>>(&frame.payload, config.max_decoded_len);
        let _ = Bincode.decode::<(String, Vec<u64>)>(&frame.payload);
        let _ = Bincode.decode::<BTreeMap<String, Vec<u8>>>(&frame.payload);
        if let Some(encoding) = frame.header.flags.encoding()
            && let Ok(inflated) = decompress(encoding, &frame.payload, config.max_decoded_len)
        {
            assert!(
                inflated.len() <= config.max_decoded_len,
                "decompressed past the limit"
            );
            let _ = Bincode.decode_within::<Probe<'_>>(&inflated, config.max_decoded_len);
        }
        // A batch of stream items (protocol 1.1): walked item by item, each within the payload, each to the
        // payload codec; a malformed one is refused once and read no further.
        if frame.header.flags.contains(rpc_codec::Flags::BATCH) {
            let mut at = 0;
            let mut items = 0;
            while let Some(item) = rpc_codec::items::next(&frame.payload, &mut at) {
                items += 1;
                assert!(at <= frame.payload.len(), "a batch read past its payload");
                match item {
                    Ok(item) => {
                        let _ = Bincode.decode_within::<Probe<'_>>(item, config.max_decoded_len);
                    }
                    Err(_) => assert_eq!(at, frame.payload.len(), "read on past a malformed batch"),
                }
                assert!(
                    items <= frame.payload.len() / 4 + 1,
                    "more items than the payload holds"
                );
            }
        }
    }
}

/// The tokio-util `Decoder`, fed `read` bytes at a time.
fn with_decoder(stream: &[u8], read: usize, config: Config) -> Seen {
    let mut codec = FrameCodec::new(config);
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    let mut fed = 0;
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => seen.push((item, fed - buf.len())),
                Ok(None) => break,
                Err(e) => return (seen, Some(e.to_string())),
            }
        }
        check_capacity(&buf, read, config);
    }
    match codec.decode_eof(&mut buf) {
        Ok(Some(item)) => seen.push((item, fed - buf.len())),
        Ok(None) => {}
        Err(e) => return (seen, Some(e.to_string())),
    }
    (seen, None)
}

/// A read loop over `parse`, fed `read` bytes at a time: every whole frame of the buffer, then one advance.
fn with_parse(stream: &[u8], read: usize, config: Config) -> Seen {
    let mut codec = FrameCodec::new(config);
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    let mut fed = 0;
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        let mut at = 0;
        loop {
            match codec.parse(&buf[at..]) {
                Ok((0, None)) => break,
                Ok((n, item)) => {
                    at += n;
                    let end = fed - (buf.len() - at);
                    match item {
                        Some(ReceivedRef::Frame(f)) => {
                            seen.push((Received::Frame(f.to_frame()), end))
                        }
                        Some(ReceivedRef::Refused(r)) => seen.push((Received::Refused(r), end)),
                        None => {}
                    }
                }
                Err(e) => return (seen, Some(e.to_string())),
            }
        }
        buf.advance(at);
        check_capacity(&buf, read, config);
    }
    (seen, codec.end_of_stream(&buf).err().map(|e| e.to_string()))
}

fn check_capacity(buf: &BytesMut, read: usize, config: Config) {
    let bound = 4 * (read + config.max_frame_len as usize) + 64;
    assert!(
        buf.capacity() <= bound,
        "buffer capacity {} over {bound}",
        buf.capacity()
    );
}
