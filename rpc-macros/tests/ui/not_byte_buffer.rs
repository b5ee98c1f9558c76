// A type written `Bytes` is taken for `bytes::Bytes` and sent as bytes; another type of that name is refused
// (name it by another path, such as `self::Bytes`, to send it through its own serde implementation).
#[derive(serde::Serialize, serde::Deserialize)]
struct Bytes(u32);

#[rpc_core::service]
trait Store {
    async fn put(&self, value: Bytes) -> bool;
}

fn main() {}
