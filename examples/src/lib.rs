//! Runnable programs a new user of the rpc framework starts with; each lives in `src/bin/`. The services they
//! share are defined here.
//!
//! # Layout
//! - [`hello`]: the `Greeter` service of `hello-server` and `hello-client`.
//! - `wire-tour`: encodes a frame of every kind, prints it byte by byte, decodes it back, and shows the
//!   codec refusing hostile input.
//! - `hello-server`, `hello-client`: the smallest real service, served and called over TCP.

pub mod hello;
