//! [`Drain`]: once the server starts to shut down, calls that arrive are refused with `Unavailable` (certainly
//! not processed, so a client may retry them elsewhere) while those in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rpc_codec::Status;

use super::super::response::Response;
use super::{Head, Intercept};

/// Refuses every call once the server drains.
#[derive(Debug)]
pub(crate) struct Drain {
    draining: Arc<AtomicBool>,
}

impl Drain {
    /// Refuses calls once `draining` is set.
    pub(crate) fn new(draining: Arc<AtomicBool>) -> Drain {
        Drain { draining }
    }
}

impl Intercept for Drain {
    type State = ();

    #[inline]
    fn before(&self, _: &mut Head) -> Result<(), Response> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Response::error(
                Status::Unavailable,
                "the server is draining; this call was not processed",
            ));
        }
        Ok(())
    }
}
