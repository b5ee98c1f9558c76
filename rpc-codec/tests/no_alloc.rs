//! Encoding a frame into a buffer that has room makes no heap allocation: header, metadata and a serialized
//! payload go straight into the output buffer, a `WriteBuf` or (through tokio-util's `Encoder`) a `BytesMut`. The global allocator here counts every allocation (dhat's
//! testing mode); this file holds one test so that nothing else runs while it counts.

use bytes::{Bytes, BytesMut};
use rpc_codec::{Bincode, Frame, FrameCodec, Header, Metadata, Status, WriteBuf};
use serde::Serialize;
use tokio_util::codec::Encoder;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[derive(Serialize)]
struct Small<'a> {
    id: u64,
    value: f64,
    name: &'a str,
    owned: String,
    urgent: bool,
    tags: Vec<u32>,
}

fn blocks_allocated_by(f: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    f();
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn encoding_a_frame_into_a_buffer_with_room_allocates_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();

    let mut codec = FrameCodec::default();
    let metadata =
        Metadata::from_pairs([("trace-id", "4bf92f3577b34da6"), ("auth", "token")]).unwrap();
    let value = Small {
        id: 1_234_567,
        value: 2.5,
        name: "sensor-7",
        owned: "owned string".to_owned(),
        urgent: true,
        tags: vec![1, 2, 300, 70_000],
    };
    let error = Frame::new(
        Header::error(9, Status::Unavailable),
        Bytes::from_static(b"draining"),
    );
    let mut buf = WriteBuf::with_capacity(1 << 20);
    let mut framed_write = BytesMut::with_capacity(1 << 20);

    // The counter works: encoding into a fresh vector allocates.
    assert!(blocks_allocated_by(|| drop(Bincode.to_vec(&value).unwrap())) > 0);

    let blocks = blocks_allocated_by(|| {
        for id in 1..=1000u64 {
            buf.clear();
            codec
                .encode_value(
                    &Header::request(id, 7),
                    &metadata,
                    &value,
                    &Bincode,
                    &mut buf,
                )
                .unwrap();
            codec
                .encode_value(
                    &Header::response(id),
                    &Metadata::new(),
                    &value,
                    &Bincode,
                    &mut buf,
                )
                .unwrap();
            framed_write.clear();
            codec.encode(&error, &mut framed_write).unwrap();
            codec
                .encode_bytes(&Header::ping(id), &Metadata::new(), b"", &mut buf)
                .unwrap();
        }
    });
    assert!(!buf.is_empty() && !framed_write.is_empty());
    assert_eq!(blocks, 0, "heap allocations while encoding 4000 frames");
}
