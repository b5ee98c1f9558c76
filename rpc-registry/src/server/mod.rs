//! The registry itself (feature `server`): the service that answers the [`Registry`](crate::api::Registry) API,
//! its state, the HTTP view, and running it all.
//!
//! # Layout
//! - `state` (leases, revisions, the expiry wheel), `listing` (each service's instances as immutable lists that
//!   reads share, so that they copy outside the state's lock), `history` (the last changes, with why instances
//!   left).
//! - `rules_store` (every revision of each service's rules), `weights` (the weights operators set: drains),
//!   `data_dir` (whole-file writes to the data directory that keeps those two).
//! - [`service`] (the API implementation, the credential and address checks, evictions), `read` (the API's
//!   reads).
//! - `http` (the dashboard, JSON API and metrics), `http_writes` (the dashboard's writes and their guards),
//!   `overview` (the dashboard's paged view), `stats` (the registry's counters).
//! - [`config`] ([`RegistryConfig`](crate::RegistryConfig): timings, checks, limits), [`credentials`]
//!   ([`Credentials`](crate::Credentials): per-service tokens and client-certificate names, and who owns an
//!   instance), [`flags`] (the flags of `rpc-registry serve`, one per configuration field), [`open_files`] (the
//!   open-file limit, raised at start), and `serve` (running it all: [`serve`](crate::serve)).

pub mod config;
pub mod credentials;
pub(crate) mod data_dir;
pub mod flags;
pub(crate) mod history;
pub(crate) mod http;
pub(crate) mod http_writes;
pub(crate) mod listing;
pub mod open_files;
pub(crate) mod overview;
pub(crate) mod read;
pub(crate) mod rules_store;
pub(crate) mod serve;
pub mod service;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod weights;
