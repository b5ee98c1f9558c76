//! Instances of the examples' `Calc` service (`examples/src/calc.rs`: `add`, and `div`, which refuses a zero
//! divisor with its own `CalcError`), served on 127.0.0.1 and registered with a registry; each answer names the
//! instance that computed it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use examples::calc::{CalcServer, Calculator};
use rpc_core::Server;
use rpc_registry::{NewInstance, Registration, RegistrationConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running instance of `Calc`, registered.
#[derive(Debug)]
pub struct CalcInstance {
    /// Where it serves.
    pub address: String,
    server: JoinHandle<std::io::Result<()>>,
    /// Its registration.
    pub registration: Registration,
}

impl CalcInstance {
    /// Kills the instance: its connections close and its heartbeats stop, without deregistering (the registry
    /// lists it until its lease runs out).
    pub fn kill(self) {
        self.server.abort();
        drop(self.registration);
    }
}

/// Starts an instance of `Calc` and registers it with `registry` at `weight`, with `config`.
pub async fn start_calc(
    registry: SocketAddr,
    weight: u32,
    config: RegistrationConfig,
) -> Result<CalcInstance, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = Server::builder()
        .add_service(CalcServer::new(Calculator {
            instance: address.clone(),
        }))
        .build()?;
    let server = tokio::spawn(server.serve(listener));
    let instance = NewInstance {
        service: String::from("Calc"),
        address: address.clone(),
        weight,
        metadata: BTreeMap::new(),
    };
    let registration = Registration::register(registry, instance, config).await?;
    Ok(CalcInstance {
        address,
        server,
        registration,
    })
}
