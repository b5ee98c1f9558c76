//! The serialization workloads, one method per measured operation, shared by the criterion bench
//! `serialization` and the interleaved `framing_overhead` report so that both time exactly the same code.
//!
//! "bincode" is the floor: `encode_into_slice` into a reused buffer and `decode_from_slice`. "frame" is what a
//! connection does: a request header built for the call, then header, metadata and payload serialized into the
//! output [`WriteBuf`]; on the way in, the frame is parsed where it lies in the read buffer (`parse`) and the
//! value decoded from it. "frame_bytes" decodes through the tokio-util `Decoder`, which hands the payload out as
//! `Bytes` split from the read buffer.
//!
//! Both decodes stream through a buffer refilled before each batch, as a peer decodes what it just received:
//! bare bincode reads payloads laid back to back, the frame decoders read whole frames. Decoding one payload
//! over and over from L1 instead would flatter the floor by the cost of reading fresh memory, which framing
//! does not add.

use std::hint::black_box;

use bytes::BytesMut;
use rpc_codec::{
    Bincode, FrameCodec, Header, Metadata, PayloadCodec, Received, ReceivedRef, WriteBuf,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::Decoder;

const CONFIG: bincode::config::Configuration = bincode::config::standard();
const METHOD: u32 = rpc_codec::method_id("Bench", "call");

/// Everything one message's operations need, built once.
pub struct Work<T> {
    value: T,
    payload: Vec<u8>,
    frame: Vec<u8>,
    out: Vec<u8>,
    codec: FrameCodec,
    buf: WriteBuf,
    request_id: u64,
    reader: FrameCodec,
    input: BytesMut,
    at: usize,
    payloads: Vec<u8>,
    next_payload: usize,
}

impl<T: Serialize + DeserializeOwned> Work<T> {
    /// The workload for `value`.
    pub fn new(value: T) -> Work<T> {
        let payload =
            bincode::serde::encode_to_vec(&value, CONFIG).expect("benchmark values encode");
        let codec = FrameCodec::default();
        let mut framed = WriteBuf::new();
        codec
            .encode_value(
                &Header::request(1, METHOD),
                &Metadata::new(),
                &value,
                &Bincode,
                &mut framed,
            )
            .expect("benchmark values fit a frame");
        let frame = framed.as_slice().to_vec();
        Work {
            out: vec![0; payload.len() + 64],
            buf: WriteBuf::with_capacity(frame.len() + 64),
            value,
            payload,
            frame,
            codec,
            request_id: 0,
            reader: FrameCodec::default(),
            input: BytesMut::new(),
            at: 0,
            payloads: Vec::new(),
            next_payload: 0,
        }
    }

    /// Length of the encoded value.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// Decodes per batch: a read buffer's worth of frames (~64 KiB), at least one.
    pub fn batch_len(&self) -> u64 {
        (64 * 1024 / self.frame.len()).clamp(1, 4096) as u64
    }

    /// Bare bincode: the value into a reused slice.
    #[inline]
    pub fn encode_bincode(&mut self) {
        let n = bincode::serde::encode_into_slice(
            black_box(&self.value),
            black_box(&mut self.out[..]),
            CONFIG,
        );
        black_box(n.expect("fits"));
    }

    /// A whole request frame into the output buffer.
    #[inline]
    pub fn encode_frame(&mut self) {
        self.buf.clear();
        // The id is state kept across calls, as a connection's counter is; the compiler cannot fold it.
        self.request_id += 1;
        let header = Header::request(self.request_id, METHOD);
        let r = self.codec.encode_value(
            &header,
            &Metadata::new(),
            black_box(&self.value),
            &Bincode,
            &mut self.buf,
        );
        r.expect("fits");
    }

    /// Bare bincode: the next value from the payloads buffer. Needs payloads from [`Work::refill`].
    #[inline]
    pub fn decode_bincode(&mut self) {
        let at = self.next_payload;
        let decoded: Result<(T, usize), _> =
            bincode::serde::decode_from_slice(black_box(&self.payloads[at..]), CONFIG);
        let (value, len) = decoded.expect("decodes");
        self.next_payload = at + len;
        black_box(value);
    }

    /// Fills the read buffer with `n` frames and the payloads buffer with `n` payloads (not part of any
    /// measured operation).
    pub fn refill(&mut self, n: u64) {
        self.input.clear();
        self.at = 0;
        self.payloads.clear();
        self.next_payload = 0;
        for _ in 0..n {
            self.input.extend_from_slice(&self.frame);
            self.payloads.extend_from_slice(&self.payload);
        }
    }

    /// The next frame parsed in place and its value decoded, as a read loop does: `parse` at an offset into the
    /// read buffer, which is consumed once per batch (by [`Work::refill`]). Needs frames from [`Work::refill`].
    #[inline]
    pub fn decode_frame(&mut self) {
        let (used, item) = self
            .reader
            .parse(&self.input[self.at..])
            .expect("valid frames");
        let value = match item {
            Some(ReceivedRef::Frame(f)) => Bincode.decode::<T>(f.payload),
            _ => panic!("the read buffer holds whole frames"),
        };
        self.at += used;
        black_box(value.expect("decodes"));
    }

    /// The next frame split off as `Bytes` and its value decoded. Needs frames from [`Work::refill`].
    #[inline]
    pub fn decode_frame_bytes(&mut self) {
        let Ok(Some(Received::Frame(f))) = self.reader.decode(&mut self.input) else {
            panic!("the read buffer holds whole frames")
        };
        black_box(Bincode.decode::<T>(&f.payload).expect("decodes"));
    }
}
