//! Benchmarks of the rpc framework: the messages they use and the helpers they share.
//!
//! # Layout
//! - [`messages`]: the benchmark payloads (a small struct, a mixed ~1 KiB message, a 64 KiB byte payload).
//! - [`codec_work`]: the measured operations (bare bincode, frame encode, frame decode) for one message.
//! - [`echo`]: the `Echo` service of the round-trip benchmarks.
//! - [`server_thread`]: [`server_thread::ServerThread`], a server on its own thread with a current-thread or a
//!   multi-thread runtime ([`server_thread::Flavor`]).
//! - [`rounds`]: the order of systems in each round of a comparison, and the median over rounds.
//! - `benches/serialization.rs`: criterion, bare bincode beside full frame encode/decode, with throughput.
//! - `benches/framing_overhead.rs`: the same operations interleaved round by round, reported as ratios.
//! - `benches/rpc.rs`: criterion, round trips over loopback TCP (one call at a time, and 128 in flight).
//! - `benches/bytes.rs`: criterion, a `Vec<u8>` argument beside a `ByteBuf` one at 64 KiB and 8 MiB.
//! - `src/bin/compare/`: the side-by-side comparison with the floor (raw tokio echo) and the peers (tarpc,
//!   tonic); built only with the `peers` feature.
//! - `src/bin/stream_compare/`: streams beside tonic's server streaming and raw TCP (`peers` feature too).
//! - `src/bin/soak/`: minutes of high, mixed load in one process, failing if resident memory grows after
//!   warm-up (`cargo run --release -p benches --bin soak -- --minutes 5`).

pub mod codec_work;
pub mod echo;
pub mod messages;
pub mod rounds;
pub mod server_thread;
