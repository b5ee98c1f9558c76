use rpc_core::{Stream, Streaming};

#[rpc_core::service]
trait Merge {
    async fn merge(&self, left: Streaming<u32>, right: Streaming<u32>) -> impl Stream<Item = u32>;
    async fn alias(&self, items: Streaming<u32>) -> std::io::Result<u32>;
    async fn borrowed(&self) -> impl Stream<Item = &'static str>;
}

fn main() {}
