//! What the tests of the policies share: a method to pick for, instances from (address, weight) pairs, and a
//! pick for a call with or without a key.

use std::sync::Arc;

use rpc_codec::Metadata;

use super::{CallInfo, Instance, Policy};
use crate::method::MethodInfo;

/// The method every test call is of.
pub(crate) static METHOD: MethodInfo = MethodInfo {
    service: "Svc",
    name: "m",
    id: 0,
    idempotent: false,
};

/// Instances of these addresses and weights.
pub(crate) fn instances_of(instances: &[(&str, u32)]) -> Vec<Instance> {
    instances
        .iter()
        .map(|(address, weight)| Instance::new(address, *weight))
        .collect()
}

/// What `policy` picks for a call with `key` (or none), not one in `skip`.
pub(crate) fn pick_with(
    policy: &dyn Policy,
    key: Option<u64>,
    skip: &[Arc<str>],
) -> Option<String> {
    let metadata = Metadata::new();
    let call = CallInfo::new(&METHOD, &metadata).with_key(key);
    policy
        .pick(&call, skip, tokio::time::Instant::now())
        .map(|a| a.to_string())
}

/// What `policy` picks for a call without a key, not one in `skip`.
pub(crate) fn pick(policy: &dyn Policy, skip: &[Arc<str>]) -> Option<String> {
    pick_with(policy, None, skip)
}
