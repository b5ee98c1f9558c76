//! The status-code table: the one-byte code an `Error` (or `GoAway`) frame carries, named as in gRPC.

use core::fmt;

/// Why a call failed, as one byte on the wire (`docs/PROTOCOL.md`, "Status codes").
///
/// The numbering follows gRPC, so operators read the same names everywhere. A receiver that meets a code it
/// does not know treats it as [`Status::Unknown`] (see [`Status::from_u8`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Not an error. Only `GoAway` may carry it (a planned drain); an `Error` frame never does.
    Ok = 0,
    /// The caller cancelled the call.
    Cancelled = 1,
    /// An error with no better code, and any code this peer does not know.
    Unknown = 2,
    /// The request was malformed: its payload did not decode as the method's arguments.
    InvalidArgument = 3,
    /// The deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// A named entity was not found.
    NotFound = 5,
    /// An entity the caller tried to create already exists.
    AlreadyExists = 6,
    /// The caller is known but not allowed to do this.
    PermissionDenied = 7,
    /// A limit was reached: frame size, calls in flight, connections, memory.
    ResourceExhausted = 8,
    /// The system is not in a state that allows the operation.
    FailedPrecondition = 9,
    /// The operation was aborted, typically by a concurrency conflict.
    Aborted = 10,
    /// A value was outside its valid range.
    OutOfRange = 11,
    /// The server does not implement this method.
    Unimplemented = 12,
    /// An invariant broke on the server (a handler panicked, for instance).
    Internal = 13,
    /// The service cannot be reached or is draining; the call was not processed and may be retried.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The caller did not present valid credentials.
    Unauthenticated = 16,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 17] = [
        Status::Ok,
        Status::Cancelled,
        Status::Unknown,
        Status::InvalidArgument,
        Status::DeadlineExceeded,
        Status::NotFound,
        Status::AlreadyExists,
        Status::PermissionDenied,
        Status::ResourceExhausted,
        Status::FailedPrecondition,
        Status::Aborted,
        Status::OutOfRange,
        Status::Unimplemented,
        Status::Internal,
        Status::Unavailable,
        Status::DataLoss,
        Status::Unauthenticated,
    ];

    /// The status for a wire byte; a code outside the table becomes [`Status::Unknown`].
    ///
    /// ```
    /// use rpc_codec::Status;
    /// assert_eq!(Status::from_u8(14), Status::Unavailable);
    /// assert_eq!(Status::from_u8(200), Status::Unknown);
    /// ```
    pub const fn from_u8(code: u8) -> Status {
        if (code as usize) < Status::ALL.len() {
            Status::ALL[code as usize]
        } else {
            Status::Unknown
        }
    }

    /// The wire byte of this status.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The name used in logs and messages, in `snake_case` (`resource_exhausted`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Cancelled => "cancelled",
            Status::Unknown => "unknown",
            Status::InvalidArgument => "invalid_argument",
            Status::DeadlineExceeded => "deadline_exceeded",
            Status::NotFound => "not_found",
            Status::AlreadyExists => "already_exists",
            Status::PermissionDenied => "permission_denied",
            Status::ResourceExhausted => "resource_exhausted",
            Status::FailedPrecondition => "failed_precondition",
            Status::Aborted => "aborted",
            Status::OutOfRange => "out_of_range",
            Status::Unimplemented => "unimplemented",
            Status::Internal => "internal",
            Status::Unavailable => "unavailable",
            Status::DataLoss => "data_loss",
            Status::Unauthenticated => "unauthenticated",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status by its name in any case, with or without `_` or `-` (`data_loss`, `DataLoss`, `data-loss`), or by
/// its code (`15`), as operators write them in flags and rule files.
///
/// ```
/// use rpc_codec::Status;
/// assert_eq!("resource_exhausted".parse(), Ok(Status::ResourceExhausted));
/// assert_eq!("DataLoss".parse(), Ok(Status::DataLoss));
/// assert_eq!("14".parse(), Ok(Status::Unavailable));
/// assert!("nope".parse::<Status>().unwrap_err().to_string().starts_with("expected a status name (ok, cancelled,"));
/// ```
impl core::str::FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Status, UnknownStatus> {
        let squash = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
        let found = match text.parse::<u8>() {
            Ok(code) => Status::ALL.get(usize::from(code)).copied(),
            Err(_) => Status::ALL
                .into_iter()
                .find(|s| squash(s.as_str()) == squash(text)),
        };
        found.ok_or_else(|| UnknownStatus {
            found: text
                .chars()
                .take(64)
                .flat_map(char::escape_default)
                .collect(),
        })
    }
}

/// A text that names no status (escaped, and cut to 64 characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a status name ({}) or code 0 to 16, found `{found}`",
    names()
)]
pub struct UnknownStatus {
    found: String,
}

fn names() -> String {
    Status::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn every_code_maps_back_to_itself() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.code() as usize, i);
            assert_eq!(Status::from_u8(s.code()), *s);
        }
    }

    #[test]
    fn codes_outside_the_table_read_as_unknown() {
        for code in 17..=255u8 {
            assert_eq!(Status::from_u8(code), Status::Unknown);
        }
    }
}
