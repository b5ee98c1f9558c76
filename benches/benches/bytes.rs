//! Byte buffers as RPC arguments and results: one round trip over loopback TCP that sends a buffer and gets it
//! back, written once as `Vec<u8>` and once as `serde_bytes::ByteBuf`, at 64 KiB and 8 MiB. `#[service]` encodes
//! a `Vec<u8>` argument or result as bytes (one length, one copy), so the two should cost the same; through
//! plain serde a `Vec<u8>` is a sequence that goes element by element (the bytes on the wire are the same).
//!
//! Run with `cargo bench -p benches --bench bytes`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use benches::server_thread::ServerThread;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rpc_core::Server;
use serde_bytes::ByteBuf;

const SIZES: [(usize, &str); 2] = [(64 << 10, "64KiB"), (8 << 20, "8MiB")];

/// Returns what it is sent, as a vector or as a `ByteBuf`.
#[rpc_core::service]
trait Blob {
    async fn vec(&self, data: Vec<u8>) -> Vec<u8>;
    async fn buf(&self, data: ByteBuf) -> ByteBuf;
}

struct Mirror;

impl Blob for Mirror {
    async fn vec(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    async fn buf(&self, data: ByteBuf) -> ByteBuf {
        data
    }
}

fn server() -> ServerThread {
    let server = Server::builder()
        .add_service(BlobServer::new(Mirror))
        .build()
        .expect("one service cannot collide with itself");
    ServerThread::rpc("bytes-server", server).expect("a server thread on 127.0.0.1")
}

fn byte_buffers(c: &mut Criterion) {
    let server = server();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let client = runtime
        .block_on(BlobClient::connect(server.addr()))
        .expect("the server answers on 127.0.0.1");

    let mut group = c.benchmark_group("bytes");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (size, label) in SIZES {
        let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("Vec<u8>", label),
            &payload,
            |b, payload| {
                b.to_async(&runtime).iter(|| async {
                    let back = client.vec(payload.clone()).await;
                    assert_eq!(back.map(|b| b.len()), Ok(payload.len()));
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("ByteBuf", label),
            &payload,
            |b, payload| {
                b.to_async(&runtime).iter(|| async {
                    let back = client.buf(ByteBuf::from(payload.clone())).await;
                    assert_eq!(back.map(|b| b.len()), Ok(payload.len()));
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, byte_buffers);
criterion_main!(benches);
