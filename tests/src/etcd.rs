//! Real etcd processes for the tests of the registry's etcd store: one member ([`Etcd`]) or a cluster of several
//! ([`EtcdCluster`]), each member a child process of Debian's `etcd-server` (3.4) listening on 127.0.0.1 only, on
//! ports picked for it, with a fresh directory of its own (its data and its log, `etcd.log`); a member can be
//! killed by its pid and restarted on the same ports and data, and dropping the handle kills every member still
//! running and removes the directories. The start waits, bounded, until every member names the same leader.
//! When etcd is not installed, [`EtcdCluster::start`] says so with [`EtcdError::NotInstalled`], and the
//! `start_or_skip` helpers let a test skip, unless [`REQUIRE_ETCD_ENV`] is `1` (as CI sets it).
//!
//! # Layout
//! - this file: [`EtcdCluster`] and [`Etcd`]: starting, waiting for a leader, killing, restarting, cleaning up.
//! - `etcd/member.rs`: one member's process: its ports, its directory, its command line, its log.
//! - `etcd/gateway.rs`: calls to etcd's JSON gateway ([`status`], [`put`], [`get_prefix`]).
//! - `etcd/error.rs`: [`EtcdError`], and skipping a test when etcd is missing.
//! - `etcd/base64.rs`: the base64 of the gateway's keys and values.
//!
//! # Looking at etcd's state from a test
//! etcd 3.4 serves its v3 API as JSON over HTTP/1.1 on every client URL (grpc-gateway). Every call is a `POST`
//! with a JSON body; keys and values are base64 ([`encode_base64`], [`decode_base64`]); 64-bit numbers (ids,
//! revisions, TTLs) are JSON strings; fields that are zero or empty are left out of answers. A failed call
//! answers a non-200 status with `{"error", "message", "code"}`. The calls a test may want:
//! - `/v3/maintenance/status` `{}`: `header.member_id`, `leader` (the leader's member id), `raftTerm`,
//!   `version` ([`status`]).
//! - `/v3/kv/put` `{"key", "value", "lease"}` ([`put`]).
//! - `/v3/kv/range` `{"key", "range_end"}`: `kvs[]` (`key`, `value`, `lease`, `create_revision`,
//!   `mod_revision`, `version`) and `count`, sorted by key. Without `range_end` it reads `key` alone; with the
//!   [`prefix_end`] of a prefix, every key under it ([`get_prefix`]).
//! - `/v3/kv/deleterange` `{"key", "range_end"}`: `deleted`.
//! - `/v3/lease/grant` `{"TTL": 5}`: `ID`; `/v3/lease/timetolive` `{"ID", "keys": true}`: `TTL` (`-1` once the
//!   lease is gone) and `keys`; `/v3/lease/revoke` `{"ID"}`; `/v3/lease/leases` `{}`: `leases[].ID`.
//! - `/v3/cluster/member/list` `{}`: `members[]` (`ID`, `name`, `peerURLs`, `clientURLs`).
//!
//! The async functions here need a tokio runtime whose clock runs: they sleep between polls, bounded in count
//! and in real time, so a test must not pause tokio's clock while it waits on etcd.
//!
//! ```no_run
//! # async fn f() {
//! use tests::etcd::{self, EtcdCluster};
//!
//! let Some(mut cluster) = EtcdCluster::start_or_skip(3).await else { return };
//! let leader = cluster.leader().await.unwrap();
//! cluster.kill(leader);
//! let new_leader = cluster.leader().await.unwrap();
//! assert_ne!(new_leader, leader);
//! etcd::put(&cluster.member(new_leader), "/rpc/a", "1").await.unwrap();
//! let keys = etcd::get_prefix(&cluster.member(new_leader), "/rpc/").await.unwrap();
//! assert_eq!(keys, [(String::from("/rpc/a"), String::from("1"))]);
//! cluster.restart(leader).await.unwrap();
//! # }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod base64;
mod error;
mod gateway;
mod member;

pub use base64::{decode_base64, encode_base64};
pub use error::{EtcdError, REQUIRE_ETCD_ENV, required};
pub use gateway::{REQUEST_LIMIT, Status, compact, get_prefix, prefix_end, put, status};
pub use member::{
    DEFAULT_ETCD_BIN, ELECTION_MS, ETCD_BIN_ENV, HEARTBEAT_MS, LOG_TAIL_LINES, etcd_bin,
};

use error::or_skip;
use member::{Launch, Member, free_ports};

/// How long a start, a restart or [`EtcdCluster::leader`] waits for the members to agree on a leader: 20 s.
pub const READY_LIMIT: Duration = Duration::from_secs(20);

/// How often the members' status is polled while waiting: every 50 ms.
pub const POLL: Duration = Duration::from_millis(50);

/// How many times a start is tried with fresh ports when a member finds one of its ports taken: 3.
pub const START_ATTEMPTS: usize = 3;

/// Makes each cluster's directory and token unique within the process.
static NEXT_CLUSTER: AtomicU64 = AtomicU64::new(0);

/// A cluster of etcd members on 127.0.0.1, killed and removed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    bin: PathBuf,
    token: String,
    dir: PathBuf,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `n` members of a new cluster with [`etcd_bin`] and waits, at most [`READY_LIMIT`], until every
    /// member names the same leader.
    ///
    /// # Panics
    /// If `n` is 0.
    pub async fn start(n: usize) -> Result<EtcdCluster, EtcdError> {
        EtcdCluster::start_with_bin(etcd_bin(), n).await
    }

    /// [`EtcdCluster::start`] with the etcd binary at `bin`.
    ///
    /// # Panics
    /// If `n` is 0.
    pub async fn start_with_bin(
        bin: impl Into<PathBuf>,
        n: usize,
    ) -> Result<EtcdCluster, EtcdError> {
        assert!(n > 0, "a cluster has at least one member");
        let bin = bin.into();
        if !bin.is_file() {
            return Err(EtcdError::NotInstalled(format!(
                "no file at {}",
                bin.display()
            )));
        }
        let mut attempt = 1;
        loop {
            // Dropping a cluster that failed to start kills its members and removes its directory.
            let mut cluster = EtcdCluster::launch(bin.clone(), n)?;
            match cluster
                .settle("the new cluster's members agreeing on a leader")
                .await
            {
                Ok(_) => return Ok(cluster),
                Err(e) if e.is_port_taken() && attempt < START_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// [`EtcdCluster::start`], or `None` when etcd is not installed and not [`required`] (the test skips, saying
    /// so on stderr).
    ///
    /// # Panics
    /// If etcd is installed but does not start, or is required and missing.
    pub async fn start_or_skip(n: usize) -> Option<EtcdCluster> {
        or_skip(EtcdCluster::start(n).await)
    }

    /// Picks the ports, makes the directories and starts every member, without waiting.
    fn launch(bin: PathBuf, n: usize) -> Result<EtcdCluster, EtcdError> {
        let serial = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
        let token = format!("rpc-etcd-{}-{serial}", std::process::id());
        let dir = std::env::temp_dir().join(&token);
        // Left behind by an earlier test process that had the same pid and died without unwinding.
        let _ = std::fs::remove_dir_all(&dir);
        let ports = free_ports(2 * n)?;
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                dir: dir.join(format!("m{i}")),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            bin,
            token,
            dir,
            members,
        };
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        Ok(cluster)
    }

    /// Starts member `i`'s process, with `--initial-cluster-state` `state` (`new` or `existing`).
    fn spawn(&mut self, i: usize, state: &str) -> Result<(), EtcdError> {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let launch = Launch {
            bin: &self.bin,
            token: &self.token,
            initial_cluster: &initial_cluster,
            state,
        };
        self.members[i].spawn(&launch)
    }

    /// Waits, at most [`READY_LIMIT`], until every running member names the same running member as the leader;
    /// returns that member's index. A member that exits meanwhile is an error.
    async fn settle(&mut self, what: &str) -> Result<usize, EtcdError> {
        let deadline = Instant::now() + READY_LIMIT;
        let most = READY_LIMIT.as_millis() / POLL.as_millis() + 1;
        let mut seen = String::from("nothing yet");
        for _ in 0..most {
            self.check_running()?;
            match self.agreed_leader().await {
                Ok(leader) => return Ok(leader),
                Err(now) => seen = now,
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let log = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("-- {}:\n{}", m.name, m.log_tail()))
            .collect::<Vec<_>>()
            .join("\n");
        Err(EtcdError::NotReady {
            what: what.to_owned(),
            limit: READY_LIMIT,
            seen,
            log,
        })
    }

    /// An error if a member this harness started has exited on its own.
    fn check_running(&mut self) -> Result<(), EtcdError> {
        self.members.iter_mut().try_for_each(Member::check_running)
    }

    /// The index of the leader if every running member names the same running member; else what they said.
    async fn agreed_leader(&self) -> Result<usize, String> {
        if self.members.iter().all(|m| m.child.is_none()) {
            return Err(String::from("no member runs"));
        }
        let mut said = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_some() {
                let answer = status(&member.endpoint()).await;
                said.push((i, answer));
            }
        }
        let describe = |said: &[(usize, Result<Status, EtcdError>)]| {
            said.iter()
                .map(|(i, answer)| match answer {
                    Ok(s) => format!("m{i} (id {:x}) names leader {:x}", s.member_id, s.leader),
                    Err(e) => format!("m{i}: {e}"),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut leaders = said.iter().map(|(_, answer)| match answer {
            Ok(s) if s.leader != 0 => Some(s.leader),
            _ => None,
        });
        let first = leaders.next().flatten();
        let agreed = first.filter(|_| leaders.all(|l| l == first));
        let index = agreed.and_then(|leader| {
            said.iter().find_map(|(i, answer)| match answer {
                Ok(s) if s.member_id == leader => Some(*i),
                _ => None,
            })
        });
        index.ok_or_else(|| describe(&said))
    }

    /// How many members the cluster has, running or not.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never: a cluster has at least one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL, `http://127.0.0.1:PORT`, in member order, killed members included.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// [`EtcdCluster::endpoints`] joined with commas, as etcd clients take them.
    pub fn endpoint_list(&self) -> String {
        self.endpoints().join(",")
    }

    /// Member `i`'s client URL.
    ///
    /// # Panics
    /// If there is no member `i`.
    pub fn member(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    /// Member `i`'s client address.
    ///
    /// # Panics
    /// If there is no member `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.members[i].client_port))
    }

    /// The pid of member `i`'s process while it runs.
    ///
    /// # Panics
    /// If there is no member `i`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Whether member `i` runs (was started and not killed here; one that exited on its own counts until a
    /// wait notices).
    ///
    /// # Panics
    /// If there is no member `i`.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// The cluster's directory: one subdirectory per member, `m0`, `m1`, ..., holding its `data` and `etcd.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index of the leader every running member names, waiting at most [`READY_LIMIT`] until they agree on a
    /// running member: right after [`EtcdCluster::kill`]ing the leader this is the wait for the others to elect a
    /// new one.
    pub async fn leader(&mut self) -> Result<usize, EtcdError> {
        self.settle("the running members agreeing on a running leader")
            .await
    }

    /// Kills member `i` with SIGKILL, by its pid, and reaps it; nothing if it is not running. Its ports and data
    /// stay for [`EtcdCluster::restart`].
    ///
    /// # Panics
    /// If there is no member `i`.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts killed member `i` again with the same name, ports and data (`--initial-cluster-state existing`)
    /// and waits, at most [`READY_LIMIT`], until every running member, it too, names the same leader.
    ///
    /// # Panics
    /// If there is no member `i`, or it is running.
    pub async fn restart(&mut self, i: usize) -> Result<(), EtcdError> {
        assert!(!self.is_running(i), "member m{i} is running");
        self.spawn(i, "existing")?;
        self.settle(&format!(
            "restarted member m{i} agreeing with the others on a leader"
        ))
        .await
        .map(|_| ())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One etcd member, a cluster of one, killed and removed on drop.
#[derive(Debug)]
pub struct Etcd {
    cluster: EtcdCluster,
}

impl Etcd {
    /// Starts a member with [`etcd_bin`] and waits, at most [`READY_LIMIT`], until it leads itself.
    pub async fn start() -> Result<Etcd, EtcdError> {
        EtcdCluster::start(1).await.map(|cluster| Etcd { cluster })
    }

    /// [`Etcd::start`], or `None` when etcd is not installed and not [`required`] (the test skips, saying so on
    /// stderr).
    ///
    /// # Panics
    /// If etcd is installed but does not start, or is required and missing.
    pub async fn start_or_skip() -> Option<Etcd> {
        or_skip(Etcd::start().await)
    }

    /// Its client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.cluster.member(0)
    }

    /// Its client URL, alone in a list.
    pub fn endpoints(&self) -> Vec<String> {
        self.cluster.endpoints()
    }

    /// Its client URL (a list of one, for what takes a comma-separated list).
    pub fn endpoint_list(&self) -> String {
        self.cluster.endpoint_list()
    }

    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        self.cluster.addr(0)
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.cluster.pid(0)
    }

    /// Its directory, holding its `m0/data` and `m0/etcd.log`.
    pub fn dir(&self) -> &Path {
        self.cluster.dir()
    }

    /// Kills it with SIGKILL and reaps it; nothing if it is not running.
    pub fn kill(&mut self) {
        self.cluster.kill(0);
    }

    /// Starts it again, killed, on the same port and data, and waits until it leads itself.
    ///
    /// # Panics
    /// If it is running.
    pub async fn restart(&mut self) -> Result<(), EtcdError> {
        self.cluster.restart(0).await
    }
}
