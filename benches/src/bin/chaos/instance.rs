//! An instance of the chaos runs: this binary again with `--instance`, in a process of its own so that the
//! driver can stop it (SIGSTOP), resume it and kill it as a machine would. It serves [`Chaos`] on a port of
//! 127.0.0.1 that the OS assigns, registers with the driver's registry, prints its address on one line, and
//! exits when its standard input closes (when the driver goes away).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use rpc_registry::{NewInstance, Registration, RegistrationConfig};
use tokio::sync::Semaphore;

use crate::service::{ChaosServer, Worker};

/// What the child prints once it serves and is registered.
pub(crate) const READY: &str = "instance serving";

/// How one instance runs.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) registry: String,
    pub(crate) token: String,
    pub(crate) weight: u32,
    pub(crate) service_time: Duration,
    /// Calls served at once (0: no limit).
    pub(crate) capacity: usize,
    /// Shed calls beyond what it can serve instead of queueing them.
    pub(crate) protect: bool,
}

impl Spec {
    /// The command-line arguments of a child with this spec.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--instance".to_owned(),
            "--registry".to_owned(),
            self.registry.clone(),
            "--token".to_owned(),
            self.token.clone(),
            "--weight".to_owned(),
            self.weight.to_string(),
            "--service-us".to_owned(),
            self.service_time.as_micros().to_string(),
            "--capacity".to_owned(),
            self.capacity.to_string(),
        ];
        if self.protect {
            args.push("--protect".to_owned());
        }
        args
    }
}

/// The child's side: serves and stays registered until standard input closes.
pub(crate) fn run(spec: Spec) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the instance's runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the instance's port: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let worker = Worker {
            service_time: spec.service_time,
            capacity: (spec.capacity > 0).then(|| Arc::new(Semaphore::new(spec.capacity))),
            served: Arc::default(),
        };
        let stdin_closed = async {
            // A blocking read on a thread of its own: EOF (or an error) means the driver is gone.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
        };
        let serving = tokio::spawn(crate::protect::serve(
            ChaosServer::new(worker),
            spec.clone(),
            listener,
            stdin_closed,
        ));
        let instance = NewInstance {
            service: "Chaos".to_owned(),
            address: addr.to_string(),
            weight: spec.weight,
            metadata: BTreeMap::new(),
        };
        let config = RegistrationConfig {
            token: Some(spec.token.clone()),
            ..RegistrationConfig::default()
        };
        let registration = Registration::register(spec.registry.as_str(), instance, config)
            .await
            .map_err(|e| format!("cannot register with {}: {e}", spec.registry))?;
        println!("{READY} {addr}");
        let _ = serving.await;
        drop(registration);
        Ok(())
    })
}
