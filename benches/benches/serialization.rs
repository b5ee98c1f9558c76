//! Serialization cost: bare bincode beside the full frame path of rpc-codec, for a small struct (~32 B), a
//! mixed ~1 KiB message and a 64 KiB byte payload, encode and decode, with throughput in payload bytes.
//!
//! Run with `cargo bench -p benches --bench serialization`; the operations are those of
//! `benches::codec_work` (read there what each one does). Decodes stream through a reused buffer of about 64 KiB,
//! refilled before each batch, as a connection's read buffer would hold. For the ratios themselves on a noisy machine, prefer the
//! interleaved `cargo bench -p benches --bench framing_overhead`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use benches::codec_work::Work;
use benches::messages;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Times `iters` decodes in batches, refilling the read buffer (not timed) before each batch.
fn decode_batches<T: Serialize + DeserializeOwned>(
    work: &mut Work<T>,
    iters: u64,
    each: fn(&mut Work<T>),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(work.batch_len());
        work.refill(n);
        let start = Instant::now();
        for _ in 0..n {
            each(work);
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn bench_message<T: Serialize + DeserializeOwned>(c: &mut Criterion, name: &str, value: T) {
    let mut work = Work::new(value);
    let mut group = c.benchmark_group(format!("serialization/{name}"));
    group.throughput(Throughput::Bytes(work.payload_len() as u64));
    group.bench_function(BenchmarkId::new("encode", "bincode"), |b| {
        b.iter(|| work.encode_bincode())
    });
    group.bench_function(BenchmarkId::new("encode", "frame"), |b| {
        b.iter(|| work.encode_frame())
    });
    group.bench_function(BenchmarkId::new("decode", "bincode"), |b| {
        b.iter_custom(|iters| decode_batches(&mut work, iters, Work::decode_bincode))
    });
    group.bench_function(BenchmarkId::new("decode", "frame"), |b| {
        b.iter_custom(|iters| decode_batches(&mut work, iters, Work::decode_frame))
    });
    group.bench_function(BenchmarkId::new("decode", "frame_bytes"), |b| {
        b.iter_custom(|iters| decode_batches(&mut work, iters, Work::decode_frame_bytes))
    });
    group.finish();
}

fn serialization(c: &mut Criterion) {
    bench_message(c, "small", messages::small());
    bench_message(c, "mixed_1k", messages::mixed());
    bench_message(c, "bytes_64k", messages::blob());
}

criterion_group!(benches, serialization);
criterion_main!(benches);
