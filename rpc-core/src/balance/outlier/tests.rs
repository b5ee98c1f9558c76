//! Tests of `outlier`, on a paused clock where time matters.
use super::*;

fn detector(n: usize) -> Outliers {
    let o = Outliers::new(OutlierConfig::default());
    let instances: Vec<Instance> = (0..n).map(|i| Instance::new(&format!("i{i}"), 1)).collect();
    o.update(&instances);
    o
}

fn call(o: &Outliers, address: &str, outcome: Outcome, ms: u64) -> Option<Ejected> {
    let now = Instant::now();
    o.started(address, now);
    o.finished(address, outcome, Duration::from_millis(ms), now)
}

fn excluded(o: &Outliers) -> Vec<String> {
    let mut v: Vec<String> = o
        .excluded(Instant::now())
        .unwrap_or_default()
        .iter()
        .map(|a| a.to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn five_failures_in_a_row_eject_and_a_success_between_resets_the_count() {
    let o = detector(3);
    for _ in 0..4 {
        assert_eq!(call(&o, "i0", Outcome::Failure, 1), None);
    }
    assert_eq!(call(&o, "i0", Outcome::Success, 1), None);
    for _ in 0..4 {
        assert_eq!(call(&o, "i0", Outcome::Failure, 1), None);
    }
    let ejected = call(&o, "i0", Outcome::Failure, 1).expect("the fifth in a row ejects");
    assert_eq!(ejected.reason, "5 failures in a row");
    assert_eq!(ejected.duration, DEFAULT_BASE_EJECTION);
    assert_eq!(excluded(&o), ["i0"]);
}

#[tokio::test(start_paused = true)]
async fn an_ejection_ends_in_a_probe_a_failed_probe_ejects_for_longer_and_a_success_restores() {
    let o = detector(3);
    for _ in 0..5 {
        call(&o, "i1", Outcome::Unreachable, 1);
    }
    assert_eq!(excluded(&o), ["i1"]);
    tokio::time::advance(DEFAULT_BASE_EJECTION).await;
    assert!(o.tick(Instant::now()).is_empty());
    assert!(excluded(&o).is_empty(), "the probe may go");
    o.started("i1", Instant::now());
    assert_eq!(excluded(&o), ["i1"], "one probe at a time");
    let again = o
        .finished(
            "i1",
            Outcome::Failure,
            Duration::from_millis(1),
            Instant::now(),
        )
        .expect("a failed probe ejects at once");
    assert_eq!(
        again.duration,
        DEFAULT_BASE_EJECTION * 2,
        "longer each time"
    );
    tokio::time::advance(DEFAULT_BASE_EJECTION * 2).await;
    o.tick(Instant::now());
    assert_eq!(call(&o, "i1", Outcome::Success, 1), None);
    assert!(
        excluded(&o).is_empty(),
        "a good probe restores the instance"
    );
    assert_eq!(
        call(&o, "i1", Outcome::Failure, 1),
        None,
        "and its count starts over"
    );
}

#[tokio::test(start_paused = true)]
async fn at_most_ten_percent_are_ejected_but_always_one_and_never_the_last() {
    let o = detector(3);
    for _ in 0..5 {
        call(&o, "i0", Outcome::Failure, 1);
    }
    for _ in 0..10 {
        assert_eq!(
            call(&o, "i1", Outcome::Failure, 1),
            None,
            "one of 3 is the most"
        );
    }
    assert_eq!(excluded(&o), ["i0"]);

    let o = detector(20);
    for i in 0..3 {
        for _ in 0..5 {
            call(&o, &format!("i{i}"), Outcome::Failure, 1);
        }
    }
    assert_eq!(excluded(&o), ["i0", "i1"], "10% of 20");

    let o = detector(1);
    for _ in 0..10 {
        assert_eq!(
            call(&o, "i0", Outcome::Failure, 1),
            None,
            "the only instance stays"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_holds_calls_without_answering_while_its_peers_answer_is_ejected() {
    let o = detector(4);
    let start = Instant::now();
    o.started("i3", start);
    o.started("i3", start);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(80)).await;
        for i in 0..3 {
            call(&o, &format!("i{i}"), Outcome::Success, 1);
        }
        let now = Instant::now();
        let ejected = o.tick(now);
        if now.duration_since(start) < DEFAULT_STALL_AFTER {
            assert!(ejected.is_empty(), "{ejected:?}");
        } else {
            assert_eq!(ejected.len(), 1);
            assert_eq!(&*ejected[0].address, "i3");
            assert!(
                ejected[0]
                    .reason
                    .starts_with("2 calls in flight and no answer for 240 ms")
            );
        }
    }
    assert_eq!(excluded(&o), ["i3"]);
}

#[tokio::test(start_paused = true)]
async fn calls_cancelled_on_a_stalled_instance_do_not_hide_its_stall() {
    let o = detector(3);
    let start = Instant::now();
    for _ in 0..3 {
        o.started("i0", start);
    }
    tokio::time::advance(Duration::from_millis(120)).await;
    // One of its calls is hedged elsewhere and cancelled here: no answer came.
    o.finished(
        "i0",
        Outcome::Cancelled,
        Duration::from_millis(60),
        Instant::now(),
    );
    call(&o, "i1", Outcome::Success, 1);
    tokio::time::advance(Duration::from_millis(80)).await;
    let ejected = o.tick(Instant::now());
    assert_eq!(ejected.len(), 1, "stalled since the first call, 200 ms ago");
    assert!(
        ejected[0]
            .reason
            .starts_with("2 calls in flight and no answer for 200 ms"),
        "{}",
        ejected[0].reason
    );
}

/// An instance that always takes 300 ms is slow, not stalled: the stall check waits for ten times its
/// own usual latency, and leaves it to the latency check of the interval.
#[tokio::test(start_paused = true)]
async fn an_instance_slow_by_nature_is_not_taken_for_stalled() {
    let o = detector(3);
    call(&o, "i0", Outcome::Success, 300);
    o.started("i0", Instant::now());
    for _ in 0..10 {
        tokio::time::advance(Duration::from_millis(100)).await;
        call(&o, "i1", Outcome::Success, 1);
        assert!(
            o.tick(Instant::now()).is_empty(),
            "ejected after {:?}",
            Duration::from_millis(100)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn when_every_instance_is_slow_nobody_is_taken_for_stalled() {
    let o = detector(3);
    for i in 0..3 {
        o.started(&format!("i{i}"), Instant::now());
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(o.tick(Instant::now()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_high_failure_rate_or_a_latency_far_above_the_peers_ejects_at_the_intervals_end() {
    let o = detector(4);
    o.tick(Instant::now());
    for round in 0..40 {
        // i0 fails every other call (never 5 in a row); i1 answers in 50 ms against 2 ms.
        let outcome = if round % 2 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        call(&o, "i0", outcome, 2);
        call(&o, "i1", Outcome::Success, 50);
        call(&o, "i2", Outcome::Success, 2);
        call(&o, "i3", Outcome::Success, 2);
    }
    assert!(
        o.tick(Instant::now()).is_empty(),
        "not before the interval ends"
    );
    tokio::time::advance(DEFAULT_INTERVAL).await;
    let mut ejected: Vec<(String, String)> = o
        .tick(Instant::now())
        .into_iter()
        .map(|e| (e.address.to_string(), e.reason))
        .collect();
    ejected.sort();
    // 10% of 4 is one: the first found is ejected, the other refused; both were found.
    assert_eq!(ejected.len(), 1, "{ejected:?}");
    let (address, reason) = &ejected[0];
    match address.as_str() {
        "i0" => assert_eq!(reason, "20 of its 40 calls failed in the last 10 s"),
        "i1" => assert!(reason.starts_with("latency 50000 us"), "{reason}"),
        other => panic!("{other} ejected"),
    }
}

#[tokio::test(start_paused = true)]
async fn pushback_holds_an_instance_back_for_the_time_asked_without_an_ejection() {
    let o = detector(3);
    o.hold("i2", Duration::from_millis(250), Instant::now());
    assert_eq!(excluded(&o), ["i2"]);
    tokio::time::advance(Duration::from_millis(250)).await;
    o.tick(Instant::now());
    assert!(excluded(&o).is_empty());
    assert!(
        o.excluded(Instant::now()).is_none(),
        "back to the lock-free answer"
    );
}

#[tokio::test(start_paused = true)]
async fn disabled_detection_ejects_nothing() {
    let o = Outliers::new(OutlierConfig::disabled());
    o.update(&[Instance::new("a", 1), Instance::new("b", 1)]);
    for _ in 0..10 {
        assert_eq!(call(&o, "a", Outcome::Failure, 1), None);
    }
    o.started("b", Instant::now());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(o.tick(Instant::now()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn counts_kept_from_before_an_instance_left_and_came_back_eject_nothing() {
    let o = detector(3);
    let before = o.live("i0").expect("known");
    o.update(&[Instance::new("i1", 1), Instance::new("i2", 1)]);
    o.update(&[
        Instance::new("i0", 1),
        Instance::new("i1", 1),
        Instance::new("i2", 1),
    ]);
    let after = o.live("i0").expect("known again");
    assert!(!Arc::ptr_eq(&before, &after), "it starts afresh");
    for _ in 0..10 {
        let now = Instant::now();
        o.started_on(&before, now);
        let ejected = o.finished_on(
            &before,
            "i0",
            Outcome::Failure,
            Duration::from_millis(1),
            now,
        );
        assert_eq!(ejected, None, "failures counted on the old counts");
    }
    for _ in 0..4 {
        assert_eq!(call(&o, "i0", Outcome::Failure, 1), None);
    }
    assert!(
        call(&o, "i0", Outcome::Failure, 1).is_some(),
        "its own five in a row do"
    );
}
