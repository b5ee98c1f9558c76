#[rpc_core::service]
trait Factory {
    async fn make(name: String) -> u64;
}

fn main() {}
