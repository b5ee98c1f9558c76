//! The registry's service: the [`Registry`] API over the shared state, with every write checked in order (sizes
//! first, then credentials, the registered address if configured, and the instance's owner: only the identity
//! that registered an instance, or an admin, renews, removes or supersedes it), refusals that quote a peer's
//! text short and escaped (`shown`), watches as long polls woken by the service's revision, and the task that
//! evicts leases as their timers fire.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use rpc_core::Context;
use tokio::time::Instant;

use crate::api::{
    Instance, Lease, LeaseRef, NewInstance, Registry, RegistryError, RulesRevision, ServiceReport,
    ServiceStatus, ServiceSummary, Snapshot, Watched,
};
use crate::server::config::{AddressCheck, ConfigError, RegistryConfig};
use crate::server::credentials::Identity;
use crate::server::stats::Stats;
use crate::server::store::StoreConfig;
use crate::server::store::memory::MemoryStore;
use crate::server::store::state::{Limits, State};
use crate::server::store::{Index, Store};
use rpc_core::server::layer::Caller;

/// What the service, its eviction task and the HTTP view share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Where instances, rules and weights are kept.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: RegistryConfig,
    pub(crate) stats: Stats,
    /// When the registry started.
    pub(crate) started: Instant,
    /// Set when the registry begins to shut down: waiting watches answer at once.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// The registry of `config`, over the in-memory store.
    pub(crate) fn new(config: RegistryConfig) -> Result<Arc<Shared>, ConfigError> {
        // A registry process's epoch: a watcher of another process (or of this one before a restart) is told.
        let epoch = RandomState::new().hash_one(std::process::id()) | 1;
        let store = Arc::new(MemoryStore::open(&config, epoch)?);
        Ok(Shared::with_store(config, store))
    }

    /// The registry of `config`, over `store`.
    pub(crate) fn with_store(config: RegistryConfig, store: Arc<dyn Store>) -> Arc<Shared> {
        Arc::new(Shared {
            store,
            config,
            stats: Stats::default(),
            started: Instant::now(),
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Refuses an operator's write (`what`: of rules, of a weight) unless the call carries the registry's own
    /// token, or the registry is open: rules and weights are the operators', not the instances'.
    fn authorize_admin(&self, what: &str) -> Result<(), RegistryError> {
        if self.config.is_open() {
            return Ok(());
        }
        let carried = Carried::current();
        if crate::server::credentials::is_admin(&carried.caller) {
            return Ok(());
        }
        Err(RegistryError::Unauthenticated(format!(
            "{what} refused: {}",
            self.admin_needed()
        )))
    }

    /// Why an operator's write needs a credential the call did not carry.
    pub(crate) fn admin_needed(&self) -> &'static str {
        if self.config.token.is_some() {
            "writing rules or weights needs the registry's own token (`serve --token`), and the call did not carry it"
        } else {
            "writing rules or weights needs the registry's own token (`serve --token`), and this registry has none: \
             start it with --token to write them"
        }
    }

    /// Makes revision `revision` of `service`'s rules the one in force again, as a new revision (the caller
    /// checked that it may).
    pub(crate) async fn rollback_rules(
        &self,
        service: &str,
        revision: u64,
    ) -> Result<RulesRevision, RegistryError> {
        let Some(old) = self.store.rules().revision(service, revision) else {
            return Err(RegistryError::NotFound(format!(
                "the rules of {} have no revision {revision}",
                shown(service)
            )));
        };
        let parsed = crate::server::store::rules_store::parse(&old.rules)?;
        self.store
            .apply_rules(&parsed, format!("rollback to {revision}"))
            .await
    }

    /// The registry is shutting down: watches waiting for a change answer now, and new ones at once.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Completes once the registry is shutting down.
    pub(crate) async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|&closing| closing).await;
    }

    /// The instances as reads see them.
    pub(crate) fn index(&self) -> &Index {
        self.store.index()
    }

    /// The store's own work (evictions, and following a store elsewhere), until dropped.
    pub(crate) fn run_store(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let counted = Arc::clone(&self);
        Arc::clone(&self.store).run(Box::new(move || counted.stats.evicted()))
    }

    /// Refuses a write (`what`) of `service` that carries no credential covering it; otherwise names the
    /// credential that allowed it (which owns what it registers).
    fn authorize(
        &self,
        what: &str,
        service: &str,
        carried: &Carried,
    ) -> Result<Identity, RegistryError> {
        if self.config.is_open() {
            return Ok(Identity::Anyone);
        }
        self.config
            .credentials
            .authorize(what, service, &carried.caller, &carried.names)
            .map_err(RegistryError::Unauthenticated)
    }

    /// Refuses a write (`what`, which would `verb` it) of the instance of `service` at `address` that `owner`
    /// registered, unless the call carries `owner`'s credential or the registry's own token.
    fn check_owner(
        &self,
        (what, verb): (&str, &str),
        (service, address): (&str, &str),
        owner: Option<&Identity>,
        carried: &Carried,
    ) -> Result<(), RegistryError> {
        let Some(owner) = owner else { return Ok(()) };
        if self.config.is_open()
            || self
                .config
                .credentials
                .may_act_for(owner, &carried.caller, &carried.names)
        {
            return Ok(());
        }
        Err(RegistryError::Unauthenticated(format!(
            "{what} of {} at {} refused: that instance was registered by {owner}, and only {owner} or the \
             registry's own token may {verb} it",
            shown(service),
            shown(address),
        )))
    }

    /// A heartbeat of `lease`, checked as every write is: the instance renewed, if it is still registered.
    fn renew(
        &self,
        lease: &LeaseRef,
        load: Option<rpc_core::server::layer::LoadReport>,
    ) -> Result<(), RegistryError> {
        let carried = Carried::current();
        self.stats
            .refused(self.authorize("heartbeat", &lease.service, &carried))?;
        let check = |owner: Option<&Identity>| {
            self.check_owner(
                ("heartbeat", "renew"),
                (&lease.service, &lease.address),
                owner,
                &carried,
            )
        };
        self.stats.refused(self.store.renew(lease, load, &check))?;
        self.stats.heartbeat();
        Ok(())
    }

    /// Checks the address an instance registers, as configured.
    async fn check_address(&self, new: &NewInstance) -> Result<(), RegistryError> {
        let refused = |why: String| {
            Err(RegistryError::AddressRefused(format!(
                "{} at {}: {why}",
                shown(&new.service),
                shown(&new.address)
            )))
        };
        let check = match self.config.address_check {
            AddressCheck::Off => return Ok(()),
            AddressCheck::Peer => "peer",
            AddressCheck::Reachable => "reachable",
        };
        // Nothing can be served at port 0 (it asks the OS for any port): no client could call it.
        if new
            .address
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>() == Ok(0))
        {
            return refused(format!(
                "port 0 cannot be served; register the port the instance listens on (address_check: {check})"
            ));
        }
        match self.config.address_check {
            AddressCheck::Off => Ok(()),
            AddressCheck::Peer => {
                let Ok(addr) = new.address.parse::<std::net::SocketAddr>() else {
                    return refused(String::from(
                        "the peer check needs the address as IP:port (address_check: peer)",
                    ));
                };
                let peer = Context::current().and_then(|c| c.peer().cloned());
                let canonical = |ip: std::net::IpAddr| ip.to_canonical();
                match peer {
                    Some(peer) => match peer.ip() {
                        Some(ip) if canonical(addr.ip()) == canonical(ip) => Ok(()),
                        Some(ip) => refused(format!(
                            "the address's IP {} is not the caller's {ip} (address_check: peer)",
                            addr.ip(),
                        )),
                        // Over a Unix socket the caller runs on this host: its address must be one of this
                        // host's.
                        None if peer.is_unix() && is_local(addr.ip()) => Ok(()),
                        None if peer.is_unix() => refused(format!(
                            "the caller came over a Unix socket, so it runs on this host, and {} is not an \
                             address of this host (address_check: peer)",
                            addr.ip(),
                        )),
                        None => refused(format!(
                            "the caller's address {peer} has no IP (address_check: peer)"
                        )),
                    },
                    None => refused(String::from(
                        "the caller's address is unknown (address_check: peer)",
                    )),
                }
            }
            AddressCheck::Reachable => {
                let timeout = self.config.address_check_timeout;
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&new.address))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => refused(format!(
                        "it does not accept connections: {e} (address_check: reachable)"
                    )),
                    Err(_) => refused(format!(
                        "it did not accept a connection within {timeout:?} (address_check: reachable)"
                    )),
                }
            }
        }
    }
}

/// The credentials a write carried, as the registry's authorization layer found them
/// ([`crate::Credentials::layer`]), and the names of its verified client certificate. A registry served without
/// that layer sees no credential, and refuses writes unless it is open.
struct Carried {
    caller: Caller,
    names: Vec<String>,
}

impl Carried {
    /// Those of the call being served.
    fn current() -> Carried {
        let context = Context::current();
        Carried {
            caller: context
                .as_ref()
                .and_then(|c| c.caller().cloned())
                .unwrap_or_default(),
            names: context
                .map(|c| c.client_names().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// Most characters of a peer's text that a message quotes: 64. A refusal must not carry back (or print) all
/// of a 15 MiB name.
pub(crate) const MAX_SHOWN_CHARS: usize = 64;

/// Text from a peer as a message quotes it: control and bidirectional-formatting characters escaped (so that it
/// cannot drive a terminal or forge a line), at most [`MAX_SHOWN_CHARS`] characters, and when cut, `...` and
/// the whole length in bytes.
pub(crate) fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

/// See [`shown`].
pub(crate) struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_SHOWN_CHARS) {
            if rpc_core::text::must_escape(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        if chars.next().is_some() {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// The [`Registry`] API, served by the registry.
#[derive(Clone, Debug)]
pub struct RegistryService {
    shared: Arc<Shared>,
}

impl RegistryService {
    /// A registry with `config`, and the task that evicts expired leases (spawn it beside the server). Fails if
    /// `config` fails [`RegistryConfig::validate`] (an empty token, say, would let anyone write), or names the
    /// etcd store, which [`RegistryService::open`] opens.
    ///
    /// ```
    /// use rpc_registry::{RegistryConfig, RegistryService};
    /// let short = RegistryConfig { token: Some("x".into()), ..RegistryConfig::default() };
    /// let refused = RegistryService::new(short).err().unwrap();
    /// assert_eq!(
    ///     refused.to_string(),
    ///     "the registry's token is not usable: the token is too short: 1 of at least 8 bytes"
    /// );
    /// ```
    pub fn new(
        config: RegistryConfig,
    ) -> Result<(RegistryService, impl Future<Output = ()> + Send + 'static), ConfigError> {
        config.validate()?;
        #[cfg(feature = "etcd")]
        if let StoreConfig::Etcd(_) = &config.store {
            return Err(ConfigError::Store(String::from(
                "the etcd store connects to etcd first: open it with RegistryService::open (or serve)",
            )));
        }
        let shared = Shared::new(config)?;
        let evictions = Arc::clone(&shared).run_store();
        Ok((RegistryService { shared }, evictions))
    }

    /// A service of `config` over the store it names, which it opens first (connecting to etcd, for the etcd
    /// store); see [`RegistryService::new`].
    pub async fn open(
        config: RegistryConfig,
    ) -> Result<(RegistryService, impl Future<Output = ()> + Send + 'static), ConfigError> {
        config.validate()?;
        let shared = match &config.store {
            StoreConfig::Memory => Shared::new(config)?,
            #[cfg(feature = "etcd")]
            StoreConfig::Etcd(etcd) => {
                let etcd = etcd.clone();
                let store = crate::server::store::etcd::EtcdStore::open(&config, etcd)
                    .await
                    .map_err(ConfigError::Store)?;
                Shared::with_store(config, Arc::new(store))
            }
        };
        let evictions = Arc::clone(&shared).run_store();
        Ok((RegistryService { shared }, evictions))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Registry for RegistryService {
    async fn register(&self, instance: NewInstance) -> Result<Lease, RegistryError> {
        let shared = &self.shared;
        let carried = Carried::current();
        // Sizes first: what follows (credentials, the address check, a refusal's message) sees bounded input.
        shared
            .stats
            .refused(State::check_sizes(&Limits::of(&shared.config), &instance))?;
        let owner =
            shared
                .stats
                .refused(shared.authorize("registration", &instance.service, &carried))?;
        shared
            .stats
            .refused(shared.check_address(&instance).await)?;
        let (service, address) = (instance.service.clone(), instance.address.clone());
        let check = |held: Option<&Identity>| {
            shared.check_owner(
                ("registration", "supersede"),
                (&service, &address),
                held,
                &carried,
            )
        };
        let lease = shared
            .stats
            .refused(shared.store.register(instance, owner, &check).await)?;
        shared.stats.registered();
        Ok(lease)
    }

    async fn heartbeat(&self, lease: LeaseRef) -> Result<(), RegistryError> {
        self.shared.renew(&lease, None)
    }

    async fn heartbeat_with_load(
        &self,
        lease: LeaseRef,
        load: rpc_core::server::layer::LoadReport,
    ) -> Result<(), RegistryError> {
        self.shared.renew(&lease, Some(load))
    }

    async fn deregister(&self, lease: LeaseRef) -> Result<(), RegistryError> {
        let shared = &self.shared;
        let carried = Carried::current();
        shared
            .stats
            .refused(shared.authorize("deregistration", &lease.service, &carried))?;
        let check = |owner: Option<&Identity>| {
            shared.check_owner(
                ("deregistration", "remove"),
                (&lease.service, &lease.address),
                owner,
                &carried,
            )
        };
        let removed = shared
            .stats
            .refused(shared.store.deregister(lease.clone(), &check).await)?;
        if removed {
            shared.stats.deregistered();
        }
        Ok(())
    }

    // Reads build their answers outside the state's lock: see `read.rs`.
    async fn instances(&self, service: String) -> Snapshot {
        self.shared.instances(&service)
    }

    async fn watch(&self, service: String, epoch: u64, since: u64, wait_ms: u64) -> Snapshot {
        self.shared.watch(&service, epoch, since, wait_ms).await
    }

    async fn watch_changes(
        &self,
        service: String,
        epoch: u64,
        since: u64,
        wait_ms: u64,
    ) -> Watched {
        self.shared
            .watch_changes(&service, epoch, since, wait_ms)
            .await
    }

    async fn subscribe(
        &self,
        service: String,
        epoch: u64,
        since: u64,
        wait_ms: u64,
    ) -> impl rpc_core::Stream<Item = Watched> {
        Arc::clone(&self.shared).subscribe(service, epoch, since, wait_ms)
    }

    async fn services(&self) -> Vec<ServiceSummary> {
        self.shared.services()
    }

    async fn status(&self, service: Option<String>) -> Vec<ServiceStatus> {
        self.shared.status(service.as_deref())
    }

    async fn report(&self, service: Option<String>) -> Vec<ServiceReport> {
        self.shared.report(service.as_deref())
    }

    async fn placement(&self, service: Option<String>) -> crate::api::Placement {
        self.shared.placement(service.as_deref())
    }

    async fn apply_rules(&self, rules: String) -> Result<RulesRevision, RegistryError> {
        let shared = &self.shared;
        shared
            .stats
            .refused(shared.authorize_admin("applying rules"))?;
        let parsed = shared
            .stats
            .refused(crate::server::store::rules_store::parse(&rules))?;
        shared.stats.refused(
            shared
                .store
                .apply_rules(&parsed, String::from("apply"))
                .await,
        )
    }

    async fn rules(&self, service: String) -> Option<RulesRevision> {
        self.shared.store.rules().current(&service)
    }

    async fn rules_history(&self, service: String) -> Vec<RulesRevision> {
        self.shared.store.rules().history(&service)
    }

    async fn rollback_rules(
        &self,
        service: String,
        revision: u64,
    ) -> Result<RulesRevision, RegistryError> {
        let shared = &self.shared;
        shared
            .stats
            .refused(shared.authorize_admin("a rollback of rules"))?;
        shared
            .stats
            .refused(shared.rollback_rules(&service, revision).await)
    }

    async fn set_weight(
        &self,
        service: String,
        address: String,
        weight: Option<u32>,
    ) -> Result<Option<Instance>, RegistryError> {
        let shared = &self.shared;
        shared
            .stats
            .refused(shared.authorize_admin("setting a weight"))?;
        shared
            .stats
            .refused(shared.store.set_weight(&service, &address, weight).await)
    }

    async fn watch_rules(
        &self,
        service: String,
        since: u64,
        wait_ms: u64,
    ) -> Option<RulesRevision> {
        let shared = &self.shared;
        let wait = std::time::Duration::from_millis(wait_ms).min(shared.config.max_watch_wait);
        shared
            .store
            .rules()
            .watch(&service, since, wait, shared.closed())
            .await
    }
}

/// Whether `ip` is an address of this host (one a socket can be bound to), the unspecified address aside.
fn is_local(ip: std::net::IpAddr) -> bool {
    !ip.is_unspecified() && std::net::UdpSocket::bind((ip, 0)).is_ok()
}
