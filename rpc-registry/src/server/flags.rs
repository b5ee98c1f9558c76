//! The flags of `rpc-registry serve`: one for every field of [`RegistryConfig`] and of its RPC server's
//! [`ServerConfig`](rpc_core::ServerConfig) (frame limits included), each with its default in `--help` (taken
//! from the constant that defines it), and the addresses, TTL, token, credentials and TLS files also from the
//! environment (`RPC_REGISTRY_*`), as deployments set them. [`ServeFlags::config`] turns them into a
//! [`RegistryConfig`], refusing a bad token without showing it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use rpc_core::codec::config as codec;
use rpc_core::server::config as server;
use rpc_core::tls::{ClientAuth, ServerTls};

use crate::server::config::{self as registry, AddressCheck, RegistryConfig};
use crate::server::credentials::Credentials;
use crate::token::{check_token, hidden};

const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The flags of `rpc-registry serve`. Their `Debug` hides the token.
#[derive(Args)]
pub struct ServeFlags {
    /// Address of the registry's RPC API (what instances and clients connect to).
    #[arg(long, env = "RPC_REGISTRY_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Address of the HTTP port: the dashboard (`/`), the JSON API (`/v1/services`, `/v1/services/{name}`,
    /// `/v1/services/{name}/methods`, `/v1/overview`, `/healthz`), Prometheus metrics (`/metrics`) and, with
    /// --gateway, calls in JSON (`POST /call/{Service}/{method}`).
    #[arg(long, env = "RPC_REGISTRY_HTTP", default_value = "127.0.0.1:7071")]
    pub http: SocketAddr,
    /// Path of a Unix domain socket to serve the RPC API on too (unix only), for instances and clients on this
    /// host; the same calls, limits and credentials as --listen, never TLS (the socket file's permissions guard
    /// it). A stale socket file nothing listens on is replaced; the file is removed at exit. [default: none]
    #[arg(long, env = "RPC_REGISTRY_UNIX_SOCKET")]
    pub unix_socket: Option<PathBuf>,
    /// Milliseconds after its last heartbeat at which an instance is evicted; instances heartbeat every
    /// third of it.
    #[arg(long, env = "RPC_REGISTRY_TTL_MS", default_value_t = ms(registry::DEFAULT_TTL))]
    pub ttl_ms: u64,
    /// Token that registrations, heartbeats and deregistrations must carry; it may write every service and
    /// renew, remove or supersede any instance. 8 to 4,096 visible ASCII characters. Without a token or a
    /// credentials file, anyone who can reach the registry can register. [default: none]
    #[arg(long, env = crate::TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    /// JSON file of per-service tokens and client-certificate names:
    /// {"tokens": [{"token": "...", "services": ["Calc"]}], "identities": [{"name": "calc.example", "services":
    /// ["*"]}]}. [default: none]
    #[arg(long, env = "RPC_REGISTRY_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// What to check of the address an instance registers: `peer` (its IP is the caller's; over
    /// --unix-socket, one of this host's), `reachable`
    /// (something accepts connections there), or `off`. `peer` and `reachable` refuse port 0.
    #[arg(long, value_enum, default_value_t = Check::Peer)]
    pub address_check: Check,
    /// Milliseconds `--address-check reachable` waits for the address to accept a connection.
    #[arg(long, default_value_t = ms(registry::DEFAULT_ADDRESS_CHECK_TIMEOUT))]
    pub address_check_timeout_ms: u64,
    /// Longest a watch waits for a change before it answers unchanged, in milliseconds.
    #[arg(long, default_value_t = ms(registry::DEFAULT_MAX_WATCH_WAIT))]
    pub max_watch_wait_ms: u64,
    /// Most instances registered at once, all services together.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_INSTANCES)]
    pub max_instances: usize,
    /// Most instances of one service.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_INSTANCES_PER_SERVICE)]
    pub max_instances_per_service: usize,
    /// Most services tracked, those only watched included.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_SERVICES)]
    pub max_services: usize,
    /// Most metadata entries of one instance.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_METADATA_ENTRIES)]
    pub max_metadata_entries: usize,
    /// Most bytes of metadata (keys and values) of one instance.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_METADATA_BYTES)]
    pub max_metadata_bytes: usize,
    /// Longest service name or address, in bytes.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_NAME_LEN)]
    pub max_name_len: usize,
    /// Most HTTP long polls (open dashboards) waiting at once.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_HTTP_WATCHERS)]
    pub max_http_watchers: usize,
    /// A host name (besides IP addresses and `localhost`) that the dashboard's writes may be addressed to;
    /// repeatable. Writes addressed to other names are refused (DNS rebinding). [default: none]
    #[arg(long = "http-allowed-host", value_name = "NAME")]
    pub http_allowed_hosts: Vec<String>,
    /// Directory where the registry keeps its rules (`DIR/rules/SERVICE.json`, written atomically), so that a
    /// restarted registry serves the same rules. Instances are not kept: they register again.
    #[arg(
        long,
        env = "RPC_REGISTRY_DATA_DIR",
        default_value = "rpc-registry-data"
    )]
    pub data_dir: PathBuf,
    /// Where instances and rules are kept: `memory` (this process; rules and weights in --data-dir) or `etcd`
    /// (shared by every replica given the same --etcd-endpoints and --etcd-prefix; needs a binary built with
    /// the `etcd` feature).
    #[arg(long, env = "RPC_REGISTRY_STORE", value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,
    /// etcd's client URLs for `--store etcd`, comma-separated (`http://10.0.0.1:2379,http://10.0.0.2:2379`).
    /// [default: none]
    #[arg(long, env = "RPC_REGISTRY_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// The prefix of every key the registry writes in etcd: registries of different prefixes share one etcd.
    #[arg(
        long,
        env = "RPC_REGISTRY_ETCD_PREFIX",
        default_value = "/rpc-registry/"
    )]
    pub etcd_prefix: String,
    /// This replica's name among the replicas of `--store etcd`, shown by `/healthz`, the dashboard and `ls`.
    /// [default: made from the process id and the time]
    #[arg(long, env = "RPC_REGISTRY_REPLICA_NAME")]
    pub replica_name: Option<String>,
    /// The address at which clients reach this replica's RPC API, as the other replicas show it. [default:
    /// --listen]
    #[arg(long, env = "RPC_REGISTRY_ADVERTISE")]
    pub advertise: Option<String>,
    /// Milliseconds the instances a replica held outlive it in etcd (its etcd lease's TTL, whole seconds, at
    /// least 2 s). Each instance moves to another replica within a heartbeat, but each move is an etcd write:
    /// a replica holding more instances than etcd writes in a TTL wants a longer lease. [default: --ttl-ms]
    #[arg(long, env = "RPC_REGISTRY_ETCD_LEASE_TTL_MS")]
    pub etcd_lease_ttl_ms: Option<u64>,
    /// Most revisions of one service's rules kept (every applied revision is, for rollbacks); one more is
    /// refused.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_RULES_REVISIONS)]
    pub max_rules_revisions: usize,
    /// Milliseconds the registry waits for an instance to describe its service (`rpc.Reflection`, for
    /// `/v1/services/{name}/methods` and the gateway), connection included, before it asks another.
    #[arg(long, default_value_t = ms(registry::DEFAULT_DESCRIBE_TIMEOUT))]
    pub describe_timeout_ms: u64,
    /// Most service descriptions kept (one per service, instance address and incarnation); past it the
    /// oldest is dropped.
    #[arg(long, default_value_t = registry::DEFAULT_MAX_DESCRIPTIONS)]
    pub max_descriptions: usize,
    /// Serve calls in JSON on the HTTP port: `POST /call/{Service}/{method}` with the arguments as a JSON
    /// object calls an instance of the service (balanced, following the registry's rules and retries) and
    /// answers its value in JSON. Callers need the credential of the registry's reads, when reads need one.
    /// [default: false]
    #[arg(long, env = "RPC_REGISTRY_GATEWAY")]
    pub gateway: bool,
    /// Largest body of a gateway call, in bytes; a larger one is answered 413.
    #[arg(long, default_value_t = registry::DEFAULT_GATEWAY_MAX_BODY)]
    pub gateway_max_body: usize,
    /// Most services the gateway keeps a client of (with its connections to their instances); past it, the
    /// one used least recently is dropped.
    #[arg(long, default_value_t = registry::DEFAULT_GATEWAY_MAX_SERVICES)]
    pub gateway_max_services: usize,
    /// Most gateway calls at once, all services together (from before a call's body is read to its answer);
    /// one more is answered 429 with `Retry-After: 1`.
    #[arg(long, default_value_t = registry::DEFAULT_GATEWAY_MAX_IN_FLIGHT)]
    pub gateway_max_in_flight: usize,
    /// Milliseconds of a gateway call's longest deadline: a caller's `rpc-timeout-ms` or `connect-timeout-ms`
    /// above it is lowered to it, and a call without either gets it.
    #[arg(long, default_value_t = ms(registry::DEFAULT_GATEWAY_MAX_DEADLINE))]
    pub gateway_max_deadline_ms: u64,
    /// Certificate chain (PEM) to serve the API over TLS with; needs --tls-key. [default: none]
    #[arg(long, env = "RPC_REGISTRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert. [default: none]
    #[arg(long, env = "RPC_REGISTRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates are verified against (mutual TLS); the DNS names of a verified
    /// client certificate then count as credentials (see --credentials). Needs --tls-cert. [default: none]
    #[arg(long, env = "RPC_REGISTRY_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: refuse clients without a certificate (otherwise they may prove themselves with a
    /// token). [default: false]
    #[arg(long, requires = "tls_ca")]
    pub require_client_cert: bool,
    /// Connections served at once: one per instance, plus room for readers (`ls`, `watch`, discovery). At
    /// most what the open-file limit leaves room for. [default: --max-instances + 1024]
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Connections still in their TLS handshake or before their first whole frame; past it, the oldest of
    /// them is closed to make room for a newcomer.
    #[arg(long, default_value_t = server::DEFAULT_MAX_HANDSHAKING_CONNECTIONS)]
    pub max_handshaking_connections: usize,
    /// Calls in flight on one connection; one more is refused. A process shares one connection for all its
    /// watches (one per service) and heartbeats: room for a watch of every service tracked, plus 1024 calls.
    /// [default: --max-services + 1024]
    #[arg(long)]
    pub max_in_flight_per_connection: Option<usize>,
    /// On shutdown, milliseconds calls in flight may take to finish.
    #[arg(long, default_value_t = ms(server::DEFAULT_DRAIN_TIMEOUT))]
    pub drain_timeout_ms: u64,
    /// Bytes of answers queued for one connection beyond which it takes no new request.
    #[arg(long, default_value_t = server::DEFAULT_MAX_PENDING_OUTPUT)]
    pub max_pending_output: usize,
    /// Milliseconds a connection's queued answers may wait for the peer to read before it is closed.
    #[arg(long, default_value_t = ms(server::DEFAULT_WRITE_TIMEOUT))]
    pub write_timeout_ms: u64,
    /// Milliseconds a connection with no call in flight may stay silent before it is closed.
    #[arg(long, default_value_t = ms(server::DEFAULT_IDLE_TIMEOUT))]
    pub idle_timeout_ms: u64,
    /// Milliseconds the rest of a frame may take to arrive once its first byte has.
    #[arg(long, default_value_t = ms(server::DEFAULT_FRAME_TIMEOUT))]
    pub frame_timeout_ms: u64,
    /// Milliseconds the TLS handshake of a new connection may take.
    #[arg(long, default_value_t = ms(server::DEFAULT_HANDSHAKE_TIMEOUT))]
    pub handshake_timeout_ms: u64,
    /// Poll each call once in its connection's read loop before giving it a task of its own.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub inline_handlers: bool,
    /// Largest frame, in bytes, header and both sections included.
    #[arg(long, default_value_t = codec::DEFAULT_MAX_FRAME_LEN)]
    pub max_frame_len: u32,
    /// Largest metadata section of a frame, in bytes.
    #[arg(long, default_value_t = codec::DEFAULT_MAX_METADATA_LEN)]
    pub max_frame_metadata_len: u16,
    /// Most metadata entries of a frame.
    #[arg(long, default_value_t = codec::DEFAULT_MAX_METADATA_ENTRIES)]
    pub max_frame_metadata_entries: u16,
    /// Most memory, in bytes, that a call's decoded arguments may take.
    #[arg(long, default_value_t = codec::DEFAULT_MAX_DECODED_LEN)]
    pub max_decoded_len: usize,
    /// Encodings the API accepts compressed requests in and compresses answers with, for clients that offer
    /// compression: comma-separated, most preferred first (`zstd,lz4`), `supported` (every encoding of the
    /// build) or `none`.
    #[arg(long, value_parser = parse_encodings, default_value = "supported")]
    pub compression: Encodings,
    /// Smallest answer compressed, in bytes.
    #[arg(long, default_value_t = rpc_core::codec::compression::DEFAULT_THRESHOLD)]
    pub compression_threshold: usize,
    /// Streams open at once on one connection (protocol 1.1; a process subscribes to each service it watches
    /// on one connection); one more is refused. [default: --max-services]
    #[arg(long)]
    pub max_streams_per_connection: Option<usize>,
    /// Bytes of a client's items that one stream may have in flight before they are read (at least 65536).
    #[arg(long, default_value_t = rpc_core::stream::DEFAULT_STREAM_WINDOW)]
    pub stream_window: u64,
}

impl std::fmt::Debug for ServeFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every flag, the token hidden.
        let ServeFlags {
            listen,
            http,
            unix_socket,
            ttl_ms,
            token,
            credentials,
            address_check,
            address_check_timeout_ms,
            max_watch_wait_ms,
            max_instances,
            max_instances_per_service,
            max_services,
            max_metadata_entries,
            max_metadata_bytes,
            max_name_len,
            max_http_watchers,
            http_allowed_hosts,
            data_dir,
            store,
            etcd_endpoints,
            etcd_prefix,
            replica_name,
            advertise,
            etcd_lease_ttl_ms,
            max_rules_revisions,
            describe_timeout_ms,
            max_descriptions,
            gateway,
            gateway_max_body,
            gateway_max_services,
            gateway_max_in_flight,
            gateway_max_deadline_ms,
            tls_cert,
            tls_key,
            tls_ca,
            require_client_cert,
            max_connections,
            max_handshaking_connections,
            max_in_flight_per_connection,
            drain_timeout_ms,
            max_pending_output,
            write_timeout_ms,
            idle_timeout_ms,
            frame_timeout_ms,
            handshake_timeout_ms,
            inline_handlers,
            max_frame_len,
            max_frame_metadata_len,
            max_frame_metadata_entries,
            max_decoded_len,
            compression,
            compression_threshold,
            max_streams_per_connection,
            stream_window,
        } = self;
        f.debug_struct("ServeFlags")
            .field("listen", listen)
            .field("http", http)
            .field("unix_socket", unix_socket)
            .field("ttl_ms", ttl_ms)
            .field("token", &hidden(token))
            .field("credentials", credentials)
            .field("address_check", address_check)
            .field("address_check_timeout_ms", address_check_timeout_ms)
            .field("max_watch_wait_ms", max_watch_wait_ms)
            .field("max_instances", max_instances)
            .field("max_instances_per_service", max_instances_per_service)
            .field("max_services", max_services)
            .field("max_metadata_entries", max_metadata_entries)
            .field("max_metadata_bytes", max_metadata_bytes)
            .field("max_name_len", max_name_len)
            .field("max_http_watchers", max_http_watchers)
            .field("http_allowed_hosts", http_allowed_hosts)
            .field("data_dir", data_dir)
            .field("store", store)
            .field("etcd_endpoints", etcd_endpoints)
            .field("etcd_prefix", etcd_prefix)
            .field("replica_name", replica_name)
            .field("advertise", advertise)
            .field("etcd_lease_ttl_ms", etcd_lease_ttl_ms)
            .field("max_rules_revisions", max_rules_revisions)
            .field("describe_timeout_ms", describe_timeout_ms)
            .field("max_descriptions", max_descriptions)
            .field("gateway", gateway)
            .field("gateway_max_body", gateway_max_body)
            .field("gateway_max_services", gateway_max_services)
            .field("gateway_max_in_flight", gateway_max_in_flight)
            .field("gateway_max_deadline_ms", gateway_max_deadline_ms)
            .field("tls_cert", tls_cert)
            .field("tls_key", tls_key)
            .field("tls_ca", tls_ca)
            .field("require_client_cert", require_client_cert)
            .field("max_connections", max_connections)
            .field("max_handshaking_connections", max_handshaking_connections)
            .field("max_in_flight_per_connection", max_in_flight_per_connection)
            .field("drain_timeout_ms", drain_timeout_ms)
            .field("max_pending_output", max_pending_output)
            .field("write_timeout_ms", write_timeout_ms)
            .field("idle_timeout_ms", idle_timeout_ms)
            .field("frame_timeout_ms", frame_timeout_ms)
            .field("handshake_timeout_ms", handshake_timeout_ms)
            .field("inline_handlers", inline_handlers)
            .field("max_frame_len", max_frame_len)
            .field("max_frame_metadata_len", max_frame_metadata_len)
            .field("max_frame_metadata_entries", max_frame_metadata_entries)
            .field("max_decoded_len", max_decoded_len)
            .field("compression", compression)
            .field("compression_threshold", compression_threshold)
            .field("max_streams_per_connection", max_streams_per_connection)
            .field("stream_window", stream_window)
            .finish()
    }
}

/// `--store`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In this process.
    Memory,
    /// In etcd, shared by replicas.
    Etcd,
}

/// `--address-check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Check {
    /// Nothing is checked.
    Off,
    /// The address's IP is the caller's.
    Peer,
    /// Something accepts connections at the address.
    Reachable,
}

impl ServeFlags {
    /// The store the flags name.
    fn store_config(&self) -> Result<crate::StoreConfig, String> {
        match self.store {
            StoreKind::Memory => Ok(crate::StoreConfig::Memory),
            #[cfg(feature = "etcd")]
            StoreKind::Etcd => {
                if self.etcd_endpoints.is_empty() {
                    return Err(String::from(
                        "--store etcd needs --etcd-endpoints: etcd's client URLs, comma-separated",
                    ));
                }
                let mut etcd = crate::EtcdConfig::new(self.etcd_endpoints.clone());
                etcd.prefix = self.etcd_prefix.clone();
                if let Some(name) = &self.replica_name {
                    etcd.replica = name.clone();
                }
                etcd.api = self
                    .advertise
                    .clone()
                    .unwrap_or_else(|| self.listen.to_string());
                etcd.http = Some(self.http.to_string());
                etcd.lease_ttl = self.etcd_lease_ttl_ms.map(Duration::from_millis);
                Ok(crate::StoreConfig::Etcd(etcd))
            }
            #[cfg(not(feature = "etcd"))]
            StoreKind::Etcd => Err(String::from(
                "--store etcd: this rpc-registry was built without the `etcd` feature; build it with \
                 `cargo build --release -p rpc-registry --features etcd`",
            )),
        }
    }

    /// The registry's configuration, with its files read (credentials, TLS). `max_connections` is the flag's,
    /// or `--max-instances` + [`READER_CONNECTIONS`](registry::READER_CONNECTIONS) (the caller may lower it to
    /// fit the open-file limit); `max_in_flight_per_connection` the flag's, or `--max-services` +
    /// [`CALLS_BESIDE_WATCHES`](registry::CALLS_BESIDE_WATCHES).
    pub fn config(&self) -> Result<RegistryConfig, Box<dyn std::error::Error>> {
        if let Some(token) = &self.token {
            // The rule's message, never clap's, which would quote the value.
            check_token(token).map_err(|e| format!("--token (or {}): {e}", crate::TOKEN_ENV))?;
        }
        let positive = |flag: &str, value: u64| match value {
            0 => Err(format!("--{flag} must be at least 1")),
            _ => Ok(Duration::from_millis(value)),
        };
        let credentials = match &self.credentials {
            Some(path) => Credentials::from_file(path)?,
            None => Credentials::default(),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let client_auth = match (&self.tls_ca, self.require_client_cert) {
                    (Some(ca), true) => ClientAuth::Required(ca),
                    (Some(ca), false) => ClientAuth::Optional(ca),
                    (None, _) => ClientAuth::None,
                };
                Some(ServerTls::from_pem_files(cert, key, client_auth)?)
            }
            _ => None,
        };
        let config = RegistryConfig {
            ttl: positive("ttl-ms", self.ttl_ms)?,
            token: self.token.clone(),
            credentials,
            address_check: match self.address_check {
                Check::Off => AddressCheck::Off,
                Check::Peer => AddressCheck::Peer,
                Check::Reachable => AddressCheck::Reachable,
            },
            address_check_timeout: positive(
                "address-check-timeout-ms",
                self.address_check_timeout_ms,
            )?,
            max_watch_wait: Duration::from_millis(self.max_watch_wait_ms),
            max_instances: self.max_instances,
            max_instances_per_service: self.max_instances_per_service,
            max_services: self.max_services,
            max_metadata_entries: self.max_metadata_entries,
            max_metadata_bytes: self.max_metadata_bytes,
            max_name_len: self.max_name_len,
            max_http_watchers: self.max_http_watchers,
            http_allowed_hosts: self.http_allowed_hosts.clone(),
            data_dir: Some(self.data_dir.clone()),
            max_rules_revisions: self.max_rules_revisions,
            describe_timeout: positive("describe-timeout-ms", self.describe_timeout_ms)?,
            max_descriptions: self.max_descriptions,
            gateway: self.gateway,
            gateway_max_body: self.gateway_max_body,
            gateway_max_services: self.gateway_max_services,
            gateway_max_in_flight: self.gateway_max_in_flight,
            gateway_max_deadline: positive(
                "gateway-max-deadline-ms",
                self.gateway_max_deadline_ms,
            )?,
            store: self.store_config()?,
            tls,
            server: rpc_core::ServerConfig {
                max_connections: self
                    .max_connections
                    .unwrap_or(RegistryConfig::connections_for(self.max_instances)),
                max_handshaking_connections: self.max_handshaking_connections,
                max_in_flight_per_connection: self
                    .max_in_flight_per_connection
                    .unwrap_or(RegistryConfig::in_flight_for(self.max_services)),
                drain_timeout: Duration::from_millis(self.drain_timeout_ms),
                max_pending_output: self.max_pending_output,
                write_timeout: positive("write-timeout-ms", self.write_timeout_ms)?,
                codec: rpc_core::codec::Config {
                    max_frame_len: self.max_frame_len,
                    max_metadata_len: self.max_frame_metadata_len,
                    max_metadata_entries: self.max_frame_metadata_entries,
                    max_decoded_len: self.max_decoded_len,
                },
                idle_timeout: positive("idle-timeout-ms", self.idle_timeout_ms)?,
                frame_timeout: positive("frame-timeout-ms", self.frame_timeout_ms)?,
                handshake_timeout: positive("handshake-timeout-ms", self.handshake_timeout_ms)?,
                inline_handlers: self.inline_handlers,
                compression: rpc_core::CompressionConfig {
                    encodings: self.compression.0.clone(),
                    threshold: self.compression_threshold,
                },
                max_streams_per_connection: self
                    .max_streams_per_connection
                    .unwrap_or(self.max_services),
                stream_window: self.stream_window,
            },
        };
        config.validate()?;
        Ok(config)
    }
}

/// The encodings of `--compression`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encodings(pub Vec<rpc_core::Encoding>);

/// `supported`, `none`, or a comma-separated list of encodings this build has.
fn parse_encodings(text: &str) -> Result<Encodings, String> {
    match text.trim() {
        "supported" => Ok(Encodings(rpc_core::Encoding::supported().collect())),
        "none" | "" => Ok(Encodings(Vec::new())),
        list => list
            .split(',')
            .map(|name| rpc_core::Encoding::parse(name).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Encodings),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::server::config::{CALLS_BESIDE_WATCHES, READER_CONNECTIONS};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ServeFlags,
    }

    /// Every field of the configuration (`server.codec.max_frame_len` for nested ones) and its flags. A field
    /// missing here fails `every_field_is_a_flag_that_sets_it`.
    const FIELDS: &[(&str, &[&str])] = &[
        ("ttl", &["ttl-ms"]),
        ("token", &["token"]),
        ("credentials", &["credentials"]),
        ("address_check", &["address-check"]),
        ("address_check_timeout", &["address-check-timeout-ms"]),
        ("max_watch_wait", &["max-watch-wait-ms"]),
        ("max_instances", &["max-instances"]),
        ("max_instances_per_service", &["max-instances-per-service"]),
        ("max_services", &["max-services"]),
        ("max_metadata_entries", &["max-metadata-entries"]),
        ("max_metadata_bytes", &["max-metadata-bytes"]),
        ("max_name_len", &["max-name-len"]),
        ("max_http_watchers", &["max-http-watchers"]),
        ("http_allowed_hosts", &["http-allowed-host"]),
        ("data_dir", &["data-dir"]),
        ("max_rules_revisions", &["max-rules-revisions"]),
        ("describe_timeout", &["describe-timeout-ms"]),
        ("max_descriptions", &["max-descriptions"]),
        ("gateway", &["gateway"]),
        ("gateway_max_body", &["gateway-max-body"]),
        ("gateway_max_services", &["gateway-max-services"]),
        ("gateway_max_in_flight", &["gateway-max-in-flight"]),
        ("gateway_max_deadline", &["gateway-max-deadline-ms"]),
        (
            "tls",
            &["tls-cert", "tls-key", "tls-ca", "require-client-cert"],
        ),
        ("server.max_connections", &["max-connections"]),
        (
            "server.max_handshaking_connections",
            &["max-handshaking-connections"],
        ),
        (
            "server.max_in_flight_per_connection",
            &["max-in-flight-per-connection"],
        ),
        ("server.drain_timeout", &["drain-timeout-ms"]),
        ("server.max_pending_output", &["max-pending-output"]),
        ("server.write_timeout", &["write-timeout-ms"]),
        ("server.codec.max_frame_len", &["max-frame-len"]),
        ("server.codec.max_metadata_len", &["max-frame-metadata-len"]),
        (
            "server.codec.max_metadata_entries",
            &["max-frame-metadata-entries"],
        ),
        ("server.codec.max_decoded_len", &["max-decoded-len"]),
        ("server.idle_timeout", &["idle-timeout-ms"]),
        ("server.frame_timeout", &["frame-timeout-ms"]),
        ("server.handshake_timeout", &["handshake-timeout-ms"]),
        ("server.inline_handlers", &["inline-handlers"]),
        (
            "server.compression",
            &["compression", "compression-threshold"],
        ),
        (
            "server.max_streams_per_connection",
            &["max-streams-per-connection"],
        ),
        ("server.stream_window", &["stream-window"]),
        (
            "store",
            &[
                "store",
                "etcd-endpoints",
                "etcd-prefix",
                "replica-name",
                "advertise",
                "etcd-lease-ttl-ms",
            ],
        ),
    ];

    /// The fields of a `{:#?}` rendering, as `path -> value`, descending into `server` and `server.codec`
    /// only (credentials and TLS are one field each).
    fn fields(config: &RegistryConfig) -> Vec<(String, String)> {
        let text = format!("{config:#?}");
        let mut out = Vec::new();
        let mut path: Vec<String> = Vec::new();
        for line in text.lines().skip(1) {
            let indent = line.len() - line.trim_start().len();
            let depth = indent / 4;
            let Some((name, value)) = line.trim_start().split_once(": ") else {
                continue;
            };
            if depth == 0 || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            path.truncate(depth - 1);
            let parent = path.join(".");
            if !(parent.is_empty() || parent == "server" || parent == "server.codec")
                || path.len() != depth - 1
            {
                continue;
            }
            path.push(name.to_owned());
            out.push((path.join("."), value.trim_end_matches(',').to_owned()));
        }
        out
    }

    #[test]
    fn every_field_is_a_flag_that_sets_it() {
        let defaults = RegistryConfig::default();
        let listed: Vec<&str> = FIELDS.iter().map(|(field, _)| *field).collect();
        let found: Vec<String> = fields(&defaults)
            .into_iter()
            .map(|(path, _)| path)
            .filter(|path| path != "server" && path != "server.codec")
            .collect();
        assert_eq!(
            found, listed,
            "every field of RegistryConfig (and of its ServerConfig) needs a flag of `serve`, listed in FIELDS"
        );

        let dir = std::env::temp_dir().join(format!("rpc-registry-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let credentials = dir.join("credentials.json");
        std::fs::write(
            &credentials,
            r#"{"tokens": [{"token": "a-granted-token", "services": ["Calc"]}]}"#,
        )
        .unwrap();
        let credentials = credentials.display().to_string();
        let args = [
            ("ttl-ms", "1234"),
            ("token", "an-admin-token"),
            ("credentials", &credentials),
            ("address-check", "reachable"),
            ("address-check-timeout-ms", "77"),
            ("max-watch-wait-ms", "78"),
            ("max-instances", "79"),
            ("max-instances-per-service", "80"),
            ("max-services", "81"),
            ("max-metadata-entries", "82"),
            ("max-metadata-bytes", "83"),
            ("max-name-len", "84"),
            ("max-http-watchers", "85"),
            ("http-allowed-host", "registry.internal"),
            ("data-dir", "some-data-dir"),
            ("max-rules-revisions", "99"),
            ("describe-timeout-ms", "102"),
            ("max-descriptions", "103"),
            ("gateway-max-body", "104"),
            ("gateway-max-services", "105"),
            ("gateway-max-in-flight", "106"),
            ("gateway-max-deadline-ms", "107"),
            ("max-connections", "86"),
            ("max-in-flight-per-connection", "87"),
            ("drain-timeout-ms", "88"),
            ("max-pending-output", "89"),
            ("write-timeout-ms", "90"),
            ("max-frame-len", "91"),
            ("max-frame-metadata-len", "92"),
            ("max-frame-metadata-entries", "93"),
            ("max-decoded-len", "94"),
            ("idle-timeout-ms", "95"),
            ("frame-timeout-ms", "96"),
            ("handshake-timeout-ms", "97"),
            ("inline-handlers", "false"),
            ("compression", "lz4"),
            ("compression-threshold", "2048"),
            ("max-handshaking-connections", "98"),
            ("max-streams-per-connection", "101"),
            ("stream-window", "131072"),
        ];
        // Switches take no value.
        let switches = ["--gateway"].map(String::from);
        let argv = std::iter::once(String::from("serve"))
            .chain(switches)
            .chain(
                args.iter()
                    .flat_map(|(f, v)| [format!("--{f}"), (*v).to_owned()]),
            );
        let config = Cli::try_parse_from(argv).unwrap().flags.config().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(config.credentials.tokens.len(), 1, "--credentials was read");
        assert_eq!(
            config.server.compression,
            rpc_core::CompressionConfig {
                encodings: vec![rpc_core::Encoding::Lz4],
                threshold: 2048
            }
        );
        let before = fields(&defaults);
        let after = fields(&config);
        for ((path, old), (_, new)) in before.iter().zip(&after) {
            if path == "server"
                || path == "server.codec"
                || path == "server.compression"
                || path == "tls"
                || path == "credentials"
                || path == "store"
            {
                // Nested structs differ through their fields (credentials: below); TLS needs certificates
                // (tests/cli.rs serves with them); the etcd store needs the `etcd` feature (see
                // `store_etcd_names_its_endpoints_or_the_missing_feature`).
                continue;
            }
            assert_ne!(old, new, "no flag set {path}");
        }
    }

    #[test]
    fn store_etcd_names_its_endpoints_or_the_missing_feature() {
        let parse = |args: &[&str]| {
            let argv = std::iter::once("serve").chain(args.iter().copied());
            Cli::try_parse_from(argv).unwrap().flags.config()
        };
        let no_endpoints = parse(&["--store", "etcd"]).unwrap_err().to_string();
        let given = parse(&[
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--replica-name",
            "r1",
            "--listen",
            "127.0.0.1:7000",
            "--etcd-lease-ttl-ms",
            "30000",
        ]);
        #[cfg(feature = "etcd")]
        {
            assert!(no_endpoints.contains("--etcd-endpoints"), "{no_endpoints}");
            let Ok(config) = given else { panic!("refused") };
            let crate::StoreConfig::Etcd(etcd) = config.store else {
                panic!("not etcd")
            };
            assert_eq!(etcd.endpoints, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
            assert_eq!(
                (etcd.replica.as_str(), etcd.api.as_str()),
                ("r1", "127.0.0.1:7000")
            );
            assert_eq!(etcd.prefix, "/rpc-registry/");
            assert_eq!(etcd.lease_ttl, Some(Duration::from_secs(30)));
        }
        #[cfg(not(feature = "etcd"))]
        {
            assert!(no_endpoints.contains("`etcd` feature"), "{no_endpoints}");
            let refused = given.unwrap_err().to_string();
            assert!(refused.contains("--features etcd"), "{refused}");
        }
    }

    #[test]
    fn the_connection_limits_follow_the_instances_and_services_unless_given() {
        let parse = |args: &[&str]| {
            let argv = std::iter::once("serve").chain(args.iter().copied());
            Cli::try_parse_from(argv).unwrap().flags.config().unwrap()
        };
        let defaults = parse(&[]);
        let expected = RegistryConfig::default();
        assert_eq!(
            defaults.server.max_connections,
            expected.server.max_connections
        );
        assert_eq!(
            defaults.server.max_in_flight_per_connection,
            expected.server.max_in_flight_per_connection
        );
        let sized = parse(&["--max-instances", "5", "--max-services", "7"]);
        assert_eq!(sized.server.max_connections, 5 + READER_CONNECTIONS);
        assert_eq!(
            sized.server.max_in_flight_per_connection,
            7 + CALLS_BESIDE_WATCHES
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let cli = Cli::try_parse_from(["serve", "--token", "an-admin-secret"]).unwrap();
        let debug = format!("{:?}", cli.flags);
        assert!(!debug.contains("an-admin-secret"), "{debug}");
        assert!(debug.contains("token: Some(\"<hidden>\")"), "{debug}");
        assert!(debug.contains("listen: 127.0.0.1:7070"), "{debug}");
    }

    #[test]
    fn help_gives_every_default() {
        let mut command = Cli::command();
        let help = command.render_long_help().to_string();
        for (field, flags) in FIELDS {
            for flag in *flags {
                let at = help
                    .find(&format!("\n      --{flag} "))
                    .or_else(|| help.find(&format!("\n      --{flag}\n")))
                    .unwrap_or_else(|| panic!("--help lacks --{flag} ({field}):\n{help}"));
                // A flag's paragraph runs until the next flag.
                let rest = &help[at + 1..];
                let end = [rest.find("\n      --"), rest.find("\n  -")]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(rest.len());
                let paragraph = &rest[..end];
                assert!(
                    paragraph.contains("[default: "),
                    "--help gives no default for --{flag}:\n{paragraph}"
                );
            }
        }
        assert!(help.contains(&format!(
            "[default: --max-instances + {READER_CONNECTIONS}]"
        )));
        assert!(help.contains(&format!(
            "[default: --max-services + {CALLS_BESIDE_WATCHES}]"
        )));
    }
}
