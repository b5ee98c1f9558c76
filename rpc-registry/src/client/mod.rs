//! The registry's clients, built into every process that registers or discovers (no feature needed).
//!
//! # Layout
//! - [`handle`]: [`RegistryHandle`](crate::RegistryHandle), one connection to a registry shared by the
//!   registrations and discoveries of a process.
//! - [`registration`]: [`Registration`](crate::Registration), an instance's registration and heartbeats.
//! - [`discovery`]: [`Discovery`](crate::Discovery), watched instance lists and the balancers made from them.

pub mod discovery;
pub mod handle;
pub mod registration;
