// A result type named `Result` with one argument is taken for an alias of `core::result::Result` (its `Err`
// is the application's error); one that is not is refused, on the type.
struct Result<T>(T);

#[rpc_core::service]
trait Search {
    async fn find(&self, query: String) -> Result<u32>;
}

fn main() {}
