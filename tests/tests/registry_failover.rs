//! Clients of several equivalent addresses fail over between them, end to end over 127.0.0.1: rpc-core's client
//! of a list connects past an address that refuses, clients of one list spread over it, and one whose server
//! dies reaches another with its next call; a registration given two registries moves to the survivor within
//! one heartbeat interval of the death of the one that held it (with its token, and over TLS alike), and one
//! whose heartbeat found no registry tries again soon rather than a whole interval later; a discovery keeps its
//! instances through that death, then follows the survivor's changes; a comma-separated list with nothing in
//! it, or an empty entry, is refused naming what came.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rpc_core::tls::{ClientTls, ServerTls};
use rpc_core::{Client, ClientConfig, Server};
use rpc_registry::client::registration::Status;
use rpc_registry::{
    Discovery, DiscoveryConfig, Registration, RegistrationConfig, RegistryClient, RegistryConfig,
    RegistryListError, resolve_registries,
};
use tests::certs::Ca;
use tests::cluster::{
    Here, RunningRegistry, Served, WhereClient, WhereServer, new_instance, start_registry,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest one step of a test may take: a call, a server's shutdown.
const STEP: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(3);
/// A third of the TTL: how often the instances heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// What a heartbeat that moves to another registry may take beyond its interval: connecting, the heartbeat it
/// refuses, the registration made again.
const SLACK: Duration = Duration::from_millis(100);
/// The registries' token for writes; both have it.
const TOKEN: &str = "replica-token-1";

/// A server of `Where` on 127.0.0.1, at a port the OS assigns, until it is stopped.
struct Site {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Site {
    async fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .add_service(WhereServer::new(Here {
                address: addr.to_string(),
            }))
            .build()
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_with_shutdown(listener, async move {
            let _ = stopped.await;
        }));
        Site { addr, stop, task }
    }

    /// Shuts the server down gracefully and waits until it has returned: its listener is closed.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("the server stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// An address of 127.0.0.1 that was free a moment ago, with nothing listening on it now.
async fn closed_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A client of `Where` at the servers of `addrs` (one connection, to the first that answers).
async fn where_client(addrs: &[SocketAddr]) -> WhereClient {
    let client = Client::lazy_with(addrs, ClientConfig::default())
        .await
        .unwrap();
    WhereClient::new(client)
}

/// Calls `client` once, within a step.
async fn call(client: &WhereClient, n: u64) -> Served {
    tokio::time::timeout(STEP, client.serve(n))
        .await
        .expect("a call ends within 10 s")
        .unwrap_or_else(|e| panic!("call {n} failed: {e}"))
}

#[tokio::test]
async fn a_client_of_a_list_connects_past_an_address_that_refuses() {
    let closed = closed_addr().await;
    let live = Site::start().await;
    // Each client starts at an address drawn at random: of 16, some start at the closed one.
    for (n, addrs) in [[closed, live.addr], [live.addr, closed]]
        .iter()
        .cycle()
        .take(16)
        .enumerate()
    {
        let client = where_client(addrs).await;
        assert_eq!(call(&client, n as u64).await.by, live.addr.to_string());
    }
    live.stop().await;
}

#[tokio::test]
async fn a_list_whose_first_address_never_answers_reaches_the_next_within_short_deadlines() {
    // A listener whose accept queue is full: the kernel drops further connection attempts, as a host that is
    // down or cut off would; nothing refuses them.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let silent = socket.listen(0).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _filler = std::net::TcpStream::connect(silent_addr).unwrap();
    let live = Site::start().await;
    let addrs = [silent_addr, live.addr];
    // Calls with a deadline under the connect timeout (a heartbeat's, a third of a TTL of 3 s, against 3 s):
    // a dial cut short by the deadline still leaves the next attempt at the other address.
    let mut stuck = 0;
    for _ in 0..12 {
        let client = Client::lazy_with(&addrs[..], ClientConfig::default())
            .await
            .unwrap();
        let client = WhereClient::new(client).with_deadline(Duration::from_millis(300));
        let mut reached = false;
        for n in 0..3 {
            reached |= client.serve(n).await.is_ok();
        }
        stuck += usize::from(!reached);
    }
    drop(silent);
    assert_eq!(
        stuck, 0,
        "{stuck} of 12 clients never reached the live address in 3 calls"
    );
    live.stop().await;
}

#[tokio::test]
async fn clients_of_a_list_spread_over_it_and_move_on_when_their_server_dies() {
    let (a, b) = (Site::start().await, Site::start().await);
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    let mut on = BTreeMap::<String, Vec<WhereClient>>::new();
    for n in 0..32 {
        let client = where_client(&[a.addr, b.addr]).await;
        let served = call(&client, n).await;
        on.entry(served.by).or_default().push(client);
    }
    let count = |addr: &str| on.get(addr).map_or(0, Vec::len);
    // Each client starts at either with even odds: all 32 at one would happen once in 2^31 runs.
    assert!(
        count(&a_addr) > 0 && count(&b_addr) > 0,
        "32 clients of [A, B]: {} on A, {} on B",
        count(&a_addr),
        count(&b_addr)
    );
    // A client keeps the address that answered.
    for (addr, clients) in &on {
        for client in clients {
            assert_eq!(&call(client, 100).await.by, addr);
        }
    }

    // A's server stops and its listener closes: the next call of each client of A reaches B, and stays there.
    a.stop().await;
    // The connections to A have the server's go-away and end of stream waiting: a pause lets them read it (a
    // call sent before its connection read the go-away fails unprocessed, as on any connection that drains).
    tokio::time::sleep(Duration::from_millis(20)).await;
    for client in on.values().flatten() {
        assert_eq!(call(client, 200).await.by, b_addr);
        assert_eq!(call(client, 201).await.by, b_addr);
    }
    b.stop().await;
}

fn config() -> RegistryConfig {
    RegistryConfig {
        ttl: TTL,
        token: Some(TOKEN.into()),
        ..RegistryConfig::default()
    }
}

fn with_token() -> RegistrationConfig {
    RegistrationConfig {
        token: Some(TOKEN.into()),
        ..RegistrationConfig::default()
    }
}

/// Two independent in-memory registries (each its own state), with the same token.
async fn two_registries() -> [RunningRegistry; 2] {
    [
        start_registry(config(), 0).await.unwrap(),
        start_registry(config(), 0).await.unwrap(),
    ]
}

async fn registry_client(addr: SocketAddr) -> RegistryClient {
    RegistryClient::new(
        Client::lazy_with(addr, ClientConfig::default())
            .await
            .unwrap(),
    )
}

/// Whether the registry of `client` lists `address` among the instances of `Where`.
async fn lists(client: &RegistryClient, address: &str) -> bool {
    client
        .instances("Where".into())
        .await
        .is_ok_and(|s| s.instances.iter().any(|i| i.address == address))
}

/// Which of `registries` holds `address`: exactly one must.
async fn holder(registries: &[RegistryClient; 2], address: &str) -> usize {
    let held = [
        lists(&registries[0], address).await,
        lists(&registries[1], address).await,
    ];
    assert!(held[0] != held[1], "one registry holds {address}: {held:?}");
    usize::from(held[1])
}

#[tokio::test(start_paused = true)]
async fn a_registration_moves_to_the_other_registry_within_a_heartbeat_of_its_registrys_death() {
    let registries = two_registries().await;
    let addrs = [registries[0].addr, registries[1].addr];
    let clients = [
        registry_client(addrs[0]).await,
        registry_client(addrs[1]).await,
    ];
    let address = "10.0.0.7:7001";
    let registration = Registration::register(&addrs[..], new_instance(address, 1), with_token())
        .await
        .unwrap();
    assert_eq!(
        registration.lease().heartbeat_ms,
        HEARTBEAT.as_millis() as u64
    );
    // The registration went to one of the two, drawn at random.
    let first = holder(&clients, address).await;
    let survivor = 1 - first;

    // Ticks of 1 ms for a while, so that the death falls anywhere in a heartbeat interval.
    for _ in 0..137 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let [a, b] = registries;
    let (dead, _alive) = if first == 0 { (a, b) } else { (b, a) };
    dead.kill();
    let killed = Instant::now();
    let mut moved = false;
    for _ in 0..3000 {
        if lists(&clients[survivor], address).await {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = killed.elapsed();
    assert!(moved, "the survivor lists {address} within 3 s");
    assert!(
        took <= HEARTBEAT + SLACK,
        "listed by the survivor {took:?} after the death; heartbeats come every {HEARTBEAT:?}"
    );
    // Registered again, with the token, not stopped.
    assert!(
        matches!(*registration.status().borrow(), Status::Active(_)),
        "{:?}",
        *registration.status().borrow()
    );
}

/// Real clock: each step is a TLS handshake over a socket.
#[tokio::test]
async fn over_tls_a_registration_moves_to_the_other_registry_alike() {
    let ca = Ca::new("replicas CA");
    let id = ca.server(&["127.0.0.1"]);
    let tls = || RegistryConfig {
        tls: Some(ServerTls::from_pem(id.cert.as_bytes(), id.key.as_bytes(), None).unwrap()),
        ..config()
    };
    let registries = [
        start_registry(tls(), 0).await.unwrap(),
        start_registry(tls(), 0).await.unwrap(),
    ];
    let addrs = [registries[0].addr, registries[1].addr];
    let client_config = ClientConfig {
        tls: Some(ClientTls::from_pem(ca.pem.as_bytes(), None).unwrap()),
        ..ClientConfig::default()
    };
    let client = |addr| {
        let config = client_config.clone();
        async move { RegistryClient::new(Client::lazy_with(addr, config).await.unwrap()) }
    };
    let clients = [client(addrs[0]).await, client(addrs[1]).await];
    let address = "10.0.0.7:7001";
    let config = RegistrationConfig {
        client: ClientConfig {
            tls: client_config.tls.clone(),
            ..RegistrationConfig::default().client
        },
        ..with_token()
    };
    let registration = Registration::register(&addrs[..], new_instance(address, 1), config)
        .await
        .unwrap();
    let first = holder(&clients, address).await;
    let [a, b] = registries;
    let (dead, _alive) = if first == 0 { (a, b) } else { (b, a) };
    dead.kill();
    // Within a few heartbeat intervals (polled every 10 ms, at most 500 times).
    let mut moved = false;
    for _ in 0..500 {
        if lists(&clients[1 - first], address).await {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(moved, "the survivor lists {address} over TLS within 5 s");
    assert!(matches!(*registration.status().borrow(), Status::Active(_)));
}

/// Sleeps `ms` milliseconds in ticks of 1 ms, so that paused time never leaps past a step of a call in flight.
async fn ticks(ms: u64) {
    for _ in 0..ms {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_reached_no_registry_is_tried_again_soon_not_a_whole_interval_later() {
    let a = start_registry(config(), 0).await.unwrap();
    // B's port is free until B starts, after the heartbeat that finds neither registry.
    let b_addr = closed_addr().await;
    let clients = [registry_client(a.addr).await, registry_client(b_addr).await];
    let address = "10.0.0.7:7001";
    let registration = Registration::register(
        &[a.addr, b_addr][..],
        new_instance(address, 1),
        with_token(),
    )
    .await
    .unwrap();
    let registered = Instant::now();
    assert!(lists(&clients[0], address).await);
    // Heartbeats come at 1 s, 2 s, 3 s: A dies at 1.5 s, B starts at 2.2 s.
    ticks(1500).await;
    a.kill();
    ticks(700).await;
    let _b = start_registry(config(), b_addr.port()).await.unwrap();
    let started = Instant::now();
    let mut listed = false;
    for _ in 0..2000 {
        if lists(&clients[1], address).await {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    assert!(listed, "B lists {address} within 2 s of its start");
    // The heartbeat at 2 s failed; those that follow come 100 ms, then 200 ms later, not at 3 s.
    assert!(
        took <= Duration::from_millis(400),
        "listed by B {took:?} after its start, {:?} after the registration",
        registered.elapsed()
    );
    assert!(matches!(*registration.status().borrow(), Status::Active(_)));
}

#[tokio::test(start_paused = true)]
async fn a_discovery_keeps_its_instances_through_a_registrys_death_then_follows_the_other() {
    let registries = two_registries().await;
    let addrs = [registries[0].addr, registries[1].addr];
    let clients = [
        registry_client(addrs[0]).await,
        registry_client(addrs[1]).await,
    ];
    let first = "10.0.0.7:7001";
    let _registration = Registration::register(&addrs[..], new_instance(first, 1), with_token())
        .await
        .unwrap();
    let discovery = Discovery::new(&addrs[..], DiscoveryConfig::default())
        .await
        .unwrap();
    let known = discovery.wait_for("Where", 1, STEP).await;
    assert_eq!(known.len(), 1);
    let held = holder(&clients, first).await;
    let survivor = 1 - held;

    let [a, b] = registries;
    let (dead, alive) = if held == 0 { (a, b) } else { (b, a) };
    dead.kill();
    // Through the death, the watch failing and made again at the survivor, and the registration made again
    // there: the instance stays listed all along (3 s, in ticks of 10 ms).
    for tick in 0..300 {
        let now: Vec<String> = discovery
            .instances("Where")
            .into_iter()
            .map(|i| i.address)
            .collect();
        assert_eq!(now, [first], "tick {tick}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lists(&clients[survivor], first).await);

    // The survivor's changes reach the discovery.
    let second = "10.0.0.8:7001";
    let _other = Registration::register(alive.addr, new_instance(second, 1), with_token())
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = discovery
            .wait_for("Where", 2, Duration::from_millis(100))
            .await
            .into_iter()
            .map(|i| i.address)
            .collect::<Vec<_>>();
        if seen.len() == 2 {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, [first, second]);
    assert_eq!(discovery.last_error("Where"), None);
}

#[tokio::test]
async fn a_registry_list_with_nothing_or_an_empty_entry_is_refused_naming_what_came() {
    let err = resolve_registries("a:1,,b:2").await.unwrap_err();
    assert_eq!(
        err,
        RegistryListError::EmptyEntry {
            position: 2,
            given: "a:1,,b:2".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "expected host:port as entry 2 of the registry list `a:1,,b:2`, got an empty entry"
    );
    for given in ["", "  "] {
        let err = resolve_registries(given).await.unwrap_err();
        assert_eq!(
            err,
            RegistryListError::Empty {
                given: given.into()
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "expected one or more registry addresses, host:port separated by commas, got `{given}`"
            )
        );
    }
    // Spaces around the entries are fine.
    let addrs = resolve_registries(" 127.0.0.1:7070 , 127.0.0.1:7071 ")
        .await
        .unwrap();
    assert_eq!(addrs.len(), 2);
}
