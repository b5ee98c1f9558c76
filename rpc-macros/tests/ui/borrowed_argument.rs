#[rpc_core::service]
trait Greeter {
    async fn hello(&self, name: &str) -> String;
    async fn first(&self, names: Vec<&'static str>) -> String;
}

fn main() {}
