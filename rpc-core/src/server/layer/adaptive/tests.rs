//! Tests of `adaptive`, on a paused clock where time matters.
use super::*;
use crate::method::MethodInfo;
use crate::server::layer::test_request;

const WORK: MethodInfo = MethodInfo {
    service: "Lab",
    name: "work",
    id: rpc_codec::method_id("Lab", "work"),
    idempotent: false,
};

/// Runs `windows` windows of `latency` with the limit full, and returns the limits after each.
fn busy(
    gradient: &mut Gradient,
    config: &AdaptiveConfig,
    windows: usize,
    latency_ms: u64,
) -> Vec<f64> {
    (0..windows)
        .map(|_| {
            let peak = gradient.limit as usize;
            gradient.window(config, Duration::from_millis(latency_ms), peak)
        })
        .collect()
}

#[test]
fn latency_rising_under_load_brings_the_limit_down_and_back_to_normal_lets_it_grow() {
    let config = AdaptiveConfig {
        probe_every: 0,
        ..AdaptiveConfig::default()
    };
    let mut gradient = Gradient::new(&config);
    assert_eq!(gradient.limit, 20.0);

    // Latency steady while the calls under way fill the limit: it grows, by the queue allowance.
    let grown = busy(&mut gradient, &config, 30, 10);
    assert!(grown.windows(2).all(|w| w[1] > w[0]), "{grown:?}");
    let high = gradient.limit;
    assert!(high > 40.0, "{high}");

    // Latency climbs to four times what it was: the limit comes down, window after window.
    let fell = busy(&mut gradient, &config, 10, 40);
    assert!(fell.windows(2).all(|w| w[1] < w[0]), "{fell:?}");
    let low = gradient.limit;
    assert!(low < high * 0.7, "{high} -> {low}");

    // Latency back to normal: the limit grows again.
    let regrown = busy(&mut gradient, &config, 30, 10);
    assert!(regrown.windows(2).all(|w| w[1] > w[0]), "{regrown:?}");
    assert!(gradient.limit > low * 1.5, "{low} -> {}", gradient.limit);
}

#[test]
fn the_limit_holds_while_few_calls_are_under_way_and_stays_within_its_bounds() {
    let config = AdaptiveConfig {
        min_limit: 5,
        max_limit: 30,
        probe_every: 0,
        ..AdaptiveConfig::default()
    };
    let mut gradient = Gradient::new(&config);
    // Calls far below the limit: the server is not the bottleneck, so nothing is learned.
    for _ in 0..50 {
        assert_eq!(gradient.window(&config, Duration::from_millis(10), 3), 20.0);
    }
    let up = busy(&mut gradient, &config, 200, 10);
    assert_eq!(up.last(), Some(&30.0));
    let down = busy(&mut gradient, &config, 200, 1000);
    assert!(down.iter().all(|&l| l >= 5.0), "{down:?}");
}

/// A server busy from its first call, whose latency grows with the calls under way past its capacity of
/// 4 (10 ms each): the long-term average alone takes the queue for normal and keeps the limit high; the
/// probe finds the server's own latency and brings the limit near the knee.
#[test]
fn a_probe_finds_the_knee_of_a_server_overloaded_from_the_start() {
    fn run(config: &AdaptiveConfig) -> f64 {
        let mut gradient = Gradient::new(config);
        for _ in 0..200 {
            let limit = gradient.limit;
            // Past 4 at once, each call waits for those ahead: latency grows with the limit.
            let latency = 10.0 * (limit / 4.0).max(1.0);
            gradient.window(
                config,
                Duration::from_secs_f64(latency / 1000.0),
                limit as usize,
            );
        }
        gradient.limit
    }
    let without = run(&AdaptiveConfig {
        probe_every: 0,
        ..AdaptiveConfig::default()
    });
    let with = run(&AdaptiveConfig::default());
    assert!(
        without >= 20.0,
        "without probes the limit stays at {without}"
    );
    assert!(
        (6.0..=12.0).contains(&with),
        "with probes it settles at {with}"
    );
}

#[test]
fn bounds_out_of_order_and_factors_out_of_range_are_taken_as_documented() {
    let adaptive = AdaptiveLimit::new(AdaptiveConfig {
        initial_limit: 50,
        min_limit: 0,
        max_limit: 0,
        smoothing: f64::NAN,
        tolerance: -1.0,
        ..AdaptiveConfig::default()
    });
    let config = &adaptive.shared.config;
    assert_eq!((config.min_limit, config.max_limit), (1, 1));
    assert_eq!(
        (config.smoothing, config.tolerance),
        (DEFAULT_SMOOTHING, DEFAULT_TOLERANCE)
    );
    assert_eq!(adaptive.limit(), 1);
    let inverted = AdaptiveLimit::new(AdaptiveConfig {
        min_limit: 30,
        max_limit: 10,
        ..AdaptiveConfig::default()
    });
    assert_eq!(inverted.limit(), 10);
}

/// Through the layer, on paused time: calls past the limit are shed with a retry-after; calls whose
/// latency climbs with the load bring the limit down, window by window.
#[tokio::test(start_paused = true)]
async fn the_layer_sheds_past_the_limit_and_lowers_it_as_latency_climbs() {
    let adaptive = AdaptiveLimit::new(AdaptiveConfig {
        initial_limit: 10,
        min_limit: 2,
        ..AdaptiveConfig::default()
    });
    // A server whose calls take 10 ms each for every call under way: past one at a time, the queue grows.
    let running = Arc::new(AtomicUsize::new(0));
    let inner = {
        let running = Arc::clone(&running);
        tower::service_fn(move |_: Request| {
            let running = Arc::clone(&running);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(10 * now as u64)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(Response::value_bytes(vec![]))
            }
        })
    };
    let mut service = adaptive.layer(inner);

    // A light load first (one call at a time), so that the long-term latency is the server's own.
    for _ in 0..100 {
        assert_eq!(
            service.call(test_request(&WORK)).await.unwrap().status(),
            Status::Ok
        );
    }
    assert_eq!(
        adaptive.limit(),
        10,
        "one call at a time says nothing of more"
    );
    assert_eq!(
        adaptive.long_term_latency(),
        Some(Duration::from_millis(10))
    );

    // Then waves of twelve calls at once: two past the limit are shed at once, and latency climbs.
    let mut shed = 0;
    for _ in 0..20 {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let future = service.call(test_request(&WORK));
            calls.spawn(future);
        }
        while let Some(answer) = calls.join_next().await {
            let answer = answer.unwrap().unwrap();
            if answer.status() == Status::ResourceExhausted {
                assert_eq!(answer.retry_after(), Some(DEFAULT_ADAPTIVE_RETRY_AFTER));
                shed += 1;
            }
        }
    }
    assert!(shed >= 20, "{shed} calls shed");
    assert!(
        adaptive.limit() < 8,
        "the limit is still {}",
        adaptive.limit()
    );
    assert_eq!(adaptive.in_flight(), 0);
}
