//! The etcd store against real etcd processes: registry replicas started as a user starts them
//! (`rpc-registry serve --store etcd`, each its own process, killed with SIGKILL), instances registered through
//! `Registration` and called through `Discovery`, over 127.0.0.1 only.
//!
//! - Two, then three replicas serve the same view: one epoch, one revision, the same instances, whichever
//!   replica each registered with; a watcher that moves between replicas is told neither twice nor too little.
//! - A replica killed during 10,000 idempotent calls through discovery: no call fails, and every instance it
//!   held is held by a live replica again within one heartbeat.
//! - The etcd leader of three killed: the replicas go on answering, and writes resume after the election.
//! - Every replica killed and started again: no rule is lost, and every instance is back within one heartbeat.
//! - A replica whose watch resumes from a revision etcd has compacted reads everything again, and shows the
//!   same view as the others (removals included).
//! - A replica that hangs (SIGSTOP: no reset tells anyone) loses its instances to another within a TTL, and a
//!   discovery watching it moves to another once its watch goes silent; an
//!   eviction that could not be written while etcd was down is written once it is back; a replica starts
//!   beside instances whose values fill more than gRPC's default 4 MiB answer.
//!
//! etcd comes from Debian's `etcd-server`; without it each test says it skipped, unless `RPC_REQUIRE_ETCD=1`
//! (CI) makes that a failure. Needs the `etcd` feature: `cargo test -p rpc-registry --features etcd --test
//! etcd_replicas`.

/// The tests crate's etcd harness and HTTP client, shared by path: this test needs the binary of this crate.
#[path = "../../tests/src/"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod shared {
    pub mod etcd;
    pub mod http;
}
use shared::http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::{Client, ClientConfig, Server};
use rpc_registry::{
    Discovery, DiscoveryConfig, NewInstance, Placement, Registration, RegistrationConfig,
    RegistryClient, Snapshot,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use shared::etcd::{Etcd, EtcdCluster};

/// The replicas' TTL: instances heartbeat every third of it.
const TTL_MS: u64 = 3_000;
const HEARTBEAT: Duration = Duration::from_millis(TTL_MS / 3);
/// What moving to another replica may take beyond a heartbeat interval: noticing the death, connecting,
/// the heartbeat it refuses, the registration made again through etcd.
const SLACK: Duration = Duration::from_secs(1);
/// The longest one step of a test may take.
const STEP: Duration = Duration::from_secs(15);

#[rpc_core::service]
trait Echo {
    /// Answers `n`, with the address of the server that answered.
    #[idempotent]
    async fn echo(&self, n: u64) -> (u64, String);
}

struct Here(String);

impl Echo for Here {
    async fn echo(&self, n: u64) -> (u64, String) {
        (n, self.0.clone())
    }
}

/// A server of `Echo` on 127.0.0.1, at a port the OS assigns, for the test's lifetime.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(EchoServer::new(Here(addr.to_string())))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    addr
}

/// A registry replica: `rpc-registry serve --store etcd` in a child process.
struct Replica {
    name: String,
    endpoints: String,
    ttl_ms: u64,
    api: SocketAddr,
    /// Its HTTP port: `/healthz`, the dashboard's `/v1/overview`.
    http: SocketAddr,
    child: Option<Child>,
    data: PathBuf,
}

impl Replica {
    /// Starts replica `name` of the store at `endpoints`, its API at a port the OS assigns.
    async fn start(name: &str, endpoints: &str) -> Replica {
        Replica::start_with(name, endpoints, TTL_MS).await
    }

    /// As [`Replica::start`], with a TTL of `ttl_ms`.
    async fn start_with(name: &str, endpoints: &str, ttl_ms: u64) -> Replica {
        let data = std::env::temp_dir().join(format!(
            "rpc-registry-replica-{}-{name}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut replica = Replica {
            name: name.to_owned(),
            endpoints: endpoints.to_owned(),
            ttl_ms,
            api: "127.0.0.1:0".parse().unwrap(),
            http: "127.0.0.1:0".parse().unwrap(),
            child: None,
            data,
        };
        replica.run().await;
        replica
    }

    /// Starts the process, at the API address it had if it ran before.
    async fn run(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
            .arg("serve")
            .args(["--listen", &self.api.to_string(), "--http", "127.0.0.1:0"])
            .args(["--store", "etcd", "--etcd-endpoints", &self.endpoints])
            .args(["--replica-name", &self.name])
            .args(["--ttl-ms", &self.ttl_ms.to_string()])
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the rpc-registry binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        tokio::time::timeout(STEP, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("rpc-registry prints its address")
            .unwrap();
        let api = line
            .split_whitespace()
            .skip_while(|w| *w != "on")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches(',');
        self.api = api.parse().unwrap();
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no HTTP address in {line:?}"))
            .trim_end_matches(['/', ',']);
        self.http = http.parse().unwrap();
        self.child = Some(child);
    }

    /// Kills the process with SIGKILL, and waits for it to end.
    async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            let _ = child.wait().await;
        }
    }

    async fn client(&self) -> RegistryClient {
        RegistryClient::new(
            Client::lazy_with(self.api, ClientConfig::default())
                .await
                .unwrap(),
        )
        .with_deadline(STEP)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn instance(address: SocketAddr) -> NewInstance {
    NewInstance {
        service: "Echo".into(),
        address: address.to_string(),
        weight: 1,
        metadata: Default::default(),
    }
}

/// Starts `n` servers of `Echo` and registers each with the replicas at `addrs` (each starting at one of them,
/// at random).
async fn register_echo(addrs: &[SocketAddr], n: usize) -> Vec<Registration> {
    let mut registrations = Vec::new();
    for _ in 0..n {
        let addr = echo_server().await;
        let config = RegistrationConfig::default();
        registrations.push(
            Registration::register(addrs, instance(addr), config)
                .await
                .unwrap(),
        );
    }
    registrations
}

/// Polls `check` every 20 ms until it holds, for at most `limit`; answers how long it took.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    for _ in 0..(limit.as_millis() / 20 + 1) {
        if check().await {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {limit:?}");
}

async fn snapshot(replica: &RegistryClient) -> Snapshot {
    replica.instances("Echo".into()).await.unwrap()
}

async fn placement(replica: &RegistryClient) -> Placement {
    replica.placement(Some("Echo".into())).await.unwrap()
}

/// The instances of a snapshot as (address, lease, incarnation), sorted.
fn view(snapshot: &Snapshot) -> Vec<(String, u64, u64)> {
    let mut seen: Vec<_> = snapshot
        .instances
        .iter()
        .map(|i| (i.address.clone(), i.lease, i.incarnation))
        .collect();
    seen.sort();
    seen
}

/// Waits until every one of `replicas` lists `n` instances, then checks they all show the same view.
async fn same_view(replicas: &[RegistryClient], n: usize) -> Snapshot {
    for replica in replicas {
        within(STEP, "every replica lists the instances", || async {
            snapshot(replica).await.instances.len() == n
        })
        .await;
    }
    let first = snapshot(&replicas[0]).await;
    for replica in &replicas[1..] {
        let other = snapshot(replica).await;
        assert_eq!(
            (other.epoch, other.revision, view(&other)),
            (first.epoch, first.revision, view(&first)),
            "replicas differ"
        );
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_then_three_replicas_serve_the_same_view_and_a_watcher_moves_between_them() {
    let Some(etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let endpoints = etcd.endpoint_list();
    let mut replicas = vec![
        Replica::start("r1", &endpoints).await,
        Replica::start("r2", &endpoints).await,
    ];
    let mut registrations = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        for _ in 0..2 {
            let addr = echo_server().await;
            let config = RegistrationConfig::default();
            let registration = Registration::register(replica.api, instance(addr), config)
                .await
                .unwrap_or_else(|e| panic!("registration with replica {i}: {e}"));
            registrations.push(registration);
        }
    }
    let mut clients = vec![replicas[0].client().await, replicas[1].client().await];
    let two = same_view(&clients, 4).await;
    assert_ne!(two.revision, 0);

    replicas.push(Replica::start("r3", &endpoints).await);
    clients.push(replicas[2].client().await);
    let three = same_view(&clients, 4).await;
    assert_eq!((three.epoch, view(&three)), (two.epoch, view(&two)));
    for client in &clients {
        let placement = placement(client).await;
        assert_eq!(placement.store, "etcd");
        let names: Vec<&str> = placement.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["r1", "r2", "r3"]);
        let mut holders: Vec<&str> = placement.held.iter().map(|h| h.replica.as_str()).collect();
        holders.sort_unstable();
        assert_eq!(holders, ["r1", "r1", "r2", "r2"], "each instance's replica");
    }

    // Operators see the store and the replicas on each replica's HTTP port.
    for replica in &replicas {
        for path in ["/healthz", "/v1/overview"] {
            let (status, _, body) = http::request(replica.http, "GET", path, &[], "")
                .await
                .unwrap();
            assert!(status.contains("200"), "{path}: {status}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            let store = &body["store"];
            assert_eq!(
                (&store["kind"], &store["healthy"], &store["replica"]),
                (&"etcd".into(), &true.into(), &replica.name.as_str().into()),
                "{path}: {body}"
            );
            let names: Vec<&str> = store["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["r1", "r2", "r3"], "{path}");
        }
    }

    // A watcher of r1 at the current revision moves to r3: r3 has nothing new to tell it, and waits.
    let since = three.revision;
    let waited = clients[2]
        .watch_changes("Echo".into(), three.epoch, since, 300)
        .await
        .unwrap();
    assert_eq!(
        waited.snapshot.revision, since,
        "no change, no answer but the same"
    );
    // A change made through r2 reaches the watcher on r3, once, with nothing removed.
    let watching = {
        let r3 = clients[2].clone();
        tokio::spawn(async move {
            r3.watch_changes("Echo".into(), three.epoch, since, 10_000)
                .await
        })
    };
    let addr = echo_server().await;
    registrations.push(
        Registration::register(
            replicas[1].api,
            instance(addr),
            RegistrationConfig::default(),
        )
        .await
        .unwrap(),
    );
    let changed = tokio::time::timeout(STEP, watching)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(changed.snapshot.revision > since);
    assert_eq!(changed.snapshot.instances.len(), 5);
    assert!(changed.removed.is_empty());
    same_view(&clients, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_10000_calls_fails_none_and_its_instances_move_within_a_heartbeat()
{
    let Some(etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let endpoints = etcd.endpoint_list();
    let mut replicas = Vec::new();
    for name in ["r1", "r2", "r3"] {
        replicas.push(Replica::start(name, &endpoints).await);
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.api).collect();
    let _registrations = register_echo(&addrs, 4).await;
    let discovery = Discovery::new(&addrs[..], DiscoveryConfig::default())
        .await
        .unwrap();
    assert_eq!(discovery.wait_for("Echo", 4, STEP).await.len(), 4);
    let echo = EchoClient::discover(&discovery, "Echo").with_deadline(STEP);

    const CALLS: u64 = 10_000;
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (echo, done, failed, next) = (
            echo.clone(),
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&next),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= CALLS {
                    return;
                }
                match echo.echo(n).await {
                    Ok((back, _)) if back == n => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                // Spread the calls over the seconds the move takes.
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }));
    }
    within(STEP, "2,000 calls made", || async {
        done.load(Ordering::Relaxed) >= 2_000
    })
    .await;

    // Kill the replica that holds the first instance.
    let survivor = replicas[0].client().await;
    let before = placement(&survivor).await;
    let victim_name = before.held[0].replica.clone();
    let victim = replicas.iter().position(|r| r.name == victim_name).unwrap();
    let moved: Vec<(String, u64)> = before
        .held
        .iter()
        .filter(|h| h.replica == victim_name)
        .map(|h| (h.address.clone(), h.incarnation))
        .collect();
    replicas[victim].kill9().await;
    let killed = Instant::now();
    let asked = replicas[(victim + 1) % 3].client().await;
    let took = within(STEP, "every instance held by a live replica", || async {
        let now = placement(&asked).await;
        now.held.len() == 4
            && now.held.iter().all(|h| h.replica != victim_name)
            && moved.iter().all(|(address, incarnation)| {
                now.held
                    .iter()
                    .any(|h| &h.address == address && h.incarnation > *incarnation)
            })
    })
    .await;
    assert!(killed.elapsed() >= took);
    eprintln!("the instances of {victim_name} moved {took:?} after it was killed");
    assert!(
        took <= HEARTBEAT + SLACK,
        "the instances moved {took:?} after the kill, more than one heartbeat ({HEARTBEAT:?}) and {SLACK:?}"
    );

    for worker in workers {
        tokio::time::timeout(Duration::from_secs(120), worker)
            .await
            .expect("the calls finish")
            .unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), CALLS);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed calls");
    assert_eq!(discovery.instances("Echo").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_of_three_killed_the_replicas_go_on_serving_and_writes_resume() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3).await else {
        return;
    };
    let endpoints = cluster.endpoint_list();
    let replicas = [
        Replica::start("r1", &endpoints).await,
        Replica::start("r2", &endpoints).await,
    ];
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.api).collect();
    let mut registrations = register_echo(&addrs, 2).await;
    let clients = [replicas[0].client().await, replicas[1].client().await];
    same_view(&clients, 2).await;

    let leader = cluster.leader().await.unwrap();
    cluster.kill(leader);
    // Reads come from each replica's index: served while etcd elects.
    for client in &clients {
        assert_eq!(snapshot(client).await.instances.len(), 2);
    }
    // A write waits out the election (the store retries within its write timeout) and lands.
    let addr = echo_server().await;
    registrations.push(
        Registration::register(&addrs[..], instance(addr), RegistrationConfig::default())
            .await
            .expect("a registration after the leader's death"),
    );
    same_view(&clients, 3).await;
    // The cluster has a new leader among the two left, and the instances keep their leases meanwhile.
    let new_leader = cluster.leader().await.unwrap();
    assert_ne!(new_leader, leader);
    tokio::time::sleep(Duration::from_millis(TTL_MS)).await;
    same_view(&clients, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_restarted_loses_no_rule_and_every_instance_is_back_within_a_heartbeat() {
    let Some(etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let endpoints = etcd.endpoint_list();
    let mut replicas = [
        Replica::start("r1", &endpoints).await,
        Replica::start("r2", &endpoints).await,
    ];
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.api).collect();
    let rules = r#"{"service": "Echo", "authorization": {"default": "allow"}}"#;
    let applied = replicas[0]
        .client()
        .await
        .apply_rules(rules.to_owned())
        .await
        .unwrap()
        .unwrap();
    let _registrations = register_echo(&addrs, 3).await;
    let clients = [replicas[0].client().await, replicas[1].client().await];
    let before = view(&same_view(&clients, 3).await);

    for replica in &mut replicas {
        replica.kill9().await;
    }
    for replica in &mut replicas {
        replica.run().await;
    }
    let restarted = Instant::now();
    let clients = [replicas[0].client().await, replicas[1].client().await];
    for client in &clients {
        let rules = client.rules("Echo".into()).await.unwrap();
        assert_eq!(
            rules,
            Some(applied.clone()),
            "the rules survive the restart"
        );
    }
    let took = within(STEP, "every instance registered again", || async {
        let now = view(&snapshot(&clients[1]).await);
        now.len() == 3
            && before.iter().all(|(address, _, incarnation)| {
                now.iter().any(|(a, _, i)| a == address && i > incarnation)
            })
    })
    .await;
    assert!(restarted.elapsed() >= took);
    eprintln!("every instance was back {took:?} after the replicas restarted");
    assert!(
        took <= HEARTBEAT + SLACK,
        "the instances came back {took:?} after the restart, more than one heartbeat ({HEARTBEAT:?}) and {SLACK:?}"
    );
    same_view(&clients, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_comes_back_after_a_compaction_reads_everything_again() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3).await else {
        return;
    };
    // r1 reaches etcd through member 0 alone; r2 through the other two.
    let lone = Replica::start("r1", &cluster.member(0)).await;
    let others = format!("{},{}", cluster.member(1), cluster.member(2));
    let other = Replica::start("r2", &others).await;
    let clients = [lone.client().await, other.client().await];
    let mut kept = Vec::new();
    for _ in 0..2 {
        let addr = echo_server().await;
        kept.push(
            Registration::register(other.api, instance(addr), RegistrationConfig::default())
                .await
                .unwrap(),
        );
    }
    let gone_at = echo_server().await;
    let gone = Registration::register(other.api, instance(gone_at), RegistrationConfig::default())
        .await
        .unwrap();
    same_view(&clients, 3).await;

    // r1 loses etcd; meanwhile an instance leaves, another comes, and etcd compacts its history.
    cluster.kill(0);
    gone.deregister().await.unwrap();
    let addr = echo_server().await;
    kept.push(
        Registration::register(other.api, instance(addr), RegistrationConfig::default())
            .await
            .unwrap(),
    );
    let compacted = shared::etcd::compact(&cluster.member(1)).await.unwrap();
    assert_eq!(
        snapshot(&clients[0]).await.instances.len(),
        3,
        "r1 still shows what it had"
    );
    cluster.restart(0).await.unwrap();
    // Its watch from before the compaction is refused: it reads everything again, and shows what r2 shows.
    let (lone, other) = (&clients[0], &clients[1]);
    within(STEP, "r1 shows r2's view again", || async {
        let (a, b) = (snapshot(lone).await, snapshot(other).await);
        (a.epoch, a.revision, view(&a)) == (b.epoch, b.revision, view(&b))
    })
    .await;
    let now = snapshot(lone).await;
    assert!(now.revision <= compacted as u64);
    assert_eq!(now.instances.len(), 3);
    assert!(
        now.instances
            .iter()
            .all(|i| i.address != gone_at.to_string()),
        "the instance that left is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_that_could_not_be_written_is_tried_again_once_etcd_is_back() {
    let Some(mut etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let replica = Replica::start("r1", &etcd.endpoint_list()).await;
    let client = replica.client().await;
    // Registered by hand and never renewed: its timer fires a TTL later.
    client
        .register(instance(echo_server().await))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot(&client).await.instances.len(), 1);
    // etcd is gone from before the timer fires until after the eviction's write has given up (5 s).
    etcd.kill();
    tokio::time::sleep(Duration::from_millis(TTL_MS) + Duration::from_secs(7)).await;
    etcd.restart().await.unwrap();
    within(STEP, "the instance evicted once etcd is back", || async {
        snapshot(&client).await.instances.is_empty()
    })
    .await;
    let left = shared::etcd::get_prefix(&etcd.endpoint(), "/rpc-registry/instances/")
        .await
        .unwrap();
    assert!(left.is_empty(), "its key is gone from etcd: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instances_of_a_replica_that_hangs_move_to_another() {
    let Some(etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let endpoints = etcd.endpoint_list();
    let replicas = [
        Replica::start("r1", &endpoints).await,
        Replica::start("r2", &endpoints).await,
    ];
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.api).collect();
    let _registrations = register_echo(&addrs, 4).await;
    let clients = [replicas[0].client().await, replicas[1].client().await];
    same_view(&clients, 4).await;
    // Discoveries on connections of their own, which heartbeats never move: each starts at one of the two
    // replicas at random (all six at the live one: 1 in 64). A watch on the replica that hangs goes silent,
    // and moves.
    let before = placement(&clients[0]).await;
    let hung_name = before.held[0].replica.clone();
    let live_api = replicas.iter().find(|r| r.name != hung_name).unwrap().api;
    let mut discoveries = Vec::new();
    for _ in 0..6 {
        let handle = rpc_registry::RegistryHandle::new(
            &addrs[..],
            rpc_registry::RegistryHandle::default_config(),
        )
        .await
        .unwrap();
        let config = DiscoveryConfig {
            watch_wait: Duration::from_secs(1),
            ..DiscoveryConfig::default()
        };
        let discovery = Discovery::with_handle(&handle, config).unwrap();
        assert_eq!(discovery.wait_for("Echo", 4, STEP).await.len(), 4);
        discoveries.push(discovery);
    }
    let hung = replicas.iter().position(|r| r.name == hung_name).unwrap();
    let pid = replicas[hung]
        .child
        .as_ref()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    // SIGSTOP: the process answers nothing and its sockets stay open, as a hung process or a host cut off
    // would; no reset tells the clients.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let survivor = &clients[1 - hung];
    let took = within(STEP, "the instances held by the live replica", || async {
        let now = placement(survivor).await;
        now.held.len() == 4 && now.held.iter().all(|h| h.replica != hung_name)
    })
    .await;
    eprintln!("the instances of {hung_name} moved {took:?} after it hung");
    // Two heartbeats without an answer (a second each) move the connection on: before the hung replica's etcd
    // lease ends, a TTL after its last keep-alive.
    assert!(
        took <= Duration::from_millis(TTL_MS) + SLACK,
        "the instances moved {took:?} after the replica hung"
    );
    // Every discovery hears of an instance that registers with the live replica now.
    let _late = register_echo(&[live_api], 1).await;
    within(
        STEP,
        "every discovery moved off the hung replica",
        || async { discoveries.iter().all(|d| d.instances("Echo").len() == 5) },
    )
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert_eq!(snapshot(survivor).await.instances.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starts_beside_instances_whose_metadata_fills_many_megabytes() {
    let Some(etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let endpoints = etcd.endpoint_list();
    // A TTL of a minute: the instances are registered by hand, and never renewed.
    let first = Replica::start_with("r1", &endpoints, 60_000).await;
    let client = first.client().await;
    // 250 instances within the registry's limits, each with 4,000 control characters of metadata (6 bytes
    // each as JSON): about 6 MB, more than gRPC's default 4 MiB answer, and more than one page.
    let value = "\u{1}".repeat(4000);
    for port in 1..=250u16 {
        let mut new = instance(SocketAddr::from(([127, 0, 0, 1], port)));
        new.metadata.insert("k".to_owned(), value.clone());
        client.register(new).await.unwrap().unwrap();
    }
    assert_eq!(snapshot(&client).await.instances.len(), 250);
    let second = Replica::start_with("r2", &endpoints, 60_000).await;
    let clients = [client, second.client().await];
    same_view(&clients, 250).await;
}
