//! What compressing a payload costs and saves, by size: lz4 and zstd (level 1) over bincode-encoded messages
//! of the `mixed` kind (strings, numbers, a list of structs; 932 B each, laid end to end, so that sizes past
//! one message repeat it and compress better than most real payloads), from 32 B to 64 KiB. Each size is timed
//! compressing, and decompressing within a limit; the ratio (compressed/original, the 4-byte length prefix
//! included) is printed once per size and encoding. `rpc_codec::compression::DEFAULT_THRESHOLD` is chosen from
//! these figures (docs/BENCHMARKS.md).
//!
//! Run with `cargo bench -p benches --bench compression`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use benches::messages;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rpc_codec::compression::{compress, decompress};
use rpc_codec::{Bincode, Encoding, PayloadCodec};

/// The sizes measured.
const SIZES: [usize; 9] = [32, 64, 128, 256, 512, 1024, 4096, 16384, 65536];

/// `len` bytes of bincode-encoded `mixed` messages, one after another (cut at `len`).
fn payload(len: usize) -> Vec<u8> {
    let mixed = messages::mixed();
    let one_len = Bincode.encoded_len(&mixed).expect("mixed encodes");
    let one = Bincode
        .encode_to_vec(&mixed, one_len)
        .expect("mixed encodes");
    one.iter().copied().cycle().take(len).collect()
}

fn compression(c: &mut Criterion) {
    let mut group = c.benchmark_group("compression");
    for size in SIZES {
        let input = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        for encoding in Encoding::supported() {
            let mut compressed = Vec::new();
            compress(encoding, &input, &mut compressed).expect("compresses");
            eprintln!(
                "{encoding} {size} B -> {} B ({:.2})",
                compressed.len(),
                compressed.len() as f64 / size as f64
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{encoding}/compress"), size),
                &input,
                |b, input| {
                    let mut out = Vec::with_capacity(size * 2 + 64);
                    b.iter(|| {
                        out.clear();
                        compress(encoding, input, &mut out).expect("compresses");
                        out.len()
                    });
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{encoding}/decompress"), size),
                &compressed,
                |b, compressed| {
                    b.iter(|| {
                        decompress(encoding, compressed, size)
                            .expect("decompresses")
                            .len()
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, compression);
criterion_main!(benches);
