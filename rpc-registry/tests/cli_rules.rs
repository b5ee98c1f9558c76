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

mod support;

/// Runs `rpc-registry rules ARGS...` against `registry`, with `token` if given: its status, stdout and stderr.
async fn rules(registry: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rpc-registry"));
    command
        .arg("rules")
        .args(args)
        .args(["--registry", registry]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .expect("rpc-registry rules ends within 30 s")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn rules_are_applied_with_the_token_kept_across_a_restart_and_rolled_back() {
    const TOKEN: &str = "the-registry-token";
    let dir = std::env::temp_dir().join(format!("rules-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.display().to_string();
    let canary = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rules/canary.toml");
    let all_v1 = dir.join("all-v1.toml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        &all_v1,
        "service = \"Calc\"\n[[routes]]\nname = \"all-v1\"\nto = [{ subset = \"version=v1\", weight = 1 }]\n",
    )
    .unwrap();
    let all_v1 = all_v1.display().to_string();

    let (mut registry, addr) = support::serve(&["--token", TOKEN, "--data-dir", &data_dir]).await;
    let (ok, _, err) = rules(&addr, None, &["apply", canary]).await;
    assert!(!ok);
    assert!(
        err.contains("writing rules or weights needs the registry's own token (`serve --token`), and the call did not carry it"),
        "{err}"
    );
    let (ok, out, err) = rules(&addr, Some(TOKEN), &["apply", canary]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!(
            "applied {canary} as revision 1 of the rules of Calc"
        )),
        "{out}"
    );
    let (ok, out, err) = rules(&addr, Some(TOKEN), &["apply", &all_v1]).await;
    assert!(ok, "{err}");
    assert!(out.contains("as revision 2 of the rules of Calc"), "{out}");
    let (ok, _, err) = rules(&addr, Some(TOKEN), &["rollback", "Calc", "7"]).await;
    assert!(!ok);
    assert!(
        err.contains("the rules of Calc have no revision 7"),
        "{err}"
    );
    registry.kill().await.unwrap();

    // A new registry on the same data directory serves the same rules.
    let (mut registry, addr) = support::serve(&["--token", TOKEN, "--data-dir", &data_dir]).await;
    let (ok, out, err) = rules(&addr, None, &["get", "Calc"]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("# the rules of Calc, revision 2, applied "),
        "{out}"
    );
    assert!(out.contains("name = \"all-v1\""), "{out}");
    let (ok, out, err) = rules(&addr, Some(TOKEN), &["rollback", "Calc", "1"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "rolled the rules of Calc back to revision 1, as revision 3"
    );
    let (ok, out, err) = rules(&addr, None, &["history", "Calc"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("apply") && lines[0].contains("2 routes (canary-header, split)"),
        "{out}"
    );
    assert!(lines[1].contains("1 routes (all-v1)"), "{out}");
    assert!(
        lines[2].contains("rollback to 1") && lines[2].contains("canary-header"),
        "{out}"
    );
    let (ok, out, _) = rules(&addr, None, &["get", "Calc"]).await;
    assert!(ok && out.contains("name = \"canary-header\""), "{out}");
    let (ok, _, err) = rules(&addr, None, &["get", "Billing"]).await;
    assert!(!ok);
    assert!(err.contains("has no rules for Billing"), "{err}");
    registry.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
