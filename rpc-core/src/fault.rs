//! [`Fault`]: what to inject into calls, and into which, for testing how a system copes with slow or failing
//! calls: a delay and an abort (a status and message), each for a percentage of the calls, drawn apart per
//! call; the calls of the services or methods named (every call, if none is) that carry the metadata entries
//! named. The server's layer ([`crate::server::layer::InjectFault`]: the handler is not run for an aborted
//! call) and the client's ([`crate::client::layer::InjectFault`]: an aborted call is not sent) are one
//! [`InjectFault`], with a `Service` impl on each side. A call drawn for both is delayed, then aborted, as
//! Envoy's fault filter does.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rpc_codec::{Metadata, Status};
use tower_layer::Layer;

use crate::method::MethodInfo;

/// The status of an abort, unless another is given: what an unreachable or overloaded server answers.
pub const DEFAULT_ABORT_STATUS: Status = Status::Unavailable;

/// The message of an abort, unless another is given.
pub const DEFAULT_ABORT_MESSAGE: &str = "a fault was injected";

/// A delay for a percentage of calls.
#[derive(Clone, Debug, PartialEq)]
pub struct Delay {
    /// How long.
    pub duration: Duration,
    /// The share of calls delayed, `0.0..=100.0`.
    pub percent: f64,
}

/// An abort for a percentage of calls: the call fails with `status` and `message`.
#[derive(Clone, Debug, PartialEq)]
pub struct Abort {
    /// The status (`Ok` is no failure: it becomes `Unknown`).
    pub status: Status,
    /// The message.
    pub message: Cow<'static, str>,
    /// The share of calls aborted, `0.0..=100.0`.
    pub percent: f64,
}

/// The faults of a layer, and the calls they apply to. `Default` injects nothing.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::fault::Fault;
/// use rpc_core::Status;
///
/// // Calc.add called with `x-chaos: on`: a quarter delayed by 200 ms, a tenth failing Unavailable.
/// let fault = Fault::new()
///     .delay(Duration::from_millis(200), 25.0)
///     .abort(Status::Unavailable, "injected: Calc is down", 10.0)
///     .methods(["Calc.add"])
///     .metadata("x-chaos", "on");
/// let server_side = rpc_core::server::layer::InjectFault::new(fault.clone());
/// let client_side = rpc_core::client::layer::InjectFault::new(fault);
/// # let _ = (rpc_core::Server::builder().layer(server_side), rpc_core::ClientConfig::default().layer(client_side));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fault {
    /// The delay, if any. Default: none.
    pub delay: Option<Delay>,
    /// The abort, if any. Default: none.
    pub abort: Option<Abort>,
    /// The services whose calls it applies to (with [`Fault::methods`]: the calls of either). Default: none,
    /// which with no method named means every call.
    pub services: Vec<String>,
    /// The methods (`"Service.method"`) it applies to. Default: none.
    pub methods: Vec<String>,
    /// Entries a call's metadata must carry (each key with this value) for it to apply. Default: none.
    pub metadata: Vec<(String, String)>,
}

/// What one call gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Then fail with this status and message.
    pub abort: Option<(Status, Cow<'static, str>)>,
}

impl Injected {
    /// Nothing: the call goes on as it is.
    pub fn is_nothing(&self) -> bool {
        self.delay.is_none() && self.abort.is_none()
    }
}

impl Fault {
    /// Injects nothing yet, into every call.
    pub fn new() -> Fault {
        Fault::default()
    }

    /// Delays `percent` of the calls by `duration`.
    pub fn delay(self, duration: Duration, percent: f64) -> Fault {
        Fault {
            delay: Some(Delay { duration, percent }),
            ..self
        }
    }

    /// Fails `percent` of the calls with `status` and `message`.
    pub fn abort(
        self,
        status: Status,
        message: impl Into<Cow<'static, str>>,
        percent: f64,
    ) -> Fault {
        let message = message.into();
        Fault {
            abort: Some(Abort {
                status,
                message,
                percent,
            }),
            ..self
        }
    }

    /// Applies to the calls of `services` too.
    pub fn services<I: IntoIterator<Item = N>, N: Into<String>>(mut self, services: I) -> Fault {
        self.services.extend(services.into_iter().map(Into::into));
        self
    }

    /// Applies to the calls of `methods` (`"Service.method"`) too.
    pub fn methods<I: IntoIterator<Item = N>, N: Into<String>>(mut self, methods: I) -> Fault {
        self.methods.extend(methods.into_iter().map(Into::into));
        self
    }

    /// Applies only to calls whose metadata has `key` with `value` (and the other entries named).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Fault {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Whether a call of `method` that carries `metadata` is one the fault applies to.
    pub fn applies_to(&self, method: &MethodInfo, metadata: &Metadata) -> bool {
        let named = self.services.is_empty() && self.methods.is_empty()
            || self.services.iter().any(|s| s == method.service)
            || self
                .methods
                .iter()
                .any(|m| m.split_once('.') == Some((method.service, method.name)));
        named
            && self
                .metadata
                .iter()
                .all(|(key, value)| metadata.get(key) == Some(value.as_bytes()))
    }

    /// What a call of `method` carrying `metadata` gets, drawn at random ([`Injected::is_nothing`] for most
    /// calls, or for those the fault does not apply to).
    pub fn draw(&self, method: &MethodInfo, metadata: &Metadata) -> Injected {
        self.draw_with(method, metadata, crate::random::fraction)
    }

    /// [`Fault::draw`] with the fractions of `roll` (in `[0, 1)`).
    fn draw_with(
        &self,
        method: &MethodInfo,
        metadata: &Metadata,
        mut roll: impl FnMut() -> f64,
    ) -> Injected {
        if (self.delay.is_none() && self.abort.is_none()) || !self.applies_to(method, metadata) {
            return Injected::default();
        }
        // `percent` of 100 or more always holds (a roll is under 1); 0, less, or NaN never.
        let mut hit = |percent: f64| percent > 0.0 && roll() * 100.0 < percent;
        let delay = self
            .delay
            .as_ref()
            .filter(|d| hit(d.percent))
            .map(|d| d.duration);
        let abort = self.abort.as_ref().filter(|a| hit(a.percent)).map(|a| {
            let status = match a.status {
                Status::Ok => Status::Unknown,
                other => other,
            };
            (status, a.message.clone())
        });
        Injected { delay, abort }
    }
}

/// The fault injection layer, on a server ([`crate::ServerBuilder::layer`]: the handler is not run for an aborted
/// call) or a client ([`crate::ClientConfig::layer`]: an aborted call is not sent, and fails marked not
/// processed).
///
/// ```
/// use std::time::Duration;
/// use rpc_core::fault::{Fault, InjectFault};
/// use rpc_core::Status;
///
/// // Every call of Calc delayed by 100 ms on the server.
/// let slow = InjectFault::new(Fault::new().services(["Calc"]).delay(Duration::from_millis(100), 100.0));
/// # let _ = rpc_core::Server::builder().layer(slow);
/// // Half the calls fail Unavailable without leaving the client.
/// let flaky = InjectFault::new(Fault::new().abort(Status::Unavailable, "injected", 50.0));
/// let config = rpc_core::ClientConfig::default().layer(flaky);
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct InjectFault {
    fault: Arc<Fault>,
}

impl InjectFault {
    /// Injects `fault`.
    pub fn new(fault: Fault) -> InjectFault {
        InjectFault {
            fault: Arc::new(fault),
        }
    }

    /// What it injects.
    pub fn fault(&self) -> &Fault {
        &self.fault
    }
}

impl<S> Layer<S> for InjectFault {
    type Service = FaultInjected<S>;

    fn layer(&self, inner: S) -> FaultInjected<S> {
        FaultInjected {
            inner,
            fault: Arc::clone(&self.fault),
        }
    }
}

/// The service of [`InjectFault`]: a tower `Service` of the server's requests (`server/layer/fault.rs`) and of
/// the client's (`client/layer/fault.rs`).
#[derive(Clone, Debug)]
pub struct FaultInjected<S> {
    pub(crate) inner: S,
    pub(crate) fault: Arc<Fault>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: MethodInfo = MethodInfo {
        service: "Calc",
        name: "add",
        id: rpc_codec::method_id("Calc", "add"),
        idempotent: false,
    };
    const PING: MethodInfo = MethodInfo {
        service: "Health",
        name: "ping",
        id: rpc_codec::method_id("Health", "ping"),
        idempotent: true,
    };

    #[test]
    fn a_fault_applies_to_the_services_and_methods_named_with_the_metadata_named() {
        let none = Metadata::new();
        let chaos = Metadata::from_pairs([("x-chaos", "on")]).unwrap();
        let other = Metadata::from_pairs([("x-chaos", "off")]).unwrap();
        assert!(
            Fault::new().applies_to(&ADD, &none),
            "every call by default"
        );
        let by_method = Fault::new().methods(["Calc.add"]);
        assert!(by_method.applies_to(&ADD, &none) && !by_method.applies_to(&PING, &none));
        let by_service = Fault::new().services(["Health"]);
        assert!(!by_service.applies_to(&ADD, &none) && by_service.applies_to(&PING, &none));
        let both = by_method.clone().services(["Health"]);
        assert!(both.applies_to(&ADD, &none) && both.applies_to(&PING, &none));
        let tagged = by_method.metadata("x-chaos", "on");
        assert!(tagged.applies_to(&ADD, &chaos));
        assert!(!tagged.applies_to(&ADD, &other) && !tagged.applies_to(&ADD, &none));
        assert!(!tagged.applies_to(&PING, &chaos));
    }

    #[test]
    fn percentages_of_0_and_100_are_never_and_always_and_between_is_drawn() {
        let none = Metadata::new();
        let always = Fault::new().delay(Duration::from_millis(5), 100.0).abort(
            Status::Unavailable,
            "down",
            100.0,
        );
        let drawn = always.draw_with(&ADD, &none, || 0.999_999);
        assert_eq!(drawn.delay, Some(Duration::from_millis(5)));
        assert_eq!(drawn.abort, Some((Status::Unavailable, "down".into())));
        let never =
            Fault::new()
                .delay(Duration::from_millis(5), 0.0)
                .abort(Status::Internal, "x", 0.0);
        assert!(never.draw_with(&ADD, &none, || 0.0).is_nothing());
        let nan = Fault::new().abort(Status::Internal, "x", f64::NAN);
        assert!(nan.draw_with(&ADD, &none, || 0.0).is_nothing());
        // 30%: a roll under 0.3 hits, one at or over misses; the delay and the abort draw apart.
        let some = Fault::new().delay(Duration::from_millis(5), 30.0).abort(
            Status::Ok,
            "ok is no failure",
            30.0,
        );
        let mut rolls = [0.29, 0.3].into_iter();
        let drawn = some.draw_with(&ADD, &none, || rolls.next().unwrap());
        assert_eq!(drawn.delay, Some(Duration::from_millis(5)));
        assert_eq!(drawn.abort, None);
        let drawn = some.draw_with(&ADD, &none, || 0.1);
        assert_eq!(drawn.abort.map(|(s, _)| s), Some(Status::Unknown));
    }

    /// The random draw, counted: 20% of 10,000 calls is 2,000, and a fair draw lands within 1,700..2,300 all
    /// but never (7 standard deviations either side).
    #[test]
    fn a_percentage_is_about_that_share_of_calls() {
        let fault = Fault::new().abort(Status::Unavailable, "down", 20.0);
        let none = Metadata::new();
        let aborted = (0..10_000)
            .filter(|_| fault.draw(&ADD, &none).abort.is_some())
            .count();
        assert!((1700..2300).contains(&aborted), "{aborted} of 10000");
    }
}
