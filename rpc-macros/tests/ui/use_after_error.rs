// A trait with an error still yields its types, so code using them shows the one real error.
#[rpc_core::service]
trait Calc {
    fn add(&self, a: i32, b: i32) -> i32;
}

struct Impl;

impl Calc for Impl {
    fn add(&self, a: i32, b: i32) -> i32 {
        a + b
    }
}

fn main() {
    let _server: Option<CalcServer<Impl>> = None;
    let _client: Option<CalcClient> = None;
}
