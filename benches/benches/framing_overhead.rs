//! What framing adds to bare bincode, measured so that a noisy machine cannot tilt the ratio: each round times
//! bare and framed back to back (alternating which goes first) for ~20 ms each, and the report gives the median
//! over the rounds of each time and of the per-round ratio. Each round builds its buffers afresh behind a
//! padding allocation of a different size, so that the median also spans memory layouts: where the heap puts the
//! buffers (relative to each other and to the stack) moved single-process results by up to 15% here.
//!
//! Run with `cargo bench -p benches --bench framing_overhead`. The operations are those of
//! `benches::codec_work`, the same as the criterion bench `serialization` times.

use std::time::{Duration, Instant};

use benches::codec_work::Work;
use benches::messages;
use serde::Serialize;
use serde::de::DeserializeOwned;

const ROUNDS: usize = 21;
const SLICE: Duration = Duration::from_millis(20);

/// One measured operation: whether it reads frames from a refilled buffer, and the call itself. Each operation
/// is its own closure type, so each timing loop is compiled for it alone with the call inlined, as criterion's
/// `iter` does.
#[derive(Clone, Copy)]
struct Op<F> {
    reads: bool,
    each: F,
}

/// Runs `op` `n` times and returns the time taken (read-buffer refills excluded).
fn run<T, F>(work: &mut Work<T>, op: Op<F>, n: u64) -> Duration
where
    T: Serialize + DeserializeOwned,
    F: Fn(&mut Work<T>) + Copy,
{
    let mut total = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let batch = if op.reads {
            let b = left.min(work.batch_len());
            work.refill(b);
            b
        } else {
            left
        };
        let start = Instant::now();
        for _ in 0..batch {
            (op.each)(work);
        }
        total += start.elapsed();
        left -= batch;
    }
    total
}

/// How many runs of `op` take about one slice.
fn calibrate<T, F>(work: &mut Work<T>, op: Op<F>) -> u64
where
    T: Serialize + DeserializeOwned,
    F: Fn(&mut Work<T>) + Copy,
{
    let mut n = 16;
    loop {
        let t = run(work, op, n);
        if t >= SLICE / 4 || n >= 1 << 30 {
            return ((n as f64) * SLICE.as_secs_f64() / t.as_secs_f64().max(1e-9)).max(1.0) as u64;
        }
        n *= 4;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    message: &'static str,
    op: &'static str,
    bare_ns: f64,
    frame_ns: f64,
    ratio: f64,
    target: Option<f64>,
}

/// Interleaved rounds of `bare` and `framed` on fresh buffers; returns the median times (ns/op) and ratio.
fn compare<T, B, F>(value: &T, bare: Op<B>, framed: Op<F>) -> (f64, f64, f64)
where
    T: Serialize + DeserializeOwned + Clone,
    B: Fn(&mut Work<T>) + Copy,
    F: Fn(&mut Work<T>) + Copy,
{
    let mut work = Work::new(value.clone());
    let (nb, nf) = (calibrate(&mut work, bare), calibrate(&mut work, framed));
    drop(work);
    let (mut tb, mut tf, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // A different layout each round: the padding shifts where the buffers land.
        let padding = vec![0u8; 1 + round * 4096 / ROUNDS];
        let mut work = Work::new(value.clone());
        let mut time = |op_is_bare: bool| {
            let (ns, n) = if op_is_bare {
                (run(&mut work, bare, nb), nb)
            } else {
                (run(&mut work, framed, nf), nf)
            };
            ns.as_nanos() as f64 / n as f64
        };
        let (b, f) = if round % 2 == 0 {
            let b = time(true);
            (b, time(false))
        } else {
            let f = time(false);
            (time(true), f)
        };
        drop(padding);
        tb.push(b);
        tf.push(f);
        ratios.push(f / b);
    }
    (median(tb), median(tf), median(ratios))
}

fn message<T: Serialize + DeserializeOwned + Clone>(
    rows: &mut Vec<Row>,
    name: &'static str,
    value: T,
    target: Option<f64>,
) {
    let bare_encode = Op {
        reads: false,
        each: |w: &mut Work<T>| w.encode_bincode(),
    };
    let bare_decode = Op {
        reads: true,
        each: |w: &mut Work<T>| w.decode_bincode(),
    };
    let frame_encode = Op {
        reads: false,
        each: |w: &mut Work<T>| w.encode_frame(),
    };
    let frame_decode = Op {
        reads: true,
        each: |w: &mut Work<T>| w.decode_frame(),
    };
    let frame_decode_bytes = Op {
        reads: true,
        each: |w: &mut Work<T>| w.decode_frame_bytes(),
    };
    let results = [
        ("encode", compare(&value, bare_encode, frame_encode), target),
        ("decode", compare(&value, bare_decode, frame_decode), target),
        (
            "decode (Bytes)",
            compare(&value, bare_decode, frame_decode_bytes),
            None,
        ),
    ];
    for (op, (bare_ns, frame_ns, ratio), target) in results {
        rows.push(Row {
            message: name,
            op,
            bare_ns,
            frame_ns,
            ratio,
            target,
        });
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this report takes no arguments of its own.
    let mut rows = Vec::new();
    message(&mut rows, "small (~32 B)", messages::small(), Some(1.20));
    message(&mut rows, "mixed (~1 KiB)", messages::mixed(), None);
    message(&mut rows, "bytes (64 KiB)", messages::blob(), Some(1.05));

    println!(
        "framing overhead: medians of {ROUNDS} interleaved rounds of ~{} ms each",
        SLICE.as_millis()
    );
    println!(
        "{:<16} {:<15} {:>11} {:>11} {:>7}  target",
        "message", "operation", "bincode", "frame", "ratio"
    );
    for r in &rows {
        let verdict = match r.target {
            Some(t) if r.ratio <= t => format!("<= {t:.2} met"),
            Some(t) => format!("<= {t:.2} MISSED"),
            None => String::from("-"),
        };
        println!(
            "{:<16} {:<15} {:>11} {:>11} {:>7.3}  {verdict}",
            r.message,
            r.op,
            fmt_ns(r.bare_ns),
            fmt_ns(r.frame_ns),
            r.ratio
        );
    }
}
