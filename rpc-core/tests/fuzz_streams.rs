//! Replays every input kept for the `stream_peer` fuzz target through its harness (`rpc-core/fuzz/harness.rs`):
//! the hand-made seeds (`fuzz/seeds/stream_peer`), the corpus the fuzzer grew (`fuzz/corpus/stream_peer`) and
//! every input a fuzz run ever crashed on (`fuzz/regressions/stream_peer`), so that a fixed crash stays fixed.
//! It fails unless it ran as many inputs as the folders hold, and unless the seeds hold some.

#[path = "../../rpc-codec/tests/support/fuzz_inputs.rs"]
mod fuzz_inputs;
#[path = "../fuzz/harness.rs"]
mod harness;

#[test]
fn every_stream_peer_input_passes_the_harness() {
    let folders = ["seeds", "corpus", "regressions"]
        .map(|f| fuzz_inputs::listed(&format!("fuzz/{f}/stream_peer")));
    assert!(!folders[0].is_empty(), "no seeds");
    let mut ran = 0;
    for path in folders.iter().flatten() {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| harness::run(&data));
        assert!(result.is_ok(), "fuzz input {} fails", path.display());
        ran += 1;
    }
    assert_eq!(ran, folders.iter().map(Vec::len).sum::<usize>());
}
