//! The signals that ask a server process to stop: [`shutdown_signal`] completes on the first SIGINT (Ctrl-C) or
//! SIGTERM (what systemd, Docker and Kubernetes send), so that a program drains the same way on either, and says
//! which came. Pass it to [`Server::serve_with_shutdown`](crate::Server::serve_with_shutdown).

/// A signal that asks the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGINT: Ctrl-C in a terminal (on Windows, Ctrl-C or Ctrl-Break).
    Interrupt,
    /// SIGTERM: a service manager or container runtime stopping the process (unix only).
    Terminate,
}

impl std::fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShutdownSignal::Interrupt => "SIGINT",
            ShutdownSignal::Terminate => "SIGTERM",
        })
    }
}

/// A future that completes on the first SIGINT or SIGTERM (elsewhere than unix: Ctrl-C), with which one came.
///
/// The handlers are installed when this is called (within a tokio runtime), so from then on those signals no
/// longer end the process at once: the program decides, for example by draining and returning from `main`. A
/// signal whose handler cannot be installed is left as it was.
///
/// ```no_run
/// # #[rpc_core::service] trait Greeter { async fn hello(&self, name: String) -> String; }
/// # struct Hi;
/// # impl Greeter for Hi { async fn hello(&self, name: String) -> String { name } }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7000").await?;
/// let server = rpc_core::Server::builder().add_service(GreeterServer::new(Hi)).build()?;
/// let stop = rpc_core::server::shutdown_signal();
/// server
///     .serve_with_shutdown(listener, async {
///         let signal = stop.await;
///         eprintln!("{signal}: finishing the calls in flight");
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub fn shutdown_signal() -> impl Future<Output = ShutdownSignal> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async fn next(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        async move {
            tokio::select! {
                () = next(interrupt) => ShutdownSignal::Interrupt,
                () = next(terminate) => ShutdownSignal::Terminate,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => ShutdownSignal::Interrupt,
                Err(_) => std::future::pending().await,
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sigterm_is_a_shutdown_not_the_end_of_the_process() {
        // The handlers are in place once `shutdown_signal` returns: the SIGTERM below cannot end the test.
        let waiting = tokio::spawn(shutdown_signal());
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let signal = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the signal arrives within 10 s")
            .unwrap();
        assert_eq!(signal, ShutdownSignal::Terminate);
    }
}
