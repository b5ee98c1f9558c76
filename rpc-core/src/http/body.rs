//! A request's body, the call's arguments in JSON: read whole, but never more than the limit (a declared
//! `Content-Length` over it is refused before a byte is read; a chunked body is cut off at the first byte past
//! it), and within its time: the body timeout, or the call's deadline if that comes first.

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use rpc_codec::Status;
use tokio::time::{Duration, Instant};

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Its length, declared or as it came, is over the limit.
    #[error("the body is {len} bytes, over the limit of {max} (max_body_len)")]
    Declared { len: u64, max: usize },
    /// More bytes came than the limit.
    #[error("the body is over the limit of {max} bytes (max_body_len)")]
    TooLarge { max: usize },
    /// It did not come within the body timeout.
    #[error("the body did not arrive within {0:?} (body_timeout)")]
    Slow(Duration),
    /// It did not come before the call's deadline.
    #[error("the body did not arrive before the call's deadline")]
    Deadline,
    /// The connection failed while it came.
    #[error("the body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    /// The HTTP status and the call status it is answered with.
    pub(crate) fn statuses(&self) -> (u16, Status) {
        match self {
            BodyError::Declared { .. } | BodyError::TooLarge { .. } => {
                (413, Status::ResourceExhausted)
            }
            BodyError::Slow(_) => (408, Status::DeadlineExceeded),
            BodyError::Deadline => (504, Status::DeadlineExceeded),
            BodyError::Read(_) => (400, Status::InvalidArgument),
        }
    }
}

/// Reads `body` whole: at most `max` bytes, before `timeout` from now and before `deadline`.
pub(crate) async fn read(
    body: Incoming,
    max: usize,
    timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Bytes, BodyError> {
    if let Some(len) = body.size_hint().exact()
        && len > max as u64
    {
        return Err(BodyError::Declared { len, max });
    }
    let slow = Instant::now() + timeout;
    let (until, late) = match deadline {
        Some(at) if at < slow => (at, BodyError::Deadline),
        _ => (slow, BodyError::Slow(timeout)),
    };
    match tokio::time::timeout_at(until, Limited::new(body, max).collect()).await {
        Err(_) => Err(late),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge { max }),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}
