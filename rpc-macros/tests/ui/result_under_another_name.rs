// A result that is a `Result` under another name would send its `Err` as a value: refused.
type Answer = Result<u32, String>;

#[rpc_core::service]
trait Calc {
    async fn add(&self, a: u32, b: u32) -> Answer;
}

fn main() {}
