//! [`JwtKeys`]: JSON Web Tokens as caller identities (feature `jwt`, through the `jsonwebtoken` crate). A bearer
//! token that is a JWT signed by one of the configured keys (HS256, RS256 or EdDSA), not expired, and of the
//! configured issuer and audience if any, names its caller by its subject (`sub`): `jwt:SUBJECT` to the rules'
//! grants and limits ([`super::FollowRules`]), [`super::Caller::subject`] to handlers.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The longest JWT verified: 8 KiB. A longer bearer token is refused unread.
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// The longest subject kept: 253 bytes.
pub const MAX_SUBJECT_LEN: usize = 253;

/// The keys and checks JWTs are verified with.
///
/// ```
/// use rpc_core::server::layer::{Authorize, Grant, JwtKeys};
///
/// let keys = JwtKeys::new().hs256(b"a-shared-secret-of-32-bytes-or-more!".to_vec()).issuer("auth.example");
/// let authorize = Authorize::new().jwt(keys, Grant::all());
/// # let _ = rpc_core::Server::builder().layer(authorize);
/// ```
#[derive(Clone, Default)]
pub struct JwtKeys {
    keys: Vec<(Algorithm, Arc<DecodingKey>)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.keys.iter().map(|(a, _)| *a).collect();
        f.debug_struct("JwtKeys")
            .field("algorithms", &algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl JwtKeys {
    /// No key yet: no JWT verifies.
    pub fn new() -> JwtKeys {
        JwtKeys::default()
    }

    /// Verifies HS256 tokens signed with `secret`.
    pub fn hs256(mut self, secret: Vec<u8>) -> JwtKeys {
        let key = DecodingKey::from_secret(&secret);
        self.keys.push((Algorithm::HS256, Arc::new(key)));
        self
    }

    /// Verifies RS256 tokens signed by the RSA public key in `pem`.
    pub fn rs256_pem(mut self, pem: &[u8]) -> Result<JwtKeys, String> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| format!("an RSA public key: {e}"))?;
        self.keys.push((Algorithm::RS256, Arc::new(key)));
        Ok(self)
    }

    /// Verifies EdDSA (Ed25519) tokens signed by the public key in `pem`.
    pub fn eddsa_pem(mut self, pem: &[u8]) -> Result<JwtKeys, String> {
        let key =
            DecodingKey::from_ed_pem(pem).map_err(|e| format!("an Ed25519 public key: {e}"))?;
        self.keys.push((Algorithm::EdDSA, Arc::new(key)));
        Ok(self)
    }

    /// Takes only tokens of issuer (`iss`) `issuer`.
    pub fn issuer(self, issuer: impl Into<String>) -> JwtKeys {
        JwtKeys {
            issuer: Some(issuer.into()),
            ..self
        }
    }

    /// Takes only tokens for audience (`aud`) `audience`.
    pub fn audience(self, audience: impl Into<String>) -> JwtKeys {
        JwtKeys {
            audience: Some(audience.into()),
            ..self
        }
    }

    /// The subject of `token` if one of the keys verifies it, or why none does (never the token itself).
    pub fn verify(&self, token: &[u8]) -> Result<Arc<str>, String> {
        if token.len() > MAX_JWT_LEN {
            return Err(format!(
                "a JWT of {} bytes, over the limit of {MAX_JWT_LEN}",
                token.len()
            ));
        }
        let token = std::str::from_utf8(token).map_err(|_| "not a JWT".to_owned())?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        let mut last = format!("no key for its algorithm {:?}", header.alg);
        for (algorithm, key) in self.keys.iter().filter(|(a, _)| *a == header.alg) {
            let mut validation = Validation::new(*algorithm);
            validation.set_required_spec_claims(&["exp", "sub"]);
            if let Some(issuer) = &self.issuer {
                validation.set_issuer(&[issuer]);
            }
            match &self.audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) if data.claims.sub.len() <= MAX_SUBJECT_LEN => {
                    return Ok(Arc::from(data.claims.sub));
                }
                Ok(data) => {
                    return Err(format!(
                        "its subject has {} bytes, over the limit of {MAX_SUBJECT_LEN}",
                        data.claims.sub.len()
                    ));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}
