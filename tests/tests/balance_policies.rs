//! The balancing policies of `rpc_core::balance` end to end, each through a balanced client against Lab servers
//! on 127.0.0.1, on a paused clock: peak EWMA sends few calls to an instance that answers slowly, consistent
//! hashing keeps every call of a key on one instance (the same from every client) and spreads keys, least
//! request keeps calls off an instance holding a hung call and returns to it once the call is dropped.
//! Each server counts the `delayed` calls that reach it, so a test sees where each call went.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::balance::{Balancer, Instance, LeastRequest, PeakEwma, Policy, RingHash};
use rpc_core::{ClientConfig, Metadata, Server, ServerConfig};
use tests::lab::{LabClient, LabImpl, LabServer};
use tests::serve::{Running, serve_lab, until};
use tokio::net::TcpListener;

/// Lab servers and what each observed, in the order of their addresses.
struct Labs {
    labs: Vec<LabImpl>,
    addrs: Vec<SocketAddr>,
    /// Held so that the servers keep running: dropped, each shuts down.
    _running: Vec<Running>,
}

impl Labs {
    /// `count` Lab servers; the first answers every call `slow_by` later than it would.
    async fn start(count: usize, slow_by: Option<Duration>) -> Labs {
        let mut labs = Labs {
            labs: Vec::new(),
            addrs: Vec::new(),
            _running: Vec::new(),
        };
        for n in 0..count {
            let lab = LabImpl::default();
            let addr = match slow_by {
                Some(delay) if n == 0 => serve_slow(lab.clone(), delay).await,
                _ => {
                    let running = serve_lab(lab.clone(), ServerConfig::default(), 0)
                        .await
                        .unwrap();
                    let addr = running.addr;
                    labs._running.push(running);
                    addr
                }
            };
            labs.labs.push(lab);
            labs.addrs.push(addr);
        }
        labs
    }

    /// A client of every server, balanced by `policy` (weight 1 each).
    fn client(&self, policy: impl Policy) -> LabClient {
        let instances = self
            .addrs
            .iter()
            .map(|a| Instance::new(&a.to_string(), 1))
            .collect::<Vec<_>>();
        LabClient::new(rpc_core::Client::balanced(
            Balancer::new(policy, instances),
            ClientConfig::default(),
        ))
    }

    /// The `delayed` calls each server has seen.
    fn counts(&self) -> Vec<usize> {
        self.labs
            .iter()
            .map(|lab| lab.observed.delayed_started.load(Ordering::SeqCst))
            .collect()
    }

    /// Makes one `delayed(n, 1)` call with `client` and returns the index of the server it reached.
    async fn which(&self, client: &LabClient, n: u64) -> usize {
        let before = self.counts();
        assert_eq!(client.delayed(n, 1).await, Ok(n));
        let after = self.counts();
        let reached: Vec<usize> = (0..after.len())
            .filter(|&i| after[i] != before[i])
            .collect();
        assert_eq!(reached.len(), 1, "{before:?} -> {after:?}");
        reached[0]
    }
}

/// Serves `lab` with a layer that holds every call back `delay` before it reaches the handler.
async fn serve_slow(lab: LabImpl, delay: Duration) -> SocketAddr {
    let slow = tower::util::MapFutureLayer::new(move |answer| async move {
        tokio::time::sleep(delay).await;
        answer.await
    });
    let server = Server::builder()
        .add_service(LabServer::new(lab))
        .layer(slow)
        .build()
        .expect("the Lab service builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener));
    addr
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_sends_few_calls_to_an_instance_that_answers_ten_times_slower() {
    // The first server answers in 1 + 100 ms, the others in 1 ms.
    let labs = Labs::start(3, Some(Duration::from_millis(100))).await;
    let client = labs.client(PeakEwma::default());
    for n in 0..100 {
        labs.which(&client, n).await;
    }
    let counts = labs.counts();
    // Before every instance has answered, the slow one may win a few ties (each further one with a chance of
    // 1 in 3); once the others have answered it loses every comparison for the next 40 s (`23 s × ln 100`).
    assert!(counts[0] <= 10, "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 100);
}

#[tokio::test(start_paused = true)]
async fn ring_hash_keeps_each_key_on_one_instance_for_every_client_and_spreads_keys() {
    let labs = Labs::start(3, None).await;
    let (one, other) = (
        labs.client(RingHash::on_metadata("x-tenant")),
        labs.client(RingHash::on_metadata("x-tenant")),
    );
    let mut keys_of = [0usize; 3];
    for user in 0..60u64 {
        let key = format!("user-{user}");
        let home = labs.which(&one.with_hash_key(key.as_str()), user).await;
        for n in 0..2 {
            assert_eq!(
                labs.which(&one.with_hash_key(key.as_str()), n).await,
                home,
                "{key}"
            );
        }
        assert_eq!(
            labs.which(&other.with_hash_key(key.as_str()), user).await,
            home,
            "{key}: another client agrees"
        );
        keys_of[home] += 1;
    }
    // 20 keys each expected; an instance with none would take a ring far more lopsided than 160 points make.
    assert!(keys_of.iter().all(|&n| n >= 5), "{keys_of:?}");

    // A tenant named in metadata keys calls the same way.
    let acme = Metadata::from_pairs([("x-tenant", "acme")]).unwrap();
    let home = labs.which(&one.with_metadata(acme.clone()), 0).await;
    for n in 1..5 {
        assert_eq!(
            labs.which(&other.with_metadata(acme.clone()), n).await,
            home
        );
    }
}

#[tokio::test(start_paused = true)]
async fn least_request_keeps_calls_off_an_instance_holding_a_hung_call() {
    let labs = Labs::start(3, None).await;
    let client = labs.client(LeastRequest::default());
    let hung = tokio::spawn({
        let client = client.clone();
        async move { client.hang().await }
    });
    let hangs = |i: usize| labs.labs[i].observed.hangs_started.load(Ordering::SeqCst);
    assert!(until(|| (0..3).map(hangs).sum::<usize>() == 1).await);
    let holder = (0..3).find(|&i| hangs(i) == 1).unwrap();

    let mut took = [0usize; 3];
    for n in 0..30 {
        took[labs.which(&client, n).await] += 1;
    }
    assert_eq!(took[holder], 0, "{took:?}, hung on {holder}");
    // The other two split the calls: each is the lighter of a pair with the holder, and wins half of theirs.
    assert!(
        (0..3).filter(|&i| i != holder).all(|i| took[i] >= 5),
        "{took:?}"
    );

    // Dropped, the hung call is reported cancelled, and the instance is as idle as the others again.
    hung.abort();
    assert!(hung.await.unwrap_err().is_cancelled());
    let mut took = [0usize; 3];
    for n in 0..60 {
        took[labs.which(&client, n).await] += 1;
    }
    assert!(took[holder] >= 5, "{took:?}, was hung on {holder}");
}
