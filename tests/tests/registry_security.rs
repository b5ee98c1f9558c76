//! The registry against rogue writers and hostile load: per-service tokens, client certificates as credentials
//! (mutual TLS), the one token rule on the client side too (and tokens hidden in `Debug`), the address checks, and every registry limit, each refusal with a message that names its
//! reason. Registries run in-process on 127.0.0.1; real clock (every step is a call over a socket).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rpc_core::Status;
use rpc_core::tls::{ClientCa, ClientTls, ServerTls};
use rpc_core::{Client, ClientConfig, Metadata};
use rpc_registry::cli::{CliError, Options};
use rpc_registry::server::credentials::{IdentityGrant, TokenGrant};
use rpc_registry::{
    AddressCheck, Credentials, Discovery, DiscoveryConfig, LeaseRef, NewInstance, Registration,
    RegistrationConfig, RegistrationError, RegistryClient, RegistryConfig, RegistryError,
    RegistryHandle, TokenError,
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
        readers: None,
        callers: None,
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
    let billing_ref = billing.reference("Billing", "10.0.0.2:1");
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

/// A registry with mutual TLS (client certificates optional), its own token, and the credentials of
/// [`credentials`] plus the identity `calc.example` granted `Calc`; and a client TLS setting presenting `names`.
async fn registry_with_identities() -> (RunningRegistry, impl Fn(&[&str]) -> ClientTls) {
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
    let mut credentials = credentials();
    credentials.identities.push(IdentityGrant {
        name: "calc.example".into(),
        services: vec!["Calc".into()],
    });
    let config = RegistryConfig {
        token: Some("master-secret".into()),
        credentials,
        tls: Some(tls),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let with_cert = move |names: &[&str]| {
        if names.is_empty() {
            return ClientTls::from_pem(ca.pem.as_bytes(), None).unwrap();
        }
        let id = ca.client(names);
        ClientTls::from_pem(
            ca.pem.as_bytes(),
            Some((id.cert.as_bytes(), id.key.as_bytes())),
        )
        .unwrap()
    };
    (registry, with_cert)
}

#[tokio::test]
async fn an_instance_belongs_to_the_identity_that_registered_it() {
    let (registry, tls) = registry_with_identities().await;
    let owner = client(&registry, None, Some(tls(&["calc.example"]))).await;
    // Another holder of a grant for Calc: a token, and another certificate.
    let calc_token = client(&registry, Some("calc-secret"), Some(tls(&[]))).await;
    let other_cert = client(&registry, None, Some(tls(&["calc.client.test"]))).await;
    let admin = client(&registry, Some("master-secret"), Some(tls(&[]))).await;

    let lease = owner
        .register(instance("Calc", "10.0.0.1:1"))
        .await
        .unwrap()
        .unwrap();
    let held = lease.reference("Calc", "10.0.0.1:1");
    // The lease id is public (the HTTP port shows it); it is not a credential.
    for other in [&calc_token, &other_cert] {
        let err = other.heartbeat(held.clone()).await.unwrap().unwrap_err();
        assert!(
            err.to_string().starts_with(
                "heartbeat of Calc at 10.0.0.1:1 refused: that instance was registered by the client \
                 certificate calc.example, and only the client certificate calc.example or the registry's own \
                 token may renew it"
            ),
            "{err}"
        );
        assert!(matches!(err, RegistryError::Unauthenticated(_)), "{err:?}");
        let err = other.deregister(held.clone()).await.unwrap().unwrap_err();
        assert!(
            err.to_string().starts_with(
                "deregistration of Calc at 10.0.0.1:1 refused: that instance was registered by"
            ),
            "{err}"
        );
        let message = refusal(other.register(instance("Calc", "10.0.0.1:1")).await);
        assert!(
            message.ends_with("may supersede it")
                && message.starts_with("registration of Calc at 10.0.0.1:1 refused"),
            "{message}"
        );
    }
    // Nothing changed: the owner's instance is there, at its first incarnation, and its heartbeats work.
    let snapshot = admin.instances("Calc".into()).await.unwrap();
    assert_eq!(snapshot.instances.len(), 1);
    assert_eq!(
        (
            snapshot.instances[0].lease,
            snapshot.instances[0].incarnation
        ),
        (lease.id, 1)
    );
    assert_eq!(owner.heartbeat(held.clone()).await.unwrap(), Ok(()));
    // The owner may supersede its own instance (a restart), and an admin may remove it.
    let again = owner
        .register(instance("Calc", "10.0.0.1:1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.incarnation, 2);
    assert_eq!(
        admin
            .deregister(again.reference("Calc", "10.0.0.1:1"))
            .await
            .unwrap(),
        Ok(())
    );
    assert!(
        admin
            .instances("Calc".into())
            .await
            .unwrap()
            .instances
            .is_empty()
    );
    // An instance the token registered is the token's: the certificate may not touch it, an admin may.
    let by_token = calc_token
        .register(instance("Calc", "10.0.0.2:1"))
        .await
        .unwrap()
        .unwrap();
    let err = owner
        .heartbeat(by_token.reference("Calc", "10.0.0.2:1"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("registered by token 1 of the credentials"),
        "{err}"
    );
    assert!(!err.to_string().contains("calc-secret"), "{err}");
    assert_eq!(
        admin
            .heartbeat(by_token.reference("Calc", "10.0.0.2:1"))
            .await
            .unwrap(),
        Ok(())
    );
}

#[tokio::test]
async fn refusals_quote_at_most_a_short_escaped_prefix_of_what_came() {
    let config = RegistryConfig {
        token: Some("master-secret".into()),
        address_check: AddressCheck::Peer,
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let admin = client(&registry, Some("master-secret"), None).await;
    let anonymous = client(&registry, None, None).await;
    let huge = "S".repeat(15 << 20);
    // A 15 MiB name with an address the peer check refuses: the size is checked first.
    for (who, caller) in [("admin", &admin), ("anonymous", &anonymous)] {
        let message = refusal(caller.register(instance(&huge, "10.0.0.9:9")).await);
        assert!(
            message.len() < 1024,
            "{who}: a refusal of {} bytes",
            message.len()
        );
        assert_eq!(
            message,
            "invalid registration: the service name is 15728640 bytes long, over the limit of 255 \
             (max_name_len)",
            "{who}"
        );
    }
    // A heartbeat or deregistration names its lease's service: refused, quoting 64 characters of it.
    let lease = LeaseRef {
        lease: 1,
        incarnation: 1,
        service: huge.clone(),
        address: "127.0.0.1:1".into(),
    };
    let err = anonymous
        .heartbeat(lease.clone())
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.len() < 1024, "a refusal of {} bytes", err.len());
    assert!(
        err.starts_with(&format!(
            "heartbeat of {}... (15728640 bytes) refused",
            "S".repeat(64)
        )),
        "{err}"
    );
    let err = anonymous.deregister(lease).await.unwrap().unwrap_err();
    assert!(err.to_string().len() < 1024);
    // Within the limits, control characters come back escaped: nothing that drives a terminal or forges a line.
    let message = refusal(
        admin
            .register(instance("Calc\u{1b}[2J\nforged", "10.0.0.9:9"))
            .await,
    );
    assert_eq!(
        message,
        "registration refused: Calc\\u{1b}[2J\\u{a}forged at 10.0.0.9:9: the address's IP 10.0.0.9 is not the \
         caller's 127.0.0.1 (address_check: peer)"
    );
    let message = refusal(
        anonymous
            .register(instance("Calc\u{202e}", "127.0.0.1:5"))
            .await,
    );
    assert!(
        message.starts_with("registration of Calc\\u{202e} refused"),
        "{message}"
    );
}

#[tokio::test]
async fn reads_of_a_name_longer_than_any_service_do_not_echo_it() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let reader = client(&registry, None, None).await;
    let huge = format!("\u{1b}[2J{}", "S".repeat(15 << 20));
    let shown = format!("\\u{{1b}}[2J{}... ({} bytes)", "S".repeat(60), huge.len());
    // Answered at once, empty, under a short escaped prefix of the name.
    let snapshot = reader.instances(huge.clone()).await.unwrap();
    assert_eq!(snapshot.service, shown);
    assert!(snapshot.instances.is_empty());
    let snapshot = reader.watch(huge.clone(), 0, 0, 60_000).await.unwrap();
    assert_eq!(snapshot.service, shown);
    let epoch = snapshot.epoch;
    let watched = reader
        .watch_changes(huge.clone(), epoch, 0, 60_000)
        .await
        .unwrap();
    assert_eq!(watched.snapshot.service, shown);
    // A name within the limit comes back as asked.
    let longest = "S".repeat(RegistryConfig::default().max_name_len);
    let snapshot = reader.instances(longest.clone()).await.unwrap();
    assert_eq!(snapshot.service, longest);
    // The HTTP API's 404 quotes a short escaped prefix too.
    let path = format!("/v1/services/%1B%5B2J{}", "S".repeat(4000));
    let (status, _, body) = tests::prom::http_get(registry.http, &path).await.unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(
        body,
        format!(
            "no instances of service `\\u{{1b}}[2J{}... (4004 bytes)` are registered",
            "S".repeat(60)
        )
    );
}

/// A watch of a name the registry cannot track is answered at once with nothing new; a `Discovery` watching it
/// backs off instead of asking again at once, in a loop that would take a core. Counted over half a second of
/// real time: a slower machine only makes fewer calls, so the bound cannot fail for lack of speed.
#[tokio::test]
async fn a_discovery_of_a_name_the_registry_cannot_track_does_not_spin() {
    let config = RegistryConfig {
        max_name_len: 8,
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    let mut watched = discovery.watch("a-name-longer-than-8");
    // The first answer arrives (empty), then the loop would spin.
    tokio::time::timeout(Duration::from_secs(10), watched.changed())
        .await
        .expect("the registry answers the first watch")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, samples) = tests::prom::scrape(registry.http).await;
    // Discovery subscribes (protocol 1.1); each subscription of the name ends after its first item.
    let calls = |method: &str| {
        tests::prom::value(
            &samples,
            "rpc_server_calls_total",
            &[
                ("service", "Registry"),
                ("method", method),
                ("status", "Ok"),
            ],
        )
        .unwrap_or(0.0)
    };
    let watches = calls("watch") + calls("subscribe");
    // Backing off from 100 ms, doubling: at most 5 watches in the first 500 ms after the first answer.
    assert!(
        watches <= 8.0,
        "{watches} watches in half a second: the discovery asks again at once"
    );
    assert!(watches >= 1.0, "the discovery watched");
}

#[tokio::test]
async fn the_address_checks_refuse_port_0() {
    for check in [AddressCheck::Peer, AddressCheck::Reachable] {
        let config = RegistryConfig {
            address_check: check,
            ..RegistryConfig::default()
        };
        let registry = start_registry(config, 0).await.unwrap();
        let client = client(&registry, None, None).await;
        let message = refusal(client.register(instance("Calc", "127.0.0.1:0")).await);
        assert!(
            message.starts_with(
                "registration refused: Calc at 127.0.0.1:0: port 0 cannot be served; register the port the \
                 instance listens on"
            ),
            "{check:?}: {message}"
        );
        assert!(
            client
                .instances("Calc".into())
                .await
                .unwrap()
                .instances
                .is_empty()
        );
    }
}

#[test]
fn a_superseded_lease_and_its_successor_are_told_apart() {
    let later = RegistryError::Superseded {
        lease: 3,
        incarnation: 1,
        current: 2,
    };
    assert_eq!(
        later.to_string(),
        "lease 3 (incarnation 1) was superseded by incarnation 2 of the same address: a newer instance took over"
    );
    // The lease expired, and the address registered anew: its incarnations counted from 1 again.
    let after_expiry = RegistryError::Superseded {
        lease: 3,
        incarnation: 1,
        current: 1,
    };
    let message = after_expiry.to_string();
    assert_eq!(
        message,
        "lease 3 (incarnation 1) was superseded by a later registration of the same address, made after this \
         lease expired (now at incarnation 1): a newer instance took over"
    );
}

#[tokio::test]
async fn empty_short_and_invisible_tokens_are_refused_everywhere_with_one_rule() {
    let refused = |config: RegistryConfig| async move {
        let rpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = tokio::time::timeout(
            Duration::from_secs(10),
            rpc_registry::serve(config, rpc, None, std::future::pending()),
        )
        .await
        .expect("a bad configuration is refused at once");
        let err = served.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        err.to_string()
    };
    let token = |token: &str| RegistryConfig {
        token: Some(token.to_owned()),
        ..RegistryConfig::default()
    };
    assert_eq!(
        refused(token("")).await,
        "the registry's token is not usable: the token is empty; a token needs at least 8 bytes"
    );
    assert_eq!(
        refused(token("x")).await,
        "the registry's token is not usable: the token is too short: 1 of at least 8 bytes"
    );
    assert_eq!(
        refused(token("s3cret-token\n")).await,
        "the registry's token is not usable: byte 13 of the token is not a visible ASCII character; a token is \
         made of `!` to `~` only (no space, no newline)"
    );
    // The same rule for the tokens of credentials, however they were made.
    let mut credentials = credentials();
    credentials.tokens[1].token = String::from("ops");
    let message = refused(RegistryConfig {
        credentials,
        ..RegistryConfig::default()
    })
    .await;
    assert_eq!(
        message,
        "the credentials are not usable: token 2: the token is too short: 3 of at least 8 bytes"
    );
    assert!(!message.contains("ops\""), "{message}");
    // And a client's empty token is not a credential: an empty bearer opens nothing.
    let registry = start_registry(
        RegistryConfig {
            credentials: self::credentials(),
            ..RegistryConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let empty = client(&registry, Some(""), None).await;
    let message = refusal(empty.register(instance("Calc", "10.0.0.1:1")).await);
    assert!(
        message.starts_with("registration of Calc refused"),
        "{message}"
    );
}

/// A token that breaks the rule on the client side: the registration, the discovery and `ls` each refuse it with
/// the rule's reason, before sending anything (nothing listens at the address: a call would fail as unreachable),
/// never showing it; and the `Debug` of their configurations hides a good token.
#[tokio::test]
async fn client_tokens_meet_the_rule_before_anything_is_sent_and_never_show() {
    let nowhere = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let handle = RegistryHandle::new(nowhere, RegistryHandle::default_config())
        .await
        .unwrap();
    for (token, rule) in [
        ("", TokenError::Empty),
        ("sh0rt", TokenError::TooShort { len: 5 }),
        ("has a-space", TokenError::NotVisible { at: 4 }),
    ] {
        let config = RegistrationConfig {
            token: Some(token.into()),
            ..RegistrationConfig::default()
        };
        let err = Registration::register_with(&handle, instance("Calc", "127.0.0.1:7001"), config)
            .await
            .unwrap_err();
        assert_eq!(err, RegistrationError::Token(rule), "{token:?}");
        let config = DiscoveryConfig {
            token: Some(token.into()),
            ..DiscoveryConfig::default()
        };
        let err = Discovery::with_handle(&handle, config).unwrap_err();
        assert_eq!(err.code(), Status::InvalidArgument, "{token:?}: {err}");
        assert!(err.message().ends_with(&rule.to_string()), "{err}");
        let options = Options {
            token: Some(token.into()),
            ..Options::new(nowhere.to_string())
        };
        let err = rpc_registry::cli::ls(&options, None, &mut Vec::new(), &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, CliError::Token(e) if e == rule), "{err}");
        if !token.is_empty() {
            assert!(!err.to_string().contains(token), "{err}");
        }
    }
    let secret = "a-good-secret-token";
    let shown = [
        format!(
            "{:?}",
            RegistrationConfig {
                token: Some(secret.into()),
                ..RegistrationConfig::default()
            }
        ),
        format!(
            "{:?}",
            DiscoveryConfig {
                token: Some(secret.into()),
                ..DiscoveryConfig::default()
            }
        ),
        format!(
            "{:?}",
            Options {
                token: Some(secret.into()),
                ..Options::new("127.0.0.1:7070")
            }
        ),
    ];
    for debug in shown {
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("token: Some(\"<hidden>\")"), "{debug}");
    }
}

#[tokio::test]
async fn healthz_is_degraded_at_each_cap_and_says_which() {
    let mut config = RegistryConfig {
        max_instances: 2,
        max_services: 3,
        ..RegistryConfig::default()
    };
    config.server.max_connections = 4;
    let registry = start_registry(config, 0).await.unwrap();
    let health = || async {
        let (status, _, body) = tests::prom::http_get(registry.http, "/healthz")
            .await
            .unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let first = client(&registry, None, None).await;
    first
        .register(instance("A", "10.0.0.1:1"))
        .await
        .unwrap()
        .unwrap();
    let ok = health().await;
    assert_eq!(ok["status"], "ok", "{ok}");
    assert_eq!(ok["reasons"], serde_json::json!([]));
    first
        .register(instance("B", "10.0.0.1:2"))
        .await
        .unwrap()
        .unwrap();
    let full = health().await;
    assert_eq!(full["status"], "degraded", "{full}");
    assert_eq!(
        full["reasons"],
        serde_json::json!(["instances: 2 of 2 (max_instances): new instances are refused"])
    );
    // At the cap, a registration is refused at once, naming the cap.
    assert_eq!(
        refusal(first.register(instance("C", "10.0.0.1:3")).await),
        "registration refused: the registry already holds 2 instances, the limit (max_instances)"
    );
    // A third service, only watched, reaches max_services.
    let watched = first.instances("W".into()).await.unwrap();
    let watching = tokio::spawn({
        let first = first.clone();
        async move {
            first
                .watch("W".into(), watched.epoch, watched.revision, 10_000)
                .await
        }
    });
    rpc_watchers_reach(&registry, 1.0).await;
    let reasons = health().await["reasons"].clone();
    assert_eq!(
        reasons[1],
        "services: 3 of 3 tracked (max_services): new services are refused, and watches of them answered at once",
        "{reasons}"
    );
    watching.abort();
    // Connections: four clients of their own reach max_connections.
    let mut others = Vec::new();
    for _ in 0..3 {
        let other = client(&registry, None, None).await;
        other.services().await.unwrap();
        others.push(other);
    }
    let mut reasons = serde_json::Value::Null;
    for _ in 0..100 {
        reasons = health().await["reasons"].clone();
        if reasons.as_array().is_some_and(|r| r.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        reasons[2], "connections: 4 of 4 (max_connections): new connections are refused",
        "{reasons}"
    );
}

#[tokio::test]
async fn the_registry_serves_more_than_1024_instances_each_on_its_own_connection_by_default() {
    // Each instance a process of its own: a connection each. rpc-core's default cap is 1,024 connections.
    let files = rpc_registry::server::open_files::raise_open_file_limit().unwrap();
    let instances = 1100;
    assert!(
        files.now >= 3 * instances as u64,
        "this test needs {} open files (both ends of {instances} connections), and the {files}",
        3 * instances
    );
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    let mut clients = Vec::new();
    for i in 0..instances {
        let c = client(&registry, None, None).await;
        let lease = c
            .register(instance(
                &format!("S{}", i % 4),
                &format!("10.0.{}.{}:1", i / 250, i % 250),
            ))
            .await;
        assert!(matches!(lease, Ok(Ok(_))), "instance {i}: {lease:?}");
        clients.push(c);
    }
    // Reads still get through beside them.
    let reader = client(&registry, None, None).await;
    let config = RegistryConfig::default();
    assert!(config.server.max_connections >= config.max_instances + 1024);
    let services = reader.services().await.unwrap();
    assert_eq!(
        services.iter().map(|s| s.instances).sum::<usize>(),
        instances
    );
}

/// Waits (at most 500 scrapes, 20 ms apart) until the registry counts at least `n` watches over its RPC API
/// waiting.
async fn rpc_watchers_reach_within_10s(registry: &RunningRegistry, n: f64) {
    let mut seen = None;
    for _ in 0..500 {
        let (_, samples) = tests::prom::scrape(registry.http).await;
        seen = tests::prom::value(&samples, "rpc_registry_watchers", &[("api", "rpc")]);
        if seen.is_some_and(|seen| seen >= n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("rpc_registry_watchers never reached {n}: last {seen:?}");
}

#[tokio::test]
async fn a_process_watching_more_services_than_rpc_cores_in_flight_cap_still_heartbeats() {
    let registry = start_registry(RegistryConfig::default(), 0).await.unwrap();
    // More long polls than rpc-core's default cap of calls in flight on one connection.
    let cap = rpc_core::server::config::DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION;
    let services = cap + 76;
    let discovery = Discovery::new(registry.addr, DiscoveryConfig::default())
        .await
        .unwrap();
    for i in 0..services {
        discovery.watch(&format!("S{i}"));
    }
    rpc_watchers_reach_within_10s(&registry, cap as f64).await;
    // The registration shares the discovery's connection, beside its watches.
    let config = RegistrationConfig {
        heartbeat: Some(Duration::from_millis(100)),
        ..RegistrationConfig::default()
    };
    let at = instance("Calc", "127.0.0.1:7001");
    let registration = Registration::register(registry.addr, at, config)
        .await
        .unwrap();
    let mut beats = None;
    for _ in 0..500 {
        let (_, samples) = tests::prom::scrape(registry.http).await;
        beats = tests::prom::value(&samples, "rpc_registry_heartbeats_total", &[]);
        if beats.is_some_and(|beats| beats >= 3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        beats.is_some_and(|beats| beats >= 3.0),
        "{beats:?} heartbeats within 10 s"
    );
    assert!(matches!(
        *registration.status().borrow(),
        rpc_registry::client::registration::Status::Active(_)
    ));
    // Every watch waits, and one connection carries them and the heartbeats.
    rpc_watchers_reach_within_10s(&registry, services as f64).await;
    let (body, samples) = tests::prom::scrape(registry.http).await;
    assert_eq!(
        tests::prom::value(&samples, "rpc_server_connections", &[]),
        Some(1.0),
        "{body}"
    );
}
