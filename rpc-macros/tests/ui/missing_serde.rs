// A result type with neither `Serialize` nor `Deserialize`, inside a `Vec`, in an application error or in a
// `Result` alias (`std::io::Error` is no serde type), is reported once per type, on the type.
struct Shape;

struct Oops;

#[rpc_core::service]
trait Plot {
    async fn shapes(&self) -> Vec<Shape>;
    async fn check(&self, n: u32) -> Result<u32, Oops>;
    async fn load(&self, path: String) -> std::io::Result<Vec<u8>>;
}

fn main() {}
