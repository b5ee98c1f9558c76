//! The registry's watch as a stream (protocol 1.1), on 127.0.0.1: `subscribe` answers the state at once, then
//! each change as it happens with the removals and their reasons, and the state unchanged after each wait;
//! discovery follows a registry through it, and falls back to long polls against a registry that does not
//! stream.

use std::time::Duration;

use rpc_core::{Client, Server};
use rpc_registry::api::{LeaseRef, RegistryClient, RegistryServer, Watched};
use rpc_registry::{Discovery, DiscoveryConfig, RegistryConfig, RegistryService};
use tests::cluster::{new_instance, start_registry};

const STEP: Duration = Duration::from_secs(5);

/// The next item of `changes`, which must come within 5 s.
async fn next(changes: &mut rpc_core::Streaming<Watched>) -> Watched {
    tokio::time::timeout(STEP, changes.next())
        .await
        .expect("an item within 5 s")
        .expect("the stream goes on")
        .expect("an item")
}

#[tokio::test]
async fn subscribe_streams_the_state_then_each_change() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let client = RegistryClient::new(Client::connect(registry.addr).await.unwrap());
    let mut changes = client
        .subscribe("Where".into(), 0, 0, 60_000)
        .await
        .unwrap();
    let first = next(&mut changes).await;
    assert!(first.snapshot.instances.is_empty());

    let lease = client
        .register(new_instance("127.0.0.1:7101", 3))
        .await
        .unwrap()
        .unwrap();
    let added = next(&mut changes).await;
    let addresses: Vec<_> = added
        .snapshot
        .instances
        .iter()
        .map(|i| i.address.as_str())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:7101"]);
    assert!(added.snapshot.revision > first.snapshot.revision);

    let gone = LeaseRef {
        lease: lease.id,
        incarnation: lease.incarnation,
        service: "Where".into(),
        address: "127.0.0.1:7101".into(),
    };
    client.deregister(gone).await.unwrap().unwrap();
    let removed = next(&mut changes).await;
    assert!(removed.snapshot.instances.is_empty());
    assert_eq!(removed.removed.len(), 1, "{removed:?}");
    assert_eq!(removed.removed[0].address, "127.0.0.1:7101");
    assert!(removed.complete);
}

// On the paused clock: the wait is the registry's timing, not the machine's speed.
#[tokio::test(start_paused = true)]
async fn a_subscription_sends_the_state_unchanged_after_each_wait() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let client = RegistryClient::new(Client::connect(registry.addr).await.unwrap());
    // A wait below the registry's least (1 s) counts as 1 s.
    let mut changes = client.subscribe("Where".into(), 0, 0, 10).await.unwrap();
    let first = changes.next().await.unwrap().unwrap();
    let started = tokio::time::Instant::now();
    let again = tokio::time::timeout(STEP, changes.next())
        .await
        .expect("the state again within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(again.snapshot.revision, first.snapshot.revision);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn discovery_follows_a_registry_that_streams() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let client = RegistryClient::new(Client::connect(registry.addr).await.unwrap());
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    let mut watch = discovery.watch("Where");
    client
        .register(new_instance("127.0.0.1:7102", 1))
        .await
        .unwrap()
        .unwrap();
    let seen = tokio::time::timeout(
        STEP,
        watch.wait_for(|s| s.instances.iter().any(|i| i.address == "127.0.0.1:7102")),
    )
    .await;
    assert!(seen.is_ok(), "discovery did not see the instance");
}

/// A registry from before `subscribe`: the method is unknown, and no method streams.
struct OlderRegistry(RegistryServer<RegistryService>);

impl rpc_core::Service for OlderRegistry {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn methods(&self) -> &'static [rpc_core::MethodInfo] {
        self.0.methods()
    }

    fn dispatch(&self, call: rpc_core::server::Call<'_>) -> rpc_core::server::Dispatched {
        if call.method_id() == rpc_core::codec::method_id("Registry", "subscribe") {
            return call.unimplemented();
        }
        self.0.dispatch(call)
    }
}

#[tokio::test]
async fn discovery_falls_back_to_long_polls_against_a_registry_that_does_not_stream() {
    let (service, evictions) = RegistryService::new(RegistryConfig::default()).unwrap();
    let evictions = tokio::spawn(evictions);
    let server = Server::builder()
        .add_service(OlderRegistry(RegistryServer::new(service)))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(server.serve(listener));
    let client = RegistryClient::new(Client::connect(addr).await.unwrap());
    // The older registry refuses a stream of `subscribe`, which it does not declare.
    let mut refused = client.subscribe("Where".into(), 0, 0, 1000).await.unwrap();
    let error = refused.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), rpc_core::Status::InvalidArgument, "{error}");

    let discovery = Discovery::new(addr, DiscoveryConfig::default())
        .await
        .unwrap();
    let mut watch = discovery.watch("Where");
    client
        .register(new_instance("127.0.0.1:7103", 1))
        .await
        .unwrap()
        .unwrap();
    let seen = tokio::time::timeout(
        STEP,
        watch.wait_for(|s| s.instances.iter().any(|i| i.address == "127.0.0.1:7103")),
    )
    .await;
    assert!(seen.is_ok(), "discovery did not fall back to long polls");
    served.abort();
    evictions.abort();
}

#[tokio::test]
async fn discovery_follows_with_long_polls_the_services_past_the_registrys_limit_of_streams() {
    let mut config = RegistryConfig::default();
    config.server.max_streams_per_connection = 2;
    let registry = start_registry(config, 0).await.unwrap();
    let client = RegistryClient::new(Client::connect(registry.addr).await.unwrap());
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    // Three services on one connection: the third is refused a stream, and long-polled instead.
    let mut watches: Vec<_> = ["A", "B", "C"].iter().map(|s| discovery.watch(s)).collect();
    for (i, service) in ["A", "B", "C"].iter().enumerate() {
        let mut instance = new_instance(&format!("127.0.0.1:{}", 7110 + i), 1);
        instance.service = (*service).to_owned();
        client.register(instance).await.unwrap().unwrap();
    }
    for (i, watch) in watches.iter_mut().enumerate() {
        let address = format!("127.0.0.1:{}", 7110 + i);
        let seen = tokio::time::timeout(
            STEP,
            watch.wait_for(|s| s.instances.iter().any(|x| x.address == address)),
        )
        .await;
        assert!(seen.is_ok(), "discovery did not see {address}");
    }
}
