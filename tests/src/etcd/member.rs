//! One etcd member as a child process: its name, the ports picked for it, its directory (`data` and
//! `etcd.log`), the command line that starts it tuned for fast tests, and killing it by its pid.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::EtcdError;

/// The environment variable naming the etcd binary; [`DEFAULT_ETCD_BIN`] when unset.
pub const ETCD_BIN_ENV: &str = "ETCD_BIN";

/// Where Debian's `etcd-server` installs etcd.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// etcd's heartbeat interval: 50 ms (etcd's default is 100 ms). Everything is on one machine, where a round trip
/// takes well under a millisecond, so a short heartbeat costs little and lets the election timeout be short.
pub const HEARTBEAT_MS: u32 = 50;

/// etcd's election timeout: 500 ms (etcd's default is 1000 ms), ten heartbeats (etcd asks for at least five), so
/// that the followers of a killed leader elect a new one within about a second, while a busy two-core machine
/// that stalls a member for a few heartbeats does not start needless elections.
pub const ELECTION_MS: u32 = 500;

/// How many lines of a member's log an error carries: the last 20.
pub const LOG_TAIL_LINES: usize = 20;

/// How much of the end of a log is read for its last lines: 8 KiB.
const LOG_TAIL_BYTES: u64 = 8 << 10;

/// A member's log, in its directory.
const LOG_FILE: &str = "etcd.log";

/// What etcd's log says when a port it was given is taken.
pub(super) const PORT_TAKEN: &str = "address already in use";

/// The etcd binary: [`ETCD_BIN_ENV`] if set, else [`DEFAULT_ETCD_BIN`].
pub fn etcd_bin() -> PathBuf {
    std::env::var_os(ETCD_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN))
}

/// One member: its name, its ports, its directory and, while it runs, its process.
#[derive(Debug)]
pub(super) struct Member {
    /// `m0`, `m1`, ...
    pub(super) name: String,
    pub(super) client_port: u16,
    pub(super) peer_port: u16,
    /// Holds `data` (etcd's `--data-dir`) and `etcd.log`.
    pub(super) dir: PathBuf,
    pub(super) child: Option<Child>,
}

/// How a member is started: the cluster's part of its command line.
pub(super) struct Launch<'a> {
    /// The etcd binary.
    pub(super) bin: &'a Path,
    /// `--initial-cluster-token`, unique per cluster.
    pub(super) token: &'a str,
    /// `--initial-cluster`: every member's `name=peer URL`.
    pub(super) initial_cluster: &'a str,
    /// `--initial-cluster-state`: `new`, or `existing` for a restart.
    pub(super) state: &'a str,
}

impl Member {
    /// Its client URL, `http://127.0.0.1:PORT`.
    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Its peer URL, `http://127.0.0.1:PORT`.
    pub(super) fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The last [`LOG_TAIL_LINES`] lines of its log.
    pub(super) fn log_tail(&self) -> String {
        log_tail(&self.dir.join(LOG_FILE))
    }

    /// Starts its process on its ports and directory, its standard output and error appended to its log.
    pub(super) fn spawn(&mut self, launch: &Launch<'_>) -> Result<(), EtcdError> {
        let io = |what: String, e: std::io::Error| EtcdError::Io(format!("{what}: {e}"));
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| io(format!("cannot make {}", self.dir.display()), e))?;
        let log_path = self.dir.join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io(format!("cannot open {}", log_path.display()), e))?;
        let stderr = log
            .try_clone()
            .map_err(|e| io(format!("cannot share {}", log_path.display()), e))?;
        let client = self.endpoint();
        let peer = self.peer_url();
        let bin = launch.bin;
        let child = Command::new(bin)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", launch.initial_cluster])
            .args(["--initial-cluster-state", launch.state])
            .args(["--initial-cluster-token", launch.token])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    EtcdError::NotInstalled(format!("cannot run {}: {e}", bin.display()))
                }
                _ => io(format!("cannot run {}", bin.display()), e),
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// An error if its process, started here, has exited on its own; it is then no longer running.
    pub(super) fn check_running(&mut self) -> Result<(), EtcdError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(EtcdError::Exited {
                    member: self.name.clone(),
                    status: status.to_string(),
                    log: self.log_tail(),
                })
            }
            Err(e) => Err(EtcdError::Io(format!("{}: {e}", self.name))),
        }
    }

    /// Kills its process with SIGKILL, by its pid, and reaps it; nothing if it is not running.
    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `count` distinct ports on 127.0.0.1 that were free a moment ago.
///
/// etcd cannot be given port 0: it must know its URLs before it listens, since it advertises them to its clients
/// and every member's peer URL is in every member's `--initial-cluster`. So each port is picked by binding
/// 127.0.0.1:0 (all at once, so that they differ) and closing the listener before etcd binds it. Another process
/// can take a port in between; the member then exits with "address already in use" and the start is tried again
/// with fresh ports, at most [`START_ATTEMPTS`](super::START_ATTEMPTS) times.
pub(super) fn free_ports(count: usize) -> Result<Vec<u16>, EtcdError> {
    let io = |e: std::io::Error| EtcdError::Io(format!("cannot pick a free port: {e}"));
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(io))
        .collect()
}

/// The last [`LOG_TAIL_LINES`] lines of the log at `path`, read from its last [`LOG_TAIL_BYTES`].
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let start = file.metadata()?.len().saturating_sub(LOG_TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Reading from the middle of the file starts in the middle of a line: drop that part.
        let whole = if start > 0 {
            text.split_once('\n').map_or("", |(_, rest)| rest)
        } else {
            &text
        };
        let lines: Vec<&str> = whole.lines().collect();
        Ok(lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n"))
    };
    read().unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}
