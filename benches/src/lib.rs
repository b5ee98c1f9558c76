//! Benchmarks of the rpc framework: the messages they use and the helpers they share.
//!
//! # Layout
//! - [`messages`]: the benchmark payloads (a small struct, a mixed ~1 KiB message, a 64 KiB byte payload).
//! - [`codec_work`]: the measured operations (bare bincode, frame encode, frame decode) for one message.
//! - `benches/serialization.rs`: criterion, bare bincode beside full frame encode/decode, with throughput.
//! - `benches/framing_overhead.rs`: the same operations interleaved round by round, reported as ratios.

pub mod codec_work;
pub mod messages;
