//! [`FollowRules`]: a server applies the authorization of the rules it watches (`rpc_core::rules`, the
//! registry's for its service) to every call of that service: the caller's identities (`token:NAME` for a
//! token [`super::Authorize`] knows by that name, `mtls:NAME` for each name of its verified client
//! certificate) go through the grants, first match first, else the document's default. A refused call is
//! answered `PermissionDenied`, naming the rule that refused it. A change of the rules applies to the next
//! call; without rules, or without an `authorization` in them, every call passes.

use rpc_codec::Status;
use tower_layer::Layer;

use super::super::request::Request;
use super::super::response::Response;
use super::intercept::{Intercepted, Interceptor};
use crate::client::RulesFeed;

/// The layer: put it after [`super::Authorize`], which finds out who the caller is.
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
}

impl FollowRules {
    /// Follows the rules `feed` holds (as `rpc_registry::Discovery::rules` keeps them, say).
    pub fn new(feed: RulesFeed) -> FollowRules {
        FollowRules { feed }
    }
}

impl Interceptor for FollowRules {
    fn intercept(&self, request: &mut Request) -> Result<(), Response> {
        let rules = match &*self.feed.borrow() {
            Some(rules) => std::sync::Arc::clone(rules),
            None => return Ok(()),
        };
        let method = request.method();
        let Some(authorization) = rules
            .authorization
            .as_ref()
            .filter(|_| rules.service == method.service)
        else {
            return Ok(());
        };
        let mut identities: Vec<String> = Vec::new();
        if let Some(token) = request.caller().and_then(|c| c.token.as_deref()) {
            identities.push(format!("token:{token}"));
        }
        let names = request.peer().client_names();
        identities.extend(names.iter().map(|n| format!("mtls:{n}")));
        let ids: Vec<&str> = identities.iter().map(String::as_str).collect();
        authorization.decide(&ids, method.name).map_err(|denied| {
            let who = match ids.first() {
                Some(id) => crate::text::quoted(id, 64),
                None => String::from("a caller without an identity"),
            };
            let message = format!(
                "{method} refused for {who} by rule `{}` of the rules of {}",
                crate::text::quoted(&denied.rule, 64),
                method.service
            );
            Response::error(Status::PermissionDenied, message)
        })
    }
}

impl<S> Layer<S> for FollowRules {
    type Service = Intercepted<FollowRules, S>;

    fn layer(&self, inner: S) -> Intercepted<FollowRules, S> {
        Intercepted::new(self.clone(), inner)
    }
}
