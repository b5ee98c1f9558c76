//! TLS for connections (feature `tls`), through rustls with the ring provider: a server's certificate and key,
//! and optionally the CA whose certificates it asks clients for (mutual TLS, required or optional); a client's
//! trusted CA and, for mutual TLS, its own certificate and key. Certificates and keys are read from PEM.
//!
//! ```no_run
//! # fn main() -> Result<(), rpc_core::tls::TlsError> {
//! use rpc_core::tls::{ClientAuth, ClientTls, ServerTls};
//! // A server that requires client certificates signed by `ca.pem`.
//! let server = ServerTls::from_pem_files("server.pem", "server.key", ClientAuth::Required("ca.pem".as_ref()))?;
//! // A client that trusts `ca.pem` and presents its own certificate.
//! let client = ClientTls::from_pem_files("ca.pem", Some(("client.pem".as_ref(), "client.key".as_ref())))?;
//! # let _ = (server, client); Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No certificate where one was expected.
    #[error(
        "{what}: expected at least one PEM certificate (-----BEGIN CERTIFICATE-----), found none"
    )]
    NoCertificate {
        /// What was read.
        what: String,
    },
    /// No private key where one was expected.
    #[error("{what}: expected a PEM private key (PKCS#8, PKCS#1 or SEC1), found none: {reason}")]
    NoKey {
        /// What was read.
        what: String,
        /// The PEM parser's complaint.
        reason: String,
    },
    /// A PEM section did not parse.
    #[error("{what}: malformed PEM: {reason}")]
    BadPem {
        /// What was read.
        what: String,
        /// The PEM parser's complaint.
        reason: String,
    },
    /// rustls refused the certificates, the key or the settings.
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The verifier of client certificates could not be built (no usable CA certificate, say).
    #[error("cannot verify client certificates: {0}")]
    ClientVerifier(String),
    /// The server name to verify is not a DNS name or an IP address.
    #[error("`{0}` is not a valid server name (a DNS name or an IP address)")]
    BadServerName(String),
}

/// How a server treats client certificates.
#[derive(Clone, Copy, Debug)]
pub enum ClientAuth<'a> {
    /// It does not ask for one.
    None,
    /// It asks, and verifies one against the CA in this PEM file if the client presents it; a client without
    /// one still connects (and proves itself some other way, a token for instance).
    Optional(&'a Path),
    /// Every client must present a certificate signed by the CA in this PEM file.
    Required(&'a Path),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM text.
pub fn certificates_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM text.
pub fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::NoKey {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn roots(ca_pem: &[u8], what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates_from_pem(ca_pem, what)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A server's TLS settings.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// The client's CA, for [`ServerTls::from_pem`]: its PEM text and whether a certificate is required.
#[derive(Clone, Copy, Debug)]
pub struct ClientCa<'a> {
    /// The CA certificates, PEM.
    pub pem: &'a [u8],
    /// Whether every client must present a certificate (otherwise one that does is verified).
    pub required: bool,
}

impl ServerTls {
    /// Settings from PEM texts: the certificate chain (the server's first), its key, and the client CA for
    /// mutual TLS, if any.
    pub fn from_pem(
        cert_chain: &[u8],
        key: &[u8],
        client_ca: Option<ClientCa<'_>>,
    ) -> Result<ServerTls, TlsError> {
        let chain = certificates_from_pem(cert_chain, "the server certificate")?;
        let key = key_from_pem(key, "the server key")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = roots(ca.pem, "the client CA")?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if ca.required {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key)?;
        Ok(ServerTls::from_config(Arc::new(config)))
    }

    /// Settings from PEM files: certificate chain, key, and how to treat client certificates.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_auth: ClientAuth<'_>,
    ) -> Result<ServerTls, TlsError> {
        let chain = read(cert_chain.as_ref())?;
        let key = read(key.as_ref())?;
        let ca = match client_auth {
            ClientAuth::None => None,
            ClientAuth::Optional(path) => Some((read(path)?, false)),
            ClientAuth::Required(path) => Some((read(path)?, true)),
        };
        let client_ca = ca.as_ref().map(|(pem, required)| ClientCa {
            pem,
            required: *required,
        });
        ServerTls::from_pem(&chain, &key, client_ca)
    }

    /// Settings from a rustls configuration made elsewhere.
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> ServerTls {
        ServerTls {
            acceptor: TlsAcceptor::from(config),
        }
    }

    /// Runs the server side of the handshake on `stream`, within `timeout`; on success returns the TLS stream
    /// and the DNS names of the client's verified certificate (none without one).
    pub(crate) async fn accept<S>(
        &self,
        stream: S,
        timeout: Duration,
    ) -> Option<(tokio_rustls::server::TlsStream<S>, Vec<String>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = tokio::time::timeout(timeout, self.acceptor.accept(stream))
            .await
            .ok()?
            .ok()?;
        let names = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(certificate_names)
            .unwrap_or_default();
        Some((stream, names))
    }
}

/// The DNS names of a certificate's subject alternative names.
fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(cert) => cert.valid_dns_names().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

/// A client's TLS settings. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Settings from PEM texts: the CA certificates to trust, and for mutual TLS the client's certificate chain
    /// and key.
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<ClientTls, TlsError> {
        let roots = roots(ca, "the CA")?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(
                certificates_from_pem(chain, "the client certificate")?,
                key_from_pem(key, "the client key")?,
            )?,
        };
        Ok(ClientTls::from_config(Arc::new(config)))
    }

    /// Settings from PEM files: the CA to trust, and for mutual TLS the client's certificate chain and key.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let ca = read(ca.as_ref())?;
        let identity = match identity {
            Some((chain, key)) => Some((read(chain)?, read(key)?)),
            None => None,
        };
        let identity = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        ClientTls::from_pem(&ca, identity)
    }

    /// Settings from a rustls configuration made elsewhere.
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls {
            connector: TlsConnector::from(config),
            server_name: None,
        }
    }

    /// These settings, verifying the server's certificate against `name` (a DNS name or an IP address) rather
    /// than the IP address dialed.
    pub fn with_server_name(mut self, name: &str) -> Result<ClientTls, TlsError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsError::BadServerName(name.to_owned()))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// Runs the client side of the handshake with the server at `ip`.
    pub(crate) async fn connect<S>(
        &self,
        ip: IpAddr,
        stream: S,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self
            .server_name
            .clone()
            .unwrap_or(ServerName::IpAddress(ip.into()));
        self.connector.connect(name, stream).await
    }
}
