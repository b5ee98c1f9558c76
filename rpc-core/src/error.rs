//! `RpcError`: why a call did not produce the method's result. It carries a status code from the protocol's
//! table and a message; an application's own error travels apart, as the method's `Err` value.

use std::borrow::Cow;

use rpc_codec::Status;

/// A call failed in transport or in the runtime: the status code of `docs/PROTOCOL.md` section 6 and a message.
///
/// A method that returns `Result<U, E>` gives its caller `Result<Result<U, E>, RpcError>`: the outer error is
/// this one, the inner `E` is the application's own, so the two are never confused.
///
/// ```
/// use rpc_core::{RpcError, Status};
/// let e = RpcError::new(Status::Unavailable, "connection closed");
/// assert_eq!(e.to_string(), "unavailable: connection closed");
/// assert!(!e.is_not_processed(), "a connection that closed mid-call leaves the call's fate unknown");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    code: Status,
    message: Cow<'static, str>,
    /// The call certainly did not run on the server.
    not_processed: bool,
}

impl RpcError {
    /// An error with this status and message.
    pub fn new(code: Status, message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            not_processed: false,
        }
    }

    /// An error for a call that certainly did not run: it never left this client (no connection could be
    /// made, or the connection closed before the request was written), or the server refused it unprocessed.
    pub fn not_processed(code: Status, message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError {
            not_processed: true,
            ..RpcError::new(code, message)
        }
    }

    /// The status code.
    pub fn code(&self) -> Status {
        self.code
    }

    /// The message, which says what was expected and what happened.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the call certainly did not run on the server, so that sending it again, to this server or
    /// another, cannot run it twice. A balanced client retries such calls for any method; after other
    /// `Unavailable` errors (a connection lost mid-call) it retries only `#[idempotent]` methods.
    pub fn is_not_processed(&self) -> bool {
        self.not_processed
    }

    /// This error, marked as certainly not processed.
    pub(crate) fn unprocessed(self) -> RpcError {
        RpcError {
            not_processed: true,
            ..self
        }
    }

    pub(crate) fn unavailable(message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError::new(Status::Unavailable, message)
    }

    pub(crate) fn internal(message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError::new(Status::Internal, message)
    }
}
