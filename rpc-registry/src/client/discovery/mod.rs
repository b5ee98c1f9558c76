//! Discovery: the instances of each service a client asked about, kept current by a watch on the registry (a
//! stream of its changes, or long polls against a registry that does not stream them: `follow`), and served
//! from cache while the registry is down (or while the watch moves to another of its replicas). A
//! [`Discovery`] is an rpc-core [`Discover`]: it feeds a service's instances to any balancing policy, and names
//! peak EWMA (`rpc_core::balance::PeakEwma`, with its `down_for`) as its clients' default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rpc_core::balance::{DEFAULT_DOWN_FOR, Discover, Feed, PeakEwma, Policy};
use rpc_core::client::RulesFeed;
use rpc_core::rules::Rules;
use rpc_core::{ClientConfig, RpcError, Status, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::api::{Instance, RegistryClient, Snapshot};
use crate::client::handle::RegistryHandle;
use follow::watch_loop;

mod follow;

/// Default of [`DiscoveryConfig::watch_wait`]: 20 s.
pub const DEFAULT_WATCH_WAIT: Duration = Duration::from_secs(20);
/// Default of [`DiscoveryConfig::warm_up`]: 3 s.
pub const DEFAULT_WARM_UP: Duration = Duration::from_secs(3);

/// How a discovery watches the registry. Its `Debug` hides the token.
#[derive(Clone)]
pub struct DiscoveryConfig {
    /// How long one watch waits for a change before the registry answers unchanged. Default 20 s
    /// ([`DEFAULT_WATCH_WAIT`]).
    pub watch_wait: Duration,
    /// After the registry restarts (its epoch changes), how long instances it does not know yet are kept,
    /// while they register again. Default 3 s ([`DEFAULT_WARM_UP`]), the registry's default TTL.
    pub warm_up: Duration,
    /// How long the default policy skips an instance it could not reach. Default 1 s ([`DEFAULT_DOWN_FOR`]).
    pub down_for: Duration,
    /// The token sent to the registry, if it wants one for reads; it meets [`crate::check_token`]. Tokens travel
    /// with each call, so discoveries and registrations with different tokens can share a connection.
    pub token: Option<String>,
    /// The connection to the registry that [`Discovery::new`] asks for; it shares one with every registration
    /// and discovery of this process that asks for the same registry with an equal config (see
    /// [`RegistryHandle::shared`]). Default [`RegistryHandle::default_config`]. [`Discovery::with_handle`] uses
    /// its handle's connection instead. A watch that failed is retried after a pause of its own, doubling from
    /// 100 ms to at most 1 s.
    pub client: ClientConfig,
}

impl std::fmt::Debug for DiscoveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field, the token hidden: a configuration may be logged.
        let DiscoveryConfig {
            watch_wait,
            warm_up,
            down_for,
            token,
            client,
        } = self;
        f.debug_struct("DiscoveryConfig")
            .field("watch_wait", watch_wait)
            .field("warm_up", warm_up)
            .field("down_for", down_for)
            .field("token", &crate::token::hidden(token))
            .field("client", client)
            .finish()
    }
}

impl Default for DiscoveryConfig {
    fn default() -> DiscoveryConfig {
        DiscoveryConfig {
            watch_wait: DEFAULT_WATCH_WAIT,
            warm_up: DEFAULT_WARM_UP,
            down_for: DEFAULT_DOWN_FOR,
            token: None,
            client: RegistryHandle::default_config(),
        }
    }
}

/// The instances of the services asked about, kept current. Cheap to clone; the watches stop when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct Discovery {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Keeps the connection shared while the discovery lives.
    _handle: RegistryHandle,
    registry: RegistryClient,
    config: DiscoveryConfig,
    watches: Mutex<HashMap<String, watch::Receiver<Arc<Snapshot>>>>,
    /// The rules of each service asked about, and whether the registry has answered their watch yet.
    rules: Mutex<HashMap<String, (RulesFeed, watch::Receiver<bool>)>>,
    /// Why the last watch of each service failed, until one succeeds again.
    errors: Errors,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// The last watch error of each service, shared with the watch tasks.
type Errors = Arc<Mutex<HashMap<String, String>>>;

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

impl Discovery {
    /// A discovery using the registry at `registry`, over the connection this process shares for that registry
    /// and `config.client` ([`RegistryHandle::shared`]); it connects when a service is first watched, and works
    /// from its cache whenever the registry cannot be reached. Fails if the address does not resolve, or if the
    /// token breaks the rule of [`crate::check_token`].
    ///
    /// `registry` may list the addresses of several replicas (a `&[SocketAddr]`, as
    /// [`crate::resolve_registries`] makes): the watches go through the first that answers; when it dies they
    /// fail, and are made again (after the pause of failed watches) through another, from the epoch and
    /// revision seen last, while the instances known stay served from the cache. Replicas that share their
    /// state answer from that revision on; an independent registry (another epoch) answers with all it holds,
    /// and the instances it does not know yet are kept for [`DiscoveryConfig::warm_up`] while they register
    /// there.
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use rpc_registry::{Discovery, DiscoveryConfig};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let replicas: [SocketAddr; 2] = ["127.0.0.1:7070".parse()?, "127.0.0.1:7071".parse()?];
    /// let discovery = Discovery::new(&replicas[..], DiscoveryConfig::default()).await?;
    /// let calc = discovery.instances("Calc");
    /// # let _ = calc;
    /// # Ok(()) }
    /// ```
    pub async fn new(
        registry: impl ToSocketAddrs,
        config: DiscoveryConfig,
    ) -> Result<Discovery, RpcError> {
        let handle = RegistryHandle::shared(registry, &config.client).await?;
        Discovery::with_handle(&handle, config)
    }

    /// A discovery using the registry of `registry`, over its connection (`config.client` is not used). Fails
    /// only if the token breaks the rule of [`crate::check_token`] (`InvalidArgument`, the token not shown).
    pub fn with_handle(
        registry: &RegistryHandle,
        config: DiscoveryConfig,
    ) -> Result<Discovery, RpcError> {
        let client = registry.stub(config.token.as_deref()).map_err(|e| {
            RpcError::not_processed(
                Status::InvalidArgument,
                format!("the discovery's registry token is not usable: {e}"),
            )
        })?;
        Ok(Discovery {
            inner: Arc::new(Inner {
                _handle: registry.clone(),
                registry: client,
                config,
                watches: Mutex::new(HashMap::new()),
                rules: Mutex::new(HashMap::new()),
                errors: Arc::default(),
                tasks: Mutex::new(Vec::new()),
            }),
        })
    }

    fn watches(&self) -> MutexGuard<'_, HashMap<String, watch::Receiver<Arc<Snapshot>>>> {
        rpc_core::sync::lock(&self.inner.watches)
    }

    /// The instances of `service`, as a value that changes when they do. The first call for a service starts
    /// its watch; until the registry answers it holds no instance.
    pub fn watch(&self, service: &str) -> watch::Receiver<Arc<Snapshot>> {
        let mut watches = self.watches();
        if let Some(rx) = watches.get(service) {
            return rx.clone();
        }
        let empty = Snapshot {
            service: service.to_owned(),
            epoch: 0,
            revision: 0,
            instances: Vec::new(),
        };
        let (tx, rx) = watch::channel(Arc::new(empty));
        watches.insert(service.to_owned(), rx.clone());
        drop(watches);
        let task = tokio::spawn(watch_loop(
            self.inner.registry.clone(),
            service.to_owned(),
            self.inner.config.clone(),
            tx,
            Arc::clone(&self.inner.errors),
        ));
        rpc_core::sync::lock(&self.inner.tasks).push(task.abort_handle());
        rx
    }

    /// The rules of `service` applied to the registry, as a value that changes when they do: the first call
    /// for a service starts their watch; until the registry answers there are none, and while it cannot be
    /// reached the last good ones stay.
    pub fn rules(&self, service: &str) -> RulesFeed {
        self.rules_watch(service).0
    }

    /// Waits until the registry has answered the watch of `service`'s rules once (with rules or without), or
    /// `limit` passes; whether it answered. A client whose very first calls must follow the rules waits for
    /// this (and for [`Discovery::wait_for`]) before calling: until then its calls go to any instance.
    pub async fn wait_for_rules(&self, service: &str, limit: Duration) -> bool {
        let mut answered = self.rules_watch(service).1;
        let _ = tokio::time::timeout(limit, answered.wait_for(|a| *a)).await;
        *answered.borrow()
    }

    fn rules_watch(&self, service: &str) -> (RulesFeed, watch::Receiver<bool>) {
        let mut all = rpc_core::sync::lock(&self.inner.rules);
        if let Some(watches) = all.get(service) {
            return watches.clone();
        }
        let (tx, rx) = watch::channel(None);
        let (answered_tx, answered) = watch::channel(false);
        all.insert(service.to_owned(), (rx.clone(), answered.clone()));
        drop(all);
        let task = tokio::spawn(rules_loop(
            self.inner.registry.clone(),
            service.to_owned(),
            self.inner.config.watch_wait,
            tx,
            answered_tx,
        ));
        rpc_core::sync::lock(&self.inner.tasks).push(task.abort_handle());
        (rx, answered)
    }

    /// The instances of `service` now known (none until its watch has been answered once).
    pub fn instances(&self, service: &str) -> Vec<Instance> {
        self.watch(service).borrow().instances.clone()
    }

    /// Why the last watch of `service` failed (the registry unreachable, a TLS or protocol error), if it did;
    /// `None` once a watch succeeds. Tells "no instance is registered" apart from "the registry did not answer".
    pub fn last_error(&self, service: &str) -> Option<String> {
        rpc_core::sync::lock(&self.inner.errors)
            .get(service)
            .cloned()
    }

    /// Whether the registry has answered a watch of `service` yet: tells "no instance is registered" (answered,
    /// with none) apart from "the registry did not answer" (yet).
    pub fn answered(&self, service: &str) -> bool {
        self.watch(service).borrow().epoch != 0
    }

    /// Waits until at least `count` instances of `service` are known, or `limit` passes; returns those known.
    pub async fn wait_for(&self, service: &str, count: usize, limit: Duration) -> Vec<Instance> {
        let mut rx = self.watch(service);
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| s.instances.len() >= count)).await;
        rx.borrow().instances.clone()
    }
}

impl Discover for Discovery {
    fn feed(&self, service: &str) -> Box<dyn Feed> {
        Box::new(Watched(self.watch(service)))
    }

    fn default_policy(&self, _service: &str) -> Arc<dyn Policy> {
        Arc::new(PeakEwma::default().with_down_for(self.inner.config.down_for))
    }

    fn rules(&self, service: &str) -> Option<RulesFeed> {
        Some(Discovery::rules(self, service))
    }
}

/// A service's instances as the watch keeps them.
struct Watched(watch::Receiver<Arc<Snapshot>>);

impl Feed for Watched {
    fn has_changed(&self) -> bool {
        self.0.has_changed().unwrap_or(false)
    }

    fn current(&mut self) -> Vec<rpc_core::balance::Instance> {
        let snapshot = Arc::clone(&self.0.borrow_and_update());
        snapshot
            .instances
            .iter()
            .map(|i| {
                rpc_core::balance::Instance::new(&i.address, i.weight)
                    .with_labels(i.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            })
            .collect()
    }
}

/// Keeps `tx` current with the rules of `service`: long polls, answered as soon as a revision is applied. On
/// errors it keeps the last good rules and retries; a revision that does not read or check (the registry checks
/// every one, so only a newer model than this client's could send one) is skipped, and the rules before it kept.
/// A registry without rules (an older one) ends the watch.
async fn rules_loop(
    registry: RegistryClient,
    service: String,
    wait: Duration,
    tx: watch::Sender<Option<Arc<Rules>>>,
    answered: watch::Sender<bool>,
) {
    let mut since = 0u64;
    let (mut failures, mut early) = (0u32, 0u32);
    loop {
        let call = registry.with_deadline(wait + Duration::from_secs(5));
        let asked = Instant::now();
        match call
            .watch_rules(service.clone(), since, wait.as_millis() as u64)
            .await
        {
            Ok(current) => {
                failures = 0;
                let revision = current.as_ref().map_or(0, |r| r.revision);
                if revision == since {
                    answered.send_replace(true);
                    if asked.elapsed() < wait / 2 {
                        early = early.saturating_add(1);
                        tokio::time::sleep(retry_pause(early)).await;
                    }
                    continue;
                }
                early = 0;
                since = revision;
                match current {
                    None => {
                        tx.send_replace(None);
                    }
                    Some(applied) => {
                        let parsed = serde_json::from_str::<Rules>(&applied.rules)
                            .map_err(|e| e.to_string())
                            .and_then(|mut rules| {
                                rules.check().map(|()| rules).map_err(|e| e.to_string())
                            });
                        if let Ok(rules) = parsed {
                            tx.send_replace(Some(Arc::new(rules)));
                        }
                    }
                }
                answered.send_replace(true);
            }
            Err(e) if e.code() == Status::Unimplemented => {
                answered.send_replace(true);
                return;
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                tokio::time::sleep(retry_pause(failures)).await;
            }
        }
    }
}

/// The pause before the next watch after `n` failed (or unanswered) watches in a row: 100 ms, doubling, at most
/// [`MAX_RETRY_PAUSE`].
fn retry_pause(n: u32) -> Duration {
    Duration::from_millis(50u64 << n.min(5)).min(MAX_RETRY_PAUSE)
}

/// How long a discovery watches a service with long polls after the registry refused to stream it, before it
/// subscribes again: 60 s.
pub const POLLS_BEFORE_STREAMS: Duration = Duration::from_secs(60);

/// The longest pause between two watches of a service that fail, or that the registry answers at once with
/// nothing new: 1 s.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);
