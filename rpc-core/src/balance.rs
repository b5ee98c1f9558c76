//! Load balancing, as the client sees it: a [`Balance`] picks the instance for each call and hears how the call
//! went; a [`Discover`] makes one for a service. `rpc-registry` implements both (smooth weighted round-robin over
//! the instances its discovery watches); a balanced [`crate::Client`] uses them.

use std::sync::Arc;

/// How a call to an instance went, as feedback to the [`Balance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The instance answered (a value, an application error, or a refusal of a bad call).
    Success,
    /// The instance failed the call (deadline exceeded, an internal error, overload).
    Failure,
    /// The instance could not be reached, or its connection dropped, or it is draining: skip it for now.
    Unreachable,
}

/// Picks instances for calls and learns from their outcomes.
pub trait Balance: Send + Sync + 'static {
    /// The address of the instance for the next call, not one in `skip` (instances this call already tried),
    /// or `None` if no instance is left.
    fn pick(&self, skip: &[Arc<str>]) -> Option<Arc<str>>;

    /// How a call to `address` went.
    fn report(&self, address: &str, outcome: Outcome);
}

/// Makes a [`Balance`] for the instances of a service.
pub trait Discover {
    /// A balancer over the current instances of `service`, kept up to date.
    fn balancer(&self, service: &str) -> Arc<dyn Balance>;
}

impl<T: Discover + ?Sized> Discover for &T {
    fn balancer(&self, service: &str) -> Arc<dyn Balance> {
        (**self).balancer(service)
    }
}
