#[rpc_core::service(codec = rpc_core::codec::Bincode, codec = rpc_core::codec::Bincode)]
trait Calc {
    async fn add(&self, a: i32, b: i32) -> i32;
}

fn main() {}
