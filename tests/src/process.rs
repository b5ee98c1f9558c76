//! A `lab-server` child process for the tests that kill or stop a server from outside: it is started with
//! `std::process::Command`, its address is read from the first line it prints (a bounded wait), and it is killed
//! and reaped when the handle drops, so that a failing test leaves no process behind. The child also exits on
//! its own when its standard input closes, which happens when the test process dies without unwinding.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long [`LabProcess::start`] waits for the child to print its address: 10 s.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// The flag that makes `lab-server` exit when its standard input closes.
pub const EXIT_WITH_PARENT: &str = "--exit-with-parent";

/// A running `lab-server` process.
#[derive(Debug)]
pub struct LabProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    /// Held open for the child's life: its closing tells the child that the test is gone.
    _stdin: Option<ChildStdin>,
}

impl LabProcess {
    /// Starts the `lab-server` binary at `program` (in a test: `env!("CARGO_BIN_EXE_lab-server")`) and waits,
    /// at most [`STARTUP_LIMIT`], for the address it prints.
    ///
    /// # Panics
    /// If the program cannot be started, or prints no address in time (the child is killed first).
    pub fn start(program: &str) -> LabProcess {
        let mut child = Command::new(program)
            .arg(EXIT_WITH_PARENT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // A blocking read has no timeout: read on a thread, wait for its answer with one.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = match stdout {
                Some(out) => BufReader::new(out).read_line(&mut line).map(|_| line),
                None => Err(std::io::Error::other("no standard output")),
            };
            let _ = tx.send(read);
        });
        let first = rx.recv_timeout(STARTUP_LIMIT);
        let mut process = LabProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            _stdin: stdin,
        };
        let line = match first {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("{program} printed no address: {e}"),
            Err(_) => {
                process.kill();
                panic!("{program} printed no address within {STARTUP_LIMIT:?}");
            }
        };
        process.addr = line
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{program} printed {line:?}, not an address: {e}"));
        process
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL (a stopped child too) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
