//! Metrics of calls: a server and a client count the same calls by method and status (a method's own error as
//! `AppError`, apart from its successes), their latency histograms agree with their counts, the in-flight and
//! connection gauges rise and fall, the bytes one side sends are the bytes the other receives, and
//! `GET /metrics` serves it all in a form `promtool` accepts; a user's own `prometheus-client` registry takes
//! the same metrics beside the user's, in the Prometheus text format and in OpenMetrics.

use std::time::Duration;

use rpc_core::{Client, ClientConfig, Metrics, Server, ServerConfig};
use tests::lab::{LabClient, LabImpl, LabServer};
use tests::prom::{self, Sample, http_get, value};
use tests::serve::until;
use tokio::net::TcpListener;

/// A Lab server counting into `metrics`, on 127.0.0.1; dropped with the returned task.
async fn serve(
    metrics: &Metrics,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(LabServer::new(LabImpl::default()))
        .config(ServerConfig::default())
        .metrics(metrics.clone())
        .build()
        .unwrap();
    (addr, tokio::spawn(server.serve(listener)))
}

async fn client(addr: std::net::SocketAddr, metrics: &Metrics) -> LabClient {
    let config = ClientConfig {
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    LabClient::new(Client::connect_with(addr, config).await.unwrap())
}

fn samples(metrics: &Metrics) -> Vec<Sample> {
    prom::parse(&metrics.render()).unwrap()
}

fn calls(samples: &[Sample], side: &str, method: &str, status: &str) -> f64 {
    let name = format!("rpc_{side}_calls_total");
    value(
        samples,
        &name,
        &[("service", "Lab"), ("method", method), ("status", status)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn both_sides_count_each_call_by_method_and_status() {
    let (server_metrics, client_metrics) = (Metrics::server(), Metrics::client());
    let (addr, _server) = serve(&server_metrics).await;
    let lab = client(addr, &client_metrics).await;
    for n in 0..5 {
        assert_eq!(lab.echo(n).await, Ok(n));
    }
    assert_eq!(lab.div(6, 3).await, Ok(Ok(2)));
    assert!(
        lab.div(1, 0).await.unwrap().is_err(),
        "an application error is an answered call, but not a success"
    );
    assert!(lab.boom().await.is_err());
    let late = lab
        .with_deadline(Duration::from_millis(20))
        .delayed(1, 5_000)
        .await;
    assert_eq!(late.unwrap_err().code(), rpc_core::Status::DeadlineExceeded);

    // The server ends the late handler at its own deadline, a moment after the client gave up.
    let settled = until(|| {
        let s = samples(&server_metrics);
        value(&s, "rpc_server_calls_in_flight", &[]) == Some(0.0)
            && calls(&s, "server", "delayed", "DeadlineExceeded") == 1.0
    })
    .await;
    assert!(settled, "{}", server_metrics.render());
    for (side, metrics) in [("server", &server_metrics), ("client", &client_metrics)] {
        let s = samples(metrics);
        assert_eq!(calls(&s, side, "echo", "Ok"), 5.0, "{side}");
        assert_eq!(calls(&s, side, "div", "Ok"), 1.0, "{side}");
        assert_eq!(
            calls(&s, side, "div", "AppError"),
            1.0,
            "{side}: the method's own error is counted as such"
        );
        assert_eq!(calls(&s, side, "boom", "Internal"), 1.0, "{side}");
        assert_eq!(
            calls(&s, side, "delayed", "DeadlineExceeded"),
            1.0,
            "{side}"
        );
        assert_eq!(calls(&s, side, "echo", "Internal"), 0.0, "{side}");
        assert_eq!(
            value(&s, &format!("rpc_{side}_calls_in_flight"), &[]),
            Some(0.0),
            "{side}"
        );
        assert_eq!(
            value(&s, &format!("rpc_{side}_connections"), &[]),
            Some(1.0),
            "{side}"
        );

        // Each histogram counts its method's calls, its buckets never decrease, and its +Inf bucket is the count.
        let hist = format!("rpc_{side}_call_duration_seconds");
        for (method, expected) in [("echo", 5.0), ("div", 2.0), ("boom", 1.0), ("delayed", 1.0)] {
            let labels = [("service", "Lab"), ("method", method)];
            let count = value(&s, &format!("{hist}_count"), &labels);
            assert_eq!(count, Some(expected), "{side} {method}");
            let inf = [("service", "Lab"), ("method", method), ("le", "+Inf")];
            assert_eq!(
                value(&s, &format!("{hist}_bucket"), &inf),
                count,
                "{side} {method}"
            );
            let buckets: Vec<f64> = s
                .iter()
                .filter(|x| x.name == format!("{hist}_bucket") && x.labels["method"] == method)
                .map(|x| x.value)
                .collect();
            assert_eq!(buckets.len(), 19, "{side} {method}: 18 bounds and +Inf");
            assert!(
                buckets.windows(2).all(|w| w[0] <= w[1]),
                "{side} {method}: {buckets:?}"
            );
        }
        // The late call waited at least its 20 ms deadline.
        let labels = [("service", "Lab"), ("method", "delayed")];
        let sum = value(&s, &format!("{hist}_sum"), &labels).unwrap();
        assert!(sum >= 0.02, "{side}: {sum}");
    }
}

#[tokio::test]
async fn bytes_sent_by_one_side_are_the_bytes_the_other_received() {
    let (server_metrics, client_metrics) = (Metrics::server(), Metrics::client());
    let (addr, _server) = serve(&server_metrics).await;
    let lab = client(addr, &client_metrics).await;
    let blob = serde_bytes::ByteBuf::from(vec![7u8; 100_000]);
    assert_eq!(lab.blob(blob).await, Ok(100_000));
    assert_eq!(lab.fill(50_000).await.map(|b| b.len()), Ok(50_000));
    let get = |m: &Metrics, name: &str| value(&samples(m), name, &[]).unwrap();
    let agreed = until(|| {
        get(&client_metrics, "rpc_client_sent_bytes_total")
            == get(&server_metrics, "rpc_server_received_bytes_total")
            && get(&server_metrics, "rpc_server_sent_bytes_total")
                == get(&client_metrics, "rpc_client_received_bytes_total")
    })
    .await;
    assert!(
        agreed,
        "{}\n{}",
        client_metrics.render(),
        server_metrics.render()
    );
    assert!(get(&client_metrics, "rpc_client_sent_bytes_total") > 100_000.0);
    assert!(get(&client_metrics, "rpc_client_received_bytes_total") > 50_000.0);
}

#[tokio::test]
async fn gauges_follow_calls_in_flight_and_connections() {
    let (server_metrics, client_metrics) = (Metrics::server(), Metrics::client());
    let (addr, _server) = serve(&server_metrics).await;
    let lab = client(addr, &client_metrics).await;
    let hanging = {
        let lab = lab.clone();
        tokio::spawn(async move { lab.hang().await })
    };
    let in_flight =
        |m: &Metrics, side: &str| value(&samples(m), &format!("rpc_{side}_calls_in_flight"), &[]);
    let both = until(|| {
        in_flight(&server_metrics, "server") == Some(1.0)
            && in_flight(&client_metrics, "client") == Some(1.0)
    })
    .await;
    assert!(
        both,
        "{}\n{}",
        server_metrics.render(),
        client_metrics.render()
    );

    // The caller gives up: the client counts a cancelled call, the server's handler is stopped and counted too.
    hanging.abort();
    let _ = hanging.await;
    assert_eq!(in_flight(&client_metrics, "client"), Some(0.0));
    assert_eq!(
        calls(&samples(&client_metrics), "client", "hang", "Cancelled"),
        1.0
    );
    let stopped = until(|| {
        in_flight(&server_metrics, "server") == Some(0.0)
            && calls(&samples(&server_metrics), "server", "hang", "Cancelled") == 1.0
    })
    .await;
    assert!(stopped, "{}", server_metrics.render());

    // The client goes: both sides count the connection closed.
    drop(lab);
    let closed = until(|| {
        value(&samples(&server_metrics), "rpc_server_connections", &[]) == Some(0.0)
            && value(&samples(&client_metrics), "rpc_client_connections", &[]) == Some(0.0)
    })
    .await;
    assert!(
        closed,
        "{}\n{}",
        server_metrics.render(),
        client_metrics.render()
    );
}

#[tokio::test]
async fn metrics_are_served_over_http_in_the_prometheus_text_format() {
    let metrics = Metrics::server();
    let (addr, _server) = serve(&metrics).await;
    let lab = client(addr, &Metrics::client()).await;
    assert_eq!(lab.echo(1).await, Ok(1));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let _exporter = tokio::spawn(metrics.clone().serve_http(listener, |out: &mut String| {
        out.push_str("# HELP lab_extra An extra metric.\n# TYPE lab_extra gauge\nlab_extra 3\n");
    }));
    let (_, s) = prom::scrape(http).await;
    assert_eq!(calls(&s, "server", "echo", "Ok"), 1.0);
    assert_eq!(value(&s, "lab_extra", &[]), Some(3.0));

    let (status, _, body) = http_get(http, "/elsewhere").await.unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");
}

#[tokio::test]
async fn a_users_prometheus_client_registry_takes_the_frameworks_metrics() {
    use rpc_core::metrics::prometheus_client::encoding::{prometheus_text, text};
    use rpc_core::metrics::prometheus_client::metrics::counter::Counter;
    use rpc_core::metrics::prometheus_client::registry::Registry;

    let (server_metrics, client_metrics) = (Metrics::server(), Metrics::client());
    let (addr, _server) = serve(&server_metrics).await;
    let lab = client(addr, &client_metrics).await;
    for n in 0..3 {
        assert_eq!(lab.echo(n).await, Ok(n));
    }
    let counted = until(|| calls(&samples(&server_metrics), "server", "echo", "Ok") == 3.0).await;
    assert!(counted, "{}", server_metrics.render());

    let mut registry = Registry::default();
    let jobs: Counter = Counter::default();
    registry.register("lab_jobs", "Jobs done", jobs.clone());
    jobs.inc();
    server_metrics.register_into(&mut registry);
    client_metrics.register_into(&mut registry);

    // The Prometheus text format: the user's counter and both sides' metrics, as `render` writes them.
    let mut plain = String::new();
    prometheus_text::encode(&mut plain, &registry).unwrap();
    let s = prom::parse(&plain).unwrap_or_else(|e| panic!("{e}\n{plain}"));
    assert_eq!(value(&s, "lab_jobs_total", &[]), Some(1.0), "{plain}");
    for side in ["server", "client"] {
        assert_eq!(calls(&s, side, "echo", "Ok"), 3.0, "{side}");
        let labels = [("service", "Lab"), ("method", "echo")];
        let count = format!("rpc_{side}_call_duration_seconds_count");
        assert_eq!(value(&s, &count, &labels), Some(3.0), "{side}");
        assert_eq!(
            value(&s, &format!("rpc_{side}_connections"), &[]),
            Some(1.0),
            "{side}"
        );
    }
    // Every HELP and TYPE line of `render`, and its counts of calls (bytes may move with a ping meanwhile).
    let render = server_metrics.render();
    let same = render
        .lines()
        .filter(|l| l.starts_with('#') || l.contains("_calls_total{"));
    for line in same {
        assert!(
            plain.lines().any(|l| l == line),
            "{line:?} is not in\n{plain}"
        );
    }
    if let Err(problems) = prom::promtool_check(&plain) {
        panic!("{problems}\n{plain}");
    }

    // OpenMetrics, the registry's own text format: counters typed under their name without `_total`, the
    // histogram's unit, one `# EOF` at the end.
    let mut open = String::new();
    text::encode(&mut open, &registry).unwrap();
    assert!(open.contains("# TYPE rpc_server_calls counter\n"), "{open}");
    assert!(
        open.contains("rpc_client_calls_total{service=\"Lab\",method=\"echo\",status=\"Ok\"} 3\n"),
        "{open}"
    );
    assert!(
        open.contains("# UNIT rpc_server_call_duration_seconds seconds\n"),
        "{open}"
    );
    assert!(
        open.ends_with("# EOF\n") && open.matches("# EOF").count() == 1,
        "{open}"
    );
    let s = prom::parse(&open).unwrap_or_else(|e| panic!("{e}\n{open}"));
    assert_eq!(calls(&s, "server", "echo", "Ok"), 3.0, "{open}");
}

#[test]
fn label_values_are_escaped_and_read_back() {
    let text = format!("x{{a=\"{}\"}} 1\n", rpc_core::metrics::escape("q\"b\\s\nn"));
    let s = prom::parse(&text).unwrap();
    assert_eq!(s[0].labels["a"], "q\"b\\s\nn");
}
