#[rpc_core::service(nmae = "calc.v1")]
trait Calc {
    async fn add(&self, a: i32, b: i32) -> i32;
}

fn main() {}
