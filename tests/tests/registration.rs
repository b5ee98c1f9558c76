//! Registrations and discoveries as one process holds them, end to end over 127.0.0.1 with paused tokio time,
//! through a proxy that counts connections and can hold an answer back: every registration and discovery of a
//! process shares one connection to a registry (whatever their tokens), and an instance whose registration
//! made again was answered late, or never, stays registered; one that another instance truly superseded
//! says so, and so does one whose heartbeats the registry refuses for good (another identity owns the
//! instance, or its token is no longer granted the service): it stops heartbeating. A connection made on one
//! tokio runtime is never handed to another.

#[path = "registration/proxy.rs"]
mod proxy;

use std::time::Duration;

use rpc_core::Client;
use rpc_registry::client::registration::Status;
use rpc_registry::server::credentials::TokenGrant;
use rpc_registry::{
    Credentials, Discovery, DiscoveryConfig, LeaseRef, Registration, RegistrationConfig,
    RegistryClient, RegistryConfig, RegistryError, RegistryHandle,
};
use tests::cluster::{new_instance, start_registry};

use proxy::Proxy;

const TTL: Duration = Duration::from_secs(3);
/// A token the registry wants for writes; reads need none.
const TOKEN: &str = "registry-token-1";

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

/// A client of the registry at `addr` that bypasses the proxy, with the token.
async fn direct(addr: std::net::SocketAddr) -> RegistryClient {
    let client = RegistryClient::new(Client::lazy_with(addr, Default::default()).await.unwrap());
    let token = rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {TOKEN}"))]);
    client.with_metadata(token.unwrap())
}

/// The lease the registry holds for `address` of `Where`, if any.
async fn holder(registry: &RegistryClient, address: &str) -> Option<u64> {
    let snapshot = registry.instances("Where".into()).await.unwrap();
    snapshot
        .instances
        .iter()
        .find(|i| i.address == address)
        .map(|i| i.lease)
}

#[tokio::test(start_paused = true)]
async fn registrations_and_a_discovery_of_one_process_share_one_connection() {
    let registry = start_registry(config(), 0).await.unwrap();
    let proxy = Proxy::start(registry.addr).await;
    let mut registrations = Vec::new();
    for port in 1..=8 {
        let instance = new_instance(&format!("127.0.0.1:{port}"), 1);
        let registration = Registration::register(proxy.addr, instance, with_token())
            .await
            .unwrap();
        registrations.push(registration);
    }
    // A discovery without a token (reads need none) over the same connection.
    let discovery = Discovery::new(proxy.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    assert_eq!(discovery.wait_for("Where", 8, TTL).await.len(), 8);
    // Several heartbeats later every instance is still registered, still over one connection.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(discovery.instances("Where").len(), 8);
    let snapshot = direct(registry.addr)
        .await
        .instances("Where".into())
        .await
        .unwrap();
    assert_eq!(snapshot.instances.len(), 8);
    assert_eq!(proxy.accepted(), 1, "connections opened to the registry");
}

#[tokio::test(start_paused = true)]
async fn an_explicit_handle_carries_registrations_and_discoveries_over_one_connection() {
    let registry = start_registry(config(), 0).await.unwrap();
    let proxy = Proxy::start(registry.addr).await;
    let handle = RegistryHandle::new(proxy.addr, RegistryHandle::default_config())
        .await
        .unwrap();
    let a = Registration::register_with(&handle, new_instance("127.0.0.1:1", 1), with_token())
        .await
        .unwrap();
    let b = Registration::register_with(
        &handle.clone(),
        new_instance("127.0.0.1:2", 2),
        with_token(),
    )
    .await
    .unwrap();
    let discovery = Discovery::with_handle(&handle, DiscoveryConfig::default()).unwrap();
    let other = Discovery::with_handle(&handle, DiscoveryConfig::default()).unwrap();
    assert_eq!(discovery.wait_for("Where", 2, TTL).await.len(), 2);
    assert_eq!(other.wait_for("Where", 2, TTL).await.len(), 2);
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(discovery.instances("Where").len(), 2);
    assert_eq!(proxy.accepted(), 1, "connections opened to the registry");
    // A handle of its own is another connection; the shared one of the same address and config is one more,
    // given to every caller alike.
    let shared = RegistryHandle::shared(proxy.addr, &RegistryHandle::default_config())
        .await
        .unwrap();
    let again = RegistryHandle::shared(proxy.addr, &RegistryHandle::default_config())
        .await
        .unwrap();
    assert!(shared.same_connection(&again));
    assert!(!shared.same_connection(&handle));
    a.deregister().await.unwrap();
    b.deregister().await.unwrap();
}

/// Registers an instance through the proxy, makes the registry forget its lease (as an expiry would), and holds
/// back the answer to the registration the instance then makes again, for `delay`; returns the registration.
async fn registration_made_again_answered_after(
    proxy: &Proxy,
    registry: &RegistryClient,
    address: &str,
    delay: Duration,
) -> Registration {
    let registration = Registration::register(proxy.addr, new_instance(address, 1), with_token())
        .await
        .unwrap();
    let lease = registration.lease();
    assert_eq!(lease.heartbeat_ms, 1000);
    proxy.hold_next_answer(rpc_codec::method_id("Registry", "register"), delay);
    let forgotten = LeaseRef {
        lease: lease.id,
        incarnation: lease.incarnation,
        service: "Where".into(),
        address: address.into(),
    };
    registry.deregister(forgotten).await.unwrap().unwrap();
    assert!(
        proxy.answer_held(TTL * 2).await,
        "the instance registered again at its next heartbeat"
    );
    registration
}

/// Checks over several TTLs that `registration` stays registered under the lease it knows, and active.
async fn stays_registered(registration: &Registration, registry: &RegistryClient, address: &str) {
    for _ in 0..4 {
        tokio::time::sleep(TTL).await;
        assert_eq!(
            holder(registry, address).await,
            Some(registration.lease().id),
            "the instance is registered under the lease it heartbeats"
        );
        assert_eq!(
            *registration.status().borrow(),
            Status::Active(registration.lease())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_instance_whose_registration_made_again_is_answered_late_stays_registered() {
    let registry = start_registry(config(), 0).await.unwrap();
    let proxy = Proxy::start(registry.addr).await;
    let client = direct(registry.addr).await;
    let address = "127.0.0.1:9";
    // Later than a heartbeat interval (1 s), within the TTL.
    let late = Duration::from_millis(1500);
    let registration = registration_made_again_answered_after(&proxy, &client, address, late).await;
    let first = registration.lease();
    stays_registered(&registration, &client, address).await;
    assert_ne!(registration.lease().id, first.id, "it took the new lease");
    assert_eq!(proxy.held(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_instance_whose_registration_made_again_is_never_answered_stays_registered() {
    let registry = start_registry(config(), 0).await.unwrap();
    let proxy = Proxy::start(registry.addr).await;
    let client = direct(registry.addr).await;
    let address = "127.0.0.1:9";
    // The answer comes long after the new lease would have expired: the instance never learns it from there.
    let never = TTL * 100;
    let registration =
        registration_made_again_answered_after(&proxy, &client, address, never).await;
    stays_registered(&registration, &client, address).await;
    assert_eq!(proxy.held(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_instance_superseded_by_another_while_its_answer_is_held_stops_and_says_so() {
    let registry = start_registry(config(), 0).await.unwrap();
    let proxy = Proxy::start(registry.addr).await;
    let client = direct(registry.addr).await;
    let address = "127.0.0.1:9";
    let registration =
        registration_made_again_answered_after(&proxy, &client, address, TTL * 100).await;
    // Another instance (another weight) registers the same address while the answer is held.
    let other = client
        .register(new_instance(address, 7))
        .await
        .unwrap()
        .unwrap();
    let mut status = registration.status();
    let stopped = tokio::time::timeout(
        TTL * 2,
        status.wait_for(|s| matches!(s, Status::Superseded(_))),
    )
    .await;
    assert!(stopped.is_ok(), "the instance reports it was superseded");
    // It did not take the other instance's lease.
    assert_ne!(registration.lease().id, other.id);
    assert_eq!(holder(&client, address).await, Some(other.id));
}

/// Two owners' tokens, each granted `Where`.
const TOKEN_A: &str = "token-of-owner-a";
const TOKEN_B: &str = "token-of-owner-b";

/// A registry that grants `Where` to each of `tokens`.
fn granting(tokens: &[&str]) -> RegistryConfig {
    let tokens = tokens
        .iter()
        .map(|token| TokenGrant {
            token: (*token).to_owned(),
            services: vec!["Where".into()],
        })
        .collect();
    RegistryConfig {
        ttl: TTL,
        credentials: Credentials {
            tokens,
            ..Credentials::default()
        },
        ..RegistryConfig::default()
    }
}

fn carrying(token: &str) -> RegistrationConfig {
    RegistrationConfig {
        token: Some(token.into()),
        ..RegistrationConfig::default()
    }
}

/// Writes the registry refused as unauthenticated so far.
async fn unauthenticated(registry: &tests::cluster::RunningRegistry) -> f64 {
    let (body, samples) = tests::prom::scrape(registry.http).await;
    let refused = tests::prom::value(
        &samples,
        "rpc_registry_refused_total",
        &[("reason", "unauthenticated")],
    );
    refused.unwrap_or_else(|| panic!("no unauthenticated refusals in {body}"))
}

#[tokio::test(start_paused = true)]
async fn an_instance_whose_heartbeats_are_refused_for_good_stops_and_says_why() {
    let address = "127.0.0.1:9";
    // Where A's registration turns up: a registry where B registered the same address (as a restarted registry
    // that B reached first), or one that no longer grants A's token the service.
    for (second, b_registers, why) in [
        (
            granting(&[TOKEN_A, TOKEN_B]),
            true,
            "that instance was registered by",
        ),
        (granting(&[TOKEN_B]), false, "heartbeat of Where refused"),
    ] {
        let first = start_registry(granting(&[TOKEN_A, TOKEN_B]), 0)
            .await
            .unwrap();
        let second = start_registry(second, 0).await.unwrap();
        let proxy = Proxy::start(first.addr).await;
        let b = match b_registers {
            true => Some(
                Registration::register(second.addr, new_instance(address, 1), carrying(TOKEN_B))
                    .await
                    .unwrap(),
            ),
            false => None,
        };
        let a = Registration::register(proxy.addr, new_instance(address, 1), carrying(TOKEN_A))
            .await
            .unwrap();
        if let Some(b) = &b {
            assert_eq!(
                b.lease().id,
                a.lease().id,
                "the same lease id on each registry"
            );
        }
        // A's connection turns over to the second registry.
        proxy.redirect(second.addr);
        let mut status = a.status();
        let stopped = tokio::time::timeout(
            TTL * 2,
            status.wait_for(|s| matches!(s, Status::Refused(..))),
        )
        .await
        .is_ok();
        assert!(stopped, "A is not refused: {:?}", *status.borrow());
        let refused = status.borrow().clone();
        match refused {
            Status::Refused(lease, RegistryError::Unauthenticated(message)) => {
                assert_eq!(lease, a.lease());
                assert!(message.contains(why), "{message}");
            }
            other => panic!("refused as unauthenticated, not {other:?}"),
        }
        // A sends nothing more: the second registry refuses no other write over two TTLs. B keeps the address.
        let refusals = unauthenticated(&second).await;
        assert!(refusals >= 1.0);
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(unauthenticated(&second).await, refusals);
        if let Some(b) = &b {
            assert_eq!(*b.status().borrow(), Status::Active(b.lease()));
            let holder = holder(&direct(second.addr).await, address).await;
            assert_eq!(holder, Some(b.lease().id));
        }
    }
}

#[test]
fn a_connection_made_on_one_runtime_is_never_handed_to_another() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let serving = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = serving.block_on(start_registry(config(), 0)).unwrap();
    let addr = registry.addr;
    let client = RegistryHandle::default_config();
    let shared = || RegistryHandle::shared(addr, &client);
    // A handle made on a runtime that then shuts down, while the handle is still held (as by a registration
    // that outlives a test's runtime, or a runtime per thread).
    let first = runtime();
    let made_on_first = first.block_on(shared()).unwrap();
    assert!(made_on_first.same_connection(&first.block_on(shared()).unwrap()));
    drop(first);
    // Another runtime gets a connection of its own, which works.
    let second = runtime();
    second.block_on(async {
        let handle = shared().await.unwrap();
        assert!(!handle.same_connection(&made_on_first));
        let instance = new_instance("127.0.0.1:1", 1);
        let registered = tokio::time::timeout(
            TTL,
            Registration::register_with(&handle, instance, with_token()),
        )
        .await
        .expect("the registration is answered within the TTL");
        assert!(registered.is_ok(), "{registered:?}");
    });
}
