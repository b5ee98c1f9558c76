//! `calc-server` and `calc-client` hold `--token` (or `RPC_REGISTRY_TOKEN`) to the registry's rule
//! (`rpc_registry::check_token`): an empty, short or space-holding token is refused before anything is sent,
//! with the rule's message and without the token.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Runs `program` against a registry address nothing listens on, with `token` as `--token` or in the
/// environment; returns its exit code and stderr (at most 20 s).
async fn run(program: &str, token: &str, from_env: bool) -> (Option<i32>, String) {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut command = Command::new(program);
    command
        .args(["--registry", &closed])
        .env_remove("RPC_REGISTRY_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if from_env {
        command.env("RPC_REGISTRY_TOKEN", token);
    } else {
        command.args(["--token", token]);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} with the token {token:?} did not exit within 20 s"))
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn calc_server_and_calc_client_refuse_empty_and_short_tokens() {
    for (program, name) in [
        (env!("CARGO_BIN_EXE_calc-server"), "calc-server"),
        (env!("CARGO_BIN_EXE_calc-client"), "calc-client"),
    ] {
        for (token, from_env, why) in [
            (
                "",
                false,
                "the token is empty; a token needs at least 8 bytes",
            ),
            (
                "",
                true,
                "the token is empty; a token needs at least 8 bytes",
            ),
            (
                "k3y",
                false,
                "the token is too short: 3 of at least 8 bytes",
            ),
            (
                "my secret",
                false,
                "byte 3 of the token is not a visible ASCII character",
            ),
        ] {
            let (code, stderr) = run(program, token, from_env).await;
            assert_eq!(code, Some(1), "{name} {token:?}: {stderr}");
            let expected = format!("{name}: --token (or RPC_REGISTRY_TOKEN): {why}");
            assert!(
                stderr.starts_with(&expected),
                "{name} {token:?} (env: {from_env}): {stderr}"
            );
            assert!(
                token.is_empty() || !stderr.contains(token),
                "{name} shows the token: {stderr}"
            );
        }
    }
}
