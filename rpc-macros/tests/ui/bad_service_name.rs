#[rpc_core::service(name = "calc..Calc")]
trait Calc {
    async fn add(&self, a: i32, b: i32) -> i32;
}

fn main() {}
