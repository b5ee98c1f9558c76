//! Tests of `peak_ewma`, on a paused clock where time matters.
use std::collections::BTreeMap;

use super::*;
use crate::balance::testing::{instances_of, pick};

const MS: Duration = Duration::from_millis(1);

fn policy_of(instances: &[(&str, u32)]) -> PeakEwma {
    let policy = PeakEwma::default();
    policy.update(&instances_of(instances));
    policy
}

/// `calls` calls one after the other, `step` apart, each answering in `latency(address)`: how many each
/// instance took.
async fn run(
    policy: &PeakEwma,
    calls: usize,
    step: Duration,
    latency: impl Fn(&str) -> Duration,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..calls {
        let address = pick(policy, &[]).expect("an instance");
        policy.report(
            &address,
            Outcome::Success,
            latency(&address),
            Instant::now(),
        );
        *counts.entry(address).or_default() += 1;
        tokio::time::advance(step).await;
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn a_ten_times_slower_instance_gets_few_calls_and_wins_them_back_after_the_decay() {
    let policy = policy_of(&[("a", 1), ("b", 1), ("c", 1)]);
    for address in ["a", "b", "c"] {
        policy.report(address, Outcome::Success, 10 * MS, Instant::now());
    }
    let slow = |address: &str| if address == "a" { 100 * MS } else { 10 * MS };
    let counts = run(&policy, 300, 10 * MS, slow).await;
    // `a` is tried once (idle, its average decays below the others'), and never again while its average
    // stays above theirs.
    assert!(counts.get("a").copied().unwrap_or(0) <= 1, "{counts:?}");

    // `a` is fast again, and the others keep answering in 10 ms: once its average has decayed to theirs
    // (23 s after its answer at the default decay) it is tried, and from then on it takes its share.
    let fast = |_: &str| 10 * MS;
    let counts = run(&policy, 150, 100 * MS, fast).await;
    assert_eq!(counts.get("a"), None, "18 s on, still costlier: {counts:?}");
    let counts = run(&policy, 200, 100 * MS, fast).await;
    let a = counts.get("a").copied().unwrap_or(0);
    assert!(a >= 30, "a third of the last 15 s expected: {counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slower_answer_is_taken_at_once_and_a_faster_one_blended_in_over_time() {
    let policy = policy_of(&[("a", 1)]);
    policy.report("a", Outcome::Success, 10 * MS, Instant::now());
    assert_eq!(policy.latency_estimate("a"), Some(10 * MS));
    policy.report("a", Outcome::Success, 100 * MS, Instant::now());
    assert_eq!(policy.latency_estimate("a"), Some(100 * MS), "the peak");
    tokio::time::advance(DEFAULT_DECAY).await;
    // Decayed to 100/e ≈ 36.8 ms while idle, then 10 ms blended in with weight 1 − 1/e.
    policy.report("a", Outcome::Success, 10 * MS, Instant::now());
    let estimate = policy.latency_estimate("a").unwrap();
    assert!(
        (43 * MS..44 * MS).contains(&estimate),
        "{estimate:?}, expected 100/e + 10 (1 - 1/e) ≈ 43.1 ms"
    );
    assert_eq!(policy.latency_estimate("unknown"), None);
}

#[tokio::test(start_paused = true)]
async fn every_outcome_ends_the_count_in_flight() {
    let policy = policy_of(&[("a", 1)]);
    for _ in 0..4 {
        assert_eq!(pick(&policy, &[]).as_deref(), Some("a"));
    }
    assert_eq!(policy.in_flight("a"), Some(4));
    let outcomes = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Cancelled,
        Outcome::Unreachable,
    ];
    for (left, outcome) in (0..4).rev().zip(outcomes) {
        policy.report("a", outcome, 5 * MS, Instant::now());
        assert_eq!(policy.in_flight("a"), Some(left), "after {outcome:?}");
    }
    policy.report("a", Outcome::Success, 5 * MS, Instant::now());
    assert_eq!(policy.in_flight("a"), Some(0), "never below zero");
}

#[tokio::test(start_paused = true)]
async fn a_failure_counts_slower_than_the_average_and_a_cancellation_not_at_all() {
    let policy = policy_of(&[("a", 1)]);
    policy.report("a", Outcome::Success, 10 * MS, Instant::now());
    policy.report("a", Outcome::Cancelled, 500 * MS, Instant::now());
    assert_eq!(policy.latency_estimate("a"), Some(10 * MS));
    policy.report("a", Outcome::Failure, MS, Instant::now());
    assert_eq!(
        policy.latency_estimate("a"),
        Some(20 * MS),
        "a fast failure doubles it"
    );
    policy.report("a", Outcome::Failure, 300 * MS, Instant::now());
    assert_eq!(
        policy.latency_estimate("a"),
        Some(300 * MS),
        "a slow one counts as its latency"
    );
    for _ in 0..100 {
        policy.report("a", Outcome::Failure, MS, Instant::now());
    }
    assert_eq!(
        policy.latency_estimate("a"),
        Some(Duration::from_secs(60)),
        "no higher than the ceiling"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_in_flight_spread_in_proportion_to_weight() {
    let policy = policy_of(&[("a", 2), ("b", 1)]);
    for _ in 0..300 {
        pick(&policy, &[]).unwrap();
    }
    let (a, b) = (
        policy.in_flight("a").unwrap(),
        policy.in_flight("b").unwrap(),
    );
    assert!((195..=205).contains(&a), "a {a}, b {b}");
    assert_eq!(a + b, 300);
}

#[tokio::test(start_paused = true)]
async fn a_new_instance_is_priced_at_the_mean_and_gets_its_share_but_no_flood() {
    let policy = policy_of(&[("a", 1), ("b", 1)]);
    policy.report("a", Outcome::Success, 10 * MS, Instant::now());
    policy.report("b", Outcome::Success, 30 * MS, Instant::now());
    policy.update(&instances_of(&[("a", 1), ("b", 1), ("c", 1)]));
    assert_eq!(
        policy.latency_estimate("a"),
        Some(10 * MS),
        "kept across the update"
    );
    // Calls that have not answered yet: `c` costs 20 ms × (in flight + 1), and takes its part of them.
    for _ in 0..60 {
        pick(&policy, &[]).unwrap();
    }
    let in_flight = |a| policy.in_flight(a).unwrap();
    let (a, b, c) = (in_flight("a"), in_flight("b"), in_flight("c"));
    assert_eq!(a + b + c, 60);
    // Costs even out at 10 (a + 1) = 20 (c + 1) = 30 (b + 1): a 33, c 16, b 10.
    assert!((13..=20).contains(&c), "a {a}, b {b}, c {c}");
    assert!(a > c && c > b, "a {a}, b {b}, c {c}");
}

#[tokio::test(start_paused = true)]
async fn skipped_and_weightless_instances_are_never_picked_and_down_ones_only_as_a_last_resort() {
    let policy = policy_of(&[("a", 1), ("b", 1), ("z", 0)]);
    let a: Arc<str> = Arc::from("a");
    for _ in 0..20 {
        assert_eq!(
            pick(&policy, std::slice::from_ref(&a)).as_deref(),
            Some("b")
        );
    }
    let b: Arc<str> = Arc::from("b");
    assert_eq!(pick(&policy, &[Arc::clone(&a), Arc::clone(&b)]), None);

    policy.report("b", Outcome::Unreachable, MS, Instant::now());
    for _ in 0..20 {
        assert_eq!(pick(&policy, &[]).as_deref(), Some("a"));
    }
    assert_eq!(
        pick(&policy, std::slice::from_ref(&a)).as_deref(),
        Some("b"),
        "down, but the last one left"
    );
    tokio::time::advance(DEFAULT_DOWN_FOR).await;
    let picked: Vec<_> = (0..40).filter_map(|_| pick(&policy, &[])).collect();
    assert!(picked.iter().any(|p| p == "b"), "back after down_for");
    assert!(picked.iter().all(|p| p != "z"));

    // An answer ends the down time at once.
    let policy = policy_of(&[("a", 1), ("b", 1)]);
    policy.report("a", Outcome::Unreachable, MS, Instant::now());
    policy.report("a", Outcome::Success, MS, Instant::now());
    policy.report("b", Outcome::Success, MS, Instant::now());
    let mut picked = Vec::new();
    for _ in 0..20 {
        let address = pick(&policy, &[]).unwrap();
        policy.report(&address, Outcome::Success, MS, Instant::now());
        picked.push(address);
    }
    assert!(picked.iter().any(|p| p == "a"), "{picked:?}");
}

#[test]
fn the_share_kept_matches_the_exponential_on_both_sides_of_its_series() {
    let decay = nanos(DEFAULT_DECAY);
    for elapsed_ns in [
        0,
        1,
        1_000,
        100_000,
        9_999_999,
        10_000_000,
        10_000_001,
        1_000_000_000,
        30_000_000_000,
    ] {
        let elapsed = Duration::from_nanos(elapsed_ns);
        let exact = (-(elapsed_ns as f64) / decay).exp();
        let got = kept(elapsed, decay);
        assert!(
            (got - exact).abs() <= 1e-9 * exact,
            "{elapsed:?}: {got} against {exact}"
        );
    }
}
