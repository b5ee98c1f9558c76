//! Replays the fuzz seeds and every input a fuzz run ever crashed on through the fuzz harnesses, so a fixed crash
//! stays fixed. The harnesses are the fuzz targets' own (`rpc-codec/fuzz/harness.rs` for `frame_decoder`,
//! `rpc-codec/fuzz/payload_harness.rs` for `payload_decoder`).

#[path = "../fuzz/harness.rs"]
mod harness;
#[path = "../fuzz/payload_harness.rs"]
mod payload_harness;

use std::path::Path;

/// Stack for replaying payload inputs. Decoding stops at `rpc_codec::MAX_DEPTH` levels (the guard's own test
/// holds that on a 2 MiB thread); the harness's checks around a decode (walking and re-encoding the value)
/// recurse too, and an unoptimized build takes several times more stack per level than the fuzzer's.
const PAYLOAD_STACK: usize = 64 << 20;

/// Runs every input of `dir` (files starting with a dot aside) through `run`; returns how many there were.
fn replay(dir: &str, run: fn(&[u8])) -> usize {
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
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "fuzz input {} fails again", path.display());
        count += 1;
    }
    count
}

/// [`replay`] on a thread with [`PAYLOAD_STACK`] of stack.
fn replay_payloads(dir: &'static str) -> usize {
    std::thread::Builder::new()
        .stack_size(PAYLOAD_STACK)
        .spawn(move || replay(dir, payload_harness::run))
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn seeds_pass_the_harness() {
    assert!(replay("fuzz/seeds/frame_decoder", harness::run) >= 9);
}

#[test]
fn past_fuzz_crashes_stay_fixed() {
    replay("fuzz/regressions/frame_decoder", harness::run);
}

#[test]
fn payload_seeds_pass_the_harness() {
    assert!(replay_payloads("fuzz/seeds/payload_decoder") >= 18);
}

#[test]
fn past_payload_fuzz_crashes_stay_fixed() {
    replay_payloads("fuzz/regressions/payload_decoder");
}
