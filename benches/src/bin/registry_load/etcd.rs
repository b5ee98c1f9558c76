//! etcd for `--store etcd`: a single member of the driver's own (127.0.0.1, ports the OS picked, a temporary
//! data directory; killed, by its pid, and removed when dropped), or the cluster `--etcd-endpoints` names; and
//! etcd's own Prometheus metrics (`/metrics` on its client port), sampled before and after each phase, with
//! etcd's CPU time (from /proc) when the member is the driver's.
//!
//! What etcd 3.4 counts, as read here:
//! - `etcd_server_proposals_committed_total`: raft entries committed, etcd's writes (a transaction, a put, a
//!   lease grant or revoke is one; a lease keep-alive is none: the leader renews the lease in memory);
//! - `etcd_mvcc_put_total`, `etcd_mvcc_delete_total`, `etcd_mvcc_txn_total`: keys written, keys deleted, and
//!   transactions of more than one operation (etcd counts a transaction of one put as that put alone: a
//!   registration is a put, a removal, its marker's put and the key's delete, a transaction);
//! - `etcd_debugging_lease_renewed_total`: lease keep-alives answered;
//! - `etcd_disk_wal_fsync_duration_seconds` (count and sum): the log's fsyncs, one per batch of entries;
//! - `etcd_debugging_mvcc_total_put_size_in_bytes`: the bytes of every key-value put (key, value, revisions,
//!   lease: etcd's own encoding);
//! - `etcd_debugging_mvcc_keys_total`, `etcd_mvcc_db_total_size_in_use_in_bytes`: the keys held and the
//!   database's size in use.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::process;

/// The etcd binary: `$ETCD_BIN`, else Debian's `/usr/bin/etcd`.
fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

/// How long the driver's member may take to answer its first `/health`: 20 s.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one read of `/metrics` may take: 5 s.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// etcd: the client URLs the registry is given, where its metrics are read, and its process if it is ours.
pub(crate) struct Etcd {
    /// etcd's client URLs, comma-separated, as the registry's `--etcd-endpoints` takes them.
    pub(crate) endpoints: String,
    /// The first endpoint's address, whose `/metrics` is read (one member's view, for a cluster).
    metrics: Option<SocketAddr>,
    member: Option<Member>,
}

/// The driver's own member.
struct Member {
    child: Child,
    dir: PathBuf,
}

impl Etcd {
    /// Starts a single-member etcd on 127.0.0.1 with ports the OS picked and a fresh directory, and waits until
    /// it answers.
    pub(crate) async fn start() -> Result<Etcd, String> {
        let dir = std::env::temp_dir().join(format!(
            "registry-load-etcd-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let (client, peer) = (free_port()?, free_port()?);
        let log_path = dir.join("etcd.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot make {}: {e}", log_path.display()))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let (client_url, peer_url) = (
            format!("http://127.0.0.1:{client}"),
            format!("http://127.0.0.1:{peer}"),
        );
        let bin = etcd_bin();
        let child = Command::new(&bin)
            .args(["--name", "load"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("load={peer_url}")])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut etcd = Etcd {
            endpoints: client_url,
            metrics: Some(SocketAddr::from(([127, 0, 0, 1], client))),
            member: Some(Member { child, dir }),
        };
        etcd.wait_healthy().await?;
        Ok(etcd)
    }

    /// The cluster at `endpoints` (comma-separated client URLs, `http://HOST:PORT`), started elsewhere.
    pub(crate) fn external(endpoints: &str) -> Result<Etcd, String> {
        let first = endpoints.split(',').next().unwrap_or("").trim();
        let host = first
            .strip_prefix("http://")
            .ok_or_else(|| format!("--etcd-endpoints {first:?}: expected http://HOST:PORT"))?;
        let metrics = host
            .trim_end_matches('/')
            .to_socket_addrs()
            .map_err(|e| format!("--etcd-endpoints {first:?}: {e}"))?
            .next();
        Ok(Etcd {
            endpoints: endpoints.to_owned(),
            metrics,
            member: None,
        })
    }

    /// Waits for the driver's member to answer `/health` with `true`, or fails with the end of its log.
    async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.metrics.ok_or("etcd has no client address")?;
        loop {
            if let Ok(body) = get(addr, "/health").await
                && body.contains("\"health\":\"true\"")
            {
                return Ok(());
            }
            let member = self.member.as_mut().ok_or("etcd is not the driver's")?;
            let exited = member.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(member.dir.join("etcd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "etcd at {} did not become healthy ({}); its log ends:\n{}",
                    self.endpoints,
                    exited.map_or_else(|| format!("{START_TIMEOUT:?}"), |s| s.to_string()),
                    tail.join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its process id, if the member is the driver's.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.member.as_ref().map(|m| m.child.id())
    }

    /// etcd's counters now, with its CPU time and memory if the member is the driver's.
    pub(crate) async fn sample(&self) -> Sample {
        let at = Instant::now();
        let text = match self.metrics {
            Some(addr) => get(addr, "/metrics").await.unwrap_or_default(),
            None => String::new(),
        };
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        Sample {
            at,
            cpu: self.pid().map(process::cpu),
            rss: self
                .pid()
                .map_or(f64::NAN, |pid| process::memory_mib(pid).0),
            proposals: value("etcd_server_proposals_committed_total"),
            puts: value("etcd_mvcc_put_total"),
            deletes: value("etcd_mvcc_delete_total"),
            txns: value("etcd_mvcc_txn_total"),
            renewals: value("etcd_debugging_lease_renewed_total"),
            fsyncs: value("etcd_disk_wal_fsync_duration_seconds_count"),
            fsync_secs: value("etcd_disk_wal_fsync_duration_seconds_sum"),
            put_bytes: value("etcd_debugging_mvcc_total_put_size_in_bytes"),
            keys: value("etcd_debugging_mvcc_keys_total"),
            db_in_use: value("etcd_mvcc_db_total_size_in_use_in_bytes"),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut member) = self.member.take() {
            let _ = member.child.kill();
            let _ = member.child.wait();
            let _ = std::fs::remove_dir_all(&member.dir);
        }
    }
}

/// A port of 127.0.0.1 free now (the OS's pick for port 0, released for etcd to bind).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot pick a free port: {e}"))
}

/// `GET path` as HTTP/1.0 (so that etcd's Go server answers unchunked), within [`SCRAPE_TIMEOUT`]; the body.
async fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let fetch = crate::dashboard::get_as(addr, path, "HTTP/1.0");
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("GET {path} from {addr}: no answer within {SCRAPE_TIMEOUT:?}"))??;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// etcd's counters at one moment (NaN where a metric was missing, or etcd's `/metrics` could not be read).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    at: Instant,
    /// etcd's CPU time, if its process is the driver's.
    cpu: Option<Duration>,
    /// etcd's resident memory in MiB, if its process is the driver's.
    rss: f64,
    proposals: f64,
    puts: f64,
    deletes: f64,
    txns: f64,
    renewals: f64,
    fsyncs: f64,
    fsync_secs: f64,
    put_bytes: f64,
    pub(crate) keys: f64,
    pub(crate) db_in_use: f64,
}

/// What etcd did between two samples, per second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rates {
    /// Raft entries committed per second: etcd's writes.
    pub(crate) proposals: f64,
    pub(crate) puts: f64,
    pub(crate) deletes: f64,
    pub(crate) txns: f64,
    /// Lease keep-alives answered per second.
    pub(crate) renewals: f64,
    pub(crate) fsyncs: f64,
    /// The mean fsync of the log, in ms.
    pub(crate) fsync_ms: f64,
    /// The mean bytes of a key-value put (etcd's encoding).
    pub(crate) put_size: f64,
    /// etcd's CPU time over the span, in % of one core (NaN if its process is not the driver's).
    pub(crate) cpu: f64,
    /// The change in the database's size in use, in bytes.
    pub(crate) db_growth: f64,
    /// etcd's resident memory at the end, in MiB (NaN if its process is not the driver's).
    pub(crate) rss: f64,
}

impl Sample {
    /// What etcd did from `before` to this sample.
    pub(crate) fn since(&self, before: &Sample) -> Rates {
        let secs = (self.at - before.at).as_secs_f64();
        let rate = |now: f64, then: f64| (now - then) / secs;
        let puts = self.puts - before.puts;
        let fsyncs = self.fsyncs - before.fsyncs;
        Rates {
            proposals: rate(self.proposals, before.proposals),
            puts: puts / secs,
            deletes: rate(self.deletes, before.deletes),
            txns: rate(self.txns, before.txns),
            renewals: rate(self.renewals, before.renewals),
            fsyncs: fsyncs / secs,
            fsync_ms: (self.fsync_secs - before.fsync_secs) * 1000.0 / fsyncs,
            put_size: (self.put_bytes - before.put_bytes) / puts,
            cpu: match (self.cpu, before.cpu) {
                (Some(now), Some(then)) => now.saturating_sub(then).as_secs_f64() * 100.0 / secs,
                _ => f64::NAN,
            },
            db_growth: self.db_in_use - before.db_in_use,
            rss: self.rss,
        }
    }
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "etcd {:.1} proposals/s ({:.1} txns/s, {:.1} puts/s, {:.1} deletes/s), {:.2} lease keep-alives/s, \
             {:.1} fsyncs/s (mean {:.2} ms), etcd CPU {:.1} %, etcd RSS {:.0} MiB",
            self.proposals,
            self.txns,
            self.puts,
            self.deletes,
            self.renewals,
            self.fsyncs,
            self.fsync_ms,
            self.cpu,
            self.rss
        )
    }
}
