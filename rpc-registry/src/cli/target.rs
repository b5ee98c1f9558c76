//! Where `call` and `describe` find a service ([`Target`]): one server called directly (`--server ADDR`), or
//! the instances of the service that a registry knows (`--registry ADDR[,ADDR...]`), found by a
//! [`Discovery`] and called through a balanced client, so that the registry's weights, its rules (routes,
//! retries) and the client's retries apply as they do to any caller. With the target come what every call
//! carries (metadata, the service's token), TLS, and the deadline of the whole command.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rpc_core::balance::Balancer;
use rpc_core::server::reflection::ReflectionClient;
use rpc_core::tls::ClientTls;
use rpc_core::{CallOptions, Client, ClientConfig, Metadata, Status, Stub};
use tokio::time::Instant;

use super::escape::field;
use super::exit::CallError;
use crate::client::handle::RegistryHandle;
use crate::{AUTHORIZATION, Discovery, DiscoveryConfig};

/// Default of [`Target::deadline`]: 10 s.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Where the service is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// One server, `host:port`, called directly.
    Server(String),
    /// The instances of the service that the registry at this address knows (or its replicas', separated by
    /// commas: `h1:7070,h2:7070`), called through a balanced client.
    Registry(String),
}

/// How `call` and `describe` reach a service, and what they send with each call. Its `Debug` hides the tokens.
#[derive(Clone)]
pub struct Target {
    /// Where the service is.
    pub via: Via,
    /// Entries of every call's metadata, as `--metadata KEY=VALUE` gives them; checked before anything is
    /// sent. Default none.
    pub metadata: Vec<(String, String)>,
    /// A token for the service's servers, sent with every call (the describe too, so it must be granted
    /// `rpc.Reflection` as well) as `authorization: Bearer <token>`; it meets [`crate::check_token`]. Default
    /// none.
    pub token: Option<String>,
    /// The registry's token, for its reads (discovery), when the service is found through a registry. Never
    /// sent to the service. Default none.
    pub registry_token: Option<String>,
    /// TLS to the servers and to the registry; `None` (the default) connects in the clear.
    pub tls: Option<ClientTls>,
    /// The longest the whole command takes: connecting, finding an instance, the describe, and the call, whose
    /// server is given what is left as its budget. Default 10 s ([`DEFAULT_CALL_DEADLINE`]).
    pub deadline: Duration,
}

impl Target {
    /// The server at `addr`, with no metadata, no token, no TLS and the default deadline.
    pub fn server(addr: impl Into<String>) -> Target {
        Target::new(Via::Server(addr.into()))
    }

    /// The instances the registry at `registry` (one address, or its replicas separated by commas) knows, with
    /// no metadata, no token, no TLS and the default deadline.
    pub fn registry(registry: impl Into<String>) -> Target {
        Target::new(Via::Registry(registry.into()))
    }

    /// A target of `via`, with no metadata, no token, no TLS and the default deadline.
    pub fn new(via: Via) -> Target {
        Target {
            via,
            metadata: Vec::new(),
            token: None,
            registry_token: None,
            tls: None,
            deadline: DEFAULT_CALL_DEADLINE,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field, the tokens hidden.
        let Target {
            via,
            metadata,
            token,
            registry_token,
            tls,
            deadline,
        } = self;
        f.debug_struct("Target")
            .field("via", via)
            .field("metadata", metadata)
            .field("token", &crate::token::hidden(token))
            .field("registry_token", &crate::token::hidden(registry_token))
            .field("tls", tls)
            .field("deadline", deadline)
            .finish()
    }
}

/// A client of the service, the options of its calls, and the end of the command's time.
pub(super) struct Reached {
    client: Client,
    options: CallOptions,
    until: Instant,
    /// Keeps the instances of a service found through a registry current while the command runs.
    _discovery: Option<Discovery>,
}

impl Reached {
    /// The client.
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// The options of a call made now: the metadata, and the time left as its deadline.
    pub(super) fn options(&self) -> CallOptions {
        let left = self.until.saturating_duration_since(Instant::now());
        self.options.clone().deadline(left)
    }

    /// A stub of the server's `rpc.Reflection`, with the options of a call made now.
    pub(super) fn reflection(&self) -> ReflectionClient {
        ReflectionClient::from_parts(self.client.clone(), self.options())
    }
}

/// A client of `service` (of the server alone if `None`, which needs [`Via::Server`]) as `target` says. Fails
/// with a [`CallError`] of the command line (a flag, an address) before anything is sent, and with
/// `unavailable` when a registry names no instance of `service` within the deadline.
pub(super) async fn reach(target: &Target, service: Option<&str>) -> Result<Reached, CallError> {
    if target.deadline.is_zero() {
        return Err(flag("--deadline", "expected at least 1 ms, got 0"));
    }
    let until = Instant::now() + target.deadline;
    let options = CallOptions::default().metadata(metadata(target)?);
    let config = ClientConfig {
        connect_timeout: target.deadline,
        default_deadline: target.deadline,
        tls: target.tls.clone(),
        ..ClientConfig::default()
    };
    let (client, discovery) = match (&target.via, service) {
        (Via::Server(addr), _) => (server(addr, config).await?, None),
        (Via::Registry(_), None) => return Err(CallError::WhichServer),
        (Via::Registry(registry), Some(service)) => {
            let discovery = discover(target, registry, service, until).await?;
            let balancer = Balancer::discovered(&discovery, service);
            (Client::balanced(balancer, config), Some(discovery))
        }
    };
    Ok(Reached {
        client,
        options,
        until,
        _discovery: discovery,
    })
}

/// The metadata of every call: the `--metadata` pairs, and the service's token.
fn metadata(target: &Target) -> Result<Metadata, CallError> {
    let pairs = target
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let mut metadata =
        Metadata::from_pairs(pairs).map_err(|e| flag("--metadata", e.to_string()))?;
    if let Some(token) = &target.token {
        if metadata.get(AUTHORIZATION).is_some() {
            return Err(flag(
                "--call-token",
                "expected one credential, got --metadata authorization=... too",
            ));
        }
        let bearer =
            crate::token::bearer(token).map_err(|e| flag("--call-token", e.to_string()))?;
        metadata = CallOptions::default()
            .metadata(metadata)
            .metadata(bearer)
            .metadata_ref()
            .clone();
    }
    Ok(metadata)
}

/// A client of the server at `addr`; over TLS, the server's certificate must name the host as given.
async fn server(addr: &str, mut config: ClientConfig) -> Result<Client, CallError> {
    let address = |problem: String| CallError::Address {
        flag: "--server",
        given: addr.to_owned(),
        problem,
    };
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            host.trim_start_matches('[').trim_end_matches(']')
        }
        _ => return Err(address("expected host:port (127.0.0.1:7001)".to_owned())),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| address(format!("cannot resolve it: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(address("it resolved to no address".to_owned()));
    }
    if let Some(tls) = config.tls.take() {
        config.tls = Some(match host.parse::<IpAddr>() {
            Ok(_) => tls,
            Err(_) => tls
                .with_server_name(host)
                .map_err(|e| address(e.to_string()))?,
        });
    }
    Client::lazy_with(addrs.as_slice(), config)
        .await
        .map_err(CallError::Failed)
}

/// A discovery of `service` through `registry` that has found at least one instance, and the rules in force.
async fn discover(
    target: &Target,
    registry: &str,
    service: &str,
    until: Instant,
) -> Result<Discovery, CallError> {
    if let Some(token) = &target.registry_token {
        crate::check_token(token).map_err(|e| flag("--token", e.to_string()))?;
    }
    let addrs = crate::resolve_registries(registry)
        .await
        .map_err(|e| CallError::Address {
            flag: "--registry",
            given: registry.to_owned(),
            problem: e.to_string(),
        })?;
    let config = DiscoveryConfig {
        token: target.registry_token.clone(),
        client: ClientConfig {
            tls: target.tls.clone(),
            ..RegistryHandle::default_config()
        },
        ..DiscoveryConfig::default()
    };
    let handle = RegistryHandle::shared(addrs.as_slice(), &config.client)
        .await
        .map_err(CallError::Failed)?;
    let reads = handle
        .stub(target.registry_token.as_deref())
        .map_err(|e| flag("--token", e.to_string()))?;
    let discovery = Discovery::with_handle(&handle, config).map_err(CallError::Failed)?;
    let mut watch = discovery.watch(service);
    let answered = tokio::time::timeout_at(until, watch.wait_for(|s| s.epoch != 0)).await;
    let found = answered.is_ok_and(|a| a.is_ok_and(|s| !s.instances.is_empty()));
    if !found {
        let (shown, at) = (field(service), field(registry));
        let why = match discovery.last_error(service) {
            _ if discovery.answered(service) => {
                format!("no instance of {shown} is registered with the registry at {at}")
            }
            Some(e) => format!("cannot watch {shown} at the registry at {at}: {e}"),
            None => format!(
                "the registry at {at} did not answer within the deadline ({} ms, --deadline)",
                target.deadline.as_millis()
            ),
        };
        return Err(CallError::failed(Status::Unavailable, why));
    }
    // The calls follow the registry's rules for the service (routes to subsets) from the first one. The watch
    // of rules is a long poll that a service without rules answers only at its end: asked first whether it
    // has any, so that one without does not wait.
    let left = || until.saturating_duration_since(Instant::now());
    let reads = reads.with_deadline(left());
    if reads
        .rules(service.to_owned())
        .await
        .is_ok_and(|rules| rules.is_some())
    {
        discovery.wait_for_rules(service, left()).await;
    }
    Ok(discovery)
}

fn flag(flag: &'static str, problem: impl Into<String>) -> CallError {
    CallError::Flag {
        flag,
        problem: problem.into(),
    }
}
