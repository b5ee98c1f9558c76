//! `lab-server`: the `Lab` service in a process of its own, for the fault tests that kill or stop a server
//! from outside (SIGKILL, SIGSTOP). It serves `LabServer::new(LabImpl::default())` with the default
//! `ServerConfig` on 127.0.0.1 at a port the OS assigns, prints that address as the first line of its standard
//! output, and runs until it is killed. With `--exit-with-parent` it also exits when its standard input
//! closes, so that a test process that dies without cleaning up leaves no server behind.

use std::io::{Read, Write};

use rpc_core::{Server, ServerConfig};
use tests::lab::{LabImpl, LabServer};
use tests::process::EXIT_WITH_PARENT;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().skip(1).any(|a| a == EXIT_WITH_PARENT) {
        std::thread::spawn(|| {
            // Read until end of file (or an error): the parent is gone.
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .add_service(LabServer::new(LabImpl::default()))
        .config(ServerConfig::default())
        .build()?;
    // The parent reads this line to learn where to connect: it must not sit in a buffer.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{addr}")?;
    stdout.flush()?;
    drop(stdout);
    server.serve(listener).await?;
    Ok(())
}
