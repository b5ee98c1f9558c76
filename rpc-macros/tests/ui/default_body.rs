#[rpc_core::service]
trait Ping {
    async fn ping(&self) -> u32 {
        1
    }
}

fn main() {}
