//! Replays every input kept for the fuzz target through its harness: the hand-made seeds
//! (`fuzz/seeds/registry_requests`), the minimized corpus the fuzzer grew (`fuzz/corpus/registry_requests`) and
//! every input a fuzz run ever crashed on (`fuzz/regressions/registry_requests`), so that a fixed crash stays
//! fixed and what the fuzzer reached stays covered. The harness is the fuzz target's own
//! (`rpc-registry/fuzz/harness.rs`).
//!
//! The replay fails unless it ran exactly as many inputs as the folders hold (every file but `.keep`; a folder
//! that holds anything else than files fails it too), and unless each folder holds some: an empty or misnamed
//! folder would replay nothing and pass.

#[path = "../../rpc-codec/tests/support/fuzz_inputs.rs"]
mod fuzz_inputs;
#[path = "../fuzz/harness.rs"]
mod harness;

use fuzz_inputs::listed;

#[test]
fn every_registry_requests_input_passes_the_harness() {
    let folders = ["seeds", "corpus", "regressions"]
        .map(|f| (f, listed(&format!("fuzz/{f}/registry_requests"))));
    let mut ran = 0;
    for path in folders.iter().flat_map(|(_, files)| files) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| harness::run(&data));
        assert!(result.is_ok(), "fuzz input {} fails", path.display());
        ran += 1;
    }
    let counts = folders.map(|(f, files)| (f, files.len()));
    eprintln!("registry_requests: ran {ran} inputs of {counts:?}");
    assert_eq!(
        ran,
        counts.iter().map(|(_, n)| n).sum::<usize>(),
        "ran fewer inputs than the folders hold: {counts:?}"
    );
    for (folder, n) in counts {
        assert!(n > 0, "fuzz/{folder}/registry_requests holds no input");
    }
}
