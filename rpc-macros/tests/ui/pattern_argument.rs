#[rpc_core::service]
trait Geometry {
    async fn distance(&self, (x, y): (f64, f64)) -> f64;
}

fn main() {}
