#[rpc_core::service]
trait Account {
    async fn close(self) -> u64;
}

fn main() {}
