//! The balancing seam end to end: a user's policy sees each call's method and metadata when it picks, and
//! hears how the call ended and how long it took, or that it was dropped; discovery's feed reaches any policy.
//! Real sockets on 127.0.0.1, paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use rpc_core::balance::{Balancer, CallInfo, Instance, Outcome, Policy};
use rpc_core::{ClientConfig, Metadata, ServerConfig};
use tests::lab::{LabClient, LabImpl};
use tests::serve::serve_lab;

/// Routes each call to the instance whose index its `x-route` metadata names, and notes what it saw.
#[derive(Default)]
struct ByRoute {
    instances: Mutex<Vec<Instance>>,
    /// (method, `x-route`) of each pick.
    picks: Mutex<Vec<(String, Option<String>)>>,
    /// (address, outcome, latency) of each report.
    reports: Mutex<Vec<(String, Outcome, Duration)>>,
}

impl Policy for ByRoute {
    fn update(&self, instances: &[Instance]) {
        *self.instances.lock().unwrap() = instances.to_vec();
    }

    fn pick(&self, call: &CallInfo<'_>, _skip: &[Arc<str>], _now: Instant) -> Option<Arc<str>> {
        let route = call.metadata.get_str("x-route").map(str::to_owned);
        self.picks
            .lock()
            .unwrap()
            .push((call.method.to_string(), route.clone()));
        let index: usize = route?.parse().ok()?;
        let instances = self.instances.lock().unwrap();
        instances.get(index).map(|i| Arc::clone(&i.address))
    }

    fn report(&self, address: &str, outcome: Outcome, latency: Duration, _now: Instant) {
        self.reports
            .lock()
            .unwrap()
            .push((address.to_owned(), outcome, latency));
    }
}

fn route(index: usize) -> Metadata {
    let mut builder = Metadata::builder();
    builder.insert("x-route", index.to_string()).unwrap();
    builder.build()
}

#[tokio::test(start_paused = true)]
async fn a_policy_routes_by_metadata_and_hears_each_outcome_with_its_latency() {
    let (first, second) = (LabImpl::default(), LabImpl::default());
    let a = serve_lab(first.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let b = serve_lab(second.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let policy = Arc::new(ByRoute::default());
    let feed = vec![
        Instance::new(&a.addr.to_string(), 1),
        Instance::new(&b.addr.to_string(), 1),
    ];
    let dyn_policy: Arc<dyn Policy> = policy.clone();
    let client = LabClient::new(rpc_core::Client::balanced(
        Balancer::from_parts(dyn_policy, Box::new(feed)),
        ClientConfig::default(),
    ));

    // `delayed` answers after 50 ms: the latency reported is at least that.
    assert_eq!(client.with_metadata(route(1)).delayed(7, 50).await, Ok(7));
    assert_eq!(client.with_metadata(route(0)).echo(3).await, Ok(3));
    assert_eq!(
        first
            .observed
            .delayed_started
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the call routed to the second instance reached the first"
    );
    assert_eq!(
        second
            .observed
            .delayed_started
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        *policy.picks.lock().unwrap(),
        [
            ("Lab.delayed".to_owned(), Some("1".to_owned())),
            ("Lab.echo".to_owned(), Some("0".to_owned())),
        ]
    );
    let reports = policy.reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (reports[0].0.as_str(), reports[0].1),
        (b.addr.to_string().as_str(), Outcome::Success)
    );
    assert!(
        reports[0].2 >= Duration::from_millis(50),
        "latency {:?}",
        reports[0].2
    );
    assert_eq!(
        (reports[1].0.as_str(), reports[1].1),
        (a.addr.to_string().as_str(), Outcome::Success)
    );

    // No route: the policy picks nothing, and the call fails unsent.
    let err = client.echo(1).await.unwrap_err();
    assert_eq!(err.code(), rpc_core::Status::Unavailable, "{err}");
    assert!(err.is_not_processed());
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_answer_is_reported_cancelled() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let policy = Arc::new(ByRoute::default());
    let dyn_policy: Arc<dyn Policy> = policy.clone();
    let client = LabClient::new(rpc_core::Client::balanced(
        Balancer::from_parts(
            dyn_policy,
            Box::new(vec![Instance::new(&server.addr.to_string(), 1)]),
        ),
        ClientConfig::default(),
    ));
    let hung = client.with_metadata(route(0));
    let gave_up = tokio::time::timeout(Duration::from_millis(200), hung.hang()).await;
    assert!(gave_up.is_err(), "hang answered");
    let reports = policy.reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].1, Outcome::Cancelled);
    assert!(reports[0].2 >= Duration::from_millis(200), "{reports:?}");
}

#[tokio::test(start_paused = true)]
async fn a_change_of_the_feed_reaches_the_policy_before_the_next_pick() {
    let a = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let policy = Arc::new(ByRoute::default());
    let dyn_policy: Arc<dyn Policy> = policy.clone();
    let client = LabClient::new(rpc_core::Client::balanced(
        Balancer::from_parts(dyn_policy, Box::new(rx)),
        ClientConfig::default(),
    ));
    let routed = client.with_metadata(route(0));
    assert!(routed.echo(1).await.is_err(), "no instance yet");
    tx.send(vec![Instance::new(&a.addr.to_string(), 1)])
        .unwrap();
    assert_eq!(routed.echo(2).await, Ok(2));
}

/// Notes the key of each call it picks for, and sends every call to its one instance.
#[derive(Default)]
struct KeySeen {
    instance: Mutex<Option<Arc<str>>>,
    keys: Mutex<Vec<Option<u64>>>,
}

impl Policy for KeySeen {
    fn update(&self, instances: &[Instance]) {
        *self.instance.lock().unwrap() = instances.first().map(|i| Arc::clone(&i.address));
    }

    fn pick(&self, call: &CallInfo<'_>, _skip: &[Arc<str>], _now: Instant) -> Option<Arc<str>> {
        self.keys.lock().unwrap().push(call.key);
        self.instance.lock().unwrap().clone()
    }

    fn report(&self, _: &str, _: Outcome, _: Duration, _: Instant) {}
}

/// The key a caller chooses for its calls (a method argument, say) reaches the policy hashed the same way on
/// every client, with or without user layers on the client; a stub without one gives none. The key is not sent.
#[tokio::test(start_paused = true)]
async fn the_callers_key_reaches_the_policy_through_the_stub_and_the_layers() {
    let lab = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    for layered in [false, true] {
        let policy = Arc::new(KeySeen::default());
        let dyn_policy: Arc<dyn Policy> = policy.clone();
        let mut config = ClientConfig::default();
        if layered {
            config = config.layer(tower::layer::util::Identity::new());
        }
        let client = LabClient::new(rpc_core::Client::balanced(
            Balancer::from_parts(
                dyn_policy,
                Box::new(vec![Instance::new(&lab.addr.to_string(), 1)]),
            ),
            config,
        ));
        let user: u64 = 42;
        assert_eq!(
            client.with_hash_key(user.to_le_bytes()).echo(user).await,
            Ok(42)
        );
        assert_eq!(client.with_hash_key("tenant-a").echo(1).await, Ok(1));
        assert_eq!(client.echo(2).await, Ok(2));
        assert_eq!(
            *policy.keys.lock().unwrap(),
            [
                Some(rpc_core::balance::hash_key(&42u64.to_le_bytes())),
                Some(rpc_core::balance::hash_key(b"tenant-a")),
                None,
            ],
            "layered: {layered}"
        );
    }
}
