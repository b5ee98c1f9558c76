//! The services a server serves, by method id: built once when the server starts, read by every request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::service::Service;

/// Method ids are already hashes: a map keyed by them needs no further hashing.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }

    fn write_u32(&mut self, id: u32) {
        // Spread the id over the high bits too, which hashbrown uses for its control bytes.
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Services by the ids of their methods.
pub(crate) struct Registry {
    by_id: HashMap<u32, Arc<dyn Service>, BuildHasherDefault<IdHasher>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("methods", &self.by_id.len())
            .finish()
    }
}

impl Registry {
    /// The registry of `services`, or the first two methods that share an id or two services that share a name.
    pub(crate) fn new(services: Vec<Arc<dyn Service>>) -> Result<Registry, super::BuildError> {
        let mut by_id: HashMap<u32, Arc<dyn Service>, BuildHasherDefault<IdHasher>> =
            HashMap::default();
        let mut names: HashMap<&'static str, ()> = HashMap::new();
        for service in services {
            if names.insert(service.name(), ()).is_some() {
                return Err(super::BuildError::DuplicateService {
                    name: service.name(),
                });
            }
            for method in service.methods() {
                if let Some(other) = by_id.get(&method.id) {
                    let other = other.methods().iter().find(|m| m.id == method.id);
                    return Err(super::BuildError::MethodIdCollision {
                        id: method.id,
                        first: other.map_or_else(String::new, ToString::to_string),
                        second: method.to_string(),
                    });
                }
                by_id.insert(method.id, Arc::clone(&service));
            }
        }
        Ok(Registry { by_id })
    }

    /// The service that has a method with this id.
    pub(crate) fn service(&self, method_id: u32) -> Option<&dyn Service> {
        self.by_id.get(&method_id).map(|s| &**s)
    }
}
