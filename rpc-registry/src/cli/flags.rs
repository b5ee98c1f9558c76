//! The flags the client subcommands share, as clap reads them: TLS to the registry and the servers
//! ([`TlsFlags`]), and where `call` and `describe` find a service and what their calls carry ([`TargetFlags`],
//! which makes a [`Target`]). Like `serve`'s flags (`crate::server::flags`), they live in the library so that
//! the binary's `main.rs` only parses and calls.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rpc_core::tls::{ClientTls, TlsError};

use super::escape::{MAX_FIELD_CHARS, escape};
use super::exit::CallError;
use super::target::{DEFAULT_CALL_DEADLINE, Target, Via};
use crate::TOKEN_ENV;

/// The registry's address when none is given: `127.0.0.1:7070`, where `rpc-registry serve` listens by default.
pub const DEFAULT_REGISTRY: &str = "127.0.0.1:7070";

/// The environment variable `--call-token` is read from when it is not given: `RPC_CALL_TOKEN`.
pub const CALL_TOKEN_ENV: &str = "RPC_CALL_TOKEN";

/// TLS to the registry, and to the servers `call` and `describe` talk to.
#[derive(Args, Clone, Debug, Default)]
pub struct TlsFlags {
    /// CA certificate (PEM) to trust: talks TLS.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) to present (mutual TLS); needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsFlags {
    /// The TLS settings: with --tls-ca, presenting --tls-cert if given; `None` without.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        match &self.tls_ca {
            Some(ca) => {
                let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
                ClientTls::from_pem_files(ca, identity).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// How `call` and `describe` reach a service. Their `Debug` hides the tokens.
#[derive(Args, Clone)]
pub struct TargetFlags {
    /// Address of the registry's API, or of its replicas separated by commas: the service's instances are found
    /// there and called through a balanced client. The default (127.0.0.1:7070) unless --server is given.
    #[arg(long, value_name = "ADDR[,ADDR...]", conflicts_with = "server")]
    pub registry: Option<String>,
    /// Address of one server of the service, called directly.
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// An entry of every call's metadata, as KEY=VALUE; repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// Milliseconds the whole command may take (finding an instance, the describe, the call); the server is
    /// given what is left as the call's budget.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_CALL_DEADLINE.as_millis() as u64)]
    pub deadline: u64,
    /// Token sent to the service's servers as `authorization: Bearer <token>`, with the describe too (grant it
    /// rpc.Reflection as well).
    #[arg(long, env = CALL_TOKEN_ENV, hide_env_values = true)]
    pub call_token: Option<String>,
    /// The registry's token, for its reads (with --registry; never sent to the service).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: TlsFlags,
}

impl std::fmt::Debug for TargetFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetFlags")
            .field("registry", &self.registry)
            .field("server", &self.server)
            .field("metadata", &self.metadata)
            .field("deadline", &self.deadline)
            .field("call_token", &crate::token::hidden(&self.call_token))
            .field("token", &crate::token::hidden(&self.token))
            .field("tls", &self.tls)
            .finish()
    }
}

impl TargetFlags {
    /// The target the flags name; fails if the TLS files do not load.
    pub fn target(self) -> Result<Target, CallError> {
        let tls = self.tls.client().map_err(|e| CallError::Flag {
            flag: "--tls-ca",
            problem: e.to_string(),
        })?;
        let via = match (self.server, self.registry) {
            (Some(server), _) => Via::Server(server),
            (None, registry) => {
                Via::Registry(registry.unwrap_or_else(|| DEFAULT_REGISTRY.to_owned()))
            }
        };
        Ok(Target {
            metadata: self.metadata,
            token: self.call_token,
            // The registry's token goes to the registry alone: never to a server named directly.
            registry_token: self.token.filter(|_| matches!(via, Via::Registry(_))),
            tls,
            deadline: Duration::from_millis(self.deadline),
            ..Target::new(via)
        })
    }
}

/// One `KEY=VALUE` metadata entry, split at its first `=` (the entry is checked as metadata before anything is
/// sent).
///
/// ```
/// use rpc_registry::cli::flags::parse_pair;
/// assert_eq!(parse_pair("x-canary=1=2"), Ok(("x-canary".to_owned(), "1=2".to_owned())));
/// assert_eq!(parse_pair("x-canary").unwrap_err(), "expected KEY=VALUE, got `x-canary`");
/// ```
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(format!(
            "expected KEY=VALUE, got `{}`",
            escape(text, MAX_FIELD_CHARS)
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        target: TargetFlags,
    }

    fn target(args: &[&str]) -> Result<Target, String> {
        let flags = Flags::try_parse_from(std::iter::once("call").chain(args.iter().copied()))
            .map_err(|e| format!("{:?}", e.kind()))?;
        flags.target.target().map_err(|e| e.to_string())
    }

    #[test]
    fn the_registry_is_the_default_and_a_server_excludes_it() {
        let t = target(&[]).unwrap();
        assert_eq!(t.via, Via::Registry(DEFAULT_REGISTRY.to_owned()));
        assert_eq!(t.deadline, DEFAULT_CALL_DEADLINE);
        let t = target(&["--server", "127.0.0.1:7001", "--deadline", "250"]).unwrap();
        assert_eq!(t.via, Via::Server("127.0.0.1:7001".to_owned()));
        assert_eq!(t.deadline, Duration::from_millis(250));
        assert!(
            target(&["--server", "a:1", "--registry", "b:2"])
                .unwrap_err()
                .contains("ArgumentConflict")
        );
        let t = target(&["--metadata", "k=v", "--metadata", "x=1=2"]).unwrap();
        assert_eq!(
            t.metadata,
            [("k".into(), "v".into()), ("x".into(), "1=2".into())]
        );
        assert!(target(&["--metadata", "k"]).is_err());
    }
}
