//! Replays the fuzz seeds and every input a fuzz run ever crashed on through the fuzz harness, so a fixed crash
//! stays fixed. The harness is the fuzz target's own (`rpc-registry/fuzz/harness.rs`).

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Runs every input of `dir` (files starting with a dot aside) through the harness; returns how many there were.
fn replay(dir: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| harness::run(&data));
        assert!(result.is_ok(), "fuzz input {} fails again", path.display());
        count += 1;
    }
    count
}

#[test]
fn seeds_pass_the_harness() {
    assert!(replay("fuzz/seeds/registry_requests") >= 6);
}

#[test]
fn past_fuzz_crashes_stay_fixed() {
    replay("fuzz/regressions/registry_requests");
}
