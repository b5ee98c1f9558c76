// Every problem is reported at once, each on its own tokens.
#[rpc_core::service]
trait Messy {
    fn plain(&self) -> u32;
    async fn owned(self) -> u32;
    async fn pattern(&self, (a, b): (u8, u8)) -> u8;
    const LIMIT: u32;
}

fn main() {}
