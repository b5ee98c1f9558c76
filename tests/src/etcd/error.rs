//! Why etcd could not be started or asked ([`EtcdError`]), and what a test does when etcd is missing: skip,
//! saying so, unless [`REQUIRE_ETCD_ENV`] is `1`.

use std::fmt;
use std::time::Duration;

use super::member::{ETCD_BIN_ENV, PORT_TAKEN};

/// Set to `1` (as CI does) to make a missing etcd a failure instead of a reason to skip.
pub const REQUIRE_ETCD_ENV: &str = "RPC_REQUIRE_ETCD";

/// Why etcd could not be started or asked.
#[derive(Debug)]
pub enum EtcdError {
    /// The etcd binary is missing; the test may skip unless [`required`].
    NotInstalled(String),
    /// A directory, a log or a process could not be made, or a member could not be reached.
    Io(String),
    /// A member exited before the cluster was ready.
    Exited {
        /// The member's name, `m0`, `m1`, ...
        member: String,
        /// How it exited.
        status: String,
        /// The last lines of its log, at most [`LOG_TAIL_LINES`](super::LOG_TAIL_LINES).
        log: String,
    },
    /// The members did not agree on a leader within the bound.
    NotReady {
        /// What was awaited.
        what: String,
        /// The bound.
        limit: Duration,
        /// What the members said last.
        seen: String,
        /// The last lines of each running member's log.
        log: String,
    },
    /// An answer that is not a 200 with the JSON expected, or an endpoint that is not `http://IP:PORT`.
    Answer(String),
}

impl EtcdError {
    /// Whether this says that the etcd binary is missing.
    pub fn is_not_installed(&self) -> bool {
        matches!(self, EtcdError::NotInstalled(_))
    }

    /// Whether a member exited because one of the ports picked for it was taken meanwhile.
    pub(super) fn is_port_taken(&self) -> bool {
        matches!(self, EtcdError::Exited { log, .. } if log.contains(PORT_TAKEN))
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::NotInstalled(what) => write!(
                f,
                "etcd is not installed: {what}; install Debian's `etcd-server` (apt-get install etcd-server) \
                 or set {ETCD_BIN_ENV} to an etcd 3.4 binary"
            ),
            EtcdError::Io(what) => write!(f, "etcd i/o: {what}"),
            EtcdError::Exited {
                member,
                status,
                log,
            } => write!(
                f,
                "etcd member {member} exited ({status}) before the cluster was ready; the end of its log:\n{log}"
            ),
            EtcdError::NotReady {
                what,
                limit,
                seen,
                log,
            } => write!(
                f,
                "{what}: not within {limit:?}; last seen: {seen}; the end of the logs:\n{log}"
            ),
            EtcdError::Answer(what) => write!(f, "unexpected answer from etcd: {what}"),
        }
    }
}

impl std::error::Error for EtcdError {}

/// Whether [`REQUIRE_ETCD_ENV`] is `1`: a missing etcd must fail the test.
pub fn required() -> bool {
    std::env::var(REQUIRE_ETCD_ENV).as_deref() == Ok("1")
}

/// `started`, or `None` with a line on stderr when etcd is missing and not required.
pub(super) fn or_skip<T>(started: Result<T, EtcdError>) -> Option<T> {
    match started {
        Ok(started) => Some(started),
        Err(e) if e.is_not_installed() && !required() => {
            let test = std::thread::current().name().unwrap_or("test").to_owned();
            eprintln!("skipping {test}: {e} ({REQUIRE_ETCD_ENV}=1 makes this a failure)");
            None
        }
        Err(e) => panic!("cannot start etcd: {e}"),
    }
}
