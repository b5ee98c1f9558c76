//! `Stub`: what every generated client (`<Trait>Client`) is, whatever its methods are called. Its items never
//! collide with a method of the service; the same-named inherent items of a client are shortcuts to them, left
//! out where a method of the service takes the name.

use core::future::Future;
use core::time::Duration;

use rpc_codec::Metadata;
use tokio::net::ToSocketAddrs;

use crate::balance::{Balancer, Discover, Policy};
use crate::client::{Client, ClientConfig};
use crate::error::RpcError;
use crate::method::MethodInfo;
use crate::options::CallOptions;

/// A client stub of one service: a [`Client`] and the [`CallOptions`] of its calls. `#[service]` implements it
/// for `<Trait>Client`, whose inherent `new`, `connect`, `connect_unix`, `with_deadline`, ... call these. A
/// method of the service named like one of them takes the inherent name; reach the stub's item through this
/// trait:
///
/// ```
/// use rpc_core::{Client, Stub, service};
///
/// #[service]
/// trait Network {
///     /// A method named like the stub's constructor.
///     async fn connect(&self, peer: String) -> bool;
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// # let addr = listener.local_addr().unwrap();
/// # struct Net;
/// # impl Network for Net { async fn connect(&self, _: String) -> bool { true } }
/// # tokio::spawn(rpc_core::Server::builder().add_service(NetworkServer::new(Net)).build().unwrap().serve(listener));
/// let network = <NetworkClient as Stub>::connect(addr).await?;
/// assert!(network.connect("10.0.0.7:4000".to_owned()).await?);
/// # Ok(()) }
/// ```
pub trait Stub: Clone + Sized {
    /// The service's name on the wire.
    const SERVICE: &'static str;
    /// The service's methods, with their method ids.
    const METHODS: &'static [MethodInfo];

    /// A stub calling through `client` with `options`.
    fn from_parts(client: Client, options: CallOptions) -> Self;

    /// The underlying client.
    fn client(&self) -> &Client;

    /// The options of this stub's calls.
    fn options(&self) -> &CallOptions;

    /// A stub calling through `client`, with default options.
    fn new(client: Client) -> Self {
        Self::from_parts(client, CallOptions::default())
    }

    /// Connects to a server at `addr` with the default client configuration.
    fn connect(addr: impl ToSocketAddrs) -> impl Future<Output = Result<Self, RpcError>> {
        async { Ok(Self::new(Client::connect(addr).await?)) }
    }

    /// Connects to a server listening on the Unix domain socket at `path`, with the default client
    /// configuration (unix only).
    #[cfg(unix)]
    fn connect_unix(
        path: impl AsRef<std::path::Path>,
    ) -> impl Future<Output = Result<Self, RpcError>> {
        async { Ok(Self::new(Client::connect_unix(path).await?)) }
    }

    /// A stub whose calls are spread over the instances of `service` that `discovery` knows, by the policy it
    /// names (with `rpc-registry`: smooth weighted round-robin over the registered instances, kept up to date),
    /// with the default client configuration. Calls that could not run are retried on other instances.
    fn discover(discovery: impl Discover, service: &str) -> Self {
        Self::discover_with(discovery, service, ClientConfig::default())
    }

    /// Like [`Stub::discover`], with `config` for the connections to the instances (TLS, deadlines, retries).
    fn discover_with(discovery: impl Discover, service: &str, config: ClientConfig) -> Self {
        Self::new(Client::balanced(
            Balancer::discovered(discovery, service),
            config,
        ))
    }

    /// Like [`Stub::discover_with`], with `policy` picking the instances instead of the one `discovery` names.
    fn discover_with_policy(
        discovery: impl Discover,
        service: &str,
        policy: std::sync::Arc<dyn Policy>,
        config: ClientConfig,
    ) -> Self {
        Self::new(Client::balanced(
            Balancer::discovered_with(discovery, service, policy),
            config,
        ))
    }

    /// This stub with a deadline for each call: the time allowed from the call's start, sent to the server as
    /// its budget.
    fn with_deadline(&self, deadline: Duration) -> Self {
        Self::from_parts(
            self.client().clone(),
            self.options().clone().deadline(deadline),
        )
    }

    /// This stub with `metadata` sent with each call (a trace id, an auth token), merged into what it already
    /// sends: an entry of `metadata` replaces the entries of the same key (see [`CallOptions::metadata`]).
    fn with_metadata(&self, metadata: Metadata) -> Self {
        Self::from_parts(
            self.client().clone(),
            self.options().clone().metadata(metadata),
        )
    }

    /// This stub with `key` as the key of each call (a user id, say, taken from the method's arguments): a
    /// hashing balancing policy sends every call of one key to the same instance (see
    /// [`CallOptions::hash_key`]).
    fn with_hash_key(&self, key: impl AsRef<[u8]>) -> Self {
        Self::from_parts(self.client().clone(), self.options().clone().hash_key(key))
    }
}
