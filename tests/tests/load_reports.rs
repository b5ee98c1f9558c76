//! Load reports, end to end on 127.0.0.1: a server's `LoadMeter` counts its calls, its registration sends
//! them with each heartbeat, and the registry shows each instance's load over its window in the `report`
//! API, `/v1/services/{name}` and `/metrics`. Real time (heartbeats every 100 ms); every wait is bounded.

use std::time::Duration;

use rpc_core::server::layer::LoadMeter;
use rpc_registry::{RegistrationConfig, RegistryClient, RegistryConfig};
use tests::cluster::{WhereClient, http_get, start_instance, start_registry};

#[tokio::test]
async fn a_servers_load_reaches_the_registry_with_its_heartbeats() {
    let config = RegistryConfig {
        ttl: Duration::from_millis(300),
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let config = RegistrationConfig {
        load: Some(LoadMeter::new()),
        ..RegistrationConfig::default()
    };
    let instance = start_instance(registry.addr, 1, config).await.unwrap();
    let address = instance.address.clone();
    let client = WhereClient::connect(address.as_str()).await.unwrap();
    for n in 0..20 {
        assert_eq!(client.serve(n).await.unwrap().n, n);
    }

    let status = RegistryClient::new(rpc_core::Client::connect(registry.addr).await.unwrap());
    let mut load = None;
    for _ in 0..100 {
        let services = status.report(Some("Where".to_owned())).await.unwrap();
        load = services[0].instances[0].load.clone();
        if load.as_ref().is_some_and(|l| l.calls >= 20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load = load.expect("a load report arrived within 5 s");
    assert_eq!(load.calls, 20, "{load:?}");
    assert_eq!((load.errors, load.in_flight), (0, 0));
    assert!(load.p99_us > 0 && load.window_ms > 0, "{load:?}");

    let (code, body) = http_get(registry.http, "/v1/services/Where").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("\"load\":{") && body.contains("\"calls\":20"),
        "{body}"
    );
    let (_, metrics) = http_get(registry.http, "/metrics").await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("rpc_registry_instance_calls_per_second{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.contains(&format!("address=\"{address}\"")), "{line}");
}
