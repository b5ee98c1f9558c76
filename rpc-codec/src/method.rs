//! Method ids: a method is named on the wire by the 32-bit FNV-1a hash of `"Service.method"`, so adding or
//! reordering methods never changes the id of another.

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The method id of `method` in `service`: FNV-1a (32-bit) over the UTF-8 bytes of `"{service}.{method}"`.
///
/// Id 0 is never assigned: a name that hashes to 0 is a compile error of `#[service]`.
///
/// ```
/// assert_eq!(rpc_codec::method_id("Calc", "add"), 0xbdaf_910d);
/// const ID: u32 = rpc_codec::method_id("Greeter", "hello");
/// assert_eq!(ID, rpc_codec::method_id_of("Greeter.hello"));
/// ```
pub const fn method_id(service: &str, method: &str) -> u32 {
    let h = fnv1a(FNV_OFFSET, service.as_bytes());
    let h = fnv1a(h, b".");
    fnv1a(h, method.as_bytes())
}

/// The method id of a full name `"Service.method"`.
pub const fn method_id_of(full_name: &str) -> u32 {
    fnv1a(FNV_OFFSET, full_name.as_bytes())
}

const fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_fnv1a_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(method_id_of(""), 0x811c_9dc5);
        assert_eq!(method_id_of("a"), 0xe40c_292c);
        assert_eq!(method_id_of("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn service_and_method_are_joined_by_a_dot() {
        assert_eq!(method_id("Calc", "add"), method_id_of("Calc.add"));
        assert_ne!(method_id("Calc", "add"), method_id("Calc", "sub"));
    }
}
