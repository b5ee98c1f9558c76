//! Generated code names everything by absolute path: a service declared in a `#![no_implicit_prelude]` module,
//! where `Result`, `Vec`, `String`, `Option` and `Box` are not in scope, compiles, serves and answers (byte
//! buffers and `Result` aliases too); and argument names that the generated code also uses for its own locals
//! shadow nothing.

mod quiet {
    #![no_implicit_prelude]

    pub(crate) type Result<T> = ::core::result::Result<T, ::std::string::String>;

    #[::rpc_core::service]
    pub trait Quiet {
        async fn hush(&self, level: u8) -> ::std::string::String;
        async fn bytes(&self, data: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8>;
        async fn aliased(&self, fail: bool) -> Result<u8>;
        async fn sum(
            &self,
            values: ::std::vec::Vec<u64>,
        ) -> ::core::result::Result<u64, ::std::string::String>;
        async fn nothing(&self);
        /// Arguments named like the skeleton's own locals must not shadow them.
        async fn shadows(
            &self,
            call: u8,
            service: u8,
            args: u8,
            error: u8,
            client: u8,
            options: u8,
        ) -> u8;
    }

    /// Streams of every kind (protocol 1.1), with names the generated code also uses for its locals.
    #[::rpc_core::service]
    pub trait QuietStream {
        async fn ticks(
            &self,
            n: u32,
        ) -> impl ::rpc_core::Stream<Item = ::core::result::Result<u32, ::std::string::String>>;
        async fn total(&self, sink: ::rpc_core::Streaming<u32>, streaming: u32) -> u32;
        async fn both(
            &self,
            args: ::rpc_core::Streaming<u8>,
        ) -> impl ::rpc_core::Stream<Item = ::std::vec::Vec<u8>>;
    }

    /// A service with a codec of its own: the `_with` entry points are named by absolute path too.
    #[::rpc_core::service(codec = ::rpc_core::codec::Json)]
    pub trait QuietJson {
        async fn hush(&self, level: u8) -> ::std::string::String;
        async fn aliased(&self, fail: bool) -> Result<u8>;
        async fn nothing(&self);
    }
}

use futures_util::StreamExt;
use quiet::{
    Quiet, QuietClient, QuietJson, QuietJsonClient, QuietJsonServer, QuietServer, QuietStream,
    QuietStreamClient, QuietStreamServer,
};
use rpc_core::{Stream, Streaming};

struct Library;

impl Quiet for Library {
    async fn hush(&self, level: u8) -> String {
        "s".repeat(usize::from(level))
    }

    async fn sum(&self, values: Vec<u64>) -> Result<u64, String> {
        values
            .iter()
            .try_fold(0u64, |acc, v| acc.checked_add(*v))
            .ok_or_else(|| String::from("overflow"))
    }

    async fn bytes(&self, data: Vec<u8>) -> Vec<u8> {
        data.into_iter().rev().collect()
    }

    async fn aliased(&self, fail: bool) -> quiet::Result<u8> {
        if fail {
            Err(String::from("failed"))
        } else {
            Ok(1)
        }
    }

    async fn nothing(&self) {}

    async fn shadows(
        &self,
        call: u8,
        service: u8,
        args: u8,
        error: u8,
        client: u8,
        options: u8,
    ) -> u8 {
        call + service + args + error + client + options
    }
}

impl QuietStream for Library {
    async fn ticks(&self, n: u32) -> impl Stream<Item = Result<u32, String>> {
        futures_util::stream::iter((0..n).map(|i| {
            if i == 1 {
                Err(String::from("one"))
            } else {
                Ok(i)
            }
        }))
    }

    async fn total(&self, sink: Streaming<u32>, streaming: u32) -> u32 {
        sink.fold(
            streaming,
            |acc, item| async move { acc + item.unwrap_or(0) },
        )
        .await
    }

    async fn both(&self, args: Streaming<u8>) -> impl Stream<Item = Vec<u8>> {
        args.map(|b| vec![b.unwrap_or(0); 2])
    }
}

impl QuietJson for Library {
    async fn hush(&self, level: u8) -> String {
        "j".repeat(usize::from(level))
    }

    async fn aliased(&self, fail: bool) -> quiet::Result<u8> {
        <Library as Quiet>::aliased(self, fail).await
    }

    async fn nothing(&self) {}
}

#[tokio::test(start_paused = true)]
async fn a_service_with_its_own_codec_declared_without_the_prelude_works() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rpc_core::Server::builder()
        .add_service(QuietJsonServer::new(Library))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let client = QuietJsonClient::connect(addr).await.unwrap();
    assert_eq!(client.hush(2).await, Ok(String::from("jj")));
    assert_eq!(client.aliased(true).await, Ok(Err(String::from("failed"))));
    assert_eq!(client.nothing().await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_service_declared_without_the_prelude_works() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rpc_core::Server::builder()
        .add_service(QuietServer::new(Library))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let client = QuietClient::connect(addr).await.unwrap();
    assert_eq!(client.hush(3).await, Ok(String::from("sss")));
    assert_eq!(client.sum(vec![1, 2, 3]).await, Ok(Ok(6)));
    assert_eq!(
        client.sum(vec![u64::MAX, 1]).await,
        Ok(Err(String::from("overflow")))
    );
    assert_eq!(client.bytes(vec![1, 2, 3]).await, Ok(vec![3, 2, 1]));
    assert_eq!(client.aliased(false).await, Ok(Ok(1)));
    assert_eq!(client.aliased(true).await, Ok(Err(String::from("failed"))));
    assert_eq!(client.nothing().await, Ok(()));
    assert_eq!(client.shadows(1, 2, 3, 4, 5, 6).await, Ok(21));
}

#[tokio::test]
async fn streams_declared_without_the_prelude_work() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rpc_core::Server::builder()
        .add_service(QuietStreamServer::new(Library))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let client = QuietStreamClient::connect(addr).await.unwrap();
    let ticks: Vec<_> = client
        .ticks(3)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(ticks, vec![Ok(0), Err(String::from("one")), Ok(2)]);
    let total = client
        .total(futures_util::stream::iter([1, 2, 3]), 10)
        .await;
    assert_eq!(total.unwrap(), 16);
    let both: Vec<_> = client
        .both(futures_util::stream::iter([4u8, 5]))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(both, vec![vec![4, 4], vec![5, 5]]);
}
