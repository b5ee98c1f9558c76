//! `RegistryConfig`: the registry's timings, credentials, checks and limits, each with its default.

use std::time::Duration;

use crate::credentials::Credentials;

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
/// Default of [`RegistryConfig::max_name_len`]: 255.
pub const DEFAULT_MAX_NAME_LEN: usize = 255;

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
/// let config = rpc_registry::RegistryConfig { token: Some("s3cret".into()), ..Default::default() };
/// assert_eq!(config.ttl.as_millis(), 3000);
/// assert_eq!(config.max_instances_per_service, 1000);
/// ```
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Time after its last heartbeat at which an instance is evicted. Default 3 s ([`DEFAULT_TTL`]);
    /// instances heartbeat every third of it.
    pub ttl: Duration,
    /// The registry's own token (`authorization: Bearer <token>`), which may write any service. With neither a
    /// token nor [`RegistryConfig::credentials`], writes are open. Default `None`.
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
    /// Longest service name or address, in bytes; a watch of a longer name is answered at once, empty, instead
    /// of waiting (a waiting watch keeps its service's name). Default 255 ([`DEFAULT_MAX_NAME_LEN`]).
    pub max_name_len: usize,
    /// Most HTTP long polls (`GET /v1/overview` with `since`, as dashboards make) waiting at once; one more is
    /// answered `503` with `Retry-After`. Default 256 ([`DEFAULT_MAX_HTTP_WATCHERS`]).
    pub max_http_watchers: usize,
    /// TLS for the registry's API; with a client CA, the names of verified
    /// client certificates count as credentials. Default `None`.
    pub tls: Option<rpc_core::tls::ServerTls>,
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
            tls: None,
        }
    }
}

impl RegistryConfig {
    /// Whether anyone may write: no token and no credentials.
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.credentials.is_empty()
    }
}
