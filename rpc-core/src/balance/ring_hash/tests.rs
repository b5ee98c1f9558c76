//! Tests of `ring_hash`, on a paused clock where time matters.
use std::collections::BTreeMap;

use rpc_codec::Metadata;

use super::*;
use crate::balance::testing::{METHOD, pick_with};

const KEYS: u64 = 10_000;

fn instances(count: usize) -> Vec<Instance> {
    (0..count)
        .map(|i| Instance::new(&format!("10.0.0.{i}:7000"), 1))
        .collect()
}

fn owner(ring: &RingHash, key: u64, skip: &[Arc<str>]) -> Option<String> {
    pick_with(ring, Some(key), skip)
}

/// The owner of each of [`KEYS`] keys.
fn owners(ring: &RingHash) -> Vec<String> {
    (0..KEYS)
        .map(|k| owner(ring, hash_key(&k.to_le_bytes()), &[]).expect("an instance"))
        .collect()
}

fn shares(owners: &[String]) -> BTreeMap<&str, f64> {
    let mut shares = BTreeMap::new();
    for owner in owners {
        *shares.entry(owner.as_str()).or_default() += 1.0 / owners.len() as f64;
    }
    shares
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_joins_takes_about_a_share_of_keys_and_only_from_the_others() {
    let ring = RingHash::default();
    ring.update(&instances(10));
    let before = owners(&ring);
    let mut eleven = instances(10);
    eleven.push(Instance::new("10.0.0.10:7000", 1));
    ring.update(&eleven);
    let after = owners(&ring);
    let moved: Vec<usize> = (0..before.len())
        .filter(|&k| before[k] != after[k])
        .collect();
    assert!(
        moved.iter().all(|&k| after[k] == "10.0.0.10:7000"),
        "every moved key moved to the new instance"
    );
    let share = moved.len() as f64 / KEYS as f64;
    assert!(
        (0.7 / 11.0..1.3 / 11.0).contains(&share),
        "moved share {share:.4}, expected about 1/11 = {:.4}",
        1.0 / 11.0
    );
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_leaves_hands_over_its_own_keys_and_no_other() {
    let ring = RingHash::default();
    ring.update(&instances(10));
    let before = owners(&ring);
    let mut nine = instances(10);
    let gone = nine.remove(3);
    ring.update(&nine);
    let after = owners(&ring);
    for k in 0..before.len() {
        let was_its = before[k] == *gone.address;
        assert_eq!(
            before[k] != after[k],
            was_its,
            "key {k}: {} -> {}",
            before[k],
            after[k]
        );
    }
    let share = shares(&before)[&*gone.address];
    assert!(
        (0.7 / 10.0..1.3 / 10.0).contains(&share),
        "moved share {share:.4}, expected about 1/10"
    );
    // Its keys spread over the others rather than all falling to one neighbour.
    let heirs: std::collections::BTreeSet<&String> = (0..before.len())
        .filter(|&k| before[k] == *gone.address)
        .map(|k| &after[k])
        .collect();
    assert!(heirs.len() >= 5, "{heirs:?}");
}

#[tokio::test(start_paused = true)]
async fn weights_set_each_instances_share_of_keys_and_a_change_moves_keys_only_to_or_from_it() {
    let ring = RingHash::default();
    let weighted = |b| {
        [
            Instance::new("a", 2),
            Instance::new("b", b),
            Instance::new("c", 1),
            Instance::new("z", 0),
        ]
    };
    ring.update(&weighted(1));
    assert_eq!(ring.points(), 4 * DEFAULT_POINTS_PER_WEIGHT as usize);
    let before = owners(&ring);
    let shares_before = shares(&before);
    assert!(
        (0.42..0.58).contains(&shares_before["a"]),
        "{shares_before:?}"
    );
    assert!(
        (0.18..0.32).contains(&shares_before["b"]),
        "{shares_before:?}"
    );
    assert!(!shares_before.contains_key("z"), "{shares_before:?}");

    ring.update(&weighted(2));
    let after = owners(&ring);
    for k in 0..before.len() {
        if before[k] != after[k] {
            assert_eq!(
                after[k], "b",
                "key {k} moved elsewhere than to the heavier instance"
            );
        }
    }
    let b = shares(&after)["b"];
    assert!(
        (0.33..0.47).contains(&b),
        "b owns {b:.3}, expected about 2/5"
    );
}

#[tokio::test(start_paused = true)]
async fn a_calls_key_then_its_metadata_decide_and_without_either_calls_spread() {
    let ring = RingHash::on_metadata("x-tenant");
    ring.update(&instances(3));
    let tenant = |name: &str| Metadata::from_pairs([("x-tenant", name)]).unwrap();
    let pick = |metadata: &Metadata, key: Option<u64>| {
        let call = CallInfo::new(&METHOD, metadata).with_key(key);
        ring.pick(&call, &[], Instant::now()).unwrap().to_string()
    };
    let acme = tenant("acme");
    let home = pick(&acme, None);
    for _ in 0..20 {
        assert_eq!(pick(&acme, None), home);
    }
    assert_eq!(
        pick(&acme, None),
        owner(&ring, hash_key(b"acme"), &[]).unwrap(),
        "the value hashed as a key of the caller's would be"
    );
    // The caller's key comes first: some key goes elsewhere than acme's instance, whatever the metadata.
    let elsewhere = (0..100u64)
        .map(|k| hash_key(&k.to_le_bytes()))
        .find(|&k| owner(&ring, k, &[]).unwrap() != home)
        .expect("a key on another instance");
    assert_ne!(pick(&acme, Some(elsewhere)), home);

    let mut counts = BTreeMap::new();
    let none = Metadata::new();
    for _ in 0..300 {
        *counts.entry(pick(&none, None)).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n >= 50), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_skipped_or_down_instances_keys_go_to_the_next_on_the_ring_and_come_back() {
    let ring = RingHash::default();
    ring.update(&instances(5));
    let before = owners(&ring);
    let home = before[0].clone();
    let skip = [Arc::<str>::from(home.as_str())];
    let key = hash_key(&0u64.to_le_bytes());
    let next = owner(&ring, key, &skip).unwrap();
    assert_ne!(next, home);
    for _ in 0..10 {
        assert_eq!(
            owner(&ring, key, &skip).unwrap(),
            next,
            "the same next one each time"
        );
    }

    ring.report(&home, Outcome::Failure, Duration::ZERO, Instant::now());
    assert_eq!(owners(&ring), before, "a failure moves no key");
    ring.report(&home, Outcome::Unreachable, Duration::ZERO, Instant::now());
    let down = owners(&ring);
    for k in 0..before.len() {
        assert_eq!(before[k] != down[k], before[k] == home, "key {k}");
    }
    let everyone: Vec<Arc<str>> = instances(5).into_iter().map(|i| i.address).collect();
    let others: Vec<Arc<str>> = everyone.iter().filter(|a| ***a != *home).cloned().collect();
    assert_eq!(
        owner(&ring, key, &others),
        Some(home.clone()),
        "down: a last resort"
    );
    assert_eq!(owner(&ring, key, &everyone), None);

    tokio::time::advance(DEFAULT_DOWN_FOR).await;
    assert_eq!(owners(&ring), before, "back after down_for");
    ring.report(&home, Outcome::Unreachable, Duration::ZERO, Instant::now());
    ring.report(&home, Outcome::Success, Duration::ZERO, Instant::now());
    assert_eq!(owners(&ring), before, "back at its first answer");
}

#[tokio::test(start_paused = true)]
async fn the_ring_is_rebuilt_only_when_membership_or_weights_change() {
    let ring = RingHash::default();
    let mut five = instances(5);
    ring.update(&five);
    ring.report(
        "10.0.0.2:7000",
        Outcome::Unreachable,
        Duration::ZERO,
        Instant::now(),
    );
    five.reverse();
    ring.update(&five);
    assert_eq!(ring.state().rebuilds, 1, "same instances, another order");
    five[0].weight = 3;
    ring.update(&five);
    assert_eq!(ring.state().rebuilds, 2);
    five.pop();
    ring.update(&five);
    assert_eq!(ring.state().rebuilds, 3);
    assert!(
        ring.state()
            .peers
            .iter()
            .any(|p| &*p.address == "10.0.0.2:7000" && p.down.is_marked()),
        "what was learned is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn every_client_builds_the_same_ring_and_the_bound_on_points_holds() {
    let (one, other) = (RingHash::default(), RingHash::default());
    let mut ten = instances(10);
    one.update(&ten);
    ten.reverse();
    other.update(&ten);
    assert_eq!(owners(&one), owners(&other));

    let small = RingHash::default().with_max_points(100);
    small.update(&instances(10));
    assert_eq!(small.points(), 100);
    let huge = RingHash::default().with_max_points(1_000);
    huge.update(&[Instance::new("a", u32::MAX), Instance::new("b", 1)]);
    assert_eq!(huge.points(), 1_001, "at least one point each");
    let rebuilt = RingHash::default();
    rebuilt.update(&instances(2));
    assert_eq!(rebuilt.with_points_per_weight(10).points(), 20);
}
