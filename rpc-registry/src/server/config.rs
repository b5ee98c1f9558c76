//! `RegistryConfig`: the registry's timings, credentials, checks and limits, each with its default, its RPC
//! server's limits sized for its instances, and the checks a configuration passes before a registry starts.

use std::time::Duration;

use rpc_core::ServerConfig;

use crate::server::credentials::{Credentials, InvalidGrant};
use crate::server::store::StoreConfig;
use crate::token::{TokenError, check_token};

/// Default of [`RegistryConfig::ttl`]: 3 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);
/// Default of [`RegistryConfig::max_watch_wait`]: 60 s.
pub const DEFAULT_MAX_WATCH_WAIT: Duration = Duration::from_secs(60);
/// Default of [`RegistryConfig::address_check_timeout`]: 1 s.
pub const DEFAULT_ADDRESS_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default of [`RegistryConfig::max_instances`]: 10,000.
pub const DEFAULT_MAX_INSTANCES: usize = 10_000;
/// Default of [`RegistryConfig::max_instances_per_service`]: 1,000.
pub const DEFAULT_MAX_INSTANCES_PER_SERVICE: usize = 1_000;
/// Default of [`RegistryConfig::max_services`]: 10,000.
pub const DEFAULT_MAX_SERVICES: usize = 10_000;
/// Default of [`RegistryConfig::max_metadata_entries`]: 32.
pub const DEFAULT_MAX_METADATA_ENTRIES: usize = 32;
/// Default of [`RegistryConfig::max_metadata_bytes`]: 4 KiB.
pub const DEFAULT_MAX_METADATA_BYTES: usize = 4 * 1024;
/// Default of [`RegistryConfig::max_http_watchers`]: 256.
pub const DEFAULT_MAX_HTTP_WATCHERS: usize = 256;

/// Default of [`RegistryConfig::describe_timeout`]: 2 s.
pub const DEFAULT_DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of [`RegistryConfig::max_descriptions`]: 1,024.
pub const DEFAULT_MAX_DESCRIPTIONS: usize = 1024;
/// Default of [`RegistryConfig::gateway_max_body`]: 4 MiB.
pub const DEFAULT_GATEWAY_MAX_BODY: usize = 4 * 1024 * 1024;
/// Default of [`RegistryConfig::gateway_max_services`]: 256.
pub const DEFAULT_GATEWAY_MAX_SERVICES: usize = 256;
/// Default of [`RegistryConfig::gateway_max_in_flight`]: 1,024.
pub const DEFAULT_GATEWAY_MAX_IN_FLIGHT: usize = 1024;
/// Default of [`RegistryConfig::gateway_max_deadline`]: 60 s.
pub const DEFAULT_GATEWAY_MAX_DEADLINE: Duration = Duration::from_secs(60);

/// Default of [`RegistryConfig::max_rules_revisions`]: 1,000.
pub const DEFAULT_MAX_RULES_REVISIONS: usize = 1_000;
/// Default of [`RegistryConfig::max_name_len`]: 255.
pub const DEFAULT_MAX_NAME_LEN: usize = 255;
/// Connections the registry's RPC server keeps beyond one per instance, for readers (`ls`, `watch`,
/// [`Discovery`](crate::Discovery)) and for instances that re-register: 1,024. See
/// [`RegistryConfig::connections_for`].
pub const READER_CONNECTIONS: usize = 1024;
/// Calls one connection may have in flight beyond one watch per service the registry tracks: 1,024, for the
/// heartbeats, registrations and reads of the process that holds the watches. See
/// [`RegistryConfig::in_flight_for`].
pub const CALLS_BESIDE_WATCHES: usize = 1024;

/// What the registry checks of the address an instance registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressCheck {
    /// Nothing (the default of the library; tests register made-up addresses).
    #[default]
    Off,
    /// The address is `IP:port` and its IP is the caller's: an instance registers only itself. The default of
    /// the `rpc-registry` binary.
    Peer,
    /// Something accepts TCP connections at the address, within [`RegistryConfig::address_check_timeout`].
    Reachable,
}

/// How a registry behaves.
///
/// ```
/// use rpc_registry::RegistryConfig;
/// let config = RegistryConfig { token: Some("s3cret-token".into()), ..RegistryConfig::default() };
/// assert_eq!(config.ttl.as_millis(), 3000);
/// assert_eq!(config.max_instances_per_service, 1000);
/// assert_eq!(config.server.max_connections, 10_000 + 1024);
/// // One connection may hold a watch of every service the registry tracks, and still heartbeat.
/// assert_eq!(config.server.max_in_flight_per_connection, 10_000 + 1024);
/// // A registry for 100,000 instances, its RPC server sized to match.
/// let big = RegistryConfig::sized_for(100_000);
/// assert_eq!(big.server.max_connections, 100_000 + 1024);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct RegistryConfig {
    /// Time after its last heartbeat at which an instance is evicted. Default 3 s ([`DEFAULT_TTL`]);
    /// instances heartbeat every third of it.
    pub ttl: Duration,
    /// The registry's own token (`authorization: Bearer <token>`), which may write any service, and renew,
    /// remove or supersede any instance (an admin's). With neither a token nor [`RegistryConfig::credentials`],
    /// writes are open. It meets [`check_token`]. Default `None`.
    pub token: Option<String>,
    /// Per-service tokens and client-certificate names (see [`Credentials`]). Default: none.
    pub credentials: Credentials,
    /// What is checked of a registered address. Default [`AddressCheck::Off`].
    pub address_check: AddressCheck,
    /// How long [`AddressCheck::Reachable`] waits for the address to accept a connection. Default 1 s
    /// ([`DEFAULT_ADDRESS_CHECK_TIMEOUT`]).
    pub address_check_timeout: Duration,
    /// The longest a watch waits for a change before it answers unchanged. Default 60 s
    /// ([`DEFAULT_MAX_WATCH_WAIT`]).
    pub max_watch_wait: Duration,
    /// Most instances registered at once, all services together. Default 10,000 ([`DEFAULT_MAX_INSTANCES`]).
    pub max_instances: usize,
    /// Most instances of one service. Default 1,000 ([`DEFAULT_MAX_INSTANCES_PER_SERVICE`]).
    pub max_instances_per_service: usize,
    /// Most services the registry keeps track of, those only watched included; a watch of a new service past
    /// it is answered at once, empty, instead of waiting. Default 10,000 ([`DEFAULT_MAX_SERVICES`]).
    pub max_services: usize,
    /// Most metadata entries of one instance. Default 32 ([`DEFAULT_MAX_METADATA_ENTRIES`]).
    pub max_metadata_entries: usize,
    /// Most bytes of metadata (keys and values) of one instance. Default 4 KiB ([`DEFAULT_MAX_METADATA_BYTES`]).
    pub max_metadata_bytes: usize,
    /// Longest service name or address, in bytes; a read or watch of a longer name is answered at once, empty,
    /// instead of waiting (a waiting watch keeps its service's name), and named by a short escaped prefix of it,
    /// not the whole. Default 255 ([`DEFAULT_MAX_NAME_LEN`]).
    pub max_name_len: usize,
    /// Most HTTP long polls (`GET /v1/overview` with `since`, as dashboards make) waiting at once; one more is
    /// answered `503` with `Retry-After`. Default 256 ([`DEFAULT_MAX_HTTP_WATCHERS`]).
    pub max_http_watchers: usize,
    /// Host names (besides IP addresses and `localhost`) that the dashboard's writes may be addressed to in
    /// their `Host` header. A write addressed to any other name is refused, so that a page of another site
    /// whose name an attacker points at this registry (DNS rebinding) cannot make one. Add the name the
    /// dashboard is opened by, when it is opened by a name. Default none.
    pub http_allowed_hosts: Vec<String>,
    /// Where the registry keeps its rules (`DIR/rules/SERVICE.json`), so that a restarted registry serves the
    /// same rules; `None` keeps them in memory only. Default `None` (the binary's `--data-dir` defaults to
    /// `rpc-registry-data` in the working directory).
    pub data_dir: Option<std::path::PathBuf>,
    /// Most revisions of one service's rules kept; every applied revision is kept (so that any can be rolled
    /// back to), and one more is refused. Default 1,000 ([`DEFAULT_MAX_RULES_REVISIONS`]).
    pub max_rules_revisions: usize,
    /// How long the registry waits for an instance to describe its service (`rpc.Reflection.describe`, for
    /// `GET /v1/services/{name}/methods` and the gateway), connection included; then it asks another instance.
    /// Default 2 s ([`DEFAULT_DESCRIBE_TIMEOUT`]).
    pub describe_timeout: Duration,
    /// Most service descriptions kept, one per service, instance address and incarnation; past it the oldest
    /// is dropped. Default 1,024 ([`DEFAULT_MAX_DESCRIPTIONS`]).
    pub max_descriptions: usize,
    /// Whether the HTTP port is a gateway too: `POST /call/{Service}/{method}` with the arguments as a JSON
    /// object calls an instance of the service, balanced and following the registry's rules, and answers in
    /// JSON. It needs the credential of the registry's reads, when they need one. Default `false`.
    pub gateway: bool,
    /// Largest body of a gateway call, in bytes; a larger one is answered `413`. Default 4 MiB
    /// ([`DEFAULT_GATEWAY_MAX_BODY`]).
    pub gateway_max_body: usize,
    /// Most services the gateway keeps a client of (each with its connections to the instances it called);
    /// past it, the client used least recently is dropped. Default 256 ([`DEFAULT_GATEWAY_MAX_SERVICES`]).
    pub gateway_max_services: usize,
    /// Most gateway calls at once, all services together, counted from before a call's body is read to its
    /// answer; one more is answered `429` (`resource_exhausted`, `Retry-After: 1`). Default 1,024
    /// ([`DEFAULT_GATEWAY_MAX_IN_FLIGHT`]).
    pub gateway_max_in_flight: usize,
    /// Longest deadline of a gateway call: a caller's `rpc-timeout-ms` or `connect-timeout-ms` above it is
    /// lowered to it, and a call without either gets it. Default 60 s ([`DEFAULT_GATEWAY_MAX_DEADLINE`]).
    pub gateway_max_deadline: Duration,
    /// TLS for the registry's API; with a client CA, the names of verified
    /// client certificates count as credentials. Default `None`.
    pub tls: Option<rpc_core::tls::ServerTls>,
    /// The registry's RPC server: its limits and timings. Default: rpc-core's
    /// ([`rpc_core::ServerConfig::default`]), except `max_connections`:
    /// [`RegistryConfig::connections_for`]`(`[`DEFAULT_MAX_INSTANCES`]`)`, 11,024, and
    /// `max_in_flight_per_connection`: [`RegistryConfig::in_flight_for`]`(`[`DEFAULT_MAX_SERVICES`]`)`,
    /// 11,024 (a process shares one connection for all its watches, one per service, and its heartbeats), and
    /// `max_streams_per_connection`: [`DEFAULT_MAX_SERVICES`] (a discovery subscribes to each service it
    /// watches on that connection; a subscription takes no items from the client, so it holds no window). When
    /// changing `max_instances` or `max_services`, change these with them ([`RegistryConfig::sized_for`]
    /// does the first).
    pub server: ServerConfig,
    /// Where instances and rules are kept: in this process ([`StoreConfig::Memory`], the default), or in etcd
    /// (`StoreConfig::Etcd`, feature `etcd`), shared by several registry replicas.
    pub store: StoreConfig,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field, the token hidden: a configuration may be logged.
        let RegistryConfig {
            ttl,
            token,
            credentials,
            address_check,
            address_check_timeout,
            max_watch_wait,
            max_instances,
            max_instances_per_service,
            max_services,
            max_metadata_entries,
            max_metadata_bytes,
            max_name_len,
            max_http_watchers,
            http_allowed_hosts,
            data_dir,
            max_rules_revisions,
            describe_timeout,
            max_descriptions,
            gateway,
            gateway_max_body,
            gateway_max_services,
            gateway_max_in_flight,
            gateway_max_deadline,
            tls,
            server,
            store,
        } = self;
        f.debug_struct("RegistryConfig")
            .field("ttl", ttl)
            .field("token", &token.as_ref().map(|_| "<hidden>"))
            .field("credentials", credentials)
            .field("address_check", address_check)
            .field("address_check_timeout", address_check_timeout)
            .field("max_watch_wait", max_watch_wait)
            .field("max_instances", max_instances)
            .field("max_instances_per_service", max_instances_per_service)
            .field("max_services", max_services)
            .field("max_metadata_entries", max_metadata_entries)
            .field("max_metadata_bytes", max_metadata_bytes)
            .field("max_name_len", max_name_len)
            .field("max_http_watchers", max_http_watchers)
            .field("http_allowed_hosts", http_allowed_hosts)
            .field("data_dir", data_dir)
            .field("max_rules_revisions", max_rules_revisions)
            .field("describe_timeout", describe_timeout)
            .field("max_descriptions", max_descriptions)
            .field("gateway", gateway)
            .field("gateway_max_body", gateway_max_body)
            .field("gateway_max_services", gateway_max_services)
            .field("gateway_max_in_flight", gateway_max_in_flight)
            .field("gateway_max_deadline", gateway_max_deadline)
            .field("tls", tls)
            .field("server", server)
            .field("store", store)
            .finish()
    }
}

/// Why a registry cannot start with a configuration. Never shows a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The registry's own token breaks the rule of [`check_token`].
    #[error("the registry's token is not usable: {0}")]
    Token(#[source] TokenError),
    /// A grant of the credentials is unusable.
    #[error("the credentials are not usable: {0}")]
    Credentials(#[source] InvalidGrant),
    /// The rules kept in the data directory cannot be read, or fail their checks.
    #[error("the stored rules cannot be served: {0}")]
    Rules(String),
    /// The operators' weights kept in the data directory cannot be read.
    #[error("the stored weights cannot be served: {0}")]
    Weights(String),
    /// The store cannot be reached or read (etcd's, at start).
    #[error("the store cannot be used: {0}")]
    Store(String),
    /// A limit or timing that cannot work.
    #[error("{field} is {value}: {why}")]
    Out {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        why: &'static str,
    },
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            ttl: DEFAULT_TTL,
            token: None,
            credentials: Credentials::default(),
            address_check: AddressCheck::Off,
            address_check_timeout: DEFAULT_ADDRESS_CHECK_TIMEOUT,
            max_watch_wait: DEFAULT_MAX_WATCH_WAIT,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_instances_per_service: DEFAULT_MAX_INSTANCES_PER_SERVICE,
            max_services: DEFAULT_MAX_SERVICES,
            max_metadata_entries: DEFAULT_MAX_METADATA_ENTRIES,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            max_name_len: DEFAULT_MAX_NAME_LEN,
            max_http_watchers: DEFAULT_MAX_HTTP_WATCHERS,
            http_allowed_hosts: Vec::new(),
            data_dir: None,
            max_rules_revisions: DEFAULT_MAX_RULES_REVISIONS,
            describe_timeout: DEFAULT_DESCRIBE_TIMEOUT,
            max_descriptions: DEFAULT_MAX_DESCRIPTIONS,
            gateway: false,
            gateway_max_body: DEFAULT_GATEWAY_MAX_BODY,
            gateway_max_services: DEFAULT_GATEWAY_MAX_SERVICES,
            gateway_max_in_flight: DEFAULT_GATEWAY_MAX_IN_FLIGHT,
            gateway_max_deadline: DEFAULT_GATEWAY_MAX_DEADLINE,
            tls: None,
            server: ServerConfig {
                max_connections: RegistryConfig::connections_for(DEFAULT_MAX_INSTANCES),
                max_in_flight_per_connection: RegistryConfig::in_flight_for(DEFAULT_MAX_SERVICES),
                max_streams_per_connection: DEFAULT_MAX_SERVICES,
                ..ServerConfig::default()
            },
            store: StoreConfig::Memory,
        }
    }
}

impl RegistryConfig {
    /// Connections to serve for `max_instances` instances: one each (the registrations of a process share one
    /// connection) plus [`READER_CONNECTIONS`], so that writers at the instance cap never leave readers without
    /// a connection.
    pub const fn connections_for(max_instances: usize) -> usize {
        max_instances.saturating_add(READER_CONNECTIONS)
    }

    /// Calls in flight to allow on one connection when the registry tracks at most `max_services` services: one
    /// watch of each plus [`CALLS_BESIDE_WATCHES`]. The registrations and discoveries of a process share one
    /// connection ([`crate::RegistryHandle::shared`]), and each watched service holds a long poll on it, so
    /// rpc-core's default (1,024) would refuse the heartbeats of a process that watches more services than that.
    pub const fn in_flight_for(max_services: usize) -> usize {
        max_services.saturating_add(CALLS_BESIDE_WATCHES)
    }

    /// The defaults, for `max_instances` instances: `server.max_connections` is
    /// [`RegistryConfig::connections_for`]`(max_instances)`.
    pub fn sized_for(max_instances: usize) -> RegistryConfig {
        let mut config = RegistryConfig {
            max_instances,
            ..RegistryConfig::default()
        };
        config.server.max_connections = RegistryConfig::connections_for(max_instances);
        config
    }

    /// Checks what a registry cannot start with: a token that breaks [`check_token`] (an empty one would let
    /// anyone who sends an empty token write), an unusable grant, a zero TTL, describe timeout or connection
    /// limit, a gateway of no service, no call at once or no time for a call.
    /// [`serve`](crate::serve) refuses such a configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.token {
            check_token(token).map_err(ConfigError::Token)?;
        }
        self.credentials.check().map_err(ConfigError::Credentials)?;
        let out = |field, value: String, why| Err(ConfigError::Out { field, value, why });
        if self.ttl.is_zero() {
            return out(
                "ttl",
                format!("{:?}", self.ttl),
                "an instance needs time to heartbeat",
            );
        }
        if self.describe_timeout.is_zero() {
            return out(
                "describe_timeout",
                format!("{:?}", self.describe_timeout),
                "an instance needs time to describe its service",
            );
        }
        if self.gateway && self.gateway_max_services == 0 {
            return out(
                "gateway_max_services",
                String::from("0"),
                "the gateway could call no service",
            );
        }
        if self.gateway && self.gateway_max_in_flight == 0 {
            return out(
                "gateway_max_in_flight",
                String::from("0"),
                "the gateway could make no call",
            );
        }
        if self.gateway && self.gateway_max_deadline.is_zero() {
            return out(
                "gateway_max_deadline",
                format!("{:?}", self.gateway_max_deadline),
                "a gateway call needs time to run",
            );
        }
        if self.server.max_connections == 0 {
            return out(
                "server.max_connections",
                String::from("0"),
                "nobody could connect",
            );
        }
        Ok(())
    }

    /// Whether anyone may write: no token and no credentials.
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.credentials.is_empty()
    }
}
