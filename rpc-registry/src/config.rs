//! `RegistryConfig`: the registry's timings, limits and credential, each with its default.

use std::time::Duration;

/// Default of [`RegistryConfig::ttl`]: 3 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);
/// Default of [`RegistryConfig::max_watch_wait`]: 60 s.
pub const DEFAULT_MAX_WATCH_WAIT: Duration = Duration::from_secs(60);

/// How a registry behaves.
///
/// ```
/// let config = rpc_registry::RegistryConfig { token: Some("s3cret".into()), ..Default::default() };
/// assert_eq!(config.ttl.as_millis(), 3000);
/// ```
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Time after its last heartbeat at which an instance is evicted. Default 3 s ([`DEFAULT_TTL`]);
    /// instances heartbeat every third of it.
    pub ttl: Duration,
    /// The token writes must carry (`authorization: Bearer <token>`); `None` leaves writes open. Default
    /// `None`.
    pub token: Option<String>,
    /// The longest a watch waits for a change before it answers unchanged. Default 60 s
    /// ([`DEFAULT_MAX_WATCH_WAIT`]).
    pub max_watch_wait: Duration,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            ttl: DEFAULT_TTL,
            token: None,
            max_watch_wait: DEFAULT_MAX_WATCH_WAIT,
        }
    }
}
