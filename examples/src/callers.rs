//! Who calls a server: the `--jwt-*` flags of `calc-server`, which make bearer JWTs signed by the keys given
//! caller identities (`jwt:SUBJECT` to the rules' grants and limits), and the layer they make.

use std::path::PathBuf;

use rpc_core::server::layer::{Authorize, Grant, JwtKeys};

/// `--jwt-hs256-secret-file`, `--jwt-rs256-key`, `--jwt-eddsa-key`, `--jwt-issuer`, `--jwt-audience`.
#[derive(clap::Args, Debug, Default)]
pub struct JwtArgs {
    /// A file holding the shared secret of HS256 JWTs (its bytes as they are). [default: none]
    #[arg(long, value_name = "FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// The RSA public key (PEM) of RS256 JWTs. [default: none]
    #[arg(long, value_name = "FILE")]
    pub jwt_rs256_key: Option<PathBuf>,
    /// The Ed25519 public key (PEM) of EdDSA JWTs. [default: none]
    #[arg(long, value_name = "FILE")]
    pub jwt_eddsa_key: Option<PathBuf>,
    /// Take only JWTs of this issuer (`iss`). [default: any]
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// Take only JWTs for this audience (`aud`). [default: any]
    #[arg(long)]
    pub jwt_audience: Option<String>,
}

impl JwtArgs {
    /// The layer that verifies JWTs as the flags say, or `None` if no key is given. Every caller may call
    /// (the rules' authorization decides); a bearer token that does not verify is refused.
    pub fn layer(&self) -> Result<Option<Authorize>, String> {
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read(path).map_err(|e| format!("--{flag} {}: {e}", path.display()))
        };
        let mut keys = JwtKeys::new();
        let mut any = false;
        if let Some(path) = &self.jwt_hs256_secret_file {
            keys = keys.hs256(read(path, "jwt-hs256-secret-file")?);
            any = true;
        }
        if let Some(path) = &self.jwt_rs256_key {
            let pem = read(path, "jwt-rs256-key")?;
            keys = keys
                .rs256_pem(&pem)
                .map_err(|e| format!("--jwt-rs256-key: {e}"))?;
            any = true;
        }
        if let Some(path) = &self.jwt_eddsa_key {
            let pem = read(path, "jwt-eddsa-key")?;
            keys = keys
                .eddsa_pem(&pem)
                .map_err(|e| format!("--jwt-eddsa-key: {e}"))?;
            any = true;
        }
        if !any {
            if self.jwt_issuer.is_some() || self.jwt_audience.is_some() {
                return Err("--jwt-issuer and --jwt-audience need a --jwt-* key".to_owned());
            }
            return Ok(None);
        }
        if let Some(issuer) = &self.jwt_issuer {
            keys = keys.issuer(issuer.clone());
        }
        if let Some(audience) = &self.jwt_audience {
            keys = keys.audience(audience.clone());
        }
        Ok(Some(
            Authorize::new()
                .anonymous(Grant::all())
                .jwt(keys, Grant::all()),
        ))
    }
}
