// FNV-1a gives "Collide.mvbw" and "Collide.ruaaa" the same 32-bit id, 0x95fc3bc9.
#[rpc_core::service]
trait Collide {
    async fn mvbw(&self) -> u32;
    async fn ruaaa(&self) -> u32;
}

fn main() {}
