//! What recording one call costs in metrics, the work every call of every connection does when metrics are on:
//! its count by service, method and status, its latency in a histogram of 18 buckets, and the in-flight gauge up
//! and down. Side by side: the framework's own atomics (`rpc_core::Metrics`, with the method's counters
//! resolved beforehand as a server has them, and looked up per call as a client does), `prometheus-client`'s
//! `Family` of `Counter`s and `Histogram`s (looked up per call, and resolved beforehand), and the `metrics` facade
//! with `metrics-exporter-prometheus` as its recorder (its macros per call, and handles resolved beforehand). Each
//! is measured on one thread and on several recording the same method at once.
//!
//! Run with `cargo bench -p benches --features exporters --bench metrics`. For instruction counts, run the
//! built binary under callgrind with `METRICS_PROBE=<variant>,<records>` (one thread, no criterion), twice with
//! different record counts, and divide the difference by the difference of the counts. Threads contending on
//! this 2-vCPU VM measure from run to run up to 5x apart; `METRICS_ROUNDS=<rounds>` runs every variant in turn,
//! round after round, on 1, 2 and 4 pinned threads, and prints each one's median and range.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Barrier;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use rpc_core::{MethodInfo, Metrics, Status};

/// The framework's latency buckets, in seconds.
const BUCKETS: [f64; 18] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The calls recorded in turn: how each ended and how long it took.
const CALLS: [(Status, &str, Duration); 4] = [
    (Status::Ok, "Ok", Duration::from_micros(40)),
    (Status::Ok, "Ok", Duration::from_micros(300)),
    (Status::NotFound, "NotFound", Duration::from_millis(2)),
    (Status::Ok, "Ok", Duration::from_micros(60)),
];

const ECHO: MethodInfo = MethodInfo {
    service: "Lab",
    name: "echo",
    id: 7,
    idempotent: false,
};

/// One way of recording a call: `record(i)` records `CALLS[i % 4]`.
trait Record: Sync {
    fn record(&self, i: usize);
}

/// The framework's metrics, the method's counters resolved once (a server's path).
struct Ours(Box<dyn Fn(Status, Duration) + Send + Sync>);

impl Record for Ours {
    fn record(&self, i: usize) {
        let (status, _, took) = CALLS[i % CALLS.len()];
        (self.0)(status, took);
    }
}

/// The framework's metrics, the method's counters looked up per call (a client's path).
struct OursLookup(Metrics);

impl Record for OursLookup {
    fn record(&self, i: usize) {
        let (status, _, took) = CALLS[i % CALLS.len()];
        self.0.__record(&ECHO, status, took);
    }
}

type CallLabels = [(&'static str, &'static str); 3];
type MethodLabels = [(&'static str, &'static str); 2];

/// `prometheus-client`: families looked up by their labels on every call.
struct PromFamily {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge<i64, AtomicI64>,
}

impl PromFamily {
    fn new() -> PromFamily {
        PromFamily {
            calls: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            in_flight: Gauge::default(),
        }
    }
}

impl Record for PromFamily {
    fn record(&self, i: usize) {
        let (_, status, took) = CALLS[i % CALLS.len()];
        self.in_flight.inc();
        let labels = [("service", "Lab"), ("method", "echo"), ("status", status)];
        self.calls.get_or_create(&labels).inc();
        let labels = [("service", "Lab"), ("method", "echo")];
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.in_flight.dec();
    }
}

/// `prometheus-client`: the method's counters and histogram resolved once (`get_or_create_owned`).
struct PromHandles {
    ok: Counter,
    not_found: Counter,
    duration: Histogram,
    in_flight: Gauge<i64, AtomicI64>,
}

impl PromHandles {
    fn new(family: &PromFamily) -> PromHandles {
        let calls = |status| {
            let labels = [("service", "Lab"), ("method", "echo"), ("status", status)];
            family.calls.get_or_create_owned(&labels)
        };
        PromHandles {
            ok: calls("Ok"),
            not_found: calls("NotFound"),
            duration: family
                .durations
                .get_or_create_owned(&[("service", "Lab"), ("method", "echo")]),
            in_flight: family.in_flight.clone(),
        }
    }
}

impl Record for PromHandles {
    fn record(&self, i: usize) {
        let (status, _, took) = CALLS[i % CALLS.len()];
        self.in_flight.inc();
        match status {
            Status::Ok => self.ok.inc(),
            _ => self.not_found.inc(),
        };
        self.duration.observe(took.as_secs_f64());
        self.in_flight.dec();
    }
}

/// The `metrics` facade's macros on every call, into `metrics-exporter-prometheus` (the global recorder).
struct Facade;

impl Record for Facade {
    fn record(&self, i: usize) {
        let (_, status, took) = CALLS[i % CALLS.len()];
        metrics::gauge!("rpc_server_calls_in_flight").increment(1.0);
        metrics::counter!("rpc_server_calls_total", "service" => "Lab", "method" => "echo", "status" => status)
            .increment(1);
        metrics::histogram!("rpc_server_call_duration_seconds", "service" => "Lab", "method" => "echo")
            .record(took.as_secs_f64());
        metrics::gauge!("rpc_server_calls_in_flight").decrement(1.0);
    }
}

/// The `metrics` facade's handles, resolved once.
struct FacadeHandles {
    ok: metrics::Counter,
    not_found: metrics::Counter,
    duration: metrics::Histogram,
    in_flight: metrics::Gauge,
}

impl FacadeHandles {
    fn new() -> FacadeHandles {
        let calls = |status: &'static str| metrics::counter!("rpc_server_calls_total", "service" => "Lab", "method" => "echo", "status" => status);
        FacadeHandles {
            ok: calls("Ok"),
            not_found: calls("NotFound"),
            duration: metrics::histogram!("rpc_server_call_duration_seconds", "service" => "Lab", "method" => "echo"),
            in_flight: metrics::gauge!("rpc_server_calls_in_flight"),
        }
    }
}

impl Record for FacadeHandles {
    fn record(&self, i: usize) {
        let (status, _, took) = CALLS[i % CALLS.len()];
        self.in_flight.increment(1.0);
        match status {
            Status::Ok => self.ok.increment(1),
            _ => self.not_found.increment(1),
        }
        self.duration.record(took.as_secs_f64());
        self.in_flight.decrement(1.0);
    }
}

/// Installs `metrics-exporter-prometheus` as the facade's recorder, with real histogram buckets; returns the
/// handle that renders it (and drains the samples its histograms keep until then).
fn install_facade() -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .expect("buckets are not empty")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the benchmark installs the one recorder");
    handle
}

/// Every variant by name.
fn variants() -> Vec<(&'static str, Box<dyn Record>)> {
    let family = PromFamily::new();
    let handles = PromHandles::new(&family);
    vec![
        (
            "atomics-resolved",
            Box::new(Ours(Box::new(Metrics::server().__recorder(&ECHO)))),
        ),
        ("atomics-lookup", Box::new(OursLookup(Metrics::client()))),
        ("prometheus-client-family", Box::new(family)),
        ("prometheus-client-resolved", Box::new(handles)),
        ("metrics-facade-macros", Box::new(Facade)),
        ("metrics-facade-resolved", Box::new(FacadeHandles::new())),
    ]
}

fn record(c: &mut Criterion) {
    let exporter = install_facade();
    let variants = variants();
    let mut group = c.benchmark_group("metrics/1-thread");
    for (name, variant) in &variants {
        group.bench_function(*name, |b| {
            let mut i = 0;
            b.iter(|| {
                variant.record(i);
                i += 1;
            });
        });
        // The exporter keeps every histogram sample until it renders: drain them between variants.
        exporter.run_upkeep();
    }
    group.finish();

    // Two threads record the same method at once: the time per record each thread sees.
    let mut group = c.benchmark_group("metrics/2-threads");
    for (name, variant) in &variants {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let start = Barrier::new(2);
                std::thread::scope(|s| {
                    let worker = s.spawn(|| {
                        start.wait();
                        for i in 0..iters as usize {
                            variant.record(i);
                        }
                    });
                    start.wait();
                    let began = Instant::now();
                    for i in 0..iters as usize {
                        variant.record(i);
                    }
                    worker.join().expect("the worker does not panic");
                    began.elapsed()
                })
            });
        });
        exporter.run_upkeep();
    }
    group.finish();
}

criterion_group!(benches, record);

/// Nanoseconds per record as each of `threads` threads sees it (thread `k` on CPU `k` modulo the CPUs), all
/// recording `records` calls at once.
fn timed(variant: &dyn Record, threads: usize, records: usize) -> f64 {
    let start = Barrier::new(threads);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|cpu| {
                let start = &start;
                s.spawn(move || {
                    // One CPU each, so that two threads contend as two cores do, not by taking turns.
                    let _ = benches::server_thread::pin_current_thread(cpu % cpus);
                    start.wait();
                    let began = Instant::now();
                    for i in 0..records {
                        variant.record(std::hint::black_box(i));
                    }
                    began.elapsed()
                })
            })
            .collect();
        let took: Duration = workers
            .into_iter()
            .map(|w| w.join().expect("a worker does not panic"))
            .max()
            .unwrap_or_default();
        took.as_nanos() as f64 / records as f64
    })
}

/// `METRICS_ROUNDS=<rounds>`: every variant in turn, round after round, on one thread, two and four (more
/// threads than this machine's CPUs: a thread can be preempted holding a lock); the median and range of each. Interleaved, so that the machine's moods fall on every variant alike.
fn rounds(rounds: usize) {
    let exporter = install_facade();
    let variants = variants();
    for threads in [1, 2, 4] {
        let mut figures = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for ((_, variant), figures) in variants.iter().zip(&mut figures) {
                figures.push(timed(variant.as_ref(), threads, 2_000_000));
                exporter.run_upkeep();
            }
        }
        for ((name, _), mut figures) in variants.iter().zip(figures) {
            figures.sort_by(f64::total_cmp);
            println!(
                "{threads} thread(s) {name:<28} median {:7.1} ns, {:7.1}-{:7.1}",
                figures[figures.len() / 2],
                figures[0],
                figures[figures.len() - 1]
            );
        }
    }
}

fn main() {
    // `METRICS_PROBE=<variant>,<records>`: that many records of one variant, for callgrind.
    if let Ok(probe) = std::env::var("METRICS_PROBE") {
        let (name, records) = probe
            .split_once(',')
            .expect("METRICS_PROBE=<variant>,<records>");
        let records: usize = records.parse().expect("a number of records");
        // Only the facade's variants install its recorder: its clock calibrates for a varying while.
        let _exporter = name.starts_with("metrics-facade").then(install_facade);
        let variants = variants();
        let (_, variant) = variants
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no variant {name}"));
        for i in 0..records {
            variant.record(std::hint::black_box(i));
        }
        return;
    }
    if let Ok(n) = std::env::var("METRICS_ROUNDS") {
        rounds(n.parse().expect("a number of rounds"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
