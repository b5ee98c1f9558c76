#[rpc_core::service]
struct Calc;

fn main() {}
