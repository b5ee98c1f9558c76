//! The registry itself (feature `server`): the service that answers the [`Registry`](crate::api::Registry) API,
//! its state, the HTTP view, and running it all.
//!
//! # Layout
//! - [`service`] (the API implementation, the credential and address checks), `read` (the API's reads).
//! - `store` (the store seam: where instances, rules and weights are kept, in memory or in etcd, and the
//!   in-memory index that reads take from; see its own layout).
//! - `http` (the dashboard, JSON API and metrics), `http_writes` (the dashboard's writes), `cross_site` (the
//!   guards of the port's writes and gateway calls against cross-site requests), `overview` (the dashboard's
//!   paged view), `describe` (services' descriptions, asked of their instances and kept), `gateway` (calls in
//!   JSON over HTTP, routed to instances; see its own layout), `stats` (the registry's counters).
//! - [`config`] ([`RegistryConfig`](crate::RegistryConfig): timings, checks, limits), [`credentials`]
//!   ([`Credentials`](crate::Credentials): per-service tokens and client-certificate names, and who owns an
//!   instance), [`flags`] (the flags of `rpc-registry serve`, one per configuration field), [`open_files`] (the
//!   open-file limit, raised at start), and `serve` (running it all: [`serve`](crate::serve)).

pub mod config;
pub mod credentials;
pub(crate) mod cross_site;
pub(crate) mod describe;
pub mod flags;
pub(crate) mod gateway;
pub(crate) mod http;
pub(crate) mod http_writes;
pub mod open_files;
pub(crate) mod overview;
pub(crate) mod read;
pub(crate) mod serve;
pub mod service;
pub(crate) mod stats;
pub(crate) mod store;
