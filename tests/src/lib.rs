//! End-to-end tests of the rpc framework across its crates, over real sockets on 127.0.0.1 with ports the OS
//! assigns. The tests live in `tests/tests/`; this library holds what they share: a `Lab` service whose methods
//! exercise each behaviour under test, helpers to serve it (in this process or, as the `lab-server` binary,
//! in a child process a test can kill or stop), and registries with registered instances.
//!
//! # Layout
//! - [`lab`]: the `Lab` service, its implementation and its observable state.
//! - [`serve`]: starting and stopping servers on 127.0.0.1.
//! - [`cluster`]: registries and registered instances of the `Where` service.
//! - [`calc`]: registered instances of the examples' `Calc` service, each answer naming its instance.
//! - [`peer`]: a raw connection (to a server, or accepted from a client) that sends hand-made frames or garbage
//!   and reads the other side's frames back; the process's peak resident memory.
//! - [`certs`]: a CA, server and client certificates made at test time (rcgen).
//! - [`spans`]: a tracing layer that keeps every closed span, for tests of the spans of calls.
//! - [`garbage`]: hostile raw connections (bytes no client should send) and what the server must answer.
//! - [`process`]: the `lab-server` binary (`src/bin/lab-server.rs`) as a child process, killed on drop.
//! - [`http`]: a plain HTTP/1.1 exchange with the headers a test chooses.
//! - [`prom`]: reading the Prometheus text format, a plain HTTP `GET`, and `promtool check metrics`.
//! - [`feed`]: the `Feed` service, one method of each kind of stream.
//! - [`store`]: the `Store` service, whose instances serve, stall, fail or answer slowly as a test says.
//! - [`webdriver`]: a minimal W3C WebDriver client that drives a headless Chromium through chromedriver.
//! - [`etcd`]: real etcd members and clusters (Debian's `etcd-server`) on 127.0.0.1, killed and removed on drop,
//!   and reads of their keys through etcd's JSON gateway.

pub mod calc;
pub mod certs;
pub mod cluster;
pub mod etcd;
pub mod feed;
pub mod garbage;
pub mod http;
pub mod lab;
pub mod peer;
pub mod process;
pub mod prom;
pub mod serve;
pub mod spans;
pub mod store;
pub mod webdriver;
