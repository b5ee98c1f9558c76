//! [`RegistryHandle`]: one connection to a registry, shared by every [`crate::Registration`] and
//! [`crate::Discovery`] that uses it, and the process-wide table that hands the same connection to every caller
//! of [`RegistryHandle::shared`] on the same tokio runtime with the same registry address and client
//! configuration. Tokens travel as per-call metadata, so callers with different tokens share a connection too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rpc_core::{Client, ClientConfig, RpcError, Status, ToSocketAddrs};

use crate::api::RegistryClient;
use crate::token::{TokenError, bearer};

/// Heartbeats in a row over one connection that the registry did not take, after which the connection moves
/// to the next of the registry's addresses: 2. With a heartbeat every third of the TTL and quick retries after
/// a failure, an instance then registers with another replica before its lease ends.
pub const MOVE_AFTER: u32 = 2;

/// Default of [`ClientConfig::backoff_max`] in [`RegistryHandle::default_config`]: 250 ms, well under a
/// heartbeat interval, so that heartbeats and watches resume soon after the registry comes back.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// A connection to a registry (to one of its replicas, if given several addresses), made on the first call and
/// remade (with backoff, to another replica if that one is gone) after it drops. Cheap to clone: clones share
/// the connection, which closes when the last clone (and every registration and discovery made with it) is
/// dropped.
///
/// ```no_run
/// use rpc_registry::{Discovery, DiscoveryConfig, NewInstance, Registration, RegistrationConfig, RegistryHandle};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = RegistryHandle::new("127.0.0.1:7070", RegistryHandle::default_config()).await?;
/// let instance = |port: u16| NewInstance {
///     service: "Calc".into(),
///     address: format!("127.0.0.1:{port}"),
///     weight: 1,
///     metadata: Default::default(),
/// };
/// // Two registrations and a discovery over one connection.
/// let a = Registration::register_with(&registry, instance(7001), RegistrationConfig::default()).await?;
/// let b = Registration::register_with(&registry, instance(7002), RegistrationConfig::default()).await?;
/// let discovery = Discovery::with_handle(&registry, DiscoveryConfig::default())?;
/// # let _ = (a, b, discovery);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RegistryHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: RegistryClient,
    /// Heartbeats in a row, of every registration over this connection, that the registry did not take.
    failed: AtomicU32,
}

/// What makes two [`RegistryHandle::shared`] calls share a connection: the runtime they run on (a connection's
/// tasks live on the runtime that made it, and die with it), the registry's addresses and every setting of the
/// connection.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    runtime: tokio::runtime::Id,
    addrs: Vec<SocketAddr>,
    default_deadline: Duration,
    connect_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    max_pending_output: usize,
    codec: rpc_core::codec::Config,
    max_retries: u32,
    retry_backoff: Duration,
    stream_window: u64,
}

impl Key {
    /// The key of `config` for `addrs` on `runtime`; `None` if the config cannot be compared (TLS settings,
    /// metrics and layers have no equality).
    fn of(
        runtime: tokio::runtime::Id,
        mut addrs: Vec<SocketAddr>,
        config: &ClientConfig,
    ) -> Option<Key> {
        // Every field by name, so that a field added to ClientConfig fails to compile here until the key
        // considers it. (rpc-core's `tls` field is there when this crate's `tls` feature is on, which turns on
        // rpc-core's: a crate that turns on rpc-core's `tls` must turn on this crate's too.)
        let ClientConfig {
            default_deadline,
            connect_timeout,
            backoff_min,
            backoff_max,
            max_pending_output,
            codec,
            max_retries,
            retry_backoff,
            // What only a balanced client uses: a registry handle is a client of one address.
            retry_on: _,
            retry_budget: _,
            attempt_timeout: _,
            hedge: _,
            outliers: _,
            #[cfg(feature = "tls")]
            tls,
            metrics,
            layers,
            compression,
            stream_window,
        } = config;
        #[cfg(feature = "tls")]
        if tls.is_some() {
            return None;
        }
        if metrics.is_some() || !layers.is_empty() || compression.is_on() {
            return None;
        }
        addrs.sort_unstable();
        addrs.dedup();
        Some(Key {
            runtime,
            addrs,
            default_deadline: *default_deadline,
            connect_timeout: *connect_timeout,
            backoff_min: *backoff_min,
            backoff_max: *backoff_max,
            max_pending_output: *max_pending_output,
            codec: *codec,
            max_retries: *max_retries,
            retry_backoff: *retry_backoff,
            stream_window: *stream_window,
        })
    }
}

/// The handle in the table for `key`, if one is still in use.
fn find(key: &Key) -> Option<Arc<Inner>> {
    let table = rpc_core::sync::lock(table());
    table
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, handle)| handle.upgrade())
}

/// The handles [`RegistryHandle::shared`] gave out, each with its key; dead ones are dropped at the next insert.
type Table = Vec<(Key, Weak<Inner>)>;

/// The process's table of shared handles.
fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

impl RegistryHandle {
    /// The client settings that [`crate::RegistrationConfig`] and [`crate::DiscoveryConfig`] default to:
    /// rpc-core's, with reconnection attempts at most [`DEFAULT_BACKOFF_MAX`] apart.
    pub fn default_config() -> ClientConfig {
        ClientConfig {
            backoff_max: DEFAULT_BACKOFF_MAX,
            ..ClientConfig::default()
        }
    }

    /// A handle with a connection of its own to the registry at `registry`, made on its first call. If
    /// `registry` lists several replicas (a `&[SocketAddr]`, as [`crate::resolve_registries`] makes), each
    /// connection is made to the first of them that answers, starting at a random one for a new handle, then
    /// at the one that answered last, and after a failed attempt at the next (see
    /// [`rpc_core::Client::lazy_with`]); tokens and TLS settings go to each replica alike.
    pub async fn new(
        registry: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<RegistryHandle, RpcError> {
        let client = Client::lazy_with(registry, config).await?;
        Ok(RegistryHandle::from_client(client))
    }

    /// A handle over `client`, a client of one registry address.
    pub fn from_client(client: Client) -> RegistryHandle {
        RegistryHandle {
            inner: Arc::new(Inner {
                registry: RegistryClient::new(client),
                failed: AtomicU32::new(0),
            }),
        }
    }

    /// The handle this process shares for the registry at `registry` with `config` on the current tokio
    /// runtime: every call on the same runtime with the same (resolved) address and an equal config gets the
    /// same connection while one of its handles is in use. [`crate::Registration::register`] and
    /// [`crate::Discovery::new`] use it. A connection's tasks run on the runtime that made it, so each runtime
    /// of a process gets connections of its own (one made on a runtime since shut down would be of no use). A
    /// config with TLS settings or metrics cannot be compared, so it gets a connection of its own: to share one
    /// then, make a handle with [`RegistryHandle::new`] and pass it to [`crate::Registration::register_with`]
    /// and [`crate::Discovery::with_handle`].
    pub async fn shared(
        registry: impl ToSocketAddrs,
        config: &ClientConfig,
    ) -> Result<RegistryHandle, RpcError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(registry)
            .await
            .map_err(|e| {
                RpcError::not_processed(
                    Status::Unavailable,
                    format!("cannot resolve the registry's address: {e}"),
                )
            })?
            .collect();
        if addrs.is_empty() {
            return Err(RpcError::not_processed(
                Status::Unavailable,
                "the registry's address resolved to nothing",
            ));
        }
        // Outside a tokio runtime (another executor), nothing to share with.
        let runtime = tokio::runtime::Handle::try_current().map(|r| r.id());
        let Some(key) = runtime
            .ok()
            .and_then(|runtime| Key::of(runtime, addrs.clone(), config))
        else {
            return RegistryHandle::new(addrs.as_slice(), config.clone()).await;
        };
        if let Some(inner) = find(&key) {
            return Ok(RegistryHandle { inner });
        }
        // Made outside the table's lock (it connects on its first call, so nothing is lost if another caller
        // made one meanwhile and this one is dropped).
        let made = RegistryHandle::new(addrs.as_slice(), config.clone()).await?;
        let mut table = rpc_core::sync::lock(table());
        table.retain(|(_, handle)| handle.strong_count() > 0);
        if let Some(inner) = table
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, h)| h.upgrade())
        {
            return Ok(RegistryHandle { inner });
        }
        table.push((key, Arc::downgrade(&made.inner)));
        Ok(made)
    }

    /// A stub of the registry's API over this connection, without metadata.
    pub fn client(&self) -> RegistryClient {
        self.inner.registry.clone()
    }

    /// A stub that sends `token` (if any) with every call; refused if the token breaks the rule.
    pub(crate) fn stub(&self, token: Option<&str>) -> Result<RegistryClient, TokenError> {
        match token {
            Some(token) => Ok(self.client().with_metadata(bearer(token)?)),
            None => Ok(self.client()),
        }
    }

    /// A heartbeat (or a registration made again) over this connection was not taken: the registry was silent,
    /// or could not keep the lease. At [`MOVE_AFTER`] in a row, whichever registrations they were of, the
    /// connection moves to the next of the registry's addresses (see [`rpc_core::Client::reconnect`]): a hung
    /// replica, or one cut off from its store, is left before the instances' leases end. Counted over the
    /// connection, so that registrations sharing it move it once, not each in turn.
    pub(crate) fn heartbeat_failed(&self) {
        // Exactly at the count, so that failures that race past it move the connection once.
        if self.inner.failed.fetch_add(1, Ordering::Relaxed) + 1 == MOVE_AFTER {
            self.inner.failed.store(0, Ordering::Relaxed);
            self.inner.registry.client().reconnect(
                "the registry did not take two heartbeats in a row: trying the next of its addresses",
            );
        }
    }

    /// A heartbeat (or a registration) over this connection was taken.
    pub(crate) fn heartbeat_taken(&self) {
        self.inner.failed.store(0, Ordering::Relaxed);
    }

    /// Whether `self` and `other` use the same connection.
    pub fn same_connection(&self, other: &RegistryHandle) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
