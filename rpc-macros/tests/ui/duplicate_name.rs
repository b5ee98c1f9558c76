#[rpc_core::service]
trait Echo {
    async fn echo(&self, s: String) -> String;
    async fn echo(&self, n: u64) -> u64;
}

fn main() {}
