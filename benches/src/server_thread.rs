//! A server on a thread of its own, listening on 127.0.0.1 at a port the OS assigns: how every system of the
//! round-trip benchmarks is served. The thread runs a tokio runtime of the [`Flavor`] asked for: a
//! current-thread runtime (the server gets one core and the same scheduler as every other system), or a
//! multi-thread runtime with tokio's default worker count (what `#[tokio::main]` gives a user: the accept loop on
//! the server's thread, the connection tasks on the workers). Dropping the handle stops the runtime (every
//! connection task with it) and joins the thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The CPU current-thread server threads are pinned to; `usize::MAX` for none.
static SERVER_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// How long a stopping server waits for its runtime's tasks and threads to finish before it lets them go, so that
/// a task that does not yield (or a blocking thread) cannot hang the benchmark between two runs: 1 s.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Pins every current-thread server thread started from now on to `cpu` (`None`: no pinning, the default).
/// Multi-thread servers are never pinned: their threads start with the affinity of the thread that spawns them.
pub fn pin_servers_to(cpu: Option<usize>) {
    SERVER_CPU.store(cpu.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(std::io::Error::other)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(std::io::Error::other)
}

/// The kind of tokio runtime a server thread (or a benchmark's client) runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flavor {
    /// `Builder::new_current_thread()`: everything on one thread.
    #[default]
    CurrentThread,
    /// `Builder::new_multi_thread()` with tokio's default worker count (one per CPU), as `#[tokio::main]` builds.
    MultiThread,
}

impl Flavor {
    /// Both flavours, current-thread first.
    pub const ALL: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread];

    /// The flavour's short name: `current` or `multi`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current",
            Flavor::MultiThread => "multi",
        }
    }

    /// Builds a runtime of this flavour with every driver (I/O, time) enabled.
    pub fn build(self) -> std::io::Result<Runtime> {
        match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
    }
}

/// A running server thread.
#[derive(Debug)]
pub struct ServerThread {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds 127.0.0.1:0 and runs `serve` on the listener, on a new thread named `name` with a current-thread
    /// runtime, until the handle is dropped.
    pub fn spawn<F, Fut>(name: &str, serve: F) -> std::io::Result<ServerThread>
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        ServerThread::spawn_on(name, Flavor::CurrentThread, serve)
    }

    /// Binds 127.0.0.1:0 and runs `serve` on the listener, on a new thread named `name` with a runtime of
    /// `flavor`, until the handle is dropped. `serve` itself runs on that thread (`block_on`); the tasks it
    /// spawns run on the runtime's workers when it has any.
    pub fn spawn_on<F, Fut>(name: &str, flavor: Flavor, serve: F) -> std::io::Result<ServerThread>
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // Built here, so that an error reaches the caller; a multi-thread runtime's workers start with this
        // thread's affinity.
        let runtime = flavor.build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let cpu = SERVER_CPU.load(Ordering::Relaxed);
                if flavor == Flavor::CurrentThread
                    && cpu != usize::MAX
                    && let Err(e) = pin_current_thread(cpu)
                {
                    eprintln!("server thread: cannot pin to CPU {cpu}: {e}");
                }
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            eprintln!("server thread: cannot use its listener: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        () = serve(listener) => {}
                        _ = stopped => {}
                    }
                });
                // Shutting the runtime down drops every task it still holds: the connections close.
                runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            })?;
        Ok(ServerThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Serves `server` (an rpc-core server) on a new thread named `name` with a current-thread runtime, as
    /// [`ServerThread::spawn`] does; an error of its accept loop is printed.
    pub fn rpc(name: &str, server: rpc_core::Server) -> std::io::Result<ServerThread> {
        ServerThread::rpc_on(name, Flavor::CurrentThread, server)
    }

    /// Serves `server` (an rpc-core server) on a new thread named `name` with a runtime of `flavor`, as
    /// [`ServerThread::spawn_on`] does; an error of its accept loop is printed.
    pub fn rpc_on(
        name: &str,
        flavor: Flavor,
        server: rpc_core::Server,
    ) -> std::io::Result<ServerThread> {
        let label = name.to_owned();
        ServerThread::spawn_on(name, flavor, move |listener| async move {
            if let Err(e) = server.serve(listener).await {
                eprintln!("{label}: {e}");
            }
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
