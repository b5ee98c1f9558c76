//! TLS and mutual TLS end to end, with certificates made at test time (rcgen): calls over TLS, a client that
//! does not trust the server, a plain-TCP client at a TLS server, required and optional client certificates
//! (and the names a handler sees), the server name check, and the handshake timeout. Real clock: every step is a
//! handshake over a socket (see `limits.rs` for why the paused clock does not suit that).

use std::time::{Duration, Instant};

use rpc_core::tls::{ClientCa, ClientTls, ServerTls};
use rpc_core::{Client, ClientConfig, RpcError, ServerConfig, Status};
use tests::certs::{Ca, Identity};
use tests::lab::{LabClient, LabImpl};
use tests::peer::{Next, RawPeer};
use tests::serve::{Running, serve_lab_with};

fn server_tls(ca: &Ca, client_ca: Option<(&Ca, bool)>) -> ServerTls {
    let id = ca.server(&["127.0.0.1", "localhost"]);
    let client_ca = client_ca.map(|(ca, required)| ClientCa {
        pem: ca.pem.as_bytes(),
        required,
    });
    ServerTls::from_pem(id.cert.as_bytes(), id.key.as_bytes(), client_ca).unwrap()
}

fn client_tls(trusts: &Ca, identity: Option<&Identity>) -> ClientTls {
    let identity = identity.map(|i| (i.cert.as_bytes(), i.key.as_bytes()));
    ClientTls::from_pem(trusts.pem.as_bytes(), identity).unwrap()
}

async fn serve(tls: ServerTls, config: ServerConfig) -> Running {
    serve_lab_with(LabImpl::default(), config, 0, Some(tls))
        .await
        .unwrap()
}

/// Connects with `tls` and makes one call; the first error, from connecting or from the call.
async fn whoami(server: &Running, tls: Option<ClientTls>) -> Result<Vec<String>, RpcError> {
    let config = ClientConfig {
        tls,
        connect_timeout: Duration::from_secs(5),
        default_deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = LabClient::new(Client::connect_with(server.addr, config).await?);
    client.whoami().await
}

#[tokio::test]
async fn calls_go_over_tls_and_a_client_that_does_not_trust_the_server_is_refused() {
    let ca = Ca::new("test CA");
    let server = serve(server_tls(&ca, None), ServerConfig::default()).await;
    assert_eq!(
        whoami(&server, Some(client_tls(&ca, None))).await,
        Ok(Vec::new()),
        "no client certificate, no names"
    );
    let stranger = Ca::new("another CA");
    let err = whoami(&server, Some(client_tls(&stranger, None)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
    assert!(
        err.message().contains("TLS handshake")
            && err.message().contains("invalid peer certificate"),
        "{err}"
    );
    // The server carries on for clients that trust it.
    assert_eq!(
        whoami(&server, Some(client_tls(&ca, None))).await,
        Ok(Vec::new())
    );
}

#[tokio::test]
async fn a_plain_client_cannot_call_a_tls_server_and_tls_clients_carry_on() {
    let ca = Ca::new("test CA");
    let server = serve(server_tls(&ca, None), ServerConfig::default()).await;
    let err = whoami(&server, None).await.unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
    assert_eq!(
        whoami(&server, Some(client_tls(&ca, None))).await,
        Ok(Vec::new())
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_client_ca_and_handlers_see_its_names() {
    let ca = Ca::new("test CA");
    let clients = Ca::new("client CA");
    let server = serve(
        server_tls(&ca, Some((&clients, true))),
        ServerConfig::default(),
    )
    .await;
    let member = clients.client(&["calc.client.test", "calc-2.client.test"]);
    assert_eq!(
        whoami(&server, Some(client_tls(&ca, Some(&member)))).await,
        Ok(vec![
            "calc.client.test".to_owned(),
            "calc-2.client.test".to_owned()
        ])
    );
    let err = whoami(&server, Some(client_tls(&ca, None)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "no certificate: {err}");
    let outsider = Ca::new("rogue CA").client(&["calc.client.test"]);
    let err = whoami(&server, Some(client_tls(&ca, Some(&outsider))))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Status::Unavailable,
        "a certificate from another CA: {err}"
    );
    // Refusing those cost the others nothing.
    assert!(
        whoami(&server, Some(client_tls(&ca, Some(&member))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn with_optional_client_certificates_clients_connect_with_or_without_one() {
    let ca = Ca::new("test CA");
    let server = serve(server_tls(&ca, Some((&ca, false))), ServerConfig::default()).await;
    assert_eq!(
        whoami(&server, Some(client_tls(&ca, None))).await,
        Ok(Vec::new())
    );
    let member = ca.client(&["registrar.test"]);
    assert_eq!(
        whoami(&server, Some(client_tls(&ca, Some(&member)))).await,
        Ok(vec!["registrar.test".to_owned()])
    );
    // A certificate that does not verify is refused even where none is required.
    let outsider = Ca::new("rogue CA").client(&["registrar.test"]);
    let err = whoami(&server, Some(client_tls(&ca, Some(&outsider))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
}

/// Answers and requests of megabytes, several at once, over TLS: frames split across many TLS records and
/// writes that find the socket full. (The outbox's own tests pin the flush a buffering transport needs.)
#[tokio::test]
async fn megabyte_answers_and_requests_over_tls_arrive_whole() {
    let ca = Ca::new("test CA");
    let server = serve(server_tls(&ca, None), ServerConfig::default()).await;
    let config = ClientConfig {
        tls: Some(client_tls(&ca, None)),
        default_deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = LabClient::new(Client::connect_with(server.addr, config).await.unwrap());
    for round in 0..2 {
        let len = 4 << 20;
        let (a, b, items) = tokio::join!(
            client.fill(len),
            client.fill(len + 1),
            client.tally(vec![vec![7; 1 << 20]; 4]),
        );
        assert_eq!(a.map(|b| b.len()), Ok(len as usize), "round {round}");
        assert_eq!(b.map(|b| b.len()), Ok(len as usize + 1), "round {round}");
        assert_eq!(items, Ok(4), "round {round}");
    }
}

#[tokio::test]
async fn the_server_name_the_client_asks_for_is_verified() {
    let ca = Ca::new("test CA");
    let server = serve(server_tls(&ca, None), ServerConfig::default()).await;
    let named = client_tls(&ca, None).with_server_name("localhost").unwrap();
    assert_eq!(whoami(&server, Some(named)).await, Ok(Vec::new()));
    let wrong = client_tls(&ca, None)
        .with_server_name("calc.example")
        .unwrap();
    let err = whoami(&server, Some(wrong)).await.unwrap_err();
    assert!(err.message().contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_cut_off_at_the_handshake_timeout() {
    let ca = Ca::new("test CA");
    let handshake_timeout = Duration::from_millis(300);
    let config = ServerConfig {
        handshake_timeout,
        ..ServerConfig::default()
    };
    let server = serve(server_tls(&ca, None), config).await;
    // The server's timer starts once it accepts the connection, which is after this.
    let started = Instant::now();
    let mut silent = RawPeer::connect(server.addr).await.unwrap();
    assert!(matches!(
        silent.next(Duration::from_secs(5)).await,
        Next::Closed
    ));
    let took = started.elapsed();
    assert!(
        took >= handshake_timeout && took < handshake_timeout + Duration::from_secs(3),
        "{took:?}"
    );
    assert!(whoami(&server, Some(client_tls(&ca, None))).await.is_ok());
}

#[test]
fn pem_that_is_not_a_certificate_or_a_key_gets_a_clear_error() {
    let err = ClientTls::from_pem(b"not a certificate", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the CA: expected at least one PEM certificate (-----BEGIN CERTIFICATE-----), found none"
    );
    let ca = Ca::new("test CA");
    let id = ca.server(&["localhost"]);
    let err = ServerTls::from_pem(id.cert.as_bytes(), b"no key here", None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the server key: expected a PEM private key"),
        "{err}"
    );
    let err = ServerTls::from_pem_files(
        "/nonexistent/server.pem",
        "/nonexistent/server.key",
        rpc_core::tls::ClientAuth::None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/server.pem"),
        "{err}"
    );
}

/// On two threads, the client's reader (which reads the server's alert) and its caller or writer (which may find
/// the connection gone first) race; whichever wins, every call says what the server said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_is_reported_with_the_servers_alert_every_time() {
    let ca = Ca::new("test CA");
    let clients = Ca::new("client CA");
    let server = serve(
        server_tls(&ca, Some((&clients, true))),
        ServerConfig::default(),
    )
    .await;
    let outsider = Ca::new("rogue CA").client(&["calc.client.test"]);
    let cases = [
        (client_tls(&ca, None), "CertificateRequired"),
        (client_tls(&ca, Some(&outsider)), "UnknownCA"),
    ];
    for round in 0..100 {
        for (tls, alert) in &cases {
            let config = ClientConfig {
                tls: Some(tls.clone()),
                connect_timeout: Duration::from_secs(5),
                default_deadline: Duration::from_secs(5),
                ..ClientConfig::default()
            };
            // The client's side of the handshake succeeds; the server refuses once it has the certificate.
            let client = LabClient::new(Client::connect_with(server.addr, config).await.unwrap());
            if round % 2 == 1 {
                // Later calls find the connection closed already.
                tokio::task::yield_now().await;
            }
            for call in ["first", "second"] {
                let err = client.whoami().await.unwrap_err();
                assert_eq!(err.code(), Status::Unavailable, "round {round}: {err}");
                assert!(
                    err.message()
                        .ends_with(&format!("received fatal alert: {alert}")),
                    "round {round}, {call} call: {err}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_connection_over_the_limit_is_refused_after_its_handshake_naming_the_limit() {
    let ca = Ca::new("test CA");
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server = serve(server_tls(&ca, None), config).await;
    let connect = || async {
        let config = ClientConfig {
            tls: Some(client_tls(&ca, None)),
            connect_timeout: Duration::from_secs(60),
            default_deadline: Duration::from_secs(60),
            ..ClientConfig::default()
        };
        LabClient::new(Client::connect_with(server.addr, config).await.unwrap())
    };
    let first = connect().await;
    assert_eq!(first.whoami().await, Ok(Vec::new()));
    // Over TLS the refusal comes after the handshake, so the client can read it; not a timeout.
    let second = connect().await;
    let err = second.whoami().await.unwrap_err();
    assert_eq!(err.code(), Status::ResourceExhausted, "{err}");
    assert!(
        err.message()
            .contains("server at its connection limit of 1 (max_connections)"),
        "{err}"
    );
    assert_eq!(first.whoami().await, Ok(Vec::new()));
}

#[tokio::test]
async fn stalled_handshakes_cannot_keep_out_clients_that_finish_theirs() {
    let ca = Ca::new("test CA");
    // The defaults: 1,024 connections, 256 of them handshaking, 10 s to finish a handshake.
    let server = serve(server_tls(&ca, None), ServerConfig::default()).await;
    let connect = || async {
        let config = ClientConfig {
            tls: Some(client_tls(&ca, None)),
            default_deadline: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        LabClient::new(Client::connect_with(server.addr, config).await.unwrap())
    };
    let established = connect().await;
    assert_eq!(established.whoami().await, Ok(Vec::new()));
    // 1,100 connections that never start their handshake, more than the server holds.
    let mut stalled = Vec::with_capacity(1100);
    for i in 0..1100 {
        stalled.push(RawPeer::connect(server.addr).await.unwrap());
        if i % 100 == 0 {
            assert_eq!(established.whoami().await, Ok(Vec::new()), "stall {i}");
        }
    }
    // A new client finishes its handshake and is served while they are held (long before their timeout)...
    let newcomer = connect().await;
    for _ in 0..10 {
        assert_eq!(newcomer.whoami().await, Ok(Vec::new()));
        assert_eq!(established.whoami().await, Ok(Vec::new()));
    }
    // ...because the oldest of them made room: the first was closed without a word.
    assert!(matches!(
        stalled[0].next(Duration::from_secs(5)).await,
        Next::Closed
    ));
}
