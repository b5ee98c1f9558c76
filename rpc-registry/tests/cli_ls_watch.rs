//! `rpc-registry ls` and `rpc-registry watch` as a user runs them, against a registry served in the test process
//! on 127.0.0.1: `ls` prints a header and a row per instance (weight, state, metadata), filters by service, says
//! when there is nothing and exits 0, fails for a service that has no instance, fails naming the address when
//! nothing listens, and the timeout it waited when nothing answers, says which port is which when pointed at the HTTP port, and presents a
//! client certificate to a registry that requires one; given a dead and a live replica (`--registry DEAD,LIVE`)
//! it lists the live one's instances, and it refuses a list with an empty entry naming it; both escape
//! hostile metadata;
//! `watch` prints the instances, then a line per change (`+` on a registration, `~` on a re-registration with
//! another weight, `-` with its reason on a deregistration and on an eviction, without one from an older
//! registry that lacks `watch_changes`), and goes on across a registry restart, printing only the changes that
//! are real.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rpc_core::tls::{ClientCa, ClientTls, ServerTls};
use rpc_core::{Client, ClientConfig, Server};
use rpc_registry::api::RegistryServer;
use rpc_registry::{
    InstanceState, Lease, LeaseRef, NewInstance, Registration, RegistrationConfig, RegistryClient,
    RegistryConfig, RegistryService,
};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::task::JoinHandle;

#[allow(unreachable_pub, dead_code)]
#[path = "../../tests/src/certs.rs"]
mod certs;

/// The longest any one step of a test (a command to finish, a line to come) may take.
const STEP: Duration = Duration::from_secs(10);

/// A registry served in this process; it stops when dropped.
struct Registry {
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves a registry with `ttl` on 127.0.0.1:`port` (0: any free port).
async fn start_registry(ttl: Duration, port: u16) -> Registry {
    let config = RegistryConfig {
        ttl,
        ..RegistryConfig::default()
    };
    serve(config, port).await
}

/// Serves a registry with `config` on 127.0.0.1:`port` (0: any free port).
async fn serve(config: RegistryConfig, port: u16) -> Registry {
    serve_with_http(config, port, None).await
}

/// Serves a registry with `config` on 127.0.0.1:`port`, and its HTTP port on `http` if given.
async fn serve_with_http(config: RegistryConfig, port: u16, http: Option<TcpListener>) -> Registry {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(rpc_registry::serve(
        config,
        listener,
        http,
        std::future::pending(),
    ));
    Registry { addr, task }
}

async fn client(addr: SocketAddr) -> RegistryClient {
    tls_client(addr, None).await
}

async fn tls_client(addr: SocketAddr, tls: Option<ClientTls>) -> RegistryClient {
    let config = ClientConfig {
        default_deadline: Duration::from_secs(5),
        tls,
        ..ClientConfig::default()
    };
    RegistryClient::new(Client::lazy_with(addr, config).await.unwrap())
}

fn instance(service: &str, port: u16, weight: u32, metadata: &[(&str, &str)]) -> NewInstance {
    NewInstance {
        service: service.to_owned(),
        address: format!("127.0.0.1:{port}"),
        weight,
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

async fn register(client: &RegistryClient, instance: &NewInstance) -> Lease {
    client.register(instance.clone()).await.unwrap().unwrap()
}

/// Runs `rpc-registry ls ARGS`; its exit status, stdout and stderr.
async fn ls(args: &[&str]) -> (ExitStatus, String, String) {
    let out = tokio::time::timeout(
        STEP,
        Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
            .arg("ls")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("`rpc-registry ls` finishes within 10 s")
    .expect("the rpc-registry binary runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status, text(out.stdout), text(out.stderr))
}

/// A running `rpc-registry watch`, read line by line.
struct Watch {
    _child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Watch {
    fn start(service: &str, registry: SocketAddr) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-registry"))
            .args(["watch", service, "--registry", &registry.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the rpc-registry binary starts");
        Watch {
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            stderr: BufReader::new(child.stderr.take().unwrap()).lines(),
            _child: child,
        }
    }

    /// The next change printed, without its time stamp (which it checks).
    async fn change(&mut self) -> String {
        let line = next(&mut self.stdout, "a change on stdout").await;
        let (stamp, change) = line.split_once(' ').unwrap_or(("", ""));
        assert!(
            stamp.len() == "2025-01-01T00:00:00.000Z".len() && stamp.ends_with('Z'),
            "no time stamp first in {line:?}"
        );
        change.to_owned()
    }

    /// Reads stderr until a line containing `text`; returns it.
    async fn says(&mut self, text: &str) -> String {
        for _ in 0..20 {
            let line = next(&mut self.stderr, text).await;
            if line.contains(text) {
                return line;
            }
        }
        panic!("no line with {text:?} among the first 20 on stderr");
    }
}

async fn next<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Lines<R>, what: &str) -> String {
    tokio::time::timeout(STEP, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no {what:?} within 10 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("the output ended before {what:?}"))
}

/// Whether the registry at `client` shows `address` of `service` as late (its heartbeats missed for half the TTL);
/// `None` once the instance is gone.
async fn is_late(client: &RegistryClient, service: &str, address: &str) -> Option<bool> {
    let statuses = client.status(Some(service.to_owned())).await.unwrap();
    statuses
        .iter()
        .flat_map(|s| &s.instances)
        .find(|i| i.instance.address == address)
        .map(|i| i.state == InstanceState::Late)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_prints_a_header_and_one_aligned_row_per_instance() {
    // Late after 3 s without a heartbeat, evicted after 6 s.
    let ttl = Duration::from_secs(6);
    let registry = start_registry(ttl, 0).await;
    let client = client(registry.addr).await;
    let a = instance("Calc", 7001, 5, &[("zone", "a"), ("ver", "2")]);
    let b = instance("Billing", 7101, 2, &[]);
    let quiet = instance("Calc", 7002, 1, &[]);
    // The quiet instance never heartbeats: wait for the registry to call it late (polled every 50 ms, for at
    // most twice the TTL), register the others, then list. Should `ls` come after the quiet one's eviction (a
    // stalled machine), it all starts again, from nothing registered.
    let mut listed = None;
    for _ in 0..3 {
        register(&client, &quiet).await;
        let mut late = false;
        for _ in 0..(2 * ttl.as_millis() / 50) {
            if is_late(&client, "Calc", &quiet.address).await == Some(true) {
                late = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(late, "the quiet instance was not late within twice the TTL");
        let leases = [register(&client, &a).await, register(&client, &b).await];
        let (status, stdout, stderr) = ls(&["--registry", &registry.addr.to_string()]).await;
        if stdout.contains(&quiet.address) {
            listed = Some((status, stdout, stderr));
            break;
        }
        for (lease, new) in leases.iter().zip([&a, &b]) {
            let lease = LeaseRef {
                lease: lease.id,
                incarnation: lease.incarnation,
                service: new.service.clone(),
                address: new.address.clone(),
            };
            client.deregister(lease).await.unwrap().unwrap();
        }
    }
    let (status, stdout, stderr) =
        listed.expect("ls listed the quiet instance before its eviction");
    assert!(status.success(), "{status}: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "SERVICE",
            "ADDRESS",
            "WEIGHT",
            "STATE",
            "HEARTBEAT",
            "INCARNATION",
            "METADATA"
        ]
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Sorted by service then address; the heartbeat ages are checked for their form only.
    assert_eq!(
        rows.iter()
            .map(|row| [&row[..4], &row[5..]].concat())
            .collect::<Vec<_>>(),
        [
            vec!["Billing", "127.0.0.1:7101", "2", "up", "1", "-"],
            vec!["Calc", "127.0.0.1:7001", "5", "up", "1", "ver=2,zone=a"],
            vec!["Calc", "127.0.0.1:7002", "1", "late", "1", "-"],
        ]
    );
    for row in &rows {
        let age = row[4];
        assert!(
            age.ends_with("ms")
                || age.ends_with('s') && age[..age.len() - 1].parse::<f64>().is_ok(),
            "heartbeat age {age:?}"
        );
    }
    // Every cell starts where its column's header does.
    let starts = |line: &str| -> Vec<usize> {
        let mut starts = Vec::new();
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            if c != ' ' && previous == ' ' {
                starts.push(i);
            }
            previous = c;
        }
        starts
    };
    for line in &lines[1..] {
        assert_eq!(starts(line), starts(lines[0]), "{stdout}");
    }
    assert_eq!(stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_of_a_service_lists_only_its_instances() {
    let registry = start_registry(Duration::from_secs(3), 0).await;
    let client = client(registry.addr).await;
    register(&client, &instance("Calc", 7001, 5, &[])).await;
    register(&client, &instance("Calc", 7002, 1, &[])).await;
    register(&client, &instance("Billing", 7101, 2, &[])).await;

    let (status, stdout, stderr) = ls(&["Calc", "--registry", &registry.addr.to_string()]).await;
    assert!(status.success(), "{status}: {stderr}");
    let services: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(services, ["SERVICE", "Calc", "Calc"], "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_with_nothing_registered_says_so_and_succeeds() {
    let registry = start_registry(Duration::from_secs(3), 0).await;
    let addr = registry.addr.to_string();

    let (status, stdout, stderr) = ls(&["--registry", &addr]).await;
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!("no instance is registered with the registry at {addr}\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_of_a_service_without_instances_fails_naming_it() {
    let registry = start_registry(Duration::from_secs(3), 0).await;
    let addr = registry.addr.to_string();
    register(
        &client(registry.addr).await,
        &instance("Calc", 7001, 5, &[]),
    )
    .await;
    let (status, stdout, stderr) = ls(&["Nope", "--registry", &addr]).await;
    assert!(!status.success(), "{status}: {stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "rpc-registry: no service named Nope at the registry at {addr} (`rpc-registry ls` lists every \
             service)\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_pointed_at_the_http_port_says_which_port_is_which() {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap().to_string();
    let _registry = serve_with_http(RegistryConfig::default(), 0, Some(http)).await;
    let (status, stdout, stderr) = ls(&["--registry", &http_addr]).await;
    assert!(!status.success());
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(&format!(
            "rpc-registry: cannot query the registry at {http_addr}: "
        )),
        "{stderr}"
    );
    for expected in [
        "got 48 54 (this looks like an HTTP response: is this the address of an HTTP port?)",
        "--registry wants the registry's API port (`rpc-registry serve --listen`, default 127.0.0.1:7070), \
         not its HTTP port (`--http`, default 127.0.0.1:7071",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_watch_escape_hostile_metadata() {
    let registry = start_registry(Duration::from_secs(3), 0).await;
    // A value that would clear the screen, then forge a row of its own on a line of its own.
    let forged = "a\x1b[2J\x1b[H\nCalc   127.0.0.1:6666   100   up   1ms   1   -";
    let long = "x".repeat(3_000);
    let hostile = instance("Calc", 7001, 5, &[("zone", forged), ("note", &long)]);
    // Heartbeating, so that it stays however slow the commands are.
    let _registration =
        Registration::register(registry.addr, hostile, RegistrationConfig::default())
            .await
            .unwrap();

    let (status, stdout, stderr) = ls(&["--registry", &registry.addr.to_string()]).await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one header and one row: {stdout}");
    assert!(
        lines[1].contains("zone=a\\x1b[2J\\x1b[H\\nCalc   127.0.0.1:6666"),
        "{stdout}"
    );
    // The long value is cut at its bound.
    assert!(
        lines[1].contains(&format!(
            "note={}…,",
            "x".repeat(rpc_registry::cli::MAX_FIELD_CHARS)
        )),
        "{stdout}"
    );

    let mut watch = Watch::start("Calc", registry.addr);
    let line = watch.change().await;
    assert!(!line.contains('\x1b'), "{line:?}");
    assert!(
        line.starts_with("+ 127.0.0.1:7001 weight 5 incarnation 1 note=xxx"),
        "{line}"
    );
    assert!(
        line.ends_with("zone=a\\x1b[2J\\x1b[H\\nCalc   127.0.0.1:6666   100   up   1ms   1   -"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_without_a_registry_fails_naming_its_address() {
    // A port that was free a moment ago, with nothing listening on it now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (status, stdout, stderr) = ls(&["--registry", &addr]).await;
    assert!(!status.success());
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(&format!(
            "rpc-registry: cannot query the registry at {addr}: "
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_of_a_dead_and_a_live_registry_prints_the_live_ones_instances() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let live = start_registry(Duration::from_secs(30), 0).await;
    register(&client(live.addr).await, &instance("Calc", 7001, 5, &[])).await;
    let live = live.addr.to_string();
    // Whichever replica `ls` tries first (one drawn at random), it lists the live one's instance.
    for list in [
        format!("{dead},{live}"),
        format!("{live},{dead}"),
        format!("{dead}, {live}"),
    ] {
        let (status, stdout, stderr) = ls(&["--registry", &list]).await;
        assert!(status.success(), "{list}: {status}: {stderr}");
        let rows: Vec<Vec<&str>> = stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().take(3).collect())
            .collect();
        assert_eq!(rows, [["Calc", "127.0.0.1:7001", "5"]], "{list}: {stdout}");
        assert_eq!(stderr, "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_of_dead_registries_or_a_list_with_an_empty_entry_fails_naming_the_list() {
    let closed = || async {
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string()
    };
    let both = format!("{},{}", closed().await, closed().await);
    let (status, stdout, stderr) = ls(&["--registry", &both]).await;
    assert!(!status.success());
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(&format!(
            "rpc-registry: cannot query the registry at {both}: "
        )),
        "{stderr}"
    );

    let (status, stdout, stderr) = ls(&["--registry", "127.0.0.1:1,,\x1b[2J"]).await;
    assert!(!status.success());
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "rpc-registry: cannot query the registry at 127.0.0.1:1,,\\x1b[2J: expected host:port as entry 2 of \
         the registry list `127.0.0.1:1,,\\u{1b}[2J`, got an empty entry\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_against_a_server_that_never_answers_gives_up_at_its_timeout() {
    // Connections are accepted (by the kernel) but nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    // `ls` runs within STEP (10 s), longer than the default timeout (5 s): the message says which one ended it.
    let (status, stdout, stderr) = ls(&["--registry", &addr, "--timeout-ms", "300"]).await;
    assert!(!status.success(), "{status}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "rpc-registry: cannot query the registry at {addr}: no answer within 300ms (the timeout, \
             --timeout-ms)\n"
        )
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_over_mutual_tls_presents_the_client_certificate() {
    let dir = certs::scratch_dir("registry-cli-ls");
    let ca = certs::Ca::new("test CA");
    let server = ca.server(&["127.0.0.1"]);
    let me = ca.client(&["ops.test"]);
    let tls = ServerTls::from_pem(
        server.cert.as_bytes(),
        server.key.as_bytes(),
        Some(ClientCa {
            pem: ca.pem.as_bytes(),
            required: true,
        }),
    )
    .unwrap();
    let config = RegistryConfig {
        tls: Some(tls),
        ..RegistryConfig::default()
    };
    let registry = serve(config, 0).await;
    let identity = (me.cert.as_bytes(), me.key.as_bytes());
    let client_tls = ClientTls::from_pem(ca.pem.as_bytes(), Some(identity)).unwrap();
    let client = tls_client(registry.addr, Some(client_tls)).await;
    register(&client, &instance("Calc", 7001, 5, &[])).await;
    let path = |name: &str, text: &str| certs::write(&dir, name, text).display().to_string();
    let (ca_pem, cert, key) = (
        path("ca.pem", &ca.pem),
        path("me.pem", &me.cert),
        path("me.key", &me.key),
    );
    let addr = registry.addr.to_string();

    let with_cert = [
        "--registry",
        &addr,
        "--tls-ca",
        &ca_pem,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let (status, stdout, stderr) = ls(&with_cert).await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stdout.lines().nth(1).unwrap_or("").starts_with("Calc "),
        "{stdout}"
    );

    // Without the certificate the registry wants, or without TLS at all: a clear failure.
    let without_cert = ["--registry", &addr, "--tls-ca", &ca_pem];
    let plain = ["--registry", &addr];
    for args in [&without_cert[..], &plain[..]] {
        let (status, stdout, stderr) = ls(args).await;
        assert!(!status.success(), "{args:?}: {stdout}");
        assert!(
            stderr.starts_with(&format!(
                "rpc-registry: cannot query the registry at {addr}: "
            )),
            "{args:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_instances_then_each_change() {
    let ttl = Duration::from_millis(1500);
    let registry = start_registry(ttl, 0).await;
    let client = client(registry.addr).await;
    let config = || RegistrationConfig {
        heartbeat: Some(ttl / 3),
        ..RegistrationConfig::default()
    };
    let a = instance("Calc", 7001, 5, &[("zone", "a")]);
    let a_reg = Registration::register(registry.addr, a, config())
        .await
        .unwrap();

    let mut watch = Watch::start("Calc", registry.addr);
    assert_eq!(
        watch.change().await,
        "+ 127.0.0.1:7001 weight 5 incarnation 1 zone=a"
    );

    let b = instance("Calc", 7002, 1, &[]);
    let _b1 = Registration::register(registry.addr, b.clone(), config())
        .await
        .unwrap();
    assert_eq!(
        watch.change().await,
        "+ 127.0.0.1:7002 weight 1 incarnation 1"
    );

    let b3 = NewInstance { weight: 3, ..b };
    let _b3 = Registration::register(registry.addr, b3, config())
        .await
        .unwrap();
    assert_eq!(
        watch.change().await,
        "~ 127.0.0.1:7002 weight 1 -> 3, incarnation 1 -> 2"
    );

    a_reg.deregister().await.unwrap();
    assert_eq!(watch.change().await, "- 127.0.0.1:7001 deregistered");

    // Registered once and never heartbeated: evicted at the TTL.
    let c = instance("Calc", 7003, 2, &[]);
    register(&client, &c).await;
    assert_eq!(
        watch.change().await,
        "+ 127.0.0.1:7003 weight 2 incarnation 1"
    );
    assert_eq!(
        watch.change().await,
        "- 127.0.0.1:7003 evicted (no heartbeat within the TTL)"
    );
}

/// A registry as served before `watch_changes` existed: that method answers `Unimplemented`.
struct OlderRegistry(RegistryServer<RegistryService>);

impl rpc_core::Service for OlderRegistry {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn methods(&self) -> &'static [rpc_core::MethodInfo] {
        self.0.methods()
    }

    fn dispatch(&self, call: rpc_core::server::Call<'_>) -> rpc_core::server::Dispatched {
        if call.method_id() == rpc_core::codec::method_id("Registry", "watch_changes") {
            return call.unimplemented();
        }
        self.0.dispatch(call)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_of_a_registry_without_watch_changes_prints_removals_without_reasons() {
    let config = RegistryConfig {
        ttl: Duration::from_millis(1500),
        ..RegistryConfig::default()
    };
    let (service, evictions) = RegistryService::new(config).unwrap();
    let _evictions = AbortOnDrop(tokio::spawn(evictions));
    let server = Server::builder()
        .add_service(OlderRegistry(RegistryServer::new(service)))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = AbortOnDrop(tokio::spawn(async move {
        server.serve(listener).await.unwrap();
    }));
    let client = client(addr).await;
    let lease = register(&client, &instance("Calc", 7001, 5, &[])).await;

    let mut watch = Watch::start("Calc", addr);
    assert_eq!(
        watch.change().await,
        "+ 127.0.0.1:7001 weight 5 incarnation 1"
    );
    let gone = LeaseRef {
        lease: lease.id,
        incarnation: lease.incarnation,
        service: "Calc".into(),
        address: "127.0.0.1:7001".into(),
    };
    client.deregister(gone).await.unwrap().unwrap();
    assert_eq!(watch.change().await, "- 127.0.0.1:7001");
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_goes_on_across_a_registry_restart_printing_only_real_changes() {
    let ttl = Duration::from_millis(1500);
    let registry = start_registry(ttl, 0).await;
    let addr = registry.addr;
    let mut watch = Watch::start("Calc", addr);
    watch.says("no instance of Calc is registered").await;

    let config = RegistrationConfig {
        heartbeat: Some(ttl / 3),
        ..RegistrationConfig::default()
    };
    let a = instance("Calc", 7001, 5, &[("zone", "a")]);
    let _a = Registration::register(addr, a, config).await.unwrap();
    assert_eq!(
        watch.change().await,
        "+ 127.0.0.1:7001 weight 5 incarnation 1 zone=a"
    );

    drop(registry);
    watch.says("lost the registry at").await;
    let restarted = start_registry(ttl, addr.port()).await;
    watch.says("is back").await;
    // The instance registers again with the new registry (its heartbeat finds its lease unknown).
    let client = client(restarted.addr).await;
    let mut back = false;
    for _ in 0..100 {
        let snapshot = client.instances("Calc".into()).await.unwrap();
        if !snapshot.instances.is_empty() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the instance did not register again within 5 s");

    // Neither `- 127.0.0.1:7001` nor `+ 127.0.0.1:7001` came before this change.
    register(&client, &instance("Calc", 7002, 1, &[])).await;
    assert_eq!(
        watch.change().await,
        "+ 127.0.0.1:7002 weight 1 incarnation 1"
    );
}
