//! Operators' weights: a weight an operator sets for an instance (0 drains it: no client picks it) in place of
//! the one it registered with. It is kept by service and address, so it still holds when the instance registers
//! again, until the operator undoes it. With a data directory it is written whole to `DATA_DIR/weights.json`
//! ([`crate::server::store::data_dir`]) before it takes effect, so that a restarted registry keeps it; a write that fails to
//! reach the disk is refused, and nothing changes.

use std::collections::BTreeMap;
use std::path::Path;

/// The file, in the data directory.
const FILE: &str = "weights.json";

/// Every weight set by an operator: by service, then address.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Weights {
    set: BTreeMap<String, BTreeMap<String, u32>>,
}

impl Weights {
    /// The weight set for `address` in `service`, if one is.
    pub(crate) fn get(&self, service: &str, address: &str) -> Option<u32> {
        self.set.get(service)?.get(address).copied()
    }

    /// Sets (or, with `None`, undoes) the weight of `address` in `service`.
    pub(crate) fn set(&mut self, service: &str, address: &str, weight: Option<u32>) {
        match weight {
            Some(weight) => {
                let addresses = self.set.entry(service.to_owned()).or_default();
                addresses.insert(address.to_owned(), weight);
            }
            None => {
                if let Some(addresses) = self.set.get_mut(service) {
                    addresses.remove(address);
                    if addresses.is_empty() {
                        self.set.remove(service);
                    }
                }
            }
        }
    }

    /// How many weights are set, all services together.
    pub(crate) fn len(&self) -> usize {
        self.set.values().map(BTreeMap::len).sum()
    }

    /// Every weight set: service, address, weight.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str, u32)> {
        self.set.iter().flat_map(|(service, addresses)| {
            addresses
                .iter()
                .map(move |(address, weight)| (service.as_str(), address.as_str(), *weight))
        })
    }

    /// The weights kept in `data_dir` (none if it has no such file).
    pub(crate) fn load(data_dir: &Path) -> Result<Weights, String> {
        let path = data_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Weights::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes them whole to `data_dir`.
    pub(crate) fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::server::store::data_dir::write_whole(data_dir, FILE, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_set_undone_and_kept_on_disk() {
        let mut weights = Weights::default();
        weights.set("Calc", "10.0.0.1:1", Some(0));
        weights.set("Calc", "10.0.0.2:1", Some(7));
        weights.set("Calc", "10.0.0.2:1", None);
        weights.set("Other", "10.0.0.9:1", None);
        assert_eq!(weights.get("Calc", "10.0.0.1:1"), Some(0));
        assert_eq!(weights.get("Calc", "10.0.0.2:1"), None);
        assert_eq!(weights.len(), 1);
        let dir = std::env::temp_dir().join(format!("rpc-weights-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            Weights::load(&dir).unwrap(),
            Weights::default(),
            "no file yet"
        );
        weights.save(&dir).unwrap();
        assert_eq!(Weights::load(&dir).unwrap(), weights);
        std::fs::write(dir.join(FILE), b"{\"Calc\": 3}").unwrap();
        let refused = Weights::load(&dir).unwrap_err();
        assert!(refused.contains("weights.json"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
