//! [`PerMethod`]: a setting of a layer for each method: a value for the methods named (by `"Service.method"`,
//! or by the [`MethodInfo::id`] on the wire), and a default for all the others. What the concurrency and rate
//! limits are configured with.

use crate::ids::IdMap;
use crate::method::MethodInfo;

/// A value for each method: the one given for it, else the default.
///
/// ```
/// use rpc_core::server::layer::PerMethod;
/// use rpc_core::MethodInfo;
///
/// // Calc.slow at most 4 at once, every other method 64.
/// let limits = PerMethod::new(Some(64)).method("Calc.slow", Some(4));
/// let slow = MethodInfo { service: "Calc", name: "slow", id: rpc_core::codec::method_id("Calc", "slow"), idempotent: false };
/// let add = MethodInfo { name: "add", id: rpc_core::codec::method_id("Calc", "add"), ..slow };
/// assert_eq!(*limits.get(&slow), Some(4));
/// assert_eq!(*limits.get(&add), Some(64));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerMethod<T> {
    default: T,
    methods: IdMap<u32, T>,
}

impl<T> PerMethod<T> {
    /// `default` for every method.
    pub fn new(default: T) -> PerMethod<T> {
        PerMethod {
            default,
            methods: IdMap::default(),
        }
    }

    /// `value` for the method named `method` (`"Service.method"`, as on the wire).
    pub fn method(self, method: impl AsRef<str>, value: T) -> PerMethod<T> {
        self.method_id(rpc_codec::method_id_of(method.as_ref()), value)
    }

    /// `value` for the method whose wire id is `id` ([`MethodInfo::id`]).
    pub fn method_id(mut self, id: u32, value: T) -> PerMethod<T> {
        self.methods.insert(id, value);
        self
    }

    /// The value for `method`.
    #[inline]
    pub fn get(&self, method: &MethodInfo) -> &T {
        self.get_id(method.id)
    }

    /// The value for the method whose wire id is `id`.
    #[inline]
    pub fn get_id(&self, id: u32) -> &T {
        self.methods.get(&id).unwrap_or(&self.default)
    }

    /// The value of the methods not named.
    pub fn default_value(&self) -> &T {
        &self.default
    }
}
