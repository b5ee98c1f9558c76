//! `CallOptions`: what a caller may set per call (deadline, metadata), carried by a client stub.

use core::time::Duration;

use rpc_codec::Metadata;

/// Per-call settings: the deadline and the metadata sent with each call. A stub carries them
/// (`CalcClient::with_deadline`, `with_metadata`); cloning is cheap.
///
/// ```
/// use std::time::Duration;
/// let options = rpc_core::CallOptions::default().deadline(Duration::from_millis(250));
/// assert_eq!(options.deadline_or(Duration::from_secs(10)), Duration::from_millis(250));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    deadline: Option<Duration>,
    metadata: Metadata,
}

impl CallOptions {
    /// These options with a deadline: the time a call may take, from its start.
    pub fn deadline(mut self, deadline: Duration) -> CallOptions {
        self.deadline = Some(deadline);
        self
    }

    /// These options with metadata sent with each call.
    pub fn metadata(mut self, metadata: Metadata) -> CallOptions {
        self.metadata = metadata;
        self
    }

    /// The deadline set here, or `default` (the client's).
    pub fn deadline_or(&self, default: Duration) -> Duration {
        self.deadline.unwrap_or(default)
    }

    /// The metadata sent with each call.
    pub fn metadata_ref(&self) -> &Metadata {
        &self.metadata
    }
}
