//! The registry against rogue writers and hostile load: per-service tokens, client certificates as credentials
//! (mutual TLS), the address checks, and every registry limit, each refusal with a message that names its
//! reason. Registries run in-process on 127.0.0.1; real clock (every step is a call over a socket).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rpc_core::tls::{ClientCa, ClientTls, ServerTls};
use rpc_core::{Client, ClientConfig, Metadata};
use rpc_registry::credentials::{IdentityGrant, TokenGrant};
use rpc_registry::{
    AddressCheck, Credentials, LeaseRef, NewInstance, Registration, RegistrationConfig,
    RegistryClient, RegistryConfig, RegistryError,
};
use tests::certs::Ca;
use tests::cluster::{RunningRegistry, start_registry};

fn instance(service: &str, address: &str) -> NewInstance {
    NewInstance {
        service: service.to_owned(),
        address: address.to_owned(),
        weight: 1,
        metadata: BTreeMap::new(),
    }
}

async fn client(
    registry: &RunningRegistry,
    token: Option<&str>,
    tls: Option<ClientTls>,
) -> RegistryClient {
    let config = ClientConfig {
        tls,
        default_deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = RegistryClient::new(Client::lazy_with(registry.addr, config).await.unwrap());
    match token {
        Some(token) => client.with_metadata(
            Metadata::from_pairs([("authorization", format!("Bearer {token}"))]).unwrap(),
        ),
        None => client,
    }
}

fn refusal(
    result: Result<Result<rpc_registry::Lease, RegistryError>, rpc_core::RpcError>,
) -> String {
    match result {
        Ok(Err(e)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Waits (at most 100 scrapes, 20 ms apart) until the registry counts `n` watches over its RPC API waiting.
async fn rpc_watchers_reach(registry: &RunningRegistry, n: f64) {
    let mut seen = None;
    for _ in 0..100 {
        let (_, samples) = tests::prom::scrape(registry.http).await;
        seen = tests::prom::value(&samples, "rpc_registry_watchers", &[("api", "rpc")]);
        if seen == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("rpc_registry_watchers never read {n}: last {seen:?}");
}

fn lease_ref(lease: &rpc_registry::Lease, service: &str, address: &str) -> LeaseRef {
    LeaseRef {
        lease: lease.id,
        incarnation: lease.incarnation,
        service: service.to_owned(),
        address: address.to_owned(),
    }
}

fn credentials() -> Credentials {
    Credentials {
        tokens: vec![
            TokenGrant {
                token: "calc-secret".into(),
                services: vec!["Calc".into()],
            },
            TokenGrant {
                token: "ops-secret".into(),
                services: vec!["*".into()],
            },
        ],
        identities: vec![IdentityGrant {
            name: "calc.client.test".into(),
            services: vec!["Calc".into()],
        }],
    }
}

#[tokio::test]
async fn each_token_writes_only_the_services_it_is_granted() {
    let config = RegistryConfig {
        credentials: credentials(),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let calc = client(&registry, Some("calc-secret"), None).await;
    let ops = client(&registry, Some("ops-secret"), None).await;
    let anonymous = client(&registry, None, None).await;

    let lease = calc
        .register(instance("Calc", "10.0.0.1:1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        refusal(calc.register(instance("Billing", "10.0.0.2:1")).await),
        "registration of Billing refused: the token the call carried may write Calc, not Billing"
    );
    let billing = ops
        .register(instance("Billing", "10.0.0.2:1"))
        .await
        .unwrap()
        .unwrap();
    let billing_ref = lease_ref(&billing, "Billing", "10.0.0.2:1");
    let err = calc
        .heartbeat(billing_ref.clone())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "heartbeat of Billing refused: the token the call carried may write Calc, not Billing"
    );
    let err = calc
        .deregister(billing_ref.clone())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("deregistration of Billing refused"),
        "{err}"
    );
    assert_eq!(ops.deregister(billing_ref).await.unwrap(), Ok(()));
    assert_eq!(
        refusal(anonymous.register(instance("Calc", "10.0.0.3:1")).await),
        "registration of Calc refused: this registry needs a token (metadata `authorization: Bearer <token>`) \
         or a client certificate, and the call carried neither"
    );
    // Reads stay open; the refused writes changed nothing.
    let snapshot = anonymous.instances("Calc".into()).await.unwrap();
    assert_eq!(snapshot.instances.len(), 1);
    assert_eq!(snapshot.instances[0].lease, lease.id);
    assert!(
        anonymous
            .instances("Billing".into())
            .await
            .unwrap()
            .instances
            .is_empty()
    );
}

#[tokio::test]
async fn a_verified_client_certificate_is_a_credential_for_the_services_it_is_granted() {
    let ca = Ca::new("test CA");
    let server = ca.server(&["127.0.0.1"]);
    let tls = ServerTls::from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        Some(ClientCa {
            pem: ca.pem.as_bytes(),
            required: false,
        }),
    )
    .unwrap();
    let config = RegistryConfig {
        token: Some("master-secret".into()),
        credentials: credentials(),
        tls: Some(tls),
        ttl: Duration::from_millis(300),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let with_cert = |names: &[&str]| {
        let id = ca.client(names);
        ClientTls::from_pem(
            ca.pem.as_bytes(),
            Some((id.cert.as_bytes(), id.key.as_bytes())),
        )
        .unwrap()
    };

    let calc = client(&registry, None, Some(with_cert(&["calc.client.test"]))).await;
    assert!(
        calc.register(instance("Calc", "10.0.0.1:1"))
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        refusal(calc.register(instance("Billing", "10.0.0.1:2")).await),
        "registration of Billing refused: the client certificate calc.client.test may write Calc, not Billing"
    );
    let rogue = client(&registry, None, Some(with_cert(&["rogue.test"]))).await;
    assert_eq!(
        refusal(rogue.register(instance("Calc", "10.0.0.9:1")).await),
        "registration of Calc refused: this registry grants nothing to the client certificate rogue.test"
    );
    // Client certificates are optional here: a token over TLS still works.
    let plain = ClientTls::from_pem(ca.pem.as_bytes(), None).unwrap();
    let master = client(&registry, Some("master-secret"), Some(plain)).await;
    assert!(
        master
            .register(instance("Billing", "10.0.0.4:1"))
            .await
            .unwrap()
            .is_ok()
    );
    // A certificate from another CA does not get through the handshake.
    let other = Ca::new("rogue CA").client(&["calc.client.test"]);
    let outsider = ClientTls::from_pem(
        ca.pem.as_bytes(),
        Some((other.cert.as_bytes(), other.key.as_bytes())),
    )
    .unwrap();
    let outsider = client(&registry, None, Some(outsider)).await;
    let err = outsider
        .register(instance("Calc", "10.0.0.5:1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), rpc_core::Status::Unavailable, "{err}");

    // A registration that heartbeats over mutual TLS, with no token, stays registered across many TTLs.
    let config = RegistrationConfig {
        client: ClientConfig {
            tls: Some(with_cert(&["calc.client.test"])),
            ..RegistrationConfig::default().client
        },
        ..RegistrationConfig::default()
    };
    let registration =
        Registration::register(registry.addr, instance("Calc", "10.0.0.6:1"), config)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snapshot = master.instances("Calc".into()).await.unwrap();
    assert!(
        snapshot
            .instances
            .iter()
            .any(|i| i.lease == registration.lease().id),
        "heartbeats over mutual TLS kept the lease for 5 TTLs"
    );
}

#[tokio::test]
async fn the_peer_address_check_lets_an_instance_register_only_itself() {
    let config = RegistryConfig {
        address_check: AddressCheck::Peer,
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let client = client(&registry, None, None).await;
    assert!(
        client
            .register(instance("Calc", "127.0.0.1:7001"))
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        refusal(client.register(instance("Calc", "10.0.0.9:9")).await),
        "registration refused: Calc at 10.0.0.9:9: the address's IP 10.0.0.9 is not the caller's 127.0.0.1 \
         (address_check: peer)"
    );
    assert_eq!(
        refusal(client.register(instance("Calc", "calc.local:9")).await),
        "registration refused: Calc at calc.local:9: the peer check needs the address as IP:port \
         (address_check: peer)"
    );
}

#[tokio::test]
async fn the_reachable_address_check_dials_the_address() {
    let config = RegistryConfig {
        address_check: AddressCheck::Reachable,
        address_check_timeout: Duration::from_millis(500),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let client = client(&registry, None, None).await;
    let listening = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = listening.local_addr().unwrap().to_string();
    assert!(
        client
            .register(instance("Calc", &live))
            .await
            .unwrap()
            .is_ok()
    );
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let message = refusal(client.register(instance("Calc", &dead)).await);
    assert!(
        message.starts_with(&format!(
            "registration refused: Calc at {dead}: it does not accept connections"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn every_registry_limit_refuses_with_the_limit_named_and_the_others_carry_on() {
    let config = RegistryConfig {
        max_instances_per_service: 3,
        max_instances: 5,
        max_metadata_entries: 2,
        max_metadata_bytes: 16,
        max_name_len: 20,
        max_services: 3,
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let client = client(&registry, None, None).await;
    for i in 1..=3 {
        assert!(
            client
                .register(instance("A", &format!("10.0.0.1:{i}")))
                .await
                .unwrap()
                .is_ok()
        );
    }
    assert_eq!(
        refusal(client.register(instance("A", "10.0.0.1:4")).await),
        "registration refused: A already has 3 instances, the limit (max_instances_per_service)"
    );
    // A new incarnation of an address already registered adds nothing, so it is allowed.
    assert!(
        client
            .register(instance("A", "10.0.0.1:1"))
            .await
            .unwrap()
            .is_ok()
    );
    for i in 1..=2 {
        assert!(
            client
                .register(instance("B", &format!("10.0.0.2:{i}")))
                .await
                .unwrap()
                .is_ok()
        );
    }
    assert_eq!(
        refusal(client.register(instance("C", "10.0.0.3:1")).await),
        "registration refused: the registry already holds 5 instances, the limit (max_instances)"
    );
    let mut crowded = instance("B", "10.0.0.2:1");
    crowded.metadata = (0..3).map(|i| (format!("k{i}"), String::new())).collect();
    assert_eq!(
        refusal(client.register(crowded).await),
        "registration refused: the registration carries 3 metadata entries, over the limit of 2 \
         (max_metadata_entries)"
    );
    let mut heavy = instance("B", "10.0.0.2:1");
    heavy.metadata = BTreeMap::from([("zone".to_owned(), "x".repeat(13))]);
    assert_eq!(
        refusal(client.register(heavy).await),
        "registration refused: the registration carries 17 bytes of metadata, over the limit of 16 \
         (max_metadata_bytes)"
    );
    assert_eq!(
        refusal(
            client
                .register(instance(&"S".repeat(21), "10.0.0.9:1"))
                .await
        ),
        "invalid registration: the service name is 21 bytes long, over the limit of 20 (max_name_len)"
    );
    // Services: A and B are tracked; a watch of a third holds its place, a watch of a fourth is answered at once.
    let snapshot = client.instances("W1".into()).await.unwrap();
    let holder = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .watch("W1".into(), snapshot.epoch, snapshot.revision, 10_000)
                .await
        }
    });
    rpc_watchers_reach(&registry, 1.0).await;
    let started = Instant::now();
    let over = client
        .watch("W2".into(), snapshot.epoch, snapshot.revision, 10_000)
        .await
        .unwrap();
    assert!(over.instances.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once: {:?}",
        started.elapsed()
    );
    // Once the first watcher gives up, its place is free again.
    holder.abort();
    let _ = holder.await;
    rpc_watchers_reach(&registry, 0.0).await;
    let started = Instant::now();
    let waited = client
        .watch("W2".into(), snapshot.epoch, snapshot.revision, 300)
        .await
        .unwrap();
    assert!(waited.instances.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // The registry still serves what it holds.
    assert_eq!(
        client.instances("A".into()).await.unwrap().instances.len(),
        3
    );
}
