//! The service registry: leases, heartbeats, eviction, watch, and smooth weighted round-robin selection.
//!
//! # Layout
//! This crate is filled by the registry issue.
