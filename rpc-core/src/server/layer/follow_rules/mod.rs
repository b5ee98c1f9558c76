//! [`FollowRules`]: a server applies the rules it watches (`rpc_core::rules`, the registry's for its service) to
//! every call of that service, before its handler sees it:
//! - authorization: the caller's identities (`token:NAME` for a token [`super::Authorize`] knows by that name,
//!   `mtls:NAME` for each name of its verified client certificate) go through the grants, first match first,
//!   else the document's default; a refused call is answered `PermissionDenied`, naming the rule;
//! - limits (`limits.rs`): calls of the methods a limit names, from the callers it names, past its rate or its
//!   calls at once, for every caller together or each apart, are shed at once with `ResourceExhausted` and a
//!   retry-after, naming the limit.
//!
//! A change of the rules applies to the next call (the limits' counts start afresh); without rules every call
//! passes.

mod limits;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rpc_codec::Status;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;
use super::concurrency::Permit;
use super::only::Either;
use crate::client::RulesFeed;
use crate::rules::Rules;
use limits::Counts;

/// The layer: put it after [`super::Authorize`], which finds out who the caller is. Its clones share the
/// limits' counts.
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::rules::Rules;
/// use rpc_core::server::layer::{Authorize, FollowRules, Grant};
///
/// let rules: Rules = serde_json::from_str(r#"{"service": "Calc", "authorization": {"default": "deny",
///     "grants": [{"name": "ops", "callers": ["token:ops"], "methods": ["*"], "access": "allow"}]}}"#)?;
/// let (_updates, feed) = tokio::sync::watch::channel(Some(Arc::new(rules)));
/// let server = rpc_core::Server::builder()
///     .layer(Authorize::new().token("ops", "an-ops-token-1234", Grant::all()))
///     .layer(FollowRules::new(feed));
/// # let _ = server;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FollowRules {
    feed: RulesFeed,
    counts: Arc<Mutex<Arc<Counts>>>,
}

impl FollowRules {
    /// Follows the rules `feed` holds (as `rpc_registry::Discovery::rules` keeps them, say).
    pub fn new(feed: RulesFeed) -> FollowRules {
        FollowRules {
            feed,
            counts: Arc::default(),
        }
    }

    /// Lets `request` through (with its places under the limits), or answers it.
    fn admit(&self, request: &Request) -> Result<Vec<Permit>, Response> {
        let rules = match &*self.feed.borrow() {
            Some(rules) => Arc::clone(rules),
            None => return Ok(Vec::new()),
        };
        let method = request.method();
        if rules.service != method.service
            || (rules.authorization.is_none() && rules.limits.is_empty())
        {
            return Ok(Vec::new());
        }
        let mut identities: Vec<String> = Vec::new();
        if let Some(caller) = request.caller() {
            if let Some(token) = caller.token.as_deref() {
                identities.push(format!("token:{token}"));
            }
            if let Some(subject) = caller.subject.as_deref() {
                identities.push(format!("jwt:{subject}"));
            }
        }
        let names = request.peer().client_names();
        identities.extend(names.iter().map(|n| format!("mtls:{n}")));
        let ids: Vec<&str> = identities.iter().map(String::as_str).collect();
        let who = || match ids.first() {
            Some(id) => crate::text::quoted(id, 64),
            None => String::from("a caller without an identity"),
        };
        if let Some(authorization) = &rules.authorization {
            authorization.decide(&ids, method.name).map_err(|denied| {
                let message = format!(
                    "{method} refused for {} by rule `{}` of the rules of {}",
                    who(),
                    crate::text::quoted(&denied.rule, 64),
                    method.service
                );
                Response::error(Status::PermissionDenied, message)
            })?;
        }
        if rules.limits.is_empty() {
            return Ok(Vec::new());
        }
        let counts = self.counts_of(&rules);
        let identity = ids.first().copied().unwrap_or("anonymous");
        let caller_matches = |limit: &crate::rules::Limit| {
            limit.callers.is_empty() || limit.callers.iter().any(|p| p.admits(&ids))
        };
        counts
            .admit(
                &rules.limits,
                method.name,
                identity,
                caller_matches,
                Instant::now(),
            )
            .map_err(|shed| {
                let limit = &rules.limits[shed.limit];
                let message = format!(
                    "{method} shed for {}: over limits[{}] of the rules of {}, {}",
                    who(),
                    shed.limit,
                    method.service,
                    shed.what
                );
                Response::error(Status::ResourceExhausted, message)
                    .with_retry_after(limits::retry_after(limit))
            })
    }

    /// The counts of `rules`, made afresh when the rules changed.
    fn counts_of(&self, rules: &Arc<Rules>) -> Arc<Counts> {
        let of = Arc::as_ptr(rules) as usize;
        let mut counts = crate::sync::lock(&self.counts);
        if counts.of != of {
            *counts = Arc::new(Counts::new(of, &rules.limits));
        }
        Arc::clone(&counts)
    }
}

impl<S> Layer<S> for FollowRules {
    type Service = RulesFollowed<S>;

    fn layer(&self, inner: S) -> RulesFollowed<S> {
        RulesFollowed {
            inner,
            rules: self.clone(),
        }
    }
}

/// The service of [`FollowRules`].
#[derive(Clone, Debug)]
pub struct RulesFollowed<S> {
    inner: S,
    rules: FollowRules,
}

impl<S> Service<Request> for RulesFollowed<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Either<std::future::Ready<Result<Response, BoxError>>, Holding<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.rules.admit(&request) {
            Ok(permits) => Either::Right {
                future: Holding {
                    future: self.inner.call(request),
                    permits,
                },
            },
            Err(answer) => Either::Left {
                future: std::future::ready(Ok(answer)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's answer to come, holding its places under the rules' limits until it is ready or dropped.
    #[derive(Debug)]
    pub struct Holding<F> {
        #[pin]
        future: F,
        permits: Vec<Permit>,
    }
}

impl<F, E> Future for Holding<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ready = std::task::ready!(this.future.poll(cx));
        this.permits.clear();
        Poll::Ready(ready)
    }
}
