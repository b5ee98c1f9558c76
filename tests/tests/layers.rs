//! Layers, seen from a client over 127.0.0.1. On the server: a user layer that refuses calls, rewrites the
//! metadata the handler sees and observes how each call ended; tower's own middleware (a concurrency limit
//! that holds calls back, a timeout on one method alone); a layer's error answered as a status. On the client:
//! a layer that adds metadata, fails a call itself and observes outcomes; tower's timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_core::client::layer as client;
use rpc_core::server::layer::Only;
use rpc_core::server::{Request, Response};
use rpc_core::{Metadata, RpcError, Server, Status};
use tests::lab::{LabClient, LabImpl, LabServer, MathError};
use tests::serve::serve_builder as serve;
use tower::Service;

/// How a call ended, as the observing layer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    status: Status,
    app_error: bool,
}

/// Refuses calls without the right `x-api-key`, tells the handler who called (`x-caller`), and notes how each
/// call it passed on ended.
#[derive(Clone)]
struct ApiKey<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request> for ApiKey<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let method = request.method().to_string();
        if request.metadata().get_str("x-api-key") != Some("open-sesame") {
            let refused = Response::error(Status::Unauthenticated, "no valid x-api-key");
            return Box::pin(std::future::ready(Ok(refused)));
        }
        let mut rewritten = Metadata::builder();
        for (key, value) in request.metadata().iter().filter(|(k, _)| *k != "x-api-key") {
            rewritten
                .insert(key, value)
                .expect("entries of a valid section");
        }
        rewritten
            .insert("x-caller", "tester")
            .expect("a valid entry");
        *request.metadata_mut() = rewritten.build();
        let seen = Arc::clone(&self.seen);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            seen.lock().unwrap().push(Seen {
                method,
                status: response.status(),
                app_error: response.is_app_error(),
            });
            Ok(response)
        })
    }
}

fn lab() -> rpc_core::ServerBuilder {
    Server::builder().add_service(LabServer::new(LabImpl::default()))
}

#[tokio::test]
async fn a_user_layer_refuses_rewrites_metadata_and_observes_outcomes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = {
        let seen = Arc::clone(&seen);
        tower::layer::layer_fn(move |inner| ApiKey {
            inner,
            seen: Arc::clone(&seen),
        })
    };
    let addr = serve(lab().layer(layer)).await;
    let anonymous = LabClient::connect(addr).await.unwrap();

    let refused = anonymous.echo(1).await.unwrap_err();
    assert_eq!(refused.code(), Status::Unauthenticated);
    assert_eq!(refused.message(), "no valid x-api-key");

    let key = Metadata::from_pairs([("x-api-key", "open-sesame"), ("tenant", "a")]).unwrap();
    let keyed = anonymous.with_metadata(key);
    assert_eq!(keyed.echo(7).await, Ok(7));
    // The handler sees the metadata the layer left: the caller it named, the tenant, and no key.
    assert_eq!(
        keyed.header("x-caller".into()).await,
        Ok(Some("tester".into()))
    );
    assert_eq!(keyed.header("tenant".into()).await, Ok(Some("a".into())));
    assert_eq!(keyed.header("x-api-key".into()).await, Ok(None));
    assert_eq!(
        keyed.div(1, 0).await,
        Ok(Err(MathError::DivisionByZero { dividend: 1 }))
    );
    let panicked = keyed.boom().await.unwrap_err();
    assert_eq!(panicked.code(), Status::Internal);

    let seen = seen.lock().unwrap().clone();
    let ok = |method: &str| Seen {
        method: method.into(),
        status: Status::Ok,
        app_error: false,
    };
    assert_eq!(
        seen,
        [
            ok("Lab.echo"),
            ok("Lab.header"),
            ok("Lab.header"),
            ok("Lab.header"),
            Seen {
                method: "Lab.div".into(),
                status: Status::Ok,
                app_error: true,
            },
            Seen {
                method: "Lab.boom".into(),
                status: Status::Internal,
                app_error: false,
            },
        ]
    );
}

/// tower's `ConcurrencyLimitLayer` on the server holds calls back (the connection stops taking requests while
/// the limit is reached) instead of refusing them: at most two handlers run at once, and every call succeeds.
#[tokio::test]
async fn towers_concurrency_limit_holds_calls_back_on_the_server() {
    async fn most_at_once(addr: std::net::SocketAddr, counts: &Counts) -> usize {
        let client = LabClient::connect(addr).await.unwrap();
        let calls = (0..8u64).map(|n| {
            let client = client.clone();
            async move { client.delayed(n, 50).await }
        });
        let results = futures_join_all(calls).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        counts.most.load(Ordering::SeqCst)
    }

    // A layer that counts the handlers running, inside the limit.
    let counting = |counts: Arc<Counts>| {
        tower::layer::layer_fn(move |inner| Running {
            inner,
            counts: Arc::clone(&counts),
        })
    };
    let limited = Arc::new(Counts::default());
    let addr = serve(
        lab()
            .layer(tower::limit::ConcurrencyLimitLayer::new(2))
            .layer(counting(Arc::clone(&limited))),
    )
    .await;
    assert_eq!(most_at_once(addr, &limited).await, 2);

    // Without the limit, the same calls run together (so the figure above is the limit's doing).
    let free = Arc::new(Counts::default());
    let addr = serve(lab().layer(counting(Arc::clone(&free)))).await;
    assert!(most_at_once(addr, &free).await > 2);
}

/// Calls under way through a layer, and the most there were at once.
#[derive(Debug, Default)]
struct Counts {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Counts the calls under way through it.
#[derive(Clone)]
struct Running<S> {
    inner: S,
    counts: Arc<Counts>,
}

impl<S> Service<Request> for Running<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let counts = Arc::clone(&self.counts);
        let now = counts.now.fetch_add(1, Ordering::SeqCst) + 1;
        counts.most.fetch_max(now, Ordering::SeqCst);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            counts.now.fetch_sub(1, Ordering::SeqCst);
            response
        })
    }
}

/// Polls every future to its end, concurrently, and returns their outputs in order.
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// tower's `TimeoutLayer`, for one method alone through [`Only`]: that method's slow call ends
/// `DeadlineExceeded` at the layer's timeout, long before the caller's deadline; the other methods are not timed.
#[tokio::test]
async fn towers_timeout_for_one_method_answers_deadline_exceeded() {
    let timeout = tower::timeout::TimeoutLayer::new(Duration::from_millis(50));
    let addr = serve(lab().layer(Only::methods(["Lab.hang"], timeout))).await;
    let client = LabClient::connect(addr)
        .await
        .unwrap()
        .with_deadline(Duration::from_secs(30));
    let timed_out = client.hang().await.unwrap_err();
    assert_eq!(timed_out.code(), Status::DeadlineExceeded);
    assert!(timed_out.message().contains("timeout"), "{timed_out}");
    // Slower than the timeout, but not a method it covers.
    assert_eq!(client.delayed(3, 100).await, Ok(3));
}

/// Fails `Lab.echo` with an `RpcError` and `Lab.header` with an error of its own; passes the rest on.
#[derive(Clone)]
struct Deny<S> {
    inner: S,
}

impl<S> Service<Request> for Deny<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let error: BoxError = match request.method().name {
            "echo" => Box::new(RpcError::new(
                Status::PermissionDenied,
                "echo is not for you",
            )),
            "header" => Box::new(std::io::Error::other("the vault is closed")),
            _ => {
                let answer = self.inner.call(request);
                return Box::pin(async move { answer.await.map_err(Into::into) });
            }
        };
        Box::pin(std::future::ready(Err(error)))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A layer that fails a call with an error: an `RpcError` keeps its status and message; any other error is
/// `Internal` with its text; the calls it passes on are served.
#[tokio::test]
async fn a_layers_error_is_answered_as_a_status() {
    let deny = tower::layer::layer_fn(|inner| Deny { inner });
    let addr = serve(lab().layer(deny)).await;
    let client = LabClient::connect(addr).await.unwrap();
    let denied = client.echo(1).await.unwrap_err();
    assert_eq!(
        (denied.code(), denied.message()),
        (Status::PermissionDenied, "echo is not for you")
    );
    let failed = client.header("k".into()).await.unwrap_err();
    assert_eq!(failed.code(), Status::Internal);
    assert!(failed.message().contains("the vault is closed"), "{failed}");
    assert_eq!(client.delayed(5, 1).await, Ok(5));
}

/// A client layer that adds the API key to every call, and notes how each call ended.
#[derive(Clone)]
struct AddKey<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Status>>>,
}

impl<S> Service<client::Request> for AddKey<S>
where
    S: Service<client::Request, Response = client::Response> + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = client::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<client::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: client::Request) -> Self::Future {
        if request.method().name == "hang" {
            let refused = RpcError::new(Status::PermissionDenied, "this client never hangs");
            return Box::pin(std::future::ready(Ok(client::Response::Failed(refused))));
        }
        *request.metadata_mut() = Metadata::from_pairs([("x-api-key", "open-sesame")]).unwrap();
        let seen = Arc::clone(&self.seen);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            seen.lock().unwrap().push(response.status());
            Ok(response)
        })
    }
}

/// A user layer on the client rewrites the metadata of every call (the server's key check lets them in), may
/// fail a call itself without sending it, and observes each call's outcome; the arguments and results travel
/// through it encoded, and decode as usual.
#[tokio::test]
async fn a_client_layer_adds_metadata_refuses_and_observes_outcomes() {
    let api_key = rpc_core::server::layer::intercept(|request: &mut Request| {
        match request.metadata().get_str("x-api-key") {
            Some("open-sesame") => Ok(()),
            _ => Err(Response::error(
                Status::Unauthenticated,
                "no valid x-api-key",
            )),
        }
    });
    let addr = serve(lab().layer(api_key)).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = {
        let seen = Arc::clone(&seen);
        tower::layer::layer_fn(move |inner| AddKey {
            inner,
            seen: Arc::clone(&seen),
        })
    };
    let config = rpc_core::ClientConfig::default().layer(layer);
    let client = LabClient::new(rpc_core::Client::connect_with(addr, config).await.unwrap());
    assert_eq!(client.echo(41).await, Ok(41));
    assert_eq!(
        client.div(1, 0).await,
        Ok(Err(MathError::DivisionByZero { dividend: 1 }))
    );
    let refused = client.hang().await.unwrap_err();
    assert_eq!(refused.code(), Status::PermissionDenied);
    assert_eq!(client.boom().await.unwrap_err().code(), Status::Internal);
    // Without the layer, the server refuses.
    let plain = LabClient::connect(addr).await.unwrap();
    assert_eq!(
        plain.echo(1).await.unwrap_err().code(),
        Status::Unauthenticated
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [Status::Ok, Status::Ok, Status::Internal]
    );
}

/// tower's `TimeoutLayer` on the client: a call that outlasts it fails `DeadlineExceeded`, long before its own
/// deadline.
#[tokio::test]
async fn towers_timeout_on_the_client_fails_the_call_deadline_exceeded() {
    let addr = serve(lab()).await;
    let config = rpc_core::ClientConfig::default()
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(50)));
    let client = LabClient::new(rpc_core::Client::connect_with(addr, config).await.unwrap())
        .with_deadline(Duration::from_secs(30));
    let timed_out = client.hang().await.unwrap_err();
    assert_eq!(timed_out.code(), Status::DeadlineExceeded);
    assert!(timed_out.message().contains("timeout"), "{timed_out}");
    assert_eq!(client.echo(9).await, Ok(9));
}

/// `Authorize`: a token granted everything, a token granted one method, anonymous callers granted another. A
/// call no credential covers is refused, `Unauthenticated` without a known credential and `PermissionDenied`
/// with one, and no message shows a token; the caller it found reaches the layers after it.
#[tokio::test]
async fn authorize_maps_tokens_to_the_methods_they_may_call() {
    use rpc_core::server::layer::{Authorize, Grant, intercept};
    let authorize = Authorize::new()
        .token("ops", "ops-secret-token", Grant::all())
        .token("calc", "calc-secret-token", Grant::to(["Lab.echo"]))
        .anonymous(Grant::to(["Lab.header"]));
    // Tells the handler who called, as the layer before it found out.
    let tell = intercept(|request: &mut Request| {
        let who = request
            .caller()
            .and_then(|c| c.token.as_deref())
            .unwrap_or("anonymous");
        *request.metadata_mut() = Metadata::from_pairs([("x-caller", who)]).unwrap();
        Ok(())
    });
    let addr = serve(lab().layer(authorize).layer(tell)).await;
    let anonymous = LabClient::connect(addr).await.unwrap();
    let bearer = |token: &str| {
        let value = format!("Bearer {token}");
        anonymous.with_metadata(Metadata::from_pairs([("authorization", value.as_str())]).unwrap())
    };

    assert_eq!(
        anonymous.header("x-caller".into()).await,
        Ok(Some("anonymous".into()))
    );
    let no_credential = anonymous.echo(1).await.unwrap_err();
    assert_eq!(no_credential.code(), Status::Unauthenticated);
    assert!(
        no_credential
            .message()
            .contains("Lab.echo needs a credential"),
        "{no_credential}"
    );

    let unknown = bearer("guessed-token").echo(1).await.unwrap_err();
    assert_eq!(unknown.code(), Status::Unauthenticated);
    assert!(
        unknown.message().contains("not one this server knows"),
        "{unknown}"
    );
    assert!(!unknown.message().contains("guessed-token"), "{unknown}");

    let calc = bearer("calc-secret-token");
    assert_eq!(calc.echo(5).await, Ok(5));
    let denied = calc.div(1, 1).await.unwrap_err();
    assert_eq!(denied.code(), Status::PermissionDenied);
    assert_eq!(denied.message(), "token calc may not call Lab.div");
    assert_eq!(
        calc.header("x-caller".into()).await,
        Ok(Some("calc".into()))
    );

    let ops = bearer("ops-secret-token");
    assert_eq!(ops.div(6, 3).await, Ok(Ok(2)));
    assert_eq!(ops.header("x-caller".into()).await, Ok(Some("ops".into())));
}

/// `client::layer::Only`: tower's timeout on one method of a client; the client's other calls are not timed.
#[tokio::test]
async fn a_client_layer_for_one_method_leaves_the_others_alone() {
    let addr = serve(lab()).await;
    let timeout = tower::timeout::TimeoutLayer::new(Duration::from_millis(50));
    let config =
        rpc_core::ClientConfig::default().layer(client::Only::methods(["Lab.hang"], timeout));
    let client = LabClient::new(rpc_core::Client::connect_with(addr, config).await.unwrap())
        .with_deadline(Duration::from_secs(30));
    assert_eq!(
        client.hang().await.unwrap_err().code(),
        Status::DeadlineExceeded
    );
    // Slower than the timeout, but not a method it covers.
    assert_eq!(client.delayed(4, 100).await, Ok(4));
}

/// A layer that sheds a call asks the caller to come back later: the wait travels in the `Error` frame's
/// metadata (`retry-after-ms`) and reaches the caller's error, which counts as certainly not processed. A
/// refusal without a wait is neither.
#[tokio::test]
async fn a_refusal_with_a_retry_after_reaches_the_caller_as_pushback() {
    let shed =
        rpc_core::server::layer::intercept(|request: &mut Request| match request.method().name {
            "echo" => Err(
                Response::error(Status::ResourceExhausted, "over 10 calls/s")
                    .with_retry_after(Duration::from_millis(250)),
            ),
            "blob" => Err(Response::error(Status::ResourceExhausted, "no wait given")),
            _ => Ok(()),
        });
    let addr = serve(lab().layer(shed)).await;
    let client = LabClient::connect(addr).await.unwrap();
    let pushed = client.echo(1).await.unwrap_err();
    assert_eq!(
        (pushed.code(), pushed.message()),
        (Status::ResourceExhausted, "over 10 calls/s")
    );
    assert_eq!(pushed.retry_after(), Some(Duration::from_millis(250)));
    assert!(
        pushed.is_not_processed(),
        "a call asked back later did not run"
    );
    let plain = client.blob(Vec::new().into()).await.unwrap_err();
    assert_eq!(plain.code(), Status::ResourceExhausted);
    assert_eq!(plain.retry_after(), None);
    assert!(!plain.is_not_processed());
    assert_eq!(client.delayed(5, 1).await, Ok(5), "other methods pass");
}
