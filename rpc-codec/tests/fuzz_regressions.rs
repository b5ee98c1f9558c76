//! Replays every input kept for the fuzz targets through their harnesses: the hand-made seeds
//! (`fuzz/seeds/<target>`), the minimized corpus the fuzzers grew (`fuzz/corpus/<target>`) and every input a fuzz
//! run ever crashed on (`fuzz/regressions/<target>`), so that a fixed crash stays fixed and what the fuzzers
//! reached stays covered. The harnesses are the fuzz targets' own (`rpc-codec/fuzz/harness.rs` for
//! `frame_decoder`, `rpc-codec/fuzz/payload_harness.rs` for `payload_decoder`, `rpc-codec/fuzz/json_harness.rs`
//! for `json_args`, which needs the `json` feature: `cargo test --workspace` turns it on, through rpc-core's
//! default features).
//!
//! A replay fails unless it ran exactly as many inputs as its folders hold (every file but `.keep`; a folder
//! that holds anything else than files fails it too), and unless the seeds and the corpus hold some: an empty or
//! misnamed folder would replay nothing and pass.

#[path = "support/fuzz_inputs.rs"]
mod fuzz_inputs;
#[path = "../fuzz/harness.rs"]
mod harness;
#[cfg(feature = "json")]
#[path = "../fuzz/json_harness.rs"]
mod json_harness;
#[path = "../fuzz/payload_harness.rs"]
mod payload_harness;

use fuzz_inputs::listed;

/// Stack for replaying payload inputs. Decoding stops at `rpc_codec::MAX_DEPTH` levels (the guard's own test
/// holds that on a 2 MiB thread); the harness's checks around a decode (walking and re-encoding the value)
/// recurse too, and an unoptimized build takes several times more stack per level than the fuzzer's.
const PAYLOAD_STACK: usize = 64 << 20;

/// How many inputs of each folder of a target there are, and how many ran.
#[derive(Debug, Default)]
struct Replay {
    seeds: usize,
    corpus: usize,
    regressions: usize,
    ran: usize,
}

/// Runs every input of `target`'s seeds, corpus and regressions through `run`, each one once.
fn replay(target: &str, run: fn(&[u8])) -> Replay {
    let folders = ["seeds", "corpus", "regressions"].map(|f| listed(&format!("fuzz/{f}/{target}")));
    let mut replay = Replay {
        seeds: folders[0].len(),
        corpus: folders[1].len(),
        regressions: folders[2].len(),
        ran: 0,
    };
    for path in folders.iter().flatten() {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "fuzz input {} fails", path.display());
        replay.ran += 1;
    }
    replay
}

/// Asserts that `replay` ran every input its folders hold, and that its seeds and corpus are not empty.
fn assert_complete(target: &str, replay: &Replay) {
    eprintln!("{target}: {replay:?}");
    assert_eq!(
        replay.ran,
        replay.seeds + replay.corpus + replay.regressions,
        "{target}: ran fewer inputs than its folders hold: {replay:?}"
    );
    assert!(replay.seeds > 0, "{target}: no seeds: {replay:?}");
    assert!(
        replay.corpus > 0,
        "{target}: no corpus (fuzz/corpus/{target}; see fuzz/README.md): {replay:?}"
    );
}

#[test]
fn every_frame_decoder_input_passes_the_harness() {
    let replay = replay("frame_decoder", harness::run);
    assert_complete("frame_decoder", &replay);
}

#[test]
fn every_payload_decoder_input_passes_the_harness() {
    let replay = std::thread::Builder::new()
        .stack_size(PAYLOAD_STACK)
        .spawn(|| replay("payload_decoder", payload_harness::run))
        .unwrap()
        .join()
        .unwrap();
    assert_complete("payload_decoder", &replay);
}

#[cfg(feature = "json")]
#[test]
fn every_json_args_input_passes_the_harness() {
    // Deep nesting, as for payload inputs: serde_json skips it without recursion, but decodes it recursively.
    let replay = std::thread::Builder::new()
        .stack_size(PAYLOAD_STACK)
        .spawn(|| replay("json_args", json_harness::run))
        .unwrap()
        .join()
        .unwrap();
    assert_complete("json_args", &replay);
}
