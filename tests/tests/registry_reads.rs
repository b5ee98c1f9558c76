//! A registry whose credentials name `readers`: its RPC reads and its HTTP JSON API and metrics need a
//! credential (a reader's token, a writer's, or the registry's own), a reader's token may not write, and
//! `/healthz` and the dashboard's page stay open. In-process registry on 127.0.0.1.

use rpc_core::{Client, Metadata, Status};
use rpc_registry::{Credentials, NewInstance, RegistryClient, RegistryConfig};
use tests::cluster::{http_get, start_registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READER: &str = "a-token-that-only-reads";
const WRITER: &str = "a-token-that-writes-calc";

/// `GET path` with `authorization: Bearer token`: the status code and body.
async fn get_with(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body)
}

fn as_caller(client: &Client, token: Option<&str>) -> RegistryClient {
    let registry = RegistryClient::new(client.clone());
    match token {
        Some(token) => registry.with_metadata(
            Metadata::from_pairs([("authorization", format!("Bearer {token}"))]).unwrap(),
        ),
        None => registry,
    }
}

#[tokio::test]
async fn reads_need_a_credential_when_the_credentials_name_readers() {
    let credentials = Credentials::from_json(
        &format!(
            r#"{{"tokens": [{{"token": "{WRITER}", "services": ["Calc"]}}], "readers": {{"tokens": ["{READER}"]}}}}"#
        ),
        "test",
    )
    .unwrap();
    let config = RegistryConfig {
        credentials,
        ..RegistryConfig::default()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let client = Client::connect(registry.addr).await.unwrap();

    let anonymous = as_caller(&client, None).services().await.unwrap_err();
    assert_eq!(anonymous.code(), Status::Unauthenticated, "{anonymous}");
    assert!(
        anonymous.message().contains("needs a credential"),
        "{anonymous}"
    );
    assert!(as_caller(&client, Some(READER)).services().await.is_ok());
    assert!(
        as_caller(&client, Some(WRITER)).status(None).await.is_ok(),
        "a writer may read"
    );

    let instance = NewInstance {
        service: "Calc".into(),
        address: "127.0.0.1:7001".into(),
        weight: 1,
        metadata: Default::default(),
    };
    let refused = as_caller(&client, Some(READER))
        .register(instance.clone())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("the token the call carried may only read (it is a reader's)"),
        "{refused}"
    );
    assert!(
        as_caller(&client, Some(WRITER))
            .register(instance)
            .await
            .unwrap()
            .is_ok()
    );

    let (code, body) = http_get(registry.http, "/v1/services").await.unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("reading this registry needs a credential"),
        "{body}"
    );
    let (code, body) = get_with(registry.http, "/v1/services/Calc", READER).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("127.0.0.1:7001"), "{body}");
    assert_eq!(
        get_with(registry.http, "/metrics", "not-a-token-it-knows")
            .await
            .0,
        401
    );
    assert_eq!(http_get(registry.http, "/healthz").await.unwrap().0, 200);
    assert_eq!(
        http_get(registry.http, "/").await.unwrap().0,
        200,
        "the page holds no data"
    );
}
