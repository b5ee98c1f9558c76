//! [`Authorize`]: who may call what. Bearer tokens (metadata `authorization: Bearer <token>`, compared in
//! constant time) and the names of verified client certificates (mutual TLS) are credentials, each granted the
//! services and methods it may call; calls without a credential get what anonymous callers are granted. A call
//! no credential covers is refused: `Unauthenticated` when it carried no credential this server knows,
//! `PermissionDenied` when it did. The [`Caller`] found is the handler's through
//! [`crate::Context::caller`]. No message shows a token.

use std::sync::Arc;

use rpc_codec::{Metadata, Status};
use tower_layer::Layer;

use super::super::request::Request;
use super::super::response::Response;
use super::intercept::{Intercepted, Interceptor};
use crate::method::MethodInfo;

/// The metadata key of a bearer token.
pub const AUTHORIZATION: &str = "authorization";

/// What a credential may call: services (`"Calc"`), methods (`"Calc.add"`), or everything (`"*"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    patterns: Vec<String>,
}

impl Grant {
    /// Every method of every service.
    pub fn all() -> Grant {
        Grant::to(["*"])
    }

    /// Nothing.
    pub fn none() -> Grant {
        Grant::default()
    }

    /// The services and methods named (`"Calc"`, `"Calc.add"`, `"*"`).
    pub fn to<I: IntoIterator<Item = N>, N: Into<String>>(patterns: I) -> Grant {
        Grant {
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether the grant covers `method`.
    pub fn covers(&self, method: &MethodInfo) -> bool {
        self.patterns.iter().any(|p| {
            p == "*"
                || p == method.service
                || p.strip_prefix(method.service)
                    .and_then(|rest| rest.strip_prefix('.'))
                    == Some(method.name)
        })
    }
}

/// Who a call comes from, as [`Authorize`] found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The name of the token the call carried, if this server knows it.
    pub token: Option<Arc<str>>,
    /// Whether the call carried a bearer token at all (known or not).
    pub carried_token: bool,
    /// The names of the client certificate that this server knows.
    pub certificates: Vec<Arc<str>>,
    /// The subject of the JWT the call carried, if it verified (feature `jwt`).
    pub subject: Option<Arc<str>>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(subject) = &self.subject {
            return write!(f, "JWT subject {}", crate::text::quoted(subject, 64));
        }
        match (&self.token, self.certificates.first()) {
            (Some(token), _) => write!(f, "token {token}"),
            (None, Some(name)) => {
                f.write_str("client certificate ")?;
                // A certificate's name is the peer's text: escaped, and cut.
                for c in name.chars().take(64) {
                    match crate::text::must_escape(c) {
                        true => write!(f, "{}", c.escape_unicode())?,
                        false => write!(f, "{c}")?,
                    }
                }
                Ok(())
            }
            (None, None) => f.write_str("an anonymous caller"),
        }
    }
}

/// A token, its name (what messages and [`Caller`] show instead of it), and its grant.
#[derive(Clone)]
struct TokenRule {
    name: Arc<str>,
    token: Vec<u8>,
    grant: Grant,
}

/// A caller, and the rules of the token and the certificates it carried.
type Found<'a> = (Caller, Option<&'a TokenRule>, Vec<&'a (Arc<str>, Grant)>);

/// The credentials a server knows, and what each may call.
#[derive(Clone, Default)]
struct Rules {
    tokens: Vec<TokenRule>,
    certificates: Vec<(Arc<str>, Grant)>,
    anonymous: Grant,
    /// JWTs, and what a verified one may call.
    #[cfg(feature = "jwt")]
    jwt: Option<(super::jwt::JwtKeys, Grant)>,
}

/// The authorization layer. `Default` knows no credential and grants anonymous callers nothing.
///
/// ```
/// use rpc_core::server::layer::{Authorize, Grant};
///
/// let authorize = Authorize::new()
///     .token("ops", "ops-secret-token", Grant::all())
///     .token("billing", "billing-secret-token", Grant::to(["Billing", "Calc.add"]))
///     .certificate("calc.client.test", Grant::to(["Calc"]))
///     .anonymous(Grant::to(["Health"]));
/// # let _ = rpc_core::Server::builder().layer(authorize);
/// ```
#[derive(Clone, Default)]
pub struct Authorize {
    rules: Arc<Rules>,
}

impl std::fmt::Debug for Authorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens: Vec<&str> = self.rules.tokens.iter().map(|t| &*t.name).collect();
        f.debug_struct("Authorize")
            .field("tokens", &tokens)
            .field("certificates", &self.rules.certificates)
            .field("anonymous", &self.rules.anonymous)
            .finish()
    }
}

impl Authorize {
    /// Knows no credential; grants anonymous callers nothing.
    pub fn new() -> Authorize {
        Authorize::default()
    }

    /// Grants `grant` to calls that carry `token`, which messages and [`Caller::token`] call `name`.
    pub fn token(
        mut self,
        name: impl Into<Arc<str>>,
        token: impl Into<Vec<u8>>,
        grant: Grant,
    ) -> Authorize {
        Arc::make_mut(&mut self.rules).tokens.push(TokenRule {
            name: name.into(),
            token: token.into(),
            grant,
        });
        self
    }

    /// Grants `grant` to calls over mutual TLS whose client certificate has the DNS name `name`.
    pub fn certificate(mut self, name: impl Into<Arc<str>>, grant: Grant) -> Authorize {
        Arc::make_mut(&mut self.rules)
            .certificates
            .push((name.into(), grant));
        self
    }

    /// Grants `grant` to calls whose bearer token is a JWT that `keys` verify; its subject names the caller
    /// ([`Caller::subject`], and `jwt:SUBJECT` to the rules). A bearer token that is neither a known token nor a
    /// JWT that verifies is refused `Unauthenticated`, saying why it did not verify.
    #[cfg(feature = "jwt")]
    pub fn jwt(mut self, keys: super::jwt::JwtKeys, grant: Grant) -> Authorize {
        Arc::make_mut(&mut self.rules).jwt = Some((keys, grant));
        self
    }

    /// Grants `grant` to every call, whatever it carries.
    pub fn anonymous(mut self, grant: Grant) -> Authorize {
        Arc::make_mut(&mut self.rules).anonymous = grant;
        self
    }

    /// Who sent a call that carried `metadata` over a connection whose client certificate has the DNS names
    /// `client_names`: the credentials of it that this layer knows.
    pub fn identify(&self, metadata: &Metadata, client_names: &[String]) -> Caller {
        let (caller, _, _) = self.find(metadata, client_names);
        caller
    }

    /// The caller, and the rules of its token and certificates.
    fn find(&self, metadata: &Metadata, client_names: &[String]) -> Found<'_> {
        let rules = &*self.rules;
        let carried = metadata.get(AUTHORIZATION);
        let carried = carried.map(|v| v.strip_prefix(b"Bearer ").unwrap_or(v));
        let token = carried.and_then(|t| {
            rules
                .tokens
                .iter()
                .find(|rule| constant_time_eq(t, &rule.token))
        });
        let certificates: Vec<&(Arc<str>, Grant)> = rules
            .certificates
            .iter()
            .filter(|(name, _)| client_names.iter().any(|n| n.as_str() == &**name))
            .collect();
        let caller = Caller {
            token: token.map(|t| Arc::clone(&t.name)),
            carried_token: carried.is_some(),
            certificates: certificates.iter().map(|(n, _)| Arc::clone(n)).collect(),
            subject: None,
        };
        (caller, token, certificates)
    }

    /// Who sent `request`, and whether it may call its method (else the refusal).
    fn check(&self, request: &Request) -> Result<Caller, Response> {
        let method = request.method();
        #[allow(unused_mut)]
        let (mut caller, token, certificates) =
            self.find(request.metadata(), request.peer().client_names());
        #[allow(unused_mut)]
        let mut jwt_allowed = false;
        #[cfg(feature = "jwt")]
        if let (Some((keys, grant)), None) = (&self.rules.jwt, token)
            && let Some(carried) = request.metadata().get(AUTHORIZATION)
        {
            let carried = carried.strip_prefix(b"Bearer ").unwrap_or(carried);
            match keys.verify(carried) {
                Ok(subject) => {
                    jwt_allowed = grant.covers(method);
                    caller.subject = Some(subject);
                }
                Err(why) => {
                    let message = format!(
                        "{method} needs a credential: the bearer token is not one this server knows, and not a \
                         JWT it verifies: {}",
                        crate::text::quoted(&why, 200)
                    );
                    return Err(Response::error(Status::Unauthenticated, message));
                }
            }
        }
        let allowed = self.rules.anonymous.covers(method)
            || jwt_allowed
            || token.is_some_and(|t| t.grant.covers(method))
            || certificates.iter().any(|(_, grant)| grant.covers(method));
        if allowed {
            return Ok(caller);
        }
        if token.is_none() && certificates.is_empty() && caller.subject.is_none() {
            let carried = match caller.carried_token {
                true => "the token the call carried is not one this server knows",
                false => {
                    "the call carried no token (metadata `authorization: Bearer <token>`) and no client \
                          certificate this server knows"
                }
            };
            let message = format!("{method} needs a credential: {carried}");
            return Err(Response::error(Status::Unauthenticated, message));
        }
        let message = format!("{caller} may not call {method}");
        Err(Response::error(Status::PermissionDenied, message))
    }
}

/// Compares without stopping at the first difference, so that timing does not tell how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for Authorize {
    fn intercept(&self, request: &mut Request) -> Result<(), Response> {
        let caller = self.check(request)?;
        request.set_caller(caller);
        Ok(())
    }
}

impl<S> Layer<S> for Authorize {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Intercepted::new(self.clone(), inner)
    }
}

/// The service of [`Authorize`]: an interceptor in front of `S`.
pub type Authorized<S> = Intercepted<Authorize, S>;
