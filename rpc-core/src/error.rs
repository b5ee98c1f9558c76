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
/// assert!(e.is_retryable());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    code: Status,
    message: Cow<'static, str>,
}

impl RpcError {
    /// An error with this status and message.
    pub fn new(code: Status, message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
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

    /// Whether the call was certainly not processed, so that sending it again cannot do it twice
    /// ([`Status::Unavailable`]).
    pub fn is_retryable(&self) -> bool {
        self.code == Status::Unavailable
    }

    pub(crate) fn unavailable(message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError::new(Status::Unavailable, message)
    }

    pub(crate) fn internal(message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError::new(Status::Internal, message)
    }
}
