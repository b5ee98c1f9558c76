//! Serves `Calc` and registers it with a registry; on Ctrl-C or SIGTERM deregisters, then drains (go-away,
//! calls in flight finish) and exits 0.
//!
//! `calc-server --listen ADDR --registry ADDR[,ADDR...] --weight W [--label KEY=VALUE]... [--token T] [--tls-cert F
//! --tls-key F] [--tls-ca F]`: the first line it prints is the address it serves on. Its labels (and `pid`)
//! are registered with it, for clients that call a subset (`calc-client --subset version=v2`). With `--tls-cert`/`--tls-key` it serves over TLS;
//! with `--tls-ca` it talks to the registry over TLS (presenting its certificate, for mutual TLS) and verifies
//! the certificates its clients present. With `--metrics ADDR` it serves Prometheus metrics at
//! `http://ADDR/metrics` and its health at `http://ADDR/healthz`. It says on stderr when it registers again
//! (the registry lost its lease), and when another instance supersedes it or the registry refuses it for good
//! (another identity owns the instance, its token is no longer granted): `/healthz` then answers 503.
//!
//! `--max-concurrency N`, `--adaptive-limit` and `--rate-limit PER_SECOND` shed calls past a limit per method,
//! past a limit that follows latency, or past a caller's rate (`ResourceExhausted`, with a retry-after);
//! `--fault-delay-ms MS [--fault-delay-percent P]` and `--fault-abort-percent P [--fault-abort-status NAME]`
//! inject faults. It says on stderr which it applies. It follows the authorization of the rules applied to
//! the registry for Calc (`rpc-registry rules apply`): a caller they deny is refused `PermissionDenied`, naming
//! the rule. `--jwt-hs256-secret-file F`, `--jwt-rs256-key F` and `--jwt-eddsa-key F` (with `--jwt-issuer`,
//! `--jwt-audience`) make bearer JWTs signed by those keys name their callers (`jwt:SUBJECT`) to the rules.
//!
//! `--http` answers HTTP/1.1 and JSON on the same port too (`curl --json '{"a":2,"b":3}' http://ADDR/Calc/add`;
//! `examples/python/calc_client.py`), through the same layers; `--cors-origin ORIGIN` (repeatable) lets pages
//! of that origin call it from a browser. It says so on stderr.

use std::collections::BTreeMap;

use clap::Parser;
use examples::calc::{CalcServer, Calculator};
use examples::callers::JwtArgs;
use examples::http::HttpArgs;
use examples::labels::LabelArgs;
use examples::ops::{Health, MetricsArgs};
use examples::protect::{FaultArgs, LimitArgs};
use examples::tls::TlsArgs;
use rpc_core::server::layer::{Authorize, FollowRules, Grant, Layers, LoadMeter};
use rpc_core::{ClientConfig, Server, ServerBuilder};
use rpc_registry::{
    Discovery, DiscoveryConfig, NewInstance, Registration, RegistrationConfig, TOKEN_ENV,
    check_token,
};

/// Serves Calc and registers it with a registry.
#[derive(Parser)]
struct Args {
    /// Address to serve on (port 0: one the OS picks).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Address of the registry's API, or of its replicas separated by commas (h1:7070,h2:7070).
    #[arg(long, default_value = "127.0.0.1:7070")]
    registry: String,
    /// This instance's share of the calls, relative to the others'.
    #[arg(long, default_value_t = 1)]
    weight: u32,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    jwt: JwtArgs,
    /// The registry's token, if it has one (8 to 4,096 visible ASCII characters).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    /// With --tls-ca: refuse clients that present no certificate.
    #[arg(long, requires = "tls_ca")]
    require_client_cert: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    fault: FaultArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calc-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // First of all, so that a signal during start-up drains too.
    let stop = rpc_core::server::shutdown_signal();
    if let Some(token) = &args.token {
        check_token(token).map_err(|e| format!("--token (or {TOKEN_ENV}): {e}"))?;
    }
    let registries = examples::registry::resolve(&args.registry).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let address = listener.local_addr()?.to_string();
    println!("{address}");
    let fault = args.fault.fault("calc-server");
    // The registry's rules for Calc, watched over the connection the registration shares.
    let discovery = Discovery::new(
        registries.as_slice(),
        DiscoveryConfig {
            token: args.token.clone(),
            client: ClientConfig {
                tls: args.tls.client()?,
                ..DiscoveryConfig::default().client
            },
            ..DiscoveryConfig::default()
        },
    )
    .await?;
    let follow = FollowRules::new(discovery.rules("Calc"));
    // Who calls (a JWT's subject, with --jwt-* keys), for the rules to grant by.
    let callers = match args.jwt.layer()? {
        Some(jwt) => {
            eprintln!("calc-server: bearer JWTs name their callers (jwt:SUBJECT)");
            jwt
        }
        None => Authorize::new().anonymous(Grant::all()),
    };
    // Its calls, failures and latency, reported with each heartbeat.
    let meter = LoadMeter::new();
    let served = (stop, listener, address, meter.clone(), registries);
    match examples::protect::describe(&args.limits, fault.as_ref()) {
        None => {
            let builder = Server::builder().layer(meter).layer(callers).layer(follow);
            serve(args, served, builder).await
        }
        Some(applied) => {
            eprintln!("calc-server: {applied}");
            let builder = examples::protect::layered(
                Server::builder(),
                meter,
                callers,
                follow,
                &args.limits,
                fault,
            );
            serve(args, served, builder).await
        }
    }
}

/// Serves Calc on `listener` with the layers of `builder`, registers with the first of `registries` that
/// answers, and drains once `stop` fires.
async fn serve<L: Layers>(
    args: Args,
    (stop, listener, address, meter, registries): (
        impl Future<Output = rpc_core::server::ShutdownSignal>,
        tokio::net::TcpListener,
        String,
        LoadMeter,
        Vec<std::net::SocketAddr>,
    ),
    builder: ServerBuilder<L>,
) -> Result<(), Box<dyn std::error::Error>> {
    let builder = builder.add_service(CalcServer::new(Calculator {
        instance: address.clone(),
    }));
    let builder = match args.tls.server(args.require_client_cert)? {
        Some(tls) => builder.tls(tls),
        None => builder,
    };
    let builder = match args.http.config() {
        Some(http) => builder.http(http),
        None => builder,
    };
    if let Some(said) = args.http.describe(&address) {
        eprintln!("calc-server: {said}");
    }
    let health = Health::default();
    let builder = match args
        .metrics
        .start_with("calc-server", health.clone())
        .await?
    {
        Some(metrics) => builder.metrics(metrics),
        None => builder,
    };
    let server = builder.build()?;
    let (drain, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));
    let instance = NewInstance {
        service: String::from("Calc"),
        address: address.clone(),
        weight: args.weight,
        metadata: args.labels.merged(BTreeMap::from([(
            String::from("pid"),
            std::process::id().to_string(),
        )])),
    };
    let defaults = RegistrationConfig::default();
    let config = RegistrationConfig {
        token: args.token,
        client: ClientConfig {
            tls: args.tls.client()?,
            ..defaults.client.clone()
        },
        load: Some(meter),
        ..defaults
    };
    let registration = Registration::register(registries.as_slice(), instance, config).await?;
    let lease = registration.lease();
    eprintln!(
        "calc-server: registered {address} (weight {}) with {}: lease {}, heartbeat every {} ms",
        args.weight, args.registry, lease.id, lease.heartbeat_ms
    );
    health.follow(
        "calc-server",
        &args.registry,
        &address,
        registration.status(),
    );
    let signal = stop.await;
    eprintln!("calc-server: {signal}: deregistering, then finishing calls in flight");
    if let Err(e) = registration.deregister().await {
        // The registry evicts it after the TTL instead; the calls in flight still finish.
        eprintln!(
            "calc-server: could not deregister ({e}): the registry drops this instance at its TTL"
        );
    }
    let _ = drain.send(());
    serving.await??;
    eprintln!("calc-server: stopped");
    Ok(())
}
