//! A server whose layer refuses every call without an `x-api-key` metadata entry (`Unauthenticated`), and a
//! client that makes one call without the key (refused) and one with it (accepted). Both run in this process,
//! over 127.0.0.1 on a port the OS picks. The last line is JSON: `{"refused":1,"accepted":1}`.
//!
//! ```text
//! cargo run -p examples --bin interceptor
//! ```

use examples::hello::{GreeterClient, GreeterServer, Greetings};
use rpc_core::server::layer::intercept;
use rpc_core::server::{Request, Response};
use rpc_core::{Metadata, Server, Status};

/// The key this server takes.
const API_KEY: &str = "demo-key";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The layer: a call without the key is answered `Unauthenticated` before its handler runs.
    let api_key =
        intercept(
            |request: &mut Request| match request.metadata().get_str("x-api-key") {
                Some(API_KEY) => Ok(()),
                _ => Err(Response::error(
                    Status::Unauthenticated,
                    "this server needs an x-api-key",
                )),
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .add_service(GreeterServer::new(Greetings))
        .layer(api_key)
        .build()?;
    tokio::spawn(server.serve(listener));

    let client = GreeterClient::connect(addr).await?;
    let (mut refused, mut accepted) = (0, 0);
    match client.hello("anonymous".into()).await {
        Err(e) if e.code() == Status::Unauthenticated => {
            println!("without a key: refused ({e})");
            refused += 1;
        }
        other => println!("without a key: unexpected {other:?}"),
    }
    let keyed = client.with_metadata(Metadata::from_pairs([("x-api-key", API_KEY)])?);
    match keyed.hello("keyholder".into()).await {
        Ok(greeting) => {
            println!("with the key: {greeting}");
            accepted += 1;
        }
        Err(e) => println!("with the key: unexpected {e}"),
    }
    println!("{{\"refused\":{refused},\"accepted\":{accepted}}}");
    if (refused, accepted) != (1, 1) {
        std::process::exit(1);
    }
    Ok(())
}
