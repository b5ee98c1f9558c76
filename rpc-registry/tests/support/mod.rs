//! What the binary's tests share: `rpc-registry serve` started as a user starts it, on 127.0.0.1 at ports the
//! OS assigns.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `rpc-registry serve` with `args`; returns the child and the API address it printed first.
pub(crate) async fn serve(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the rpc-registry binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("rpc-registry prints its address within 10 s")
    .unwrap();
    let addr = line
        .split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches(',')
        .to_owned();
    (child, addr)
}
