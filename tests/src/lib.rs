//! End-to-end tests of the rpc framework across its crates, over real sockets on 127.0.0.1 with ports the OS
//! assigns. The tests live in `tests/tests/`; this library holds what they share: a `Lab` service whose methods
//! exercise each behaviour under test, and helpers to serve it.
//!
//! # Layout
//! - [`lab`]: the `Lab` service, its implementation and its observable state.
//! - [`serve`]: starting and stopping servers on 127.0.0.1.
//! - [`cluster`]: registries and registered instances of the `Where` service.
//! - [`peer`]: a raw connection that sends hand-made frames or garbage and reads the server's frames back.
//! - [`certs`]: a CA, server and client certificates made at test time (rcgen).

pub mod certs;
pub mod cluster;
pub mod lab;
pub mod peer;
pub mod serve;
