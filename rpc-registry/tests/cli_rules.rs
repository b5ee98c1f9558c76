//! `rpc-registry rules check FILE` as a user runs it: the shipped canary file is summed up, a bad file is
//! refused (exit status 1) with its name, and the line and field of every problem.

use std::process::Command;

fn check(file: &str) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
        .args(["rules", "check", file])
        .output()
        .expect("the rpc-registry binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_canary_file_checks_and_a_bad_file_is_refused_with_lines_and_fields() {
    let canary = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rules/canary.toml");
    let (ok, out, err) = check(canary);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "rules for Calc: 2 routes (canary-header, split), policies for 1 methods (div), 0 limits, \
         no authorization (every caller may call every method)"
    );

    let dir = std::env::temp_dir().join(format!("rules-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "service = \"Calc\"\n\n[[routes]]\nname = \"all\"\n\n[[routes]]\nname = \"late\"\n\n\
         [[limits]]\nmethods = [\"div\"]\n",
    )
    .unwrap();
    let shown = bad.display().to_string();
    let (ok, out, err) = check(&shown);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!(
                "rpc-registry: {shown}: line 6: routes[1]: no call can reach it: routes[0] before it has no \
                 condition and takes every call"
            ),
            format!(
                "{shown}: line 9: limits[0]: expected `max_concurrency` or `rate_per_second` (or both)"
            ),
        ]
    );
    let (ok, _, err) = check(&dir.join("missing.toml").display().to_string());
    assert!(!ok);
    assert!(err.contains("missing.toml: No such file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
