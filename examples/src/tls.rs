//! The TLS flags of the example programs (`--tls-cert`, `--tls-key`, `--tls-ca`) and the settings they make.
//!
//! A program's certificate and key are its identity: a server serves with them, and presents them as a client
//! (to the registry, say) for mutual TLS. `--tls-ca` is the CA it trusts: the certificates of the servers it
//! connects to must chain to it, and so must those of the clients that present one.

use std::path::PathBuf;

use rpc_core::tls::{ClientAuth, ClientTls, ServerTls, TlsError};

/// The TLS flags.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM): to serve with over TLS, and to present as a client (mutual TLS). Needs
    /// --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) to trust: connections to servers (the registry, calc servers) then use TLS, and
    /// the certificates of clients that present one are verified against it.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Settings for serving: with --tls-cert and --tls-key; client certificates verified against --tls-ca if
    /// given (required if `require_client_cert`).
    pub fn server(&self, require_client_cert: bool) -> Result<Option<ServerTls>, TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let auth = match (&self.tls_ca, require_client_cert) {
            (Some(ca), true) => ClientAuth::Required(ca),
            (Some(ca), false) => ClientAuth::Optional(ca),
            (None, _) => ClientAuth::None,
        };
        ServerTls::from_pem_files(cert, key, auth).map(Some)
    }

    /// Settings for connecting: with --tls-ca, presenting --tls-cert and --tls-key if given.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        ClientTls::from_pem_files(ca, identity).map(Some)
    }
}
