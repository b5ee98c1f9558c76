//! The `rpc-registry` binary: parses its command line and calls into the library. `serve` runs a registry
//! (`rpc_registry::serve`, with the flags of `rpc_registry::flags`) until SIGINT or SIGTERM, then drains;
//! `ls [SERVICE]` prints a table of the instances a running registry knows, and `watch SERVICE` prints a
//! service's instances, then a line per change until SIGINT or SIGTERM (`rpc_registry::cli`); `rules check
//! FILE` checks a rules file offline (`rpc_registry::rules_file`); `call SERVICE.METHOD JSON` calls a method of
//! a live service in JSON and `describe [SERVICE]` says what it declares (`rpc_registry::cli::call`,
//! `describe`), exiting as grpcurl does (`rpc_registry::cli::EXIT_CODES`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rpc_core::server::Listener;
use rpc_registry::cli::flags::{TargetFlags, TlsFlags};
use rpc_registry::cli::{CallError, EXIT_CODES, Options, WatchConfig};
use rpc_registry::server::flags::ServeFlags;
use rpc_registry::server::open_files::{connections_that_fit, raise_open_file_limit};
use rpc_registry::{TOKEN_ENV, check_token};

/// The service registry of the rpc framework: instances register and heartbeat, clients watch and balance.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Registry(RegistryCommand),
    #[command(flatten)]
    Service(ServiceCommand),
}

/// The subcommands that run a registry or talk to one.
#[derive(Subcommand)]
enum RegistryCommand {
    /// Runs a registry until Ctrl-C or SIGTERM, then drains.
    ///
    /// Every limit of the registry and of its RPC server is a flag; the open-file limit is raised to the hard
    /// limit at start, and the connection cap lowered to fit it if it must (both said on stderr).
    Serve(Box<ServeFlags>),
    /// Lists the instances a running registry knows, as a table.
    ///
    /// One row per instance of SERVICE (of every service without it): its weight, state (up, or late with its
    /// heartbeats), the age of its last heartbeat, its incarnation and metadata.
    Ls {
        /// The service to list; every service if left out.
        service: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prints the instances of a service, then each change as it happens, until Ctrl-C or SIGTERM.
    ///
    /// One time-stamped line per change: `+` added, `-` removed, `~` weight, incarnation or metadata changed.
    /// When the registry goes away it says so on stderr, retries, and goes on when it is back.
    Watch {
        /// The service to watch.
        service: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rules: routes, call policies, limits and authorization of a service (docs/CONTROL_PLANE.md).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Sets the weight clients see for an instance in place of its own: `0` drains it (no client picks it),
    /// `registered` gives it back its own. It holds when the instance registers again, until undone. Needs
    /// the registry's own token (--token), unless the registry is open.
    Weight {
        /// The service.
        service: String,
        /// The instance's address.
        address: String,
        /// A weight, or `registered`.
        #[arg(value_parser = parse_weight)]
        weight: SetTo,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The subcommands that talk to a service's own servers.
#[derive(Subcommand)]
enum ServiceCommand {
    /// Calls a method of a live service in JSON and prints its answer as JSON.
    ///
    /// The service is found through the registry (its instances, balanced, with the registry's rules and
    /// retries) or called at --server. Its description (rpc.Reflection) is read first: the method must be one
    /// of its unary methods; whether it is idempotent decides retries. The value is printed on stdout; the
    /// method's own error as {"error": TYPE, "detail": JSON}; a failed call on stderr as `STATUS: MESSAGE`.
    ///
    /// Example: rpc-registry call Calc.add '{"a": 2, "b": 3}' --server 127.0.0.1:7001
    #[command(after_help = EXIT_CODES)]
    Call {
        /// The method, SERVICE.METHOD: the method's name is after the last dot (calc.v1.Calc.add).
        method: String,
        /// The arguments, a JSON object keyed by their names: '{"a": 2, "b": 3}'.
        #[arg(default_value = "{}")]
        json: String,
        #[command(flatten)]
        target: TargetFlags,
    },
    /// Says what a live service declares: its docs, and each method's signature, tags and docs.
    ///
    /// Without SERVICE, lists the services the server at --server serves.
    #[command(after_help = EXIT_CODES)]
    Describe {
        /// The service; without it, the services of the server at --server.
        service: Option<String>,
        /// Prints the description (or the list of services) as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetFlags,
    },
}

/// The weight `weight` sets: a number, or `None` for the instance's own.
#[derive(Clone, Copy)]
struct SetTo(Option<u32>);

/// A weight, or `registered`.
fn parse_weight(text: &str) -> Result<SetTo, String> {
    match text {
        "registered" => Ok(SetTo(None)),
        _ => text
            .parse()
            .map(|w| SetTo(Some(w)))
            .map_err(|_| format!("expected a weight (0 to {}) or `registered`", u32::MAX)),
    }
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Checks a rules file (TOML) without a registry: prints what it declares, or every problem with its line
    /// and field, and exits 1.
    Check {
        /// The rules file.
        file: PathBuf,
    },
    /// Checks a rules file and applies it to its service at a running registry, as the next revision. Needs
    /// the registry's own token (--token), unless the registry is open.
    Apply {
        /// The rules file.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prints the rules of a service in force, as TOML (`apply` takes it back), after a line naming their
    /// revision.
    Get {
        /// The service.
        service: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prints every revision of a service's rules, oldest first: its number, when and how it was applied, and
    /// what it declares.
    History {
        /// The service.
        service: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Applies an earlier revision of a service's rules again, as the next revision. Needs the registry's own
    /// token (--token), unless the registry is open.
    Rollback {
        /// The service.
        service: String,
        /// The revision to return to.
        revision: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How `ls` and `watch` reach the registry.
#[derive(Args)]
struct ClientArgs {
    /// Address of the registry's API.
    #[arg(long, default_value = rpc_registry::cli::DEFAULT_REGISTRY)]
    registry: String,
    /// Token sent as `authorization: Bearer` (reads need none today).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsFlags,
    /// Milliseconds allowed to connect to the registry and for it to answer.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

impl ClientArgs {
    fn options(self) -> Result<Options, Box<dyn std::error::Error>> {
        let tls = self.tls.client()?;
        if self.timeout_ms == 0 {
            return Err("--timeout-ms must be at least 1".into());
        }
        if let Some(token) = &self.token {
            check_token(token).map_err(|e| format!("--token (or {TOKEN_ENV}): {e}"))?;
        }
        Ok(Options {
            tls,
            token: self.token,
            timeout: Duration::from_millis(self.timeout_ms),
            ..Options::new(self.registry)
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Service(command) => service(command).await,
        Command::Registry(command) => match run(command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rpc-registry: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `rpc-registry call` and `describe`, and their exit codes.
async fn service(command: ServiceCommand) -> ExitCode {
    let mut out = std::io::stdout();
    let result = match command {
        ServiceCommand::Call {
            method,
            json,
            target,
        } => match target.target() {
            Ok(target) => rpc_registry::cli::call(&target, &method, &json, &mut out)
                .await
                .map(|answered| answered.exit_code()),
            Err(e) => Err(e),
        },
        ServiceCommand::Describe {
            service,
            json,
            target,
        } => match target.target() {
            Ok(target) => rpc_registry::cli::describe(&target, service.as_deref(), json, &mut out)
                .await
                .map(|()| rpc_registry::cli::EXIT_VALUE),
            Err(e) => Err(e),
        },
    };
    ended(result)
}

/// The exit of `call` or `describe`: a failed call says `STATUS: MESSAGE` on stderr, as grpcurl does; any other
/// failure is the binary's.
fn ended(result: Result<u8, CallError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match e {
                CallError::Failed(_) => eprintln!("{e}"),
                _ => eprintln!("rpc-registry: {e}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(command: RegistryCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        RegistryCommand::Ls { service, client } => {
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            rpc_registry::cli::ls(&client.options()?, service.as_deref(), &mut out, &mut err)
                .await?;
            Ok(())
        }
        RegistryCommand::Watch { service, client } => {
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let options = client.options()?;
            let stop = rpc_core::server::shutdown_signal();
            let ctrl_c = async {
                stop.await;
            };
            let config = WatchConfig::default();
            rpc_registry::cli::watch(&options, &service, &config, &mut out, &mut err, ctrl_c)
                .await?;
            Ok(())
        }
        RegistryCommand::Serve(flags) => serve(&flags).await,
        RegistryCommand::Rules(command) => rules(command).await,
        RegistryCommand::Weight {
            service,
            address,
            weight,
            client,
        } => {
            let mut out = std::io::stdout();
            rpc_registry::cli::weight::set(
                &client.options()?,
                &service,
                &address,
                weight.0,
                &mut out,
            )
            .await?;
            Ok(())
        }
    }
}

/// `rpc-registry rules ...`.
async fn rules(command: RulesCommand) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout();
    match command {
        RulesCommand::Check { file } => {
            let (shown, text) = read_rules_file(&file)?;
            let rules = rpc_registry::rules_file::parse_rules(&text).map_err(|e| {
                let lines: Vec<String> = e.lines.iter().map(|l| format!("{shown}: {l}")).collect();
                lines.join("\n")
            })?;
            println!("{}", rpc_registry::rules_file::summary(&rules));
        }
        RulesCommand::Apply { file, client } => {
            let (shown, text) = read_rules_file(&file)?;
            rpc_registry::cli::rules::apply(&client.options()?, &shown, &text, &mut out).await?;
        }
        RulesCommand::Get { service, client } => {
            rpc_registry::cli::rules::get(&client.options()?, &service, &mut out).await?;
        }
        RulesCommand::History { service, client } => {
            rpc_registry::cli::rules::history(&client.options()?, &service, &mut out).await?;
        }
        RulesCommand::Rollback {
            service,
            revision,
            client,
        } => {
            rpc_registry::cli::rules::rollback(&client.options()?, &service, revision, &mut out)
                .await?;
        }
    }
    Ok(())
}

/// The rules file at `path`, read whole if it is within the limit, and its name as messages show it.
fn read_rules_file(path: &std::path::Path) -> Result<(String, String), Box<dyn std::error::Error>> {
    let shown = rpc_registry::cli::escape(
        &path.display().to_string(),
        rpc_registry::cli::MAX_FIELD_CHARS,
    )
    .into_owned();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{shown}: {e}"))?
        .len();
    let limit = rpc_registry::rules_file::MAX_RULES_FILE;
    if size > limit as u64 {
        return Err(format!("{shown}: {size} bytes, over the limit of {limit}").into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    Ok((shown, text))
}

/// `rpc-registry serve`.
async fn serve(flags: &ServeFlags) -> Result<(), Box<dyn std::error::Error>> {
    // First of all, so that a signal during start-up drains too.
    let stop = rpc_core::server::shutdown_signal();
    let mut config = flags.config()?;
    match raise_open_file_limit() {
        Ok(files) => {
            eprintln!("rpc-registry: {files}");
            let fit = connections_that_fit(files.now);
            if config.server.max_connections > fit {
                eprintln!(
                    "warning: the open-file limit {} leaves room for {fit} connections, not {} \
                     (--max-connections): serving at most {fit}, and refusing more at once; raise the hard \
                     limit (ulimit -Hn, systemd LimitNOFILE=) to serve more",
                    files.now, config.server.max_connections
                );
                config.server.max_connections = fit;
            }
        }
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
    let rpc = tokio::net::TcpListener::bind(flags.listen).await?;
    let http = tokio::net::TcpListener::bind(flags.http).await?;
    let api = format!(
        "{}{}",
        rpc.local_addr()?,
        if config.tls.is_some() { " (TLS)" } else { "" }
    );
    let (rpc, api) = match &flags.unix_socket {
        Some(path) => (
            Listener::from(rpc).and(bind_unix(path)?),
            format!("{api} and unix:{}", path.display()),
        ),
        None => (Listener::from(rpc), api),
    };
    println!(
        "rpc-registry: API on {api}, dashboard and metrics on http://{}/, TTL {} ms, up to {} instances and {} \
         connections",
        http.local_addr()?,
        config.ttl.as_millis(),
        config.max_instances,
        config.server.max_connections,
    );
    if config.is_open() {
        eprintln!(
            "warning: no token (--token or {TOKEN_ENV}) and no --credentials: anyone who can reach this \
             registry can register instances and take their traffic"
        );
    }
    let served = rpc_registry::serve(config, rpc, Some(http), async {
        let signal = stop.await;
        eprintln!("rpc-registry: {signal}: shutting down");
    })
    .await;
    if let Some(path) = &flags.unix_socket {
        let _ = std::fs::remove_file(path);
    }
    served?;
    eprintln!("rpc-registry: stopped");
    Ok(())
}

/// A Unix domain socket listening at `path`.
#[cfg(unix)]
fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    rpc_core::server::bind_unix(path)
}

/// No Unix domain sockets here: `--unix-socket` is refused.
#[cfg(not(unix))]
fn bind_unix(path: &std::path::Path) -> std::io::Result<Listener> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("--unix-socket {}: expected a Unix system", path.display()),
    ))
}
