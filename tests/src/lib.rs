//! End-to-end tests of the rpc framework across its crates, over real sockets on 127.0.0.1 with ports the OS
//! assigns. The tests live in `tests/tests/`; this library holds what they share.
//!
//! # Layout
//! Filled as the runtime and the registry land.
