//! The `#[service]` attribute: turns an annotated trait into a client stub and a server skeleton.
//!
//! # Layout
//! This crate is filled by the `#[service]`/runtime issue; it is a pipeline of parse, validate and expand.
