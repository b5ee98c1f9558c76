//! [`InFlight`]: a call that arrives while [`crate::ServerConfig::max_in_flight_per_connection`] calls of its
//! connection are under way is refused with `ResourceExhausted` at once, so that one client cannot take all of
//! a server's memory with calls that wait. (Calls answered as soon as they are read never wait, so only those
//! left running count.)

use rpc_codec::Status;

use super::super::response::Response;
use super::{Head, Intercept};

/// Refuses calls past the limit of one connection.
#[derive(Debug)]
pub(crate) struct InFlight {
    limit: usize,
}

impl InFlight {
    pub(crate) fn new(limit: usize) -> InFlight {
        InFlight { limit }
    }
}

impl Intercept for InFlight {
    type State = ();

    #[inline]
    fn before(&self, head: &mut Head) -> Result<(), Response> {
        if head.in_flight >= self.limit {
            let message = format!(
                "{} calls in flight on this connection, the limit",
                self.limit
            );
            return Err(Response::error(Status::ResourceExhausted, message));
        }
        Ok(())
    }
}
