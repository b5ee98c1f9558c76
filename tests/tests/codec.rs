//! The payload codec seam end to end: a service declared with `#[service(codec = rpc_core::codec::Json)]`
//! carries its arguments, results and application errors as JSON text, through the generated client and
//! server; a raw peer sees the JSON on the wire. Real sockets on 127.0.0.1.

use std::time::Duration;

use rpc_core::codec::{Header, Kind};
use rpc_core::{Server, service};
use serde::{Deserialize, Serialize};
use tests::peer::RawPeer;

/// Why a greeting was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Refused {
    /// The name was empty.
    Nameless,
}

#[service(codec = rpc_core::codec::Json)]
trait Greeter {
    async fn greet(&self, name: String, times: u32) -> Vec<String>;
    async fn strict(&self, name: String) -> Result<String, Refused>;
}

struct Polite;

impl Greeter for Polite {
    async fn greet(&self, name: String, times: u32) -> Vec<String> {
        (0..times).map(|_| format!("hi {name}")).collect()
    }

    async fn strict(&self, name: String) -> Result<String, Refused> {
        if name.is_empty() {
            Err(Refused::Nameless)
        } else {
            Ok(format!("hello {name}"))
        }
    }
}

async fn serve() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(GreeterServer::new(Polite))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    addr
}

#[tokio::test]
async fn a_json_service_answers_values_and_application_errors_through_its_stub() {
    let addr = serve().await;
    let client = GreeterClient::connect(addr).await.unwrap();
    assert_eq!(
        client.greet("ada".to_owned(), 2).await,
        Ok(vec!["hi ada".to_owned(), "hi ada".to_owned()])
    );
    assert_eq!(
        client.strict("bo".to_owned()).await,
        Ok(Ok("hello bo".to_owned()))
    );
    assert_eq!(
        client.strict(String::new()).await,
        Ok(Err(Refused::Nameless))
    );
}

#[tokio::test]
async fn its_payloads_on_the_wire_are_json_text() {
    let addr = serve().await;
    let mut peer = RawPeer::connect(addr).await.unwrap();
    let greet = &GreeterClient::METHODS[0];
    let header = Header::request(1, greet.id);
    peer.send_frame(header, br#"["ada",2]"#).await.unwrap();
    let answer = peer.frame(Duration::from_secs(10)).await;
    assert_eq!(answer.header.kind, Kind::Response, "{answer:?}");
    assert_eq!(&answer.payload[..], br#"["hi ada","hi ada"]"#);

    // Bincode bytes are not JSON: the server says the arguments do not decode.
    let header = Header::request(2, greet.id);
    peer.send_frame(header, &[3, b'a', b'd', b'a', 2])
        .await
        .unwrap();
    let refused = peer.frame(Duration::from_secs(10)).await;
    assert_eq!(refused.header.kind, Kind::Error, "{refused:?}");
    assert_eq!(refused.header.status, rpc_core::Status::InvalidArgument);
}
