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
//! - [`api`]: the registry's API and its types.
//! - [`handle`]: [`RegistryHandle`], one connection to a registry shared by the registrations and discoveries
//!   of a process.
//! - [`registration`]: [`Registration`], an instance's registration and heartbeats.
//! - [`discovery`]: [`Discovery`], watched instance lists and the balancers made from them.
//! - `token`: [`check_token`], the one rule every token meets ([`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] visible
//!   characters), and the metadata that carries a token.
//! - With the `server` feature (default): `state` (leases, revisions, the expiry wheel), `listing` (each
//!   service's instances as immutable lists that reads share, so that they copy outside the state's lock),
//!   `history` (the last changes, with why instances left), [`service`] (the API implementation, the credential
//!   and address checks, evictions), `read` (the API's reads), `http` (the dashboard, JSON API and metrics), `http_writes` (the dashboard's writes and their guards),
//!   `overview` (the dashboard's paged view), `stats` (the registry's counters), `rules_store` (every revision
//!   of each service's rules), `weights` (the weights operators set: drains), `data_dir` (whole-file writes
//!   to the data directory that keeps those two),
//!   [`serve`](fn@serve) (running it all), [`config`] ([`RegistryConfig`]: timings, checks, limits),
//!   [`credentials`] ([`Credentials`]: per-service tokens and client-certificate names, and who owns an
//!   instance), [`flags`] (the flags of `rpc-registry serve`, one per configuration field),
//!   [`open_files`] (the open-file limit, raised at start), and the `rpc-registry` binary.
//! - With the `server` feature: [`cli`], the binary's client subcommands `ls` (a table of the instances) and
//!   `watch` (a line per change); [`rules_file`], rules files (TOML) read and checked with the line of every
//!   problem, for `rules check`.

pub mod api;
pub mod discovery;
pub mod handle;
pub mod registration;
mod token;

#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod credentials;
#[cfg(feature = "server")]
mod data_dir;
#[cfg(feature = "server")]
pub mod flags;
#[cfg(feature = "server")]
mod history;
#[cfg(feature = "server")]
mod http;
#[cfg(feature = "server")]
mod http_writes;
#[cfg(feature = "server")]
mod listing;
#[cfg(feature = "server")]
pub mod open_files;
#[cfg(feature = "server")]
mod overview;
#[cfg(feature = "server")]
mod read;
#[cfg(feature = "server")]
pub mod rules_file;
#[cfg(feature = "server")]
mod rules_store;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
mod state;
#[cfg(feature = "server")]
mod stats;
#[cfg(feature = "server")]
mod weights;

pub use api::{
    Instance, InstanceReport, InstanceState, InstanceStatus, LOAD_WINDOW, Lease, LeaseRef,
    LoadSummary, NewInstance, RegistryClient, RegistryError, Removal, RemovalReason, RulesRevision,
    ServiceReport, ServiceStatus, Snapshot, Watched,
};
pub use discovery::{Discovery, DiscoveryConfig};
pub use handle::RegistryHandle;
pub use registration::{Registration, RegistrationConfig, RegistrationError};
pub use token::{MAX_TOKEN_LEN, MIN_TOKEN_LEN, TokenError, check_token};

#[cfg(feature = "server")]
pub use config::{AddressCheck, RegistryConfig};
#[cfg(feature = "server")]
pub use credentials::Credentials;
#[cfg(feature = "server")]
pub use serve::serve;
#[cfg(feature = "server")]
pub use service::RegistryService;

/// The metadata key that carries the registry's token: `authorization: Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// Environment variable the `rpc-registry` binary reads its token from when `--token` is not given.
pub const TOKEN_ENV: &str = "RPC_REGISTRY_TOKEN";
