//! The service registry: instances register with a lease and heartbeat to keep it; a lease not renewed within
//! the TTL is evicted (in expiry order, by a timer wheel); clients watch a service and hear of each change as
//! it happens; discovery feeds the instances to rpc-core's balancing policies (smooth weighted round-robin by default).
//!
//! The registry's own API is a `#[service]` trait ([`api::Registry`]) served by rpc-core. Writes need the
//! registry's token when it has one.
//!
//! ```no_run
//! use rpc_registry::{Discovery, DiscoveryConfig, NewInstance, Registration, RegistrationConfig};
//! # #[rpc_core::service] trait Calc { async fn add(&self, a: i64, b: i64) -> i64; }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // A server registers itself, and heartbeats until it deregisters.
//! let instance = NewInstance {
//!     service: "Calc".into(),
//!     address: "127.0.0.1:7001".into(),
//!     weight: 5,
//!     metadata: Default::default(),
//! };
//! let registration = Registration::register("127.0.0.1:7070", instance, RegistrationConfig::default()).await?;
//!
//! // A client spreads its calls over the instances the registry knows.
//! let discovery = Discovery::new("127.0.0.1:7070", DiscoveryConfig::default()).await?;
//! let calc = CalcClient::discover(&discovery, "Calc");
//! let sum = calc.add(2, 3).await?;
//! # let _ = sum;
//! registration.deregister().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Three parts, over the API types they share:
//! - [`api`]: the registry's API and its types; `token`: [`check_token`], the one rule every token meets
//!   ([`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] visible characters), and the metadata that carries a token;
//!   [`rules_file`]: rules files (TOML) read and checked with the line of every problem.
//! - [`client`]: registration and discovery, in every build, against one registry or a list of its replicas
//!   ([`resolve_registries`] reads `"h1:7070,h2:7070"`).
//! - [`server`] (feature `server`, default): the registry itself, its store, service, HTTP view and dashboard,
//!   services' descriptions and the gateway that calls them over HTTP, stats and credentials; see its own
//!   layout.
//! - [`cli`] (feature `server`): the binary's client subcommands (`ls`, `watch`, `rules`, `weight`; `call` and
//!   `describe`, which talk to a service's own servers in JSON through `rpc.Reflection`), and the
//!   `rpc-registry` binary (`main.rs`), which parses flags and calls into the library.

pub mod api;
pub mod client;
#[cfg(feature = "server")]
pub mod rules_file;
mod token;

#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod server;

pub use api::{
    Held, Instance, InstanceReport, InstanceState, InstanceStatus, LOAD_WINDOW, Lease, LeaseRef,
    LoadSummary, NewInstance, Placement, RegistryClient, RegistryError, Removal, RemovalReason,
    ReplicaInfo, RulesRevision, ServiceReport, ServiceStatus, Snapshot, Watched,
};
pub use client::addresses::{RegistryListError, parse_registries, resolve_registries};
pub use client::discovery::{Discovery, DiscoveryConfig};
pub use client::handle::RegistryHandle;
pub use client::registration::{Registration, RegistrationConfig, RegistrationError};
pub use token::{MAX_TOKEN_LEN, MIN_TOKEN_LEN, TokenError, check_token};

#[cfg(feature = "server")]
pub use server::config::{AddressCheck, RegistryConfig};
#[cfg(feature = "server")]
pub use server::credentials::Credentials;
#[cfg(feature = "server")]
pub use server::serve::serve;
#[cfg(feature = "server")]
pub use server::service::RegistryService;
#[cfg(feature = "server")]
pub use server::store::StoreConfig;
#[cfg(feature = "etcd")]
pub use server::store::etcd::EtcdConfig;

/// The metadata key that carries the registry's token: `authorization: Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// Environment variable the `rpc-registry` binary reads its token from when `--token` is not given.
pub const TOKEN_ENV: &str = "RPC_REGISTRY_TOKEN";
