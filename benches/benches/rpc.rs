//! Round trips over loopback TCP through the framework: the `Echo` service of `benches::echo`, its server on a
//! thread of its own (current-thread runtime), the generated client on this thread's current-thread runtime.
//! `one_at_a_time` is the latency of one call; `128_in_flight` is the time per call with 128 calls in flight on
//! one connection (the inverse of throughput).
//!
//! Run with `cargo bench -p benches --bench rpc`. For the comparison with raw tokio echo, tarpc and tonic, with
//! latency quantiles and CPU per call, run `cargo run --release -p benches --features peers --bin compare`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use benches::echo::{EchoClient, EchoServer, Echoer};
use benches::server_thread::ServerThread;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rpc_core::Server;
use serde_bytes::ByteBuf;

const PAYLOADS: [usize; 2] = [32, 1024];
const IN_FLIGHT: u64 = 128;

fn server() -> ServerThread {
    let server = Server::builder()
        .add_service(EchoServer::new(Echoer))
        .build()
        .expect("one service cannot collide with itself");
    ServerThread::rpc("rpc-server", server).expect("a server thread on 127.0.0.1")
}

fn round_trips(c: &mut Criterion) {
    let server = server();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let client = runtime
        .block_on(EchoClient::connect(server.addr()))
        .expect("the server answers on 127.0.0.1");

    let mut group = c.benchmark_group("rpc");
    group.measurement_time(Duration::from_secs(3));
    for size in PAYLOADS {
        let payload = vec![0xa5u8; size];
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::new("one_at_a_time", size),
            &payload,
            |b, payload| {
                b.to_async(&runtime).iter(|| async {
                    let back = client.echo(ByteBuf::from(payload.clone())).await;
                    assert_eq!(back.map(|b| b.len()), Ok(payload.len()));
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("128_in_flight", size),
            &payload,
            |b, payload| {
                b.to_async(&runtime).iter_custom(|iters| {
                    let client = client.clone();
                    let payload = payload.clone();
                    async move {
                        let start = Instant::now();
                        let mut callers = tokio::task::JoinSet::new();
                        for caller in 0..IN_FLIGHT {
                            // Caller `i` makes every 128th call, so that the callers share `iters` exactly.
                            let calls = iters / IN_FLIGHT + u64::from(caller < iters % IN_FLIGHT);
                            let (client, payload) = (client.clone(), payload.clone());
                            callers.spawn(async move {
                                for _ in 0..calls {
                                    let back = client.echo(ByteBuf::from(payload.clone())).await;
                                    assert_eq!(back.map(|b| b.len()), Ok(payload.len()));
                                }
                            });
                        }
                        while callers.join_next().await.is_some() {}
                        start.elapsed()
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
