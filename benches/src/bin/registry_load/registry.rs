//! The registry under test, in a process of its own (this binary again, with `--serve`), so that its memory
//! and threads are its own: the child serves `rpc_registry::serve` on two ports of 127.0.0.1 that the OS
//! assigns, prints them on one line, and exits when its standard input closes (when the driver goes away).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rpc_registry::RegistryConfig;

/// What the child prints once it listens.
const READY: &str = "registry listening";

/// The registry's configuration for `instances` instances in services of `per_service`.
pub(crate) fn config(instances: usize, per_service: usize, ttl: Duration) -> RegistryConfig {
    RegistryConfig {
        ttl,
        // The instances of the load, and the probe's.
        max_instances: instances + 16,
        max_instances_per_service: per_service.max(16),
        ..RegistryConfig::default()
    }
}

/// The child's side: serves a registry with `config` until standard input closes.
pub(crate) fn serve(config: RegistryConfig) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the registry's runtime: {e}"))?;
    runtime.block_on(async move {
        let rpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the registry's port: {e}"))?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the registry's HTTP port: {e}"))?;
        let (a, b) = (
            rpc.local_addr().map_err(|e| e.to_string())?,
            http.local_addr().map_err(|e| e.to_string())?,
        );
        println!("{READY} {a} {b}");
        let stdin_closed = async {
            // A blocking read on a thread of its own: EOF (or an error) means the driver is gone.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
        };
        rpc_registry::serve(config, rpc, Some(http), stdin_closed)
            .await
            .map_err(|e| format!("the registry failed: {e}"))
    })
}

/// The registry process, stopped (by its pid) when dropped.
pub(crate) struct Registry {
    child: Child,
    /// Its RPC API.
    pub(crate) rpc: SocketAddr,
    /// Its HTTP port.
    pub(crate) http: SocketAddr,
}

impl Registry {
    /// Starts this binary with `--serve` and `args`, and waits for its ports.
    pub(crate) fn spawn(args: &[String]) -> Result<Registry, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut child = Command::new(exe)
            .arg("--serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the registry process: {e}"))?;
        let stdout = child.stdout.take().ok_or("the registry has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the registry's ports: {e}"))?;
        let ports: Vec<&str> = line
            .trim()
            .strip_prefix(READY)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let parse = |s: Option<&&str>| s.and_then(|s| s.parse::<SocketAddr>().ok());
        match (parse(ports.first()), parse(ports.get(1))) {
            (Some(rpc), Some(http)) => Ok(Registry { child, rpc, http }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the registry said {line:?}, expected `{READY} RPC HTTP`"
                ))
            }
        }
    }

    /// The registry's resident memory and its peak so far, in MiB (`VmRSS`, `VmHWM` of /proc/PID/status).
    pub(crate) fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The registry's CPU time so far (user plus system), from /proc/PID/stat.
    pub(crate) fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of the line, 11 and 12 after the state field.
        let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&t| t > 0)
            .unwrap_or(100) as u64;
        Duration::from_millis((ticks(11) + ticks(12)) * 1000 / per_sec)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
