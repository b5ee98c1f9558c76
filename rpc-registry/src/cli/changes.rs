//! What `rpc-registry watch` prints: the changes between two instance lists of a service, matched by address
//! (`+` added, `-` removed, `~` weight, incarnation or metadata changed), and [`Tracker`], which follows a
//! service's snapshots, across registry restarts too, so that only real changes show. Addresses and metadata
//! are escaped and cut (see [`super::escape()`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use super::escape::field;
use super::format_metadata;
use crate::api::{Instance, RemovalReason, Snapshot, Watched};

/// A change to one address of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new address: `+ 127.0.0.1:7001 weight 5 incarnation 1 zone=a`.
    Added(Instance),
    /// An address gone, with why when the registry said (see [`crate::api::Registry::watch_changes`]):
    /// `- 127.0.0.1:7001 evicted (no heartbeat within the TTL)`, `- 127.0.0.1:7001 deregistered`.
    Removed(Instance, Option<RemovalReason>),
    /// An address whose weight, incarnation or metadata changed:
    /// `~ 127.0.0.1:7001 weight 5 -> 3, incarnation 1 -> 2`.
    Updated {
        /// As it was.
        old: Instance,
        /// As it is.
        new: Instance,
    },
}

impl Change {
    /// The address that changed.
    pub fn address(&self) -> &str {
        match self {
            Change::Added(i) | Change::Removed(i, _) => &i.address,
            Change::Updated { new, .. } => &new.address,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(i) => {
                write!(
                    f,
                    "+ {} weight {} incarnation {}",
                    field(&i.address),
                    i.weight,
                    i.incarnation
                )?;
                match format_metadata(&i.metadata) {
                    m if m.is_empty() => Ok(()),
                    m => write!(f, " {m}"),
                }
            }
            Change::Removed(i, None) => write!(f, "- {}", field(&i.address)),
            Change::Removed(i, Some(why)) => write!(f, "- {} {why}", field(&i.address)),
            Change::Updated { old, new } => {
                let mut parts = Vec::new();
                if old.weight != new.weight {
                    parts.push(format!("weight {} -> {}", old.weight, new.weight));
                }
                if old.incarnation != new.incarnation {
                    parts.push(format!(
                        "incarnation {} -> {}",
                        old.incarnation, new.incarnation
                    ));
                }
                if old.metadata != new.metadata {
                    let text = |m| match format_metadata(m) {
                        m if m.is_empty() => "-".to_owned(),
                        m => m,
                    };
                    parts.push(format!(
                        "metadata {} -> {}",
                        text(&old.metadata),
                        text(&new.metadata)
                    ));
                }
                write!(f, "~ {} {}", field(&new.address), parts.join(", "))
            }
        }
    }
}

/// The changes from `old` to `new` (two instance lists of one service), matched by address, in address order.
/// An address counts as changed when its weight, incarnation or metadata did (not its lease alone, which a
/// person cannot act on).
///
/// ```
/// use rpc_registry::Instance;
/// let instance = |weight| Instance {
///     service: "Calc".into(),
///     address: "127.0.0.1:7001".into(),
///     weight,
///     metadata: Default::default(),
///     lease: 1,
///     incarnation: 1,
/// };
/// let changes = rpc_registry::cli::diff(&[instance(5)], &[instance(3)]);
/// assert_eq!(changes[0].to_string(), "~ 127.0.0.1:7001 weight 5 -> 3");
/// ```
pub fn diff(old: &[Instance], new: &[Instance]) -> Vec<Change> {
    let before: BTreeMap<&str, &Instance> = old.iter().map(|i| (i.address.as_str(), i)).collect();
    let after: BTreeMap<&str, &Instance> = new.iter().map(|i| (i.address.as_str(), i)).collect();
    let mut changes = Vec::new();
    for (address, old) in &before {
        match after.get(address) {
            None => changes.push(Change::Removed((*old).clone(), None)),
            Some(new)
                if old.weight != new.weight
                    || old.incarnation != new.incarnation
                    || old.metadata != new.metadata =>
            {
                changes.push(Change::Updated {
                    old: (*old).clone(),
                    new: (*new).clone(),
                });
            }
            Some(_) => {}
        }
    }
    for (address, new) in &after {
        if !before.contains_key(address) {
            changes.push(Change::Added((*new).clone()));
        }
    }
    changes.sort_by(|a, b| super::address_order(a.address(), b.address()));
    changes
}

/// Follows the snapshots of one service and says what changed since the last one.
///
/// A restarted registry (a new epoch) starts empty and learns its instances again as they heartbeat. So after
/// a restart, an address the old registry had is kept, as it was, for a warm-up, while it registers again;
/// its incarnation, which counts registrations on one registry, is not compared across the restart. Only an
/// address still missing when the warm-up ends shows as removed.
#[derive(Clone, Debug)]
pub struct Tracker {
    warm_up: Duration,
    /// Whether a snapshot came yet.
    started: bool,
    epoch: u64,
    revision: u64,
    /// The instances as last shown.
    shown: Vec<Instance>,
    /// Addresses shown from before a restart that the new registry does not have yet.
    carried: BTreeSet<String>,
    /// When the current warm-up ends, if one runs.
    warm_until: Option<Instant>,
}

impl Tracker {
    /// A tracker that has seen nothing yet, keeping the instances of a restarted registry for `warm_up`.
    pub fn new(warm_up: Duration) -> Tracker {
        Tracker {
            warm_up,
            started: false,
            epoch: 0,
            revision: 0,
            shown: Vec::new(),
            carried: BTreeSet::new(),
            warm_until: None,
        }
    }

    /// Whether a snapshot came yet.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The epoch of the last snapshot (0 before the first), for the next watch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The revision of the last snapshot (0 before the first), for the next watch.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The instances as last shown (those kept over a warm-up included).
    pub fn instances(&self) -> &[Instance] {
        &self.shown
    }

    /// Whether `snapshot` comes from another registry process than the last one did.
    pub fn is_restart(&self, snapshot: &Snapshot) -> bool {
        self.started && snapshot.epoch != self.epoch
    }

    /// How long the next watch may wait for a change at `now`: `max`, or less while a warm-up runs, so that
    /// the snapshot that ends it comes on time.
    pub fn wait(&self, max: Duration, now: Instant) -> Duration {
        match self.warm_until {
            Some(until) => max.min(until.saturating_duration_since(now)),
            None => max,
        }
    }

    /// Takes the snapshot the registry answered at `now` (with the removals since the last one, from
    /// `watch_changes`); returns the changes since the last one shown, a removal with its reason when known.
    pub fn update(&mut self, answer: impl Into<Watched>, now: Instant) -> Vec<Change> {
        let Watched {
            snapshot, removed, ..
        } = answer.into();
        if self.is_restart(&snapshot) {
            self.carried = self.shown.iter().map(|i| i.address.clone()).collect();
            self.warm_until = Some(now + self.warm_up);
        }
        if self.warm_until.is_some_and(|until| now >= until) {
            self.warm_until = None;
            self.carried.clear();
        }
        self.started = true;
        self.epoch = snapshot.epoch;
        self.revision = snapshot.revision;
        let mut previous = self.shown.clone();
        for instance in &snapshot.instances {
            if self.carried.remove(&instance.address)
                && let Some(old) = previous.iter_mut().find(|p| p.address == instance.address)
            {
                old.incarnation = instance.incarnation;
            }
        }
        let mut current = snapshot.instances;
        current.extend(
            previous
                .iter()
                .filter(|p| self.carried.contains(&p.address))
                .cloned(),
        );
        if self.carried.is_empty() {
            self.warm_until = None;
        }
        let mut changes = diff(&previous, &current);
        for change in &mut changes {
            if let Change::Removed(gone, why) = change {
                // The address's last removal is what took it out of the list.
                *why = removed
                    .iter()
                    .rev()
                    .find(|r| r.address == gone.address)
                    .map(|r| r.reason);
            }
        }
        self.shown = current;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(port: u16, weight: u32, incarnation: u64, zone: &str) -> Instance {
        let metadata = match zone {
            "" => BTreeMap::new(),
            zone => [("zone".to_owned(), zone.to_owned())].into(),
        };
        Instance {
            service: "Calc".into(),
            address: format!("127.0.0.1:{port}"),
            weight,
            metadata,
            lease: u64::from(port) * 100 + incarnation,
            incarnation,
        }
    }

    fn snapshot(epoch: u64, revision: u64, instances: Vec<Instance>) -> Snapshot {
        Snapshot {
            service: "Calc".into(),
            epoch,
            revision,
            instances,
        }
    }

    fn lines(changes: &[Change]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_diff_lists_added_removed_and_updated_addresses_in_address_order() {
        let old = [
            instance(7001, 5, 1, "a"),
            instance(7002, 1, 1, ""),
            instance(7003, 1, 1, ""),
            instance(7004, 2, 1, "a"),
        ];
        let new = [
            instance(10000, 1, 1, ""),
            instance(7004, 2, 1, "b"),
            instance(7001, 3, 2, "a"),
            instance(7003, 1, 1, ""),
            instance(7000, 4, 1, "a"),
        ];
        assert_eq!(
            lines(&diff(&old, &new)),
            [
                "+ 127.0.0.1:7000 weight 4 incarnation 1 zone=a",
                "~ 127.0.0.1:7001 weight 5 -> 3, incarnation 1 -> 2",
                "- 127.0.0.1:7002",
                "~ 127.0.0.1:7004 metadata zone=a -> zone=b",
                "+ 127.0.0.1:10000 weight 1 incarnation 1",
            ]
        );
    }

    #[test]
    fn equal_lists_and_a_new_lease_alone_make_no_change() {
        let old = [instance(7001, 5, 1, "a")];
        let mut relet = old.clone();
        relet[0].lease += 1;
        assert_eq!(diff(&old, &old), []);
        assert_eq!(diff(&old, &relet), []);
        assert_eq!(diff(&[], &[]), []);
    }

    #[test]
    fn hostile_addresses_and_metadata_are_escaped_on_one_line() {
        let mut old = instance(7001, 1, 1, "a\nb");
        old.address.push_str("\x1b[2J");
        let mut new = old.clone();
        new.weight = 2;
        new.metadata.insert("\u{202e}k".into(), "v\r".into());
        let changes = [Change::Added(old.clone()), Change::Updated { old, new }];
        assert_eq!(
            lines(&changes),
            [
                "+ 127.0.0.1:7001\\x1b[2J weight 1 incarnation 1 zone=a\\nb",
                "~ 127.0.0.1:7001\\x1b[2J weight 1 -> 2, metadata zone=a\\nb -> zone=a\\nb,\\u{202e}k=v\\r",
            ]
        );
    }

    #[test]
    fn metadata_that_appears_or_goes_shows_as_a_dash() {
        let changes = diff(&[instance(7001, 1, 1, "")], &[instance(7001, 1, 1, "a")]);
        assert_eq!(lines(&changes), ["~ 127.0.0.1:7001 metadata - -> zone=a"]);
    }

    #[test]
    fn the_first_snapshot_adds_every_instance_and_the_same_revision_adds_nothing() {
        let now = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(3));
        let first = snapshot(
            9,
            4,
            vec![instance(7002, 1, 1, ""), instance(7001, 5, 1, "a")],
        );
        assert_eq!(
            lines(&tracker.update(first.clone(), now)),
            [
                "+ 127.0.0.1:7001 weight 5 incarnation 1 zone=a",
                "+ 127.0.0.1:7002 weight 1 incarnation 1"
            ]
        );
        assert_eq!((tracker.epoch(), tracker.revision()), (9, 4));
        assert_eq!(tracker.update(first, now), []);
        assert_eq!(
            tracker.wait(Duration::from_secs(30), now),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn after_a_restart_instances_that_come_back_unchanged_print_nothing() {
        let now = Instant::now();
        let warm_up = Duration::from_secs(3);
        let mut tracker = Tracker::new(warm_up);
        let before = vec![instance(7001, 5, 4, "a"), instance(7002, 1, 2, "")];
        tracker.update(snapshot(1, 40, before), now);
        // The restarted registry is empty at first: nothing is removed during the warm-up.
        let restarted = snapshot(2, 0, vec![]);
        assert!(tracker.is_restart(&restarted));
        assert_eq!(tracker.update(restarted, now), []);
        assert_eq!(tracker.instances().len(), 2);
        assert_eq!(tracker.wait(Duration::from_secs(30), now), warm_up);
        // They register again, with incarnation 1 on the new registry; one with another weight.
        let back = vec![instance(7001, 5, 1, "a"), instance(7002, 3, 1, "")];
        assert_eq!(
            lines(&tracker.update(snapshot(2, 2, back), now + Duration::from_secs(1))),
            ["~ 127.0.0.1:7002 weight 1 -> 3"]
        );
        // All back: the warm-up is over, and later incarnations count again.
        assert_eq!(
            tracker.wait(Duration::from_secs(30), now),
            Duration::from_secs(30)
        );
        let superseded = vec![instance(7001, 5, 2, "a"), instance(7002, 3, 1, "")];
        assert_eq!(
            lines(&tracker.update(snapshot(2, 3, superseded), now + Duration::from_secs(2))),
            ["~ 127.0.0.1:7001 incarnation 1 -> 2"]
        );
    }

    #[test]
    fn after_a_restart_an_instance_still_missing_when_the_warm_up_ends_is_removed() {
        let now = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(3));
        tracker.update(
            snapshot(
                1,
                7,
                vec![instance(7001, 5, 1, ""), instance(7002, 1, 1, "")],
            ),
            now,
        );
        let back = snapshot(2, 1, vec![instance(7001, 5, 1, "")]);
        assert_eq!(tracker.update(back.clone(), now), []);
        assert_eq!(
            tracker.wait(Duration::from_secs(30), now + Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        // The watch that waited for the end of the warm-up answers unchanged.
        assert_eq!(
            lines(&tracker.update(back, now + Duration::from_secs(3))),
            ["- 127.0.0.1:7002"]
        );
        assert_eq!(tracker.instances().len(), 1);
    }

    #[test]
    fn a_removed_address_says_why_when_the_registry_said() {
        use crate::api::Removal;
        let now = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(3));
        let three = vec![
            instance(7001, 1, 1, ""),
            instance(7002, 1, 1, ""),
            instance(7003, 1, 1, ""),
        ];
        tracker.update(snapshot(1, 3, three), now);
        let removal = |port: u16, reason, revision| Removal {
            address: format!("127.0.0.1:{port}"),
            lease: u64::from(port) * 100 + 1,
            incarnation: 1,
            reason,
            revision,
        };
        let answer = Watched {
            snapshot: snapshot(1, 6, vec![]),
            removed: vec![
                removal(7001, RemovalReason::Superseded, 4),
                removal(7001, RemovalReason::Evicted, 5),
                removal(7002, RemovalReason::Deregistered, 6),
            ],
            // 7003's removal fell out of the registry's history: no reason to give.
            complete: false,
        };
        assert_eq!(
            lines(&tracker.update(answer, now)),
            [
                "- 127.0.0.1:7001 evicted (no heartbeat within the TTL)",
                "- 127.0.0.1:7002 deregistered",
                "- 127.0.0.1:7003",
            ]
        );
    }

    #[test]
    fn without_a_warm_up_a_restart_is_diffed_against_the_last_snapshot_at_once() {
        let now = Instant::now();
        let mut tracker = Tracker::new(Duration::ZERO);
        tracker.update(snapshot(1, 7, vec![instance(7001, 5, 3, "")]), now);
        assert_eq!(
            lines(&tracker.update(snapshot(2, 0, vec![]), now)),
            ["- 127.0.0.1:7001"]
        );
    }
}
