//! A server on a thread of its own with a current-thread tokio runtime, listening on 127.0.0.1 at a port the OS
//! assigns: how every system of the round-trip benchmarks is served, so that each gets one core and the same
//! scheduler. Dropping the handle stops the runtime (every connection task with it) and joins the thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The CPU server threads are pinned to; `usize::MAX` for none.
static SERVER_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Pins every server thread started from now on to `cpu` (`None`: no pinning, the default).
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
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let cpu = SERVER_CPU.load(Ordering::Relaxed);
                if cpu != usize::MAX
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
                // Dropping the runtime drops every task it still holds: the connections close.
                drop(runtime);
            })?;
        Ok(ServerThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Serves `server` (an rpc-core server) on a new thread named `name`, as [`ServerThread::spawn`] does; an
    /// error of its accept loop is printed.
    pub fn rpc(name: &str, server: rpc_core::Server) -> std::io::Result<ServerThread> {
        let label = name.to_owned();
        ServerThread::spawn(name, move |listener| async move {
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
