//! The client subcommands of the `rpc-registry` binary. `ls`, `watch`, `rules` and `weight` read or write a
//! running registry through its API ([`RegistryClient`]) and print what they find for a person, as a table or
//! as one line per change. [`Options::registry`] may list several replicas of the registry (`h1:7070,h2:7070`):
//! the runners use the first that answers and move to another when it stops answering. `call` and `describe`
//! talk to a service's own servers instead, found through the registry or named directly ([`Target`]): they
//! call a method in JSON and say what a service declares, through the `rpc.Reflection` every server answers.
//! The runners take their writers (stdout, stderr) as arguments, so tests capture what they print.
//!
//! ```no_run
//! # async fn run() -> Result<(), rpc_registry::cli::CliError> {
//! let options = rpc_registry::cli::Options::new("127.0.0.1:7070");
//! rpc_registry::cli::ls(&options, Some("Calc"), &mut std::io::stdout(), &mut std::io::stderr()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `escape`: [`escape()`], text from the registry made safe for a terminal, and its bounds.
//! - `table`: [`render_table`], [`format_age`] and [`format_metadata`], the table `ls` prints.
//! - `changes`: [`diff`], [`Change`] and [`Tracker`], the lines `watch` prints.
//! - `watch`: the [`watch`](fn@watch) runner (the long poll, its retries, the time stamps) and [`WatchConfig`].
//! - [`rules`]: the `rules apply`, `get`, `history` and `rollback` runners.
//! - [`weight`]: the `weight` runner (an operator's weight for an instance: drain, restore).
//! - `target`: [`Target`], where `call` and `describe` find a service (`--server`, or `--registry` and a
//!   balanced client of its instances), and what each of their calls carries.
//! - [`call`](mod@call): the `call` runner: a method in JSON, checked against the service's description first.
//! - [`describe`](mod@describe): the `describe` runner: a service's methods and docs, or a server's services.
//! - `exit`: [`CallError`] and the exit codes of `call` and `describe` ([`EXIT_CODES`], grpcurl's: 64 + status).
//! - [`flags`]: the flags `call`, `describe` and the registry's subcommands share (TLS, [`flags::TargetFlags`]).
//! - `json`: [`pretty_json`], JSON from a peer laid out for a terminal, in its order, unsafe characters escaped.
//! - this file: [`Options`], [`CliError`], the connection to the registry, and the [`ls`] runner.

pub mod call;
mod changes;
pub mod describe;
mod escape;
mod exit;
pub mod flags;
mod json;
pub mod rules;
mod table;
mod target;
mod watch;
pub mod weight;

use std::io::Write;
use std::time::Duration;

use rpc_core::tls::ClientTls;
use rpc_core::{Client, ClientConfig, RpcError, Status};

use crate::RegistryListError;
use crate::api::{RegistryClient, ServiceReport};
use crate::token::{TokenError, bearer, hidden};
use escape::{field, line};

pub use call::{Answered, call};
pub use changes::{Change, Tracker, diff};
pub use describe::describe;
pub use escape::{MAX_FIELD_CHARS, MAX_LINE_CHARS, escape};
pub use exit::{
    CallError, EXIT_APP_ERROR, EXIT_CODES, EXIT_OUTPUT, EXIT_STATUS_BASE, EXIT_USAGE, EXIT_VALUE,
    status_exit_code,
};
pub use flags::DEFAULT_REGISTRY;
pub use json::{MAX_JSON_DEPTH, pretty_json};
pub use table::{format_age, format_metadata, render_table, render_table_with_replicas};
pub use target::{DEFAULT_CALL_DEADLINE, Target, Via};
pub use watch::{
    DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_WAIT, WatchConfig, format_timestamp, watch,
};

/// Default of [`Options::timeout`]: 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest the connection waits between two attempts to reconnect: 100 ms, so that the runners' own
/// pauses (see [`WatchConfig::backoff_max`]) decide when the next attempt is made.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// How the client subcommands reach the registry. Its `Debug` hides the token.
#[derive(Clone)]
pub struct Options {
    /// The address of the registry's API, `host:port`, or the addresses of its replicas separated by commas
    /// (`10.0.0.1:7070,10.0.0.2:7070`, read by [`crate::parse_registries`]): the runners use the first that
    /// answers, and move to another when it stops answering. Messages name it as given.
    pub registry: String,
    /// A token sent as `authorization: Bearer <token>` with every call (reads need none today); it meets
    /// [`crate::check_token`]. Default none.
    pub token: Option<String>,
    /// TLS to the registry; `None` (the default) connects in the clear.
    pub tls: Option<ClientTls>,
    /// The longest wait to connect, and for an answer beyond a watch's own wait. Default 5 s
    /// ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl Options {
    /// Options for the registry at `registry` (one address, or a comma-separated list of its replicas), with
    /// no token, no TLS and the default timeout.
    pub fn new(registry: impl Into<String>) -> Options {
        Options {
            registry: registry.into(),
            token: None,
            tls: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field, the token hidden.
        let Options {
            registry,
            token,
            tls,
            timeout,
        } = self;
        f.debug_struct("Options")
            .field("registry", registry)
            .field("token", &hidden(token))
            .field("tls", tls)
            .field("timeout", timeout)
            .finish()
    }
}

/// Why `ls` or `watch` failed. The messages escape and bound what they quote ([`escape()`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The registry could not be reached, or did not answer within the timeout.
    #[error(
        "cannot query the registry at {}: {}{}",
        field(.registry),
        line(&.source.to_string()),
        wrong_port_hint(.source)
    )]
    Registry {
        /// The registry's address, as given.
        registry: String,
        /// What went wrong.
        #[source]
        source: RpcError,
    },
    /// [`Options::registry`] is not a usable list of addresses (an empty entry, a name that does not resolve).
    #[error("cannot query the registry at {}: {}", field(.registry), line(&.source.to_string()))]
    Addresses {
        /// The registry's addresses, as given.
        registry: String,
        /// What is wrong with them.
        #[source]
        source: RegistryListError,
    },
    /// The registry did not answer within the timeout ([`Options::timeout`]).
    #[error(
        "cannot query the registry at {}: no answer within {} (the timeout, --timeout-ms)",
        field(.registry),
        format_age(*.waited)
    )]
    NoAnswer {
        /// The registry's address, as given.
        registry: String,
        /// How long it waited.
        waited: Duration,
        /// The call's error (`DeadlineExceeded`).
        #[source]
        source: RpcError,
    },
    /// `ls SERVICE` of a service the registry has no instance of.
    #[error(
        "no service named {} at the registry at {} (`rpc-registry ls` lists every service)",
        field(.service),
        field(.registry)
    )]
    NoService {
        /// The service asked for.
        service: String,
        /// The registry's address, as given.
        registry: String,
    },
    /// `rules get` or `history` of a service without rules.
    #[error(
        "the registry at {} has no rules for {} (`rpc-registry rules apply FILE` applies some)",
        field(.registry),
        field(.service)
    )]
    NoRules {
        /// The service asked for.
        service: String,
        /// The registry's address, as given.
        registry: String,
    },
    /// A rules file failed its checks; nothing was sent.
    #[error("{}", .problems.iter().map(|p| format!("{}: {p}", field(.file))).collect::<Vec<_>>().join("\n"))]
    Rules {
        /// The file, as named.
        file: String,
        /// Each problem, with its line and field.
        problems: Vec<String>,
    },
    /// The registry refused the request, and said why.
    #[error("the registry refused: {}", line(.0))]
    Refused(String),
    /// The token breaks the rule of [`crate::check_token`]; nothing was sent.
    #[error("the registry token is not usable: {0}")]
    Token(#[source] TokenError),
    /// The output could not be written (a closed pipe, say).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The failure of a call made with `options`'s timeout.
    fn registry(options: &Options, source: RpcError) -> CliError {
        let registry = options.registry.clone();
        match source.code() {
            Status::DeadlineExceeded => CliError::NoAnswer {
                registry,
                waited: options.timeout,
                source,
            },
            _ => CliError::Registry { registry, source },
        }
    }
}

/// When the registry's address answered like an HTTP server, which port is which.
fn wrong_port_hint(source: &RpcError) -> &'static str {
    if source
        .message()
        .contains(rpc_core::codec::error::HTTP_RESPONSE_HINT)
    {
        "; --registry wants the registry's API port (`rpc-registry serve --listen`, default 127.0.0.1:7070), \
         not its HTTP port (`--http`, default 127.0.0.1:7071: the dashboard, JSON API and metrics)"
    } else {
        ""
    }
}

/// A stub of the registry at `options.registry` (of the first of its replicas that answers); it connects on its
/// first call, within `options.timeout`, which the replicas share: each is given its part of it to answer a
/// connection attempt, so that a silent one leaves time for the next.
async fn connect(options: &Options) -> Result<RegistryClient, CliError> {
    let addrs = crate::resolve_registries(&options.registry)
        .await
        .map_err(|source| CliError::Addresses {
            registry: options.registry.clone(),
            source,
        })?;
    let replicas = u32::try_from(addrs.len()).unwrap_or(u32::MAX).max(1);
    let config = ClientConfig {
        connect_timeout: options.timeout / replicas,
        default_deadline: options.timeout,
        backoff_min: RECONNECT_BACKOFF_MAX / 2,
        backoff_max: RECONNECT_BACKOFF_MAX,
        tls: options.tls.clone(),
        ..ClientConfig::default()
    };
    let client = Client::lazy_with(addrs.as_slice(), config)
        .await
        .map_err(|e| CliError::registry(options, e))?;
    let registry = RegistryClient::new(client);
    match &options.token {
        Some(token) => Ok(registry.with_metadata(bearer(token).map_err(CliError::Token)?)),
        None => Ok(registry),
    }
}

/// `rpc-registry ls [SERVICE]`: prints to `out` the table of the instances of `service` (of every service if
/// `None`), or says on `err` that the registry has none. Fails if the registry does not answer within
/// `options.timeout`, and with [`CliError::NoService`] if `service` has no instance.
pub async fn ls(
    options: &Options,
    service: Option<&str>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let registry = connect(options).await?.with_deadline(options.timeout);
    let statuses = match registry.report(service.map(str::to_owned)).await {
        Ok(reports) => reports,
        // A registry from before `report` knows `status`: the same table, without the instances' own weights.
        Err(e) if e.code() == Status::Unimplemented => registry
            .status(service.map(str::to_owned))
            .await
            .map_err(|e| CliError::registry(options, e))?
            .into_iter()
            .map(ServiceReport::from)
            .collect(),
        Err(e) => return Err(CliError::registry(options, e)),
    };
    if statuses.iter().all(|s| s.instances.is_empty()) {
        if let Some(service) = service {
            return Err(CliError::NoService {
                service: service.to_owned(),
                registry: options.registry.clone(),
            });
        }
        writeln!(
            err,
            "no instance is registered with the registry at {}",
            field(&options.registry)
        )?;
        return Ok(());
    }
    // A replicated registry names the replica that holds each instance; an older registry does not know
    // `placement`, and one in memory has no replicas: the plain table then.
    let table = match registry.placement(service.map(str::to_owned)).await {
        Ok(placement) if placement.replica.is_some() => {
            table::render_table_with_replicas(&statuses, &placement)
        }
        _ => render_table(&statuses),
    };
    out.write_all(table.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The order of addresses in what the subcommands print: `IP:port` addresses by IP then port (so `:7002` comes
/// before `:10000`), after any other form (host names), which go by their text.
fn address_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| (s.parse::<std::net::SocketAddr>().ok(), s.to_owned());
    key(a).cmp(&key(b))
}
