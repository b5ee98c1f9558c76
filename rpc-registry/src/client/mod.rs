//! The registry's clients, built into every process that registers or discovers (no feature needed).
//!
//! Each takes the registry's address, or the addresses of its replicas (a slice of `SocketAddr`, as
//! [`resolve_registries`](crate::resolve_registries) makes from `"h1:7070,h2:7070"`): their connection then
//! moves to another replica when the one it uses stops answering, with the same token and TLS settings.
//!
//! # Layout
//! - [`addresses`]: [`parse_registries`](crate::parse_registries) and
//!   [`resolve_registries`](crate::resolve_registries), a comma-separated list of registry addresses read.
//! - [`handle`]: [`RegistryHandle`](crate::RegistryHandle), one connection to a registry shared by the
//!   registrations and discoveries of a process.
//! - [`registration`]: [`Registration`](crate::Registration), an instance's registration and heartbeats.
//! - [`discovery`]: [`Discovery`](crate::Discovery), watched instance lists and the balancers made from them.

pub mod addresses;
pub mod discovery;
pub mod handle;
pub mod registration;
