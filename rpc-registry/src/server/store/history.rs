//! The registry's recent changes, one record per revision: which instance registered (and which one it
//! superseded) or left, and why (deregistered or evicted). Bounded to the last [`HISTORY_LEN`]; the records
//! share their instances with the state by `Arc`, so keeping one costs a few pointers. Watchers learn from it
//! why instances left (`watch_changes`), and the dashboard shows it on its first load, then the records after
//! the revision it shows.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use crate::api::{Removal, RemovalReason};
use crate::server::store::listing::Listed;

/// How many changes (registrations, deregistrations and evictions, all services together) the registry keeps
/// in its history: 1,000.
pub(crate) const HISTORY_LEN: usize = 1000;

/// What happened at one revision.
#[derive(Clone, Debug)]
pub(crate) enum What {
    /// An instance registered; `superseded` is the address's previous instance, which it replaced.
    Registered {
        instance: Arc<Listed>,
        superseded: Option<Arc<Listed>>,
    },
    /// An instance left its service (deregistered or evicted).
    Removed {
        instance: Arc<Listed>,
        reason: RemovalReason,
    },
    /// An operator set an instance's weight (or undid it); `instance` has the new weight, `from` is the old.
    Reweighed { instance: Arc<Listed>, from: u32 },
}

/// One change.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// The registry's revision it made.
    pub(crate) revision: u64,
    /// When, by the wall clock (for people).
    pub(crate) at: SystemTime,
    pub(crate) what: What,
}

impl Record {
    /// The instance the change is about (the new one, for a registration).
    pub(crate) fn instance(&self) -> &Arc<Listed> {
        match &self.what {
            What::Registered { instance, .. }
            | What::Removed { instance, .. }
            | What::Reweighed { instance, .. } => instance,
        }
    }

    /// The instance this change took out of its service's list, and why, if it took one out.
    pub(crate) fn removal(&self) -> Option<Removal> {
        let (gone, reason) = match &self.what {
            What::Registered {
                superseded: Some(old),
                ..
            } => (old, RemovalReason::Superseded),
            What::Removed { instance, reason } => (instance, *reason),
            What::Registered { .. } | What::Reweighed { .. } => return None,
        };
        Some(Removal {
            address: gone.address.clone(),
            lease: gone.lease,
            incarnation: gone.incarnation,
            reason,
            revision: self.revision,
        })
    }
}

/// The last [`HISTORY_LEN`] changes, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    records: VecDeque<Record>,
}

impl History {
    /// Records a change; the oldest record goes once there are [`HISTORY_LEN`].
    pub(crate) fn push(&mut self, record: Record) {
        if self.records.len() == HISTORY_LEN {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Whether the history still holds every change after revision `since` (every revision makes one record).
    pub(crate) fn covers(&self, since: u64) -> bool {
        self.records
            .front()
            .is_none_or(|oldest| oldest.revision <= since.saturating_add(1))
    }

    /// The records after revision `since`, oldest first, at most the newest `most` of them.
    pub(crate) fn after(&self, since: u64, most: usize) -> Vec<Record> {
        let newer = self
            .records
            .iter()
            .rev()
            .take_while(|r| r.revision > since)
            .take(most);
        let mut records: Vec<Record> = newer.cloned().collect();
        records.reverse();
        records
    }

    /// The records after revision `since` that took an instance out of `service`, oldest first.
    pub(crate) fn removals(&self, service: &str, since: u64) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .records
            .iter()
            .rev()
            .take_while(|r| r.revision > since)
            .filter(|r| r.instance().service == service && r.removal().is_some())
            .cloned()
            .collect();
        records.reverse();
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Instance;
    use crate::server::store::listing::Clock;
    use tokio::time::Instant;

    fn listed(address: &str, lease: u64) -> Arc<Listed> {
        let now = Instant::now();
        let instance = Instance {
            service: "Calc".into(),
            address: address.into(),
            weight: 1,
            metadata: Default::default(),
            lease,
            incarnation: 1,
        };
        Arc::new(Listed::new(
            instance,
            &Clock::new(now, std::time::Duration::from_secs(3)),
            now,
        ))
    }

    fn record(revision: u64, what: What) -> Record {
        Record {
            revision,
            at: SystemTime::now(),
            what,
        }
    }

    #[test]
    fn the_history_keeps_the_last_records_and_says_whether_it_covers_a_revision() {
        let mut h = History::default();
        assert!(h.covers(0));
        for revision in 1..=HISTORY_LEN as u64 + 5 {
            let instance = listed("10.0.0.1:1", revision);
            h.push(record(
                revision,
                What::Registered {
                    instance,
                    superseded: None,
                },
            ));
        }
        assert_eq!(h.records.len(), HISTORY_LEN);
        assert!(h.covers(5), "revisions 6 onwards are kept");
        assert!(!h.covers(4), "revision 5 is gone");
        let last = h.after(HISTORY_LEN as u64 + 2, 10);
        let revisions: Vec<u64> = last.iter().map(|r| r.revision).collect();
        assert_eq!(revisions, [1003, 1004, 1005]);
        assert_eq!(h.after(0, 2).len(), 2);
    }

    #[test]
    fn removals_are_those_of_the_service_after_the_revision_with_their_reason() {
        let mut h = History::default();
        let a = listed("10.0.0.1:1", 1);
        let b = listed("10.0.0.2:1", 2);
        h.push(record(
            1,
            What::Registered {
                instance: Arc::clone(&a),
                superseded: None,
            },
        ));
        h.push(record(
            2,
            What::Registered {
                instance: Arc::clone(&b),
                superseded: Some(Arc::clone(&a)),
            },
        ));
        h.push(record(
            3,
            What::Removed {
                instance: b,
                reason: RemovalReason::Evicted,
            },
        ));
        let removals: Vec<Removal> = h
            .removals("Calc", 1)
            .iter()
            .filter_map(Record::removal)
            .collect();
        let reasons: Vec<(u64, RemovalReason)> =
            removals.iter().map(|r| (r.lease, r.reason)).collect();
        assert_eq!(
            reasons,
            [(1, RemovalReason::Superseded), (2, RemovalReason::Evicted)]
        );
        assert!(h.removals("Calc", 3).is_empty());
        assert!(h.removals("Other", 0).is_empty());
    }
}
