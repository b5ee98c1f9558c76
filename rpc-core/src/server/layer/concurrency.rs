//! [`ConcurrencyLimit`]: at most so many calls of a method under way at once, across every connection of the
//! server; a call over its method's limit is shed at once with `ResourceExhausted` and a retry-after, before
//! its handler sees it (unlike tower's `ConcurrencyLimit`, which makes it wait). A call holds its place until
//! its answer is ready, or until its future is dropped (deadline, cancel, closed connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_codec::Status;
use tower_layer::Layer;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;
use super::only::Either;
use super::per_method::PerMethod;
use crate::ids::IdMap;
use crate::method::MethodInfo;

/// The wait a shed call asks its caller for, unless configured: long enough for a balanced client to send it
/// elsewhere and leave this server alone for a moment, short enough not to leave it idle once calls end.
pub const DEFAULT_CONCURRENCY_RETRY_AFTER: Duration = Duration::from_millis(50);

/// The settings of a [`ConcurrencyLimit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConcurrencyConfig {
    /// The most calls of each method under way at once (0 sheds them all); `None`: no limit. Default: `None`
    /// for every method.
    pub limits: PerMethod<Option<usize>>,
    /// How long a shed call asks its caller to wait before sending it again. Default:
    /// [`DEFAULT_CONCURRENCY_RETRY_AFTER`].
    pub retry_after: Duration,
}

impl Default for ConcurrencyConfig {
    fn default() -> ConcurrencyConfig {
        ConcurrencyConfig {
            limits: PerMethod::new(None),
            retry_after: DEFAULT_CONCURRENCY_RETRY_AFTER,
        }
    }
}

/// The concurrency limit layer. Its clones share the counts: keep one to read
/// [`in_flight`](ConcurrencyLimit::in_flight). Calls it sheds are counted by the server's metrics as
/// `ResourceExhausted`.
///
/// ```
/// use rpc_core::server::layer::{ConcurrencyConfig, ConcurrencyLimit, PerMethod};
///
/// // Calc.slow at most 4 at once, every other method 64.
/// let limit = ConcurrencyLimit::new(ConcurrencyConfig {
///     limits: PerMethod::new(Some(64)).method("Calc.slow", Some(4)),
///     ..ConcurrencyConfig::default()
/// });
/// # let _ = rpc_core::Server::builder().layer(limit.clone());
/// assert_eq!(limit.in_flight("Calc.slow"), 0);
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: ConcurrencyConfig,
    /// The calls under way of each method with a limit, by method id; a method's count is made when its first
    /// call comes.
    counts: RwLock<IdMap<u32, Arc<AtomicUsize>>>,
}

impl ConcurrencyLimit {
    /// A limit as `config` says.
    pub fn new(config: ConcurrencyConfig) -> ConcurrencyLimit {
        ConcurrencyLimit {
            shared: Arc::new(Shared {
                config,
                counts: RwLock::default(),
            }),
        }
    }

    /// At most `limit` calls of each method at once.
    pub fn per_method(limit: usize) -> ConcurrencyLimit {
        ConcurrencyLimit::new(ConcurrencyConfig {
            limits: PerMethod::new(Some(limit)),
            ..ConcurrencyConfig::default()
        })
    }

    /// The calls of `method` (`"Service.method"`) under way now; 0 for a method without a limit (not counted).
    pub fn in_flight(&self, method: &str) -> usize {
        let id = rpc_codec::method_id_of(method);
        crate::sync::read(&self.shared.counts)
            .get(&id)
            .map_or(0, |count| count.load(Ordering::Acquire))
    }
}

impl Shared {
    /// The count of `method`'s calls, made if it is its first call.
    fn count(&self, method: &MethodInfo) -> Arc<AtomicUsize> {
        if let Some(count) = crate::sync::read(&self.counts).get(&method.id) {
            return Arc::clone(count);
        }
        Arc::clone(
            crate::sync::write(&self.counts)
                .entry(method.id)
                .or_default(),
        )
    }
}

impl<S> Layer<S> for ConcurrencyLimit {
    type Service = ConcurrencyLimited<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimited<S> {
        ConcurrencyLimited {
            inner,
            shared: Arc::clone(&self.shared),
            counts: IdMap::default(),
        }
    }
}

/// The service of [`ConcurrencyLimit`] (one per connection).
#[derive(Clone, Debug)]
pub struct ConcurrencyLimited<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The counts this connection's calls used so far, so that only a method's first call here takes the
    /// shared map's lock.
    counts: IdMap<u32, Arc<AtomicUsize>>,
}

/// A call's place under its method's limit, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit(Arc<AtomicUsize>);

impl Permit {
    /// A place if fewer than `limit` calls hold one of `count`.
    pub(crate) fn take(count: &Arc<AtomicUsize>, limit: usize) -> Option<Permit> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(Arc::clone(count)))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A call's answer to come, holding its place under the limit until it is ready or dropped.
    #[derive(Debug)]
    pub struct Held<F> {
        #[pin]
        future: F,
        permit: Option<Permit>,
    }
}

impl<F, E> Future for Held<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ready = std::task::ready!(this.future.poll(cx));
        this.permit.take();
        Poll::Ready(ready)
    }
}

impl<S> Service<Request> for ConcurrencyLimited<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Either<std::future::Ready<Result<Response, BoxError>>, Held<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method();
        let Some(limit) = *self.shared.config.limits.get(method) else {
            return held(self.inner.call(request), None);
        };
        let count = match self.counts.get(&method.id) {
            Some(count) => count,
            None => self
                .counts
                .entry(method.id)
                .or_insert_with(|| self.shared.count(method)),
        };
        match Permit::take(count, limit) {
            Some(permit) => held(self.inner.call(request), Some(permit)),
            None => {
                tracing::debug!(%method, limit, "concurrency limit reached: call shed");
                let message =
                    format!("{method} has {limit} calls under way, its limit: this one is shed");
                let shed = Response::error(Status::ResourceExhausted, message)
                    .with_retry_after(self.shared.config.retry_after);
                Either::Left {
                    future: std::future::ready(Ok(shed)),
                }
            }
        }
    }
}

fn held<F, L>(future: F, permit: Option<Permit>) -> Either<L, Held<F>> {
    Either::Right {
        future: Held { future, permit },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::layer::test_request;
    use tokio::sync::oneshot;

    const SLOW: MethodInfo = MethodInfo {
        service: "Lab",
        name: "slow",
        id: rpc_codec::method_id("Lab", "slow"),
        idempotent: false,
    };
    const FAST: MethodInfo = MethodInfo {
        service: "Lab",
        name: "fast",
        id: rpc_codec::method_id("Lab", "fast"),
        idempotent: false,
    };

    /// A handler that answers when its test says so: each call takes the next receiver.
    fn waiting(
        gates: Vec<oneshot::Receiver<()>>,
    ) -> impl Service<
        Request,
        Response = Response,
        Error = BoxError,
        Future = impl Future<Output = Result<Response, BoxError>>,
    > {
        let gates = std::sync::Mutex::new(gates.into_iter());
        tower::service_fn(move |_: Request| {
            let gate = crate::sync::lock(&gates).next();
            async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                Ok::<_, BoxError>(Response::value_bytes(vec![1]))
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_over_its_methods_limit_is_shed_at_once_and_a_place_frees_when_a_call_ends() {
        let (open, gates): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        let [open_first, _open_second, open_fast] = <[_; 3]>::try_from(open).unwrap();
        let limit = ConcurrencyLimit::new(ConcurrencyConfig {
            limits: PerMethod::new(None).method("Lab.slow", Some(2)),
            ..ConcurrencyConfig::default()
        });
        let mut service = limit.layer(waiting(gates));
        let first = service.call(test_request(&SLOW));
        let second = service.call(test_request(&SLOW));
        assert_eq!(limit.in_flight("Lab.slow"), 2);

        let shed = service.call(test_request(&SLOW)).await.unwrap();
        assert_eq!(shed.status(), Status::ResourceExhausted);
        assert_eq!(shed.retry_after(), Some(DEFAULT_CONCURRENCY_RETRY_AFTER));
        assert_eq!(
            shed.message(),
            Some("Lab.slow has 2 calls under way, its limit: this one is shed")
        );
        // A method without a limit passes, and is not counted.
        let fast = service.call(test_request(&FAST));
        open_fast.send(()).unwrap();
        assert_eq!(fast.await.unwrap().status(), Status::Ok);
        assert_eq!(limit.in_flight("Lab.fast"), 0);

        // The first call ends (its answer is ready), the second is dropped (a deadline, say): both give back
        // their places.
        open_first.send(()).unwrap();
        assert_eq!(first.await.unwrap().status(), Status::Ok);
        assert_eq!(limit.in_flight("Lab.slow"), 1);
        drop(second);
        assert_eq!(limit.in_flight("Lab.slow"), 0);

        // Another connection's stack shares the count.
        let (open, gate) = oneshot::channel();
        let mut other = limit.layer(waiting(vec![gate]));
        let again = other.call(test_request(&SLOW));
        assert_eq!(limit.in_flight("Lab.slow"), 1);
        open.send(()).unwrap();
        assert_eq!(again.await.unwrap().status(), Status::Ok);
        assert_eq!(limit.in_flight("Lab.slow"), 0);
    }
}
