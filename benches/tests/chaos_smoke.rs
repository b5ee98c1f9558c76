//! A short smoke of every scenario of the `chaos` benchmark, so that `cargo test` keeps it working: each runs
//! for about a second at a low rate and must print its table and one JSON line with every field. The full runs
//! (`cargo run --release -p benches --bin chaos -- --scenario NAME ...`) are in docs/RESILIENCE.md.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `chaos` with `args`; its standard output, or why it failed. Killed after `limit`.
fn chaos(args: &[&str], limit: Duration) -> Result<String, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start chaos: {e}"))?;
    let start = Instant::now();
    // Bounded: 100 ms steps until the limit.
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("chaos {args:?} ran past {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    match output.status.success() {
        true => Ok(stdout),
        false => Err(format!(
            "chaos {args:?} failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

#[test]
fn every_scenario_runs_and_reports_one_json_line() {
    // One scenario at a time: each starts its own instances as processes.
    let runs: [(&str, &[&str]); 7] = [
        ("none", &[]),
        ("stall", &["--stall-secs", "0.5"]),
        ("stall-511", &["--hedge"]),
        ("slow", &[]),
        ("flap", &[]),
        ("overload", &["--protect"]),
        ("stall", &["--policy", "ring-hash", "--stall-secs", "0.5"]),
    ];
    for (scenario, extra) in runs {
        let mut args = vec![
            "--scenario",
            scenario,
            "--secs",
            "1.5",
            "--rate",
            "100",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = chaos(&args, Duration::from_secs(120)).unwrap();
        let json = out.lines().last().unwrap_or_default();
        let summary: serde_json::Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("{scenario}: the last line is not JSON ({e}):\n{out}"));
        assert_eq!(summary["scenario"], scenario, "{out}");
        assert_eq!(
            summary["calls"], 150,
            "100 calls a second for 1.5 s:\n{out}"
        );
        for field in [
            "failed",
            "success_rate",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_gap_ms",
        ] {
            assert!(
                summary[field].is_number(),
                "{scenario}: no {field} in {json}"
            );
        }
        assert!(
            out.contains("| scenario | policy |"),
            "{scenario}: no table:\n{out}"
        );
        let success = summary["success_rate"].as_f64().unwrap_or(0.0);
        // Idempotent calls at a low rate: what fails over fails over; the full runs measure how well.
        assert!(success >= 0.95, "{scenario}: success {success}:\n{out}");
        if scenario == "none" {
            assert_eq!(summary["failed"], 0, "{out}");
        }
    }
}
