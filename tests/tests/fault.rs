//! Fault injection end to end over 127.0.0.1. On the server: an abort for one method answers the chosen status
//! without running its handler; a delay holds a call the configured time, and ends at the call's deadline if
//! that comes first; faults apply only to calls with the metadata named. On the client: an abort fails the
//! call without sending it (the server sees no call), a delay holds it before it is sent. A percentage between
//! 0 and 100 is checked with tolerant bounds. On paused time; every loop is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::fault::Fault;
use rpc_core::server::layer::{InjectFault, intercept};
use rpc_core::server::{Request, Response};
use rpc_core::{ClientConfig, Metadata, Server, Status, client};
use tests::lab::{LabClient, LabImpl, LabServer};
use tests::serve::serve_builder as serve;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(30);

/// Serves `lab` behind `fault`.
async fn serve_with_fault(lab: &LabImpl, fault: Fault) -> std::net::SocketAddr {
    serve(
        Server::builder()
            .add_service(LabServer::new(lab.clone()))
            .layer(InjectFault::new(fault)),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_server_side_abort_of_one_method_answers_its_status_and_the_handler_never_runs() {
    let lab = LabImpl::default();
    let fault = Fault::new().methods(["Lab.delayed"]).abort(
        Status::DataLoss,
        "injected: the disk is gone",
        100.0,
    );
    let addr = serve_with_fault(&lab, fault).await;
    let client = LabClient::connect(addr).await.unwrap().with_deadline(LONG);
    for _ in 0..5 {
        let aborted = client.delayed(1, 10).await.unwrap_err();
        assert_eq!(
            (aborted.code(), aborted.message()),
            (Status::DataLoss, "injected: the disk is gone")
        );
    }
    assert_eq!(lab.observed.delayed_started.load(Ordering::SeqCst), 0);
    assert_eq!(client.echo(7).await, Ok(7), "other methods pass");
}

#[tokio::test(start_paused = true)]
async fn a_server_side_delay_holds_the_call_its_time_and_ends_at_an_earlier_deadline() {
    let lab = LabImpl::default();
    let fault = Fault::new()
        .methods(["Lab.delayed"])
        .delay(Duration::from_millis(300), 100.0);
    let addr = serve_with_fault(&lab, fault).await;
    let client = LabClient::connect(addr).await.unwrap().with_deadline(LONG);

    let start = Instant::now();
    assert_eq!(client.delayed(1, 20).await, Ok(1));
    let took = start.elapsed();
    // The fault's 300 ms, then the handler's 20.
    assert!(
        took >= Duration::from_millis(320) && took < Duration::from_millis(330),
        "{took:?}"
    );
    assert_eq!(lab.observed.delayed_started.load(Ordering::SeqCst), 1);

    // A deadline of 100 ms: the call ends then, and its handler never starts.
    let start = Instant::now();
    let late = client
        .with_deadline(Duration::from_millis(100))
        .delayed(2, 0)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(late.code(), Status::DeadlineExceeded, "{late}");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(110),
        "{took:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lab.observed.delayed_started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fault_applies_only_to_calls_that_carry_its_metadata() {
    let lab = LabImpl::default();
    let fault =
        Fault::new()
            .metadata("x-chaos", "on")
            .abort(Status::Unavailable, "injected", 100.0);
    let addr = serve_with_fault(&lab, fault).await;
    let client = LabClient::connect(addr).await.unwrap();
    let tagged =
        |value: &str| client.with_metadata(Metadata::from_pairs([("x-chaos", value)]).unwrap());
    assert_eq!(client.echo(1).await, Ok(1));
    assert_eq!(tagged("off").echo(2).await, Ok(2));
    let aborted = tagged("on").echo(3).await.unwrap_err();
    assert_eq!(aborted.code(), Status::Unavailable);
    assert_eq!(aborted.message(), "injected");
}

/// Serves the Lab behind a layer that counts every call that reaches the server.
async fn counted() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = {
        let calls = Arc::clone(&calls);
        intercept(move |_: &mut Request| -> Result<(), Response> {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    };
    let addr = serve(
        Server::builder()
            .add_service(LabServer::new(LabImpl::default()))
            .layer(count),
    )
    .await;
    (addr, calls)
}

#[tokio::test(start_paused = true)]
async fn a_client_side_abort_fails_the_call_without_sending_it() {
    let (addr, calls) = counted().await;
    let fault = Fault::new().methods(["Lab.echo"]).abort(
        Status::Unavailable,
        "injected before sending",
        100.0,
    );
    let config = ClientConfig::default().layer(client::layer::InjectFault::new(fault));
    let client = LabClient::new(rpc_core::Client::connect_with(addr, config).await.unwrap());
    for n in 0..5 {
        let aborted = client.echo(n).await.unwrap_err();
        assert_eq!(
            (aborted.code(), aborted.message()),
            (Status::Unavailable, "injected before sending")
        );
        assert!(aborted.is_not_processed());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the server saw no call");
    assert_eq!(client.delayed(8, 0).await, Ok(8), "other methods are sent");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_side_delay_holds_the_call_before_it_is_sent() {
    let (addr, calls) = counted().await;
    let fault = Fault::new().delay(Duration::from_millis(200), 100.0);
    let config = ClientConfig::default().layer(client::layer::InjectFault::new(fault));
    let client = LabClient::new(rpc_core::Client::connect_with(addr, config).await.unwrap());
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.echo(4).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not sent yet");
    let start = Instant::now();
    assert_eq!(call.await.unwrap(), Ok(4));
    assert!(
        start.elapsed() < Duration::from_millis(60),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// 50% of 400 calls aborted: a fair draw gives 200, and lands within 120..280 (8 standard deviations either
/// side) all but never; both outcomes occur.
#[tokio::test(start_paused = true)]
async fn half_the_calls_are_aborted_within_tolerant_bounds() {
    let lab = LabImpl::default();
    let fault = Fault::new().abort(Status::Unavailable, "injected", 50.0);
    let addr = serve_with_fault(&lab, fault).await;
    let client = LabClient::connect(addr).await.unwrap();
    let mut aborted = 0;
    for n in 0..400 {
        match client.echo(n).await {
            Ok(echoed) => assert_eq!(echoed, n),
            Err(e) => {
                assert_eq!(e.code(), Status::Unavailable, "{e}");
                aborted += 1;
            }
        }
    }
    assert!((120..280).contains(&aborted), "{aborted} of 400 aborted");
}
