//! The transport seam end to end: calls over a Unix domain socket (the handler sees a Unix peer), one server on
//! a TCP and a Unix listener at once, a TLS server whose Unix socket carries no TLS, refusal at
//! `max_connections` over a Unix socket, a graceful drain of a Unix listener, a stale socket file replaced and
//! a live one kept, and a registry served on a Unix socket that a client registers with and reads from. Socket
//! files live in a fresh directory under the system's temporary directory, removed at the end. Real clock:
//! every step is I/O on a socket.

#![cfg(unix)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::server::{Listener, bind_unix};
use rpc_core::tls::{ClientTls, ServerTls};
use rpc_core::{Client, ClientConfig, Metadata, PeerAddr, ServerConfig, Status};
use rpc_registry::{AddressCheck, NewInstance, RegistryClient, RegistryConfig};
use tests::certs::Ca;
use tests::lab::{LabClient, LabImpl, Observed};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any one step may take.
const WAIT: Duration = Duration::from_secs(10);

/// A fresh directory for socket files, removed when dropped.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new() -> SocketDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rpc-transport-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        SocketDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server of the Lab service on `listener`, with what its handlers observe and a graceful shutdown.
struct Lab {
    observed: Arc<Observed>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Lab {
    fn serve(listener: impl Into<Listener>, config: ServerConfig, tls: Option<ServerTls>) -> Lab {
        let listener: Listener = listener.into();
        let lab = LabImpl::default();
        let observed = Arc::clone(&lab.observed);
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = tests::serve::lab_server(lab, config, tls, None);
        let task = tokio::spawn(server.serve_with_shutdown(listener, shutdown));
        Lab {
            observed,
            stop: Some(stop),
            task,
        }
    }

    fn peers(&self) -> HashSet<PeerAddr> {
        self.observed.peers.lock().unwrap().clone()
    }

    /// Starts the graceful shutdown and waits for the server to return.
    async fn shut_down(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let served = tokio::time::timeout(WAIT, self.task).await;
        assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    }
}

async fn unix_client(path: &Path, config: ClientConfig) -> LabClient {
    LabClient::new(Client::connect_unix_with(path, config).await.unwrap())
}

fn quick() -> ClientConfig {
    ClientConfig {
        connect_timeout: WAIT,
        default_deadline: WAIT,
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn a_call_over_a_unix_socket_reaches_a_handler_that_sees_a_unix_peer() {
    let dir = SocketDir::new();
    let path = dir.path("lab.sock");
    let lab = Lab::serve(bind_unix(&path).unwrap(), ServerConfig::default(), None);

    let client = LabClient::connect_unix(&path).await.unwrap();
    assert_eq!(client.echo(7).await, Ok(7));
    // Large payloads both ways go through the Unix stream's writes whole.
    let data = serde_bytes::ByteBuf::from(vec![0xA5; 3 << 20]);
    assert_eq!(client.mirror(data.clone()).await, Ok(data));
    // The client binds no path of its own: the handler sees an unnamed Unix peer.
    assert_eq!(lab.peers(), HashSet::from([PeerAddr::Unix(None)]));
    lab.shut_down().await;
}

#[tokio::test]
async fn dialing_a_socket_path_where_nothing_listens_says_which_path() {
    let dir = SocketDir::new();
    let path = dir.path("nobody.sock");
    let err = Client::connect_unix(&path).await.unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
    let expected = format!("cannot connect to unix:{}: ", path.display());
    assert!(err.message().starts_with(&expected), "{err}");
}

#[tokio::test]
async fn one_server_serves_a_tcp_and_a_unix_listener_together() {
    let dir = SocketDir::new();
    let path = dir.path("both.sock");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = Listener::from(tcp).and(bind_unix(&path).unwrap());
    let lab = Lab::serve(listener, ServerConfig::default(), None);

    let over_tcp = LabClient::connect(addr).await.unwrap();
    let over_unix = LabClient::connect_unix(&path).await.unwrap();
    for n in 0..10 {
        assert_eq!(over_tcp.echo(n).await, Ok(n));
        assert_eq!(over_unix.echo(n).await, Ok(n));
    }
    let peers = lab.peers();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(peers.contains(&PeerAddr::Unix(None)), "{peers:?}");
    assert!(
        peers
            .iter()
            .any(|p| p.ip() == Some(addr.ip()) && !p.is_unix()),
        "{peers:?}"
    );
    lab.shut_down().await;
}

#[tokio::test]
async fn a_tls_server_serves_its_unix_socket_in_the_clear() {
    let dir = SocketDir::new();
    let path = dir.path("tls.sock");
    let ca = Ca::new("test CA");
    let id = ca.server(&["127.0.0.1"]);
    let tls = ServerTls::from_pem(id.cert.as_bytes(), id.key.as_bytes(), None).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = Listener::from(tcp).and(bind_unix(&path).unwrap());
    let lab = Lab::serve(listener, ServerConfig::default(), Some(tls));

    let client_tls = ClientTls::from_pem(ca.pem.as_bytes(), None).unwrap();
    let with_tls = ClientConfig {
        tls: Some(client_tls),
        ..quick()
    };
    let over_tls = LabClient::new(Client::connect_with(addr, with_tls.clone()).await.unwrap());
    assert_eq!(over_tls.echo(1).await, Ok(1));
    // The client's TLS settings are not used over a Unix socket, and the server runs no handshake there.
    let over_unix = unix_client(&path, with_tls).await;
    assert_eq!(over_unix.echo(2).await, Ok(2));
    assert_eq!(over_unix.whoami().await, Ok(Vec::new()));
    // A plain TCP client at the TLS port still gets nowhere.
    let plain = Client::connect_with(addr, quick()).await;
    let refused = match plain {
        Err(e) => e,
        Ok(client) => LabClient::new(client).echo(3).await.unwrap_err(),
    };
    assert_eq!(refused.code(), Status::Unavailable, "{refused}");
    lab.shut_down().await;
}

#[tokio::test]
async fn a_unix_connection_over_max_connections_is_refused_with_the_reason() {
    let dir = SocketDir::new();
    let path = dir.path("full.sock");
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let lab = Lab::serve(bind_unix(&path).unwrap(), config, None);
    let first = unix_client(&path, quick()).await;
    assert_eq!(first.echo(1).await, Ok(1), "the first connection is served");

    let second = unix_client(&path, quick()).await;
    let err = second.echo(2).await.unwrap_err();
    assert_eq!(err.code(), Status::ResourceExhausted, "{err}");
    assert!(
        err.message()
            .contains("server at its connection limit of 1 (max_connections)"),
        "{err}"
    );
    assert!(err.is_not_processed(), "{err}");
    assert_eq!(first.echo(3).await, Ok(3), "the first is still served");
    lab.shut_down().await;
}

#[tokio::test]
async fn a_unix_listener_drains_calls_in_flight_on_shutdown() {
    let dir = SocketDir::new();
    let path = dir.path("drain.sock");
    let mut lab = Lab::serve(bind_unix(&path).unwrap(), ServerConfig::default(), None);
    let client = unix_client(&path, quick()).await;
    assert_eq!(client.echo(0).await, Ok(0));

    let call = tokio::spawn({
        let client = client.clone();
        async move { client.delayed(9, 300).await }
    });
    let started = tests::serve::until(|| lab.observed.delayed_started.load(Ordering::SeqCst) == 1);
    assert!(started.await, "the call started");
    let _ = lab.stop.take().map(|stop| stop.send(()));
    let served = tokio::time::timeout(WAIT, &mut lab.task).await;
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    assert_eq!(call.await.unwrap(), Ok(9), "the call in flight finished");
    assert!(
        tokio::net::UnixStream::connect(&path).await.is_err(),
        "the socket no longer accepts"
    );
}

#[tokio::test]
async fn binding_replaces_a_stale_socket_file_and_keeps_a_live_one() {
    let dir = SocketDir::new();
    let path = dir.path("again.sock");
    let stale = bind_unix(&path).unwrap();
    drop(stale);
    assert!(path.exists(), "tokio leaves the socket file behind");
    let live = bind_unix(&path).expect("a stale socket file is replaced");
    let err = bind_unix(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(
        err.to_string()
            .ends_with("expected no file or a stale socket, but a server listens there"),
        "{err}"
    );
    drop(live);
    let file = dir.path("plain-file");
    std::fs::write(&file, b"not a socket").unwrap();
    let err = bind_unix(&file).unwrap_err();
    assert!(
        err.to_string().contains("a file that is not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket", "left alone");
}

#[tokio::test]
async fn a_registry_on_a_unix_socket_takes_registrations_from_this_host_and_answers_reads() {
    let dir = SocketDir::new();
    let path = dir.path("registry.sock");
    let token = "unix-socket-token";
    let config = RegistryConfig {
        token: Some(token.to_owned()),
        address_check: AddressCheck::Peer,
        ..RegistryConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let registry = tokio::spawn(rpc_registry::serve(
        config,
        bind_unix(&path).unwrap(),
        None,
        async move {
            let _ = stopped.await;
        },
    ));

    let bearer = Metadata::from_pairs([("authorization", format!("Bearer {token}"))]).unwrap();
    let client = RegistryClient::connect_unix(&path).await.unwrap();
    let writer = client.with_metadata(bearer);
    let instance = |address: &str| NewInstance {
        service: "Calc".to_owned(),
        address: address.to_owned(),
        weight: 1,
        metadata: BTreeMap::new(),
    };
    // Over a Unix socket the caller runs on this host: an address of this host passes the peer check, and one
    // of another host does not.
    let lease = writer.register(instance("127.0.0.1:4000")).await.unwrap();
    assert!(lease.is_ok(), "{lease:?}");
    let refused = writer.register(instance("192.0.2.1:4000")).await.unwrap();
    let refused = refused.unwrap_err().to_string();
    assert!(
        refused.contains("came over a Unix socket")
            && refused.contains("192.0.2.1 is not an address of this host"),
        "{refused}"
    );
    let snapshot = client.instances("Calc".to_owned()).await.unwrap();
    let addresses: Vec<_> = snapshot
        .instances
        .iter()
        .map(|i| i.address.as_str())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:4000"]);

    let _ = stop.send(());
    let served = tokio::time::timeout(WAIT, registry).await;
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
}
