//! How `call` and `describe` end, as grpcurl's exit codes do: 0 when the method answered its value, 1 when it
//! answered its own error, 2 when the command line cannot be acted on (nothing is called then), 3 when the
//! output cannot be written, and 64 plus the status code when the call (or the describe before it) failed.
//! [`CallError`] is each failure, its message escaped and bounded ([`super::escape()`]); [`EXIT_CODES`] is the
//! table `--help` shows.

use rpc_core::{RpcError, Status};

use super::escape::{field, line};

/// The exit code of a call that answered its value: 0.
pub const EXIT_VALUE: u8 = 0;
/// The exit code of a call whose method answered its own error: 1.
pub const EXIT_APP_ERROR: u8 = 1;
/// The exit code of a command line that cannot be acted on: 2.
pub const EXIT_USAGE: u8 = 2;
/// The exit code when the output cannot be written: 3.
pub const EXIT_OUTPUT: u8 = 3;
/// A call that failed with status `N` exits `64 + N` (65 to 80).
pub const EXIT_STATUS_BASE: u8 = 64;

/// The exit codes, as `call --help` and `describe --help` show them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0      the method answered its value (printed as JSON on stdout)
  1      the method answered its own error: {\"error\": TYPE, \"detail\": JSON} on stdout
  2      the command cannot be acted on, and nothing was called: the arguments are not a JSON object, a
         --metadata pair or an address is bad, the service does not have the method, or it streams
  3      the output could not be written
  64+N   the call failed with status N, said on stderr as `STATUS: MESSAGE`:
         65 cancelled            66 unknown              67 invalid_argument     68 deadline_exceeded
         69 not_found            70 already_exists       71 permission_denied    72 resource_exhausted
         73 failed_precondition  74 aborted              75 out_of_range         76 unimplemented
         77 internal             78 unavailable          79 data_loss            80 unauthenticated";

/// Why `call` or `describe` did not print an answer. Each message says what was expected and what came, and
/// escapes and bounds what it quotes.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// `call`'s method is not `SERVICE.METHOD`.
    #[error(
        "expected SERVICE.METHOD, the method after the last dot (Calc.add, calc.v1.Calc.add), got `{}`",
        field(.0)
    )]
    MethodName(String),
    /// The arguments are not a JSON object.
    #[error(
        "expected the arguments as a JSON object keyed by their names ('{{\"a\": 2, \"b\": 3}}'), got {}",
        line(.0)
    )]
    Arguments(String),
    /// A flag's value cannot be used (a `--metadata` pair, a token, a TLS file, the deadline).
    #[error("{flag}: {}", line(.problem))]
    Flag {
        /// The flag, `--metadata` say.
        flag: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// An address (`--server`, `--registry`) that does not parse or resolve.
    #[error("{flag} {}: {}", field(.given), line(.problem))]
    Address {
        /// `--server` or `--registry`.
        flag: &'static str,
        /// The address, as given.
        given: String,
        /// Why it cannot be used.
        problem: String,
    },
    /// The server does not serve the service; its own words name those it serves.
    #[error("{}", line(.0))]
    NoService(String),
    /// The service has no method of that name.
    #[error(
        "expected a method of {}, got `{}`; it has {}",
        field(.service),
        field(.method),
        list(.methods)
    )]
    NoMethod {
        /// The service.
        service: String,
        /// The method asked for.
        method: String,
        /// The service's methods.
        methods: Vec<String>,
    },
    /// The method streams: a call in JSON cannot carry a stream.
    #[error(
        "{}.{} takes or returns a stream ({kind}): it cannot be called in JSON, only unary methods can",
        field(.service),
        field(.method)
    )]
    Streaming {
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// How it streams: `server stream`, `client stream` or `bidirectional stream`.
        kind: &'static str,
    },
    /// `describe` without a service, through a registry: which server's services?
    #[error(
        "describe without SERVICE lists the services of one server: expected --server ADDR, got --registry \
         (`rpc-registry ls` lists the services registered)"
    )]
    WhichServer,
    /// The call, or the describe before it, failed: said as `STATUS: MESSAGE`.
    #[error("{}: {}", .0.code(), line(.0.message()))]
    Failed(#[source] RpcError),
    /// The output could not be written (a closed pipe, say).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CallError {
    /// The process's exit code for this failure: 2 for the command line, 3 for the output, 64 plus the status
    /// code for a failed call.
    pub fn exit_code(&self) -> u8 {
        match self {
            CallError::Failed(e) => status_exit_code(e.code()),
            CallError::Output(_) => EXIT_OUTPUT,
            _ => EXIT_USAGE,
        }
    }

    /// A failed call: `status: message`.
    pub(super) fn failed(code: Status, message: impl Into<String>) -> CallError {
        CallError::Failed(RpcError::new(code, message.into()))
    }
}

/// The exit code of a call that failed with `status`: 64 plus its code.
///
/// ```
/// use rpc_core::Status;
/// assert_eq!(rpc_registry::cli::status_exit_code(Status::DeadlineExceeded), 68);
/// assert_eq!(rpc_registry::cli::status_exit_code(Status::Unauthenticated), 80);
/// ```
pub fn status_exit_code(status: Status) -> u8 {
    EXIT_STATUS_BASE + status as u8
}

/// Names, each escaped and cut, separated by commas; cut after 100 of them.
fn list(names: &[String]) -> String {
    const MAX_NAMES: usize = 100;
    let mut shown: Vec<String> = names
        .iter()
        .take(MAX_NAMES)
        .map(|n| field(n).into_owned())
        .collect();
    if names.is_empty() {
        return "no method".to_owned();
    }
    if names.len() > MAX_NAMES {
        shown.push(format!("and {} more", names.len() - MAX_NAMES));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_status_beside_its_exit_code() {
        for status in Status::ALL.into_iter().skip(1) {
            let entry = format!("{} {}", status_exit_code(status), status.as_str());
            assert!(EXIT_CODES.contains(&entry), "{entry}");
        }
    }

    #[test]
    fn a_failure_says_its_status_and_escapes_the_peers_words() {
        let e = CallError::Failed(RpcError::new(Status::DeadlineExceeded, "slow\x1b[2J"));
        assert_eq!(e.to_string(), "deadline_exceeded: slow\\x1b[2J");
        assert_eq!(e.exit_code(), 68);
        let e = CallError::NoMethod {
            service: "Calc".into(),
            method: "mul".into(),
            methods: vec!["add".into(), "d\niv".into()],
        };
        assert_eq!(
            e.to_string(),
            "expected a method of Calc, got `mul`; it has add, d\\niv"
        );
        assert_eq!(e.exit_code(), EXIT_USAGE);
    }
}
