//! `rpc-registry call` and `describe` as a person runs them, against `rpc-registry serve` itself (whose API and
//! `rpc.Reflection` are services like any other): the exit codes (0 a value, 1 the method's own error, 2 a
//! command line that cannot be acted on, 64 + status a failed call), what goes to stdout and to stderr, and the
//! table of exit codes in `--help`. The runners against examples' `Calc` and the lab are tested in
//! `tests/tests/cli_call.rs`.

use std::time::Duration;

mod support;

/// Runs `rpc-registry ARGS...` (within 30 s): its exit code, stdout and stderr.
async fn run(args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rpc-registry"));
    command.args(args).env_remove("RPC_REGISTRY_TOKEN");
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("rpc-registry ends within 30 s")
        .unwrap();
    (
        output.status.code().expect("an exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_prints_values_and_errors_as_json_and_exits_as_grpcurl_does() {
    let (_registry, addr) = support::serve(&["--address-check", "off"]).await;
    let server = ["--server", addr.as_str()];

    let (code, out, err) = run(&[&["call", "rpc.Reflection.services"][..], &server].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json(&out),
        serde_json::json!(["Registry", "rpc.Reflection"])
    );

    // The method's own error: its type and its value, on stdout.
    let args = r#"{"service": "Nope"}"#;
    let (code, out, _) =
        run(&[&["call", "rpc.Reflection.describe", args][..], &server].concat()).await;
    assert_eq!(code, 1);
    let answer = json(&out);
    assert_eq!(answer["error"], "String");
    assert!(
        answer["detail"].as_str().unwrap().contains("no service"),
        "{out}"
    );

    // A failed call: 64 + its status, `STATUS: MESSAGE` on stderr. A watch from the registry's current revision
    // waits longer than the deadline.
    let (code, out, err) = run(&[
        &["call", "Registry.instances", r#"{"service": "Calc"}"#][..],
        &server,
    ]
    .concat())
    .await;
    assert_eq!(code, 0, "{err}");
    let snapshot = json(&out);
    let watch = serde_json::json!({
        "service": "Calc", "epoch": snapshot["epoch"], "since": snapshot["revision"], "wait_ms": 20_000
    })
    .to_string();
    let (code, out, err) = run(&[
        &["call", "Registry.watch", &watch, "--deadline", "500"][..],
        &server,
    ]
    .concat())
    .await;
    assert_eq!(code, 64 + 4, "{out}{err}");
    assert!(err.starts_with("deadline_exceeded: "), "{err}");
    assert!(out.is_empty());

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = run(&["call", "Registry.services", "--server", &nowhere]).await;
    assert_eq!(code, 64 + 14, "{err}");
    assert!(err.starts_with("unavailable: "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_that_cannot_be_acted_on_exits_2_saying_what_was_expected() {
    let (_registry, addr) = support::serve(&["--address-check", "off"]).await;
    for (args, expected) in [
        (
            vec!["call", "Registry.instances", "[1]", "--server", &addr],
            "expected the arguments as a JSON object keyed by their names",
        ),
        (
            vec!["call", "Registry.instances", "{", "--server", &addr],
            "got text that is not JSON",
        ),
        (
            vec!["call", "instances", "--server", &addr],
            "expected SERVICE.METHOD",
        ),
        (
            vec!["call", "Registry.nope", "--server", &addr],
            "expected a method of Registry, got `nope`; it has register, heartbeat,",
        ),
        (
            vec!["call", "Registry.subscribe", "--server", &addr],
            "Registry.subscribe takes or returns a stream (server stream): it cannot be called in JSON",
        ),
        (
            vec![
                "call",
                "Registry.services",
                "--metadata",
                "novalue",
                "--server",
                &addr,
            ],
            "expected KEY=VALUE, got `novalue`",
        ),
        (
            vec!["call", "Registry.services", "--server", "no-port"],
            "--server no-port: expected host:port",
        ),
        (
            vec!["call", "Registry.services", "--registry", "a:1,,b:2"],
            "got an empty entry",
        ),
        (
            vec![
                "call",
                "Registry.services",
                "--server",
                &addr,
                "--registry",
                &addr,
            ],
            "cannot be used with",
        ),
        (
            vec!["describe", "--registry", &addr],
            "describe without SERVICE lists the services of one server: expected --server ADDR",
        ),
    ] {
        let (code, out, err) = run(&args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_lists_services_and_their_methods_with_tags() {
    let (_registry, addr) = support::serve(&["--address-check", "off"]).await;
    let (code, out, err) = run(&["describe", "--server", &addr]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Registry\nrpc.Reflection\n");

    let (code, out, err) = run(&["describe", "Registry", "--server", &addr]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Registry\n  The registry's API.\n"),
        "{out}"
    );
    assert!(
        out.contains("\ninstances(service: String) -> Snapshot [idempotent]\n    The instances of `service` now.\n"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("subscribe(") && l.ends_with("[idempotent] [server stream]")),
        "{out}"
    );

    let (code, out, err) = run(&["describe", "rpc.Reflection", "--json", "--server", &addr]).await;
    assert_eq!(code, 0, "{err}");
    let description = json(&out);
    assert_eq!(description["name"], "rpc.Reflection");
    assert_eq!(description["methods"][1]["error"], "String");

    let (code, _, err) = run(&["describe", "Nope", "--server", &addr]).await;
    assert_eq!(code, 2);
    assert!(err.contains("it serves Registry, rpc.Reflection"), "{err}");
}

#[tokio::test]
async fn help_shows_the_exit_codes() {
    for command in ["call", "describe"] {
        let (code, out, _) = run(&[command, "--help"]).await;
        assert_eq!(code, 0);
        assert!(out.contains("64+N"), "{out}");
        assert!(out.contains("68 deadline_exceeded"), "{out}");
    }
    let (_, out, _) = run(&["call", "--help"]).await;
    assert!(out.contains("[default: 10000]"), "{out}");
}
