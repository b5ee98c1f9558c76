//! The rules the registry holds: every applied revision of each service's document, in memory and, with a data
//! directory ([`crate::RegistryConfig::data_dir`]), on disk, so that a restarted registry serves the same rules.
//! Each service's history is one JSON file, `DATA_DIR/rules/SERVICE.json`, written whole ([`crate::server::store::data_dir`]):
//! a crash leaves the old history or the new one, never half of either. A write that fails to reach the disk is
//! refused, and nothing changes. Watchers wait for a service's next revision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rpc_core::rules::Rules;
use serde::{Deserialize, Serialize};

use crate::api::{RegistryError, RulesRevision};
use crate::server::service::shown;

/// The largest rules document the registry takes, as JSON: as large as a rules file.
const MAX_RULES_LEN: usize = crate::rules_file::MAX_RULES_FILE;

/// One service's history as its file holds it.
#[derive(Serialize, Deserialize)]
struct History {
    service: String,
    revisions: Vec<RulesRevision>,
}

/// Every service's revisions.
#[derive(Debug)]
pub(crate) struct RulesStore {
    /// `DATA_DIR/rules`, if the registry keeps its rules on disk.
    dir: Option<PathBuf>,
    max_revisions: usize,
    services: Mutex<BTreeMap<String, Vec<RulesRevision>>>,
    /// Counts applied revisions, so that watchers wake.
    applied: tokio::sync::watch::Sender<u64>,
}

impl RulesStore {
    /// The store of `data_dir` (none: in memory only), with the histories found there, each checked again.
    pub(crate) fn open(
        data_dir: Option<&Path>,
        max_revisions: usize,
    ) -> Result<RulesStore, String> {
        let dir = data_dir.map(|d| d.join("rules"));
        let mut services = BTreeMap::new();
        if let Some(dir) = &dir
            && dir.exists()
        {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let history = load(&path)?;
                    services.insert(history.service, history.revisions);
                }
            }
        }
        Ok(RulesStore {
            dir,
            max_revisions,
            services: Mutex::new(services),
            applied: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Applies `rules` (checked) as the next revision of their service.
    pub(crate) fn apply(
        &self,
        rules: &Rules,
        origin: String,
    ) -> Result<RulesRevision, RegistryError> {
        let json = serde_json::to_string(rules)
            .map_err(|e| RegistryError::InvalidRules(format!("cannot be written as JSON: {e}")))?;
        let mut services = rpc_core::sync::lock(&self.services);
        let history = services.get(&rules.service).map_or(&[][..], Vec::as_slice);
        if history.len() >= self.max_revisions {
            return Err(RegistryError::LimitExceeded(format!(
                "the rules of {} have {} revisions, the most kept (max_rules_revisions); every revision is \
                 kept so that any can be rolled back to: raise the limit",
                shown(&rules.service),
                history.len()
            )));
        }
        let revision = RulesRevision {
            service: rules.service.clone(),
            revision: history.last().map_or(1, |r| r.revision + 1),
            rules: json,
            applied_at_ms: now_ms(),
            origin,
        };
        let mut next = history.to_vec();
        next.push(revision.clone());
        if let Some(dir) = &self.dir {
            save(dir, &rules.service, &next).map_err(|e| {
                RegistryError::NotStored(format!(
                    "the rules of {} could not be stored, so they were not applied: {e}",
                    shown(&rules.service)
                ))
            })?;
        }
        services.insert(rules.service.clone(), next);
        drop(services);
        self.applied.send_modify(|n| *n += 1);
        Ok(revision)
    }

    #[cfg(feature = "etcd")]
    /// A revision that a store elsewhere (etcd) reports, put in its place in its service's history; its
    /// watchers wake.
    pub(crate) fn mirror(&self, revision: RulesRevision) {
        let mut services = rpc_core::sync::lock(&self.services);
        let history = services.entry(revision.service.clone()).or_default();
        if history.iter().all(|r| r.revision != revision.revision) {
            history.push(revision);
            history.sort_by_key(|r| r.revision);
        }
        drop(services);
        self.applied.send_modify(|n| *n += 1);
    }

    #[cfg(feature = "etcd")]
    /// The next revision of `service`'s rules, or why there may be none (the history is full).
    pub(crate) fn next_revision(&self, service: &str) -> Result<u64, RegistryError> {
        let services = rpc_core::sync::lock(&self.services);
        let history = services.get(service).map_or(&[][..], Vec::as_slice);
        if history.len() >= self.max_revisions {
            return Err(RegistryError::LimitExceeded(format!(
                "the rules of {} have {} revisions, the most kept (max_rules_revisions); every revision is \
                 kept so that any can be rolled back to: raise the limit",
                shown(service),
                history.len()
            )));
        }
        Ok(history.last().map_or(1, |r| r.revision + 1))
    }

    /// The revision of `service` in force.
    pub(crate) fn current(&self, service: &str) -> Option<RulesRevision> {
        rpc_core::sync::lock(&self.services)
            .get(service)
            .and_then(|h| h.last().cloned())
    }

    /// Every revision of `service`, oldest first.
    pub(crate) fn history(&self, service: &str) -> Vec<RulesRevision> {
        rpc_core::sync::lock(&self.services)
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Revision `revision` of `service`.
    pub(crate) fn revision(&self, service: &str, revision: u64) -> Option<RulesRevision> {
        rpc_core::sync::lock(&self.services)
            .get(service)?
            .iter()
            .find(|r| r.revision == revision)
            .cloned()
    }

    /// The rules of `service` once their revision is not `since` (0: none), or after `wait`, or once `closed`.
    pub(crate) async fn watch(
        &self,
        service: &str,
        since: u64,
        wait: Duration,
        closed: impl Future<Output = ()>,
    ) -> Option<RulesRevision> {
        let mut applied = self.applied.subscribe();
        let changed = |store: &RulesStore| {
            let current = store.current(service);
            (current.as_ref().map_or(0, |r| r.revision) != since).then_some(current)
        };
        if let Some(current) = changed(self) {
            return current;
        }
        let waiting = async {
            loop {
                if applied.changed().await.is_err() {
                    return None;
                }
                if let Some(current) = changed(self) {
                    return Some(current);
                }
            }
        };
        tokio::select! {
            found = waiting => if let Some(current) = found { return current; },
            () = tokio::time::sleep(wait) => {}
            () = closed => {}
        }
        self.current(service)
    }
}

/// Reads and checks one history file.
fn load(path: &Path) -> Result<History, String> {
    let shown_path = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown_path}: {e}"))?;
    let history: History = serde_json::from_str(&text).map_err(|e| format!("{shown_path}: {e}"))?;
    for revision in &history.revisions {
        let mut rules: Rules = serde_json::from_str(&revision.rules)
            .map_err(|e| format!("{shown_path}: revision {}: {e}", revision.revision))?;
        rules
            .check()
            .map_err(|e| format!("{shown_path}: revision {}: {e}", revision.revision))?;
        if rules.service != history.service || revision.service != history.service {
            return Err(format!(
                "{shown_path}: revision {} is of another service than {}",
                revision.revision, history.service
            ));
        }
    }
    Ok(history)
}

/// Writes `service`'s history whole ([`crate::server::store::data_dir::write_whole`]).
fn save(dir: &Path, service: &str, revisions: &[RulesRevision]) -> std::io::Result<()> {
    let history = History {
        service: service.to_owned(),
        revisions: revisions.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&history).map_err(std::io::Error::other)?;
    crate::server::store::data_dir::write_whole(dir, &format!("{service}.json"), &json)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a rules document sent as JSON and checks it: every problem, with its field, or with the line and
/// column of the JSON.
pub(crate) fn parse(json: &str) -> Result<Rules, RegistryError> {
    if json.len() > MAX_RULES_LEN {
        return Err(RegistryError::InvalidRules(format!(
            "the document has {} bytes, over the limit of {MAX_RULES_LEN}",
            json.len()
        )));
    }
    let mut rules: Rules = serde_json::from_str(json)
        .map_err(|e| RegistryError::InvalidRules(rpc_core::text::quoted(&e.to_string(), 512)))?;
    rules
        .check()
        .map_err(|e| RegistryError::InvalidRules(rpc_core::text::quoted(&e.to_string(), 4096)))?;
    Ok(rules)
}
