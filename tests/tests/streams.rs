//! Streams (protocol 1.1), end to end on 127.0.0.1: each kind of stream delivers its items in order, with the
//! application's errors apart; a cancel reaches the producer either way; a deadline covers the whole stream; a
//! producer that breaks ends the stream with a status; a consumer that stops reading stalls its own stream
//! alone, which then holds no more than its window; the server's layers see a stream as one call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::{Client, ClientConfig, Metrics, Server, ServerConfig, Status};
use tests::feed::{FeedClient, FeedImpl, FeedServer, serve_feed};
use tests::prom::{parse, value};

/// Waits (at most 5 s, in steps of 5 ms) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

async fn client_of(feed: FeedImpl, config: ServerConfig) -> FeedClient {
    let addr = serve_feed(feed, config).await;
    FeedClient::connect(addr).await.unwrap()
}

/// A client of `addr` with `config`.
async fn connect_with(addr: std::net::SocketAddr, config: ClientConfig) -> FeedClient {
    FeedClient::new(Client::connect_with(addr, config).await.unwrap())
}

#[tokio::test]
async fn a_server_stream_delivers_every_item_in_order() {
    let client = client_of(FeedImpl::default(), ServerConfig::default()).await;
    let items: Vec<u64> = client
        .count(5, 100_000)
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(items, (5..100_005).collect::<Vec<u64>>());
    // The connection serves unary calls as before.
    assert_eq!(client.ping(7).await.unwrap(), 7);
}

#[tokio::test]
async fn items_that_are_results_keep_the_application_error_apart() {
    let client = client_of(FeedImpl::default(), ServerConfig::default()).await;
    let items: Vec<Result<u32, String>> = client
        .checked(7)
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    let expected: Vec<Result<u32, String>> = vec![
        Err("0 is a multiple of 3".into()),
        Ok(1),
        Ok(2),
        Err("3 is a multiple of 3".into()),
        Ok(4),
        Ok(5),
        Err("6 is a multiple of 3".into()),
    ];
    assert_eq!(items, expected);
}

#[tokio::test]
async fn a_client_stream_gets_one_answer_or_the_applications_error() {
    let client = client_of(FeedImpl::default(), ServerConfig::default()).await;
    let sum = client.sum(futures_util::stream::iter(1..=10_000u64)).await;
    assert_eq!(sum.unwrap(), Ok(50_005_000));
    let refused = client.sum(futures_util::stream::iter([4, 0, 5u64])).await;
    assert_eq!(refused.unwrap(), Err(String::from("a zero item")));
    // A few small items go in one frame, followed at once by the end of the client's half.
    let few = client.sum(futures_util::stream::iter([1, 2, 3u64])).await;
    assert_eq!(few.unwrap(), Ok(6));
    // An empty stream is a stream too.
    let empty = client
        .sum(futures_util::stream::iter(Vec::<u64>::new()))
        .await;
    assert_eq!(empty.unwrap(), Ok(0));
}

#[tokio::test]
async fn a_bidirectional_stream_answers_each_item_as_it_comes() {
    let client = client_of(FeedImpl::default(), ServerConfig::default()).await;
    // Lines go one at a time, each after the answer to the one before: the two halves are live together.
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(1);
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    });
    let mut answers = client.echo("> ".into(), lines).await.unwrap();
    for i in 0..50 {
        tx.send(format!("line {i}")).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.next())
            .await
            .expect("an answer before the next line")
            .unwrap()
            .unwrap();
        assert_eq!(answer, format!("> line {i}"));
    }
    drop(tx);
    // The client's half ends: so does the server's.
    let end = tokio::time::timeout(Duration::from_secs(5), answers.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn dropping_the_clients_stream_cancels_the_servers_producer() {
    let feed = FeedImpl::default();
    let client = client_of(feed.clone(), ServerConfig::default()).await;
    let mut items = client.forever(1).await.unwrap();
    for expected in 0..3u64 {
        assert_eq!(items.next().await.unwrap().unwrap(), expected);
    }
    assert!(!feed.produced.dropped.load(Ordering::SeqCst));
    drop(items);
    assert!(
        until(|| feed.produced.dropped.load(Ordering::SeqCst)).await,
        "the producer was not dropped after the client dropped its stream"
    );
    let made = feed.produced.items.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(feed.produced.items.load(Ordering::SeqCst), made);
}

#[tokio::test]
async fn a_deadline_covers_the_whole_stream() {
    let feed = FeedImpl::default();
    let client = client_of(feed.clone(), ServerConfig::default()).await;
    let mut items = client
        .with_deadline(Duration::from_millis(200))
        .forever(5)
        .await
        .unwrap();
    let mut got = 0;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(5), items.next()).await {
            Ok(Some(Ok(_))) => got += 1,
            Ok(Some(Err(e))) => break e,
            other => panic!("the stream ended without its deadline: {other:?}"),
        }
        assert!(got < 10_000);
    };
    assert!(got > 0, "items came before the deadline");
    assert_eq!(error.code(), Status::DeadlineExceeded, "{error}");
    assert!(items.next().await.is_none());
    assert!(until(|| feed.produced.dropped.load(Ordering::SeqCst)).await);
}

#[tokio::test]
async fn a_producer_that_breaks_ends_the_stream_with_a_status() {
    let client = client_of(FeedImpl::default(), ServerConfig::default()).await;
    let mut items = client.breaks(5).await.unwrap();
    for expected in 0..5u32 {
        assert_eq!(items.next().await.unwrap().unwrap(), expected);
    }
    let error = items.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Status::Internal);
    assert_eq!(
        error.message(),
        "Feed.breaks panicked making an item: the producer broke after 5 items"
    );
    assert!(items.next().await.is_none());
    assert_eq!(client.ping(1).await.unwrap(), 1);
}

#[tokio::test]
async fn a_producer_that_breaks_at_once_or_after_one_item_does_not_end_well() {
    let client = client_of(FeedImpl::default(), ServerConfig::default()).await;
    for n in [0u32, 1] {
        let items: Vec<_> = client.breaks(n).await.unwrap().collect().await;
        assert_eq!(items.len(), n as usize + 1, "{items:?}");
        let error = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(error.code(), Status::Internal, "{error}");
    }
}

#[tokio::test]
async fn batches_stay_within_a_small_frame_limit() {
    let codec = rpc_core::codec::Config {
        max_frame_len: 8192,
        ..Default::default()
    };
    let config = ServerConfig {
        codec,
        ..Default::default()
    };
    let addr = serve_feed(FeedImpl::default(), config).await;
    let client = connect_with(
        addr,
        ClientConfig {
            codec,
            ..Default::default()
        },
    )
    .await;
    // Items of 1,000 bytes, which would pack 16 to a 16 KiB batch: both sides' frames stay under 8 KiB.
    let blocks: Vec<_> = client.blocks(100, 1000).await.unwrap().collect().await;
    assert_eq!(blocks.len(), 100);
    assert!(
        blocks
            .iter()
            .all(|b| b.as_ref().is_ok_and(|b| b.len() == 1000))
    );
    let sum = client
        .sum(futures_util::stream::iter(vec![u64::MAX / 4; 3]))
        .await;
    assert!(sum.unwrap().is_ok());
}

#[tokio::test]
async fn a_closed_connection_ends_the_clients_stream_with_a_status() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(FeedServer::new(FeedImpl::default()))
        .build()
        .unwrap();
    let task = tokio::spawn(server.serve(listener));
    let client = FeedClient::connect(addr).await.unwrap();
    let mut items = client.forever(1).await.unwrap();
    assert!(items.next().await.unwrap().is_ok());
    task.abort();
    let mut got = 0;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(5), items.next()).await {
            Ok(Some(Ok(_))) => got += 1,
            Ok(Some(Err(e))) => break e,
            other => panic!("the stream ended without a status: {other:?}"),
        }
        assert!(
            got < 10_000,
            "the stream went on after its connection closed"
        );
    };
    assert_eq!(error.code(), Status::Unavailable, "{error}");
}

#[tokio::test]
async fn a_consumer_that_stops_reading_stalls_its_own_stream_alone() {
    let feed = FeedImpl::default();
    let client = client_of(feed.clone(), ServerConfig::default()).await;
    // One stream nobody reads, whose producer never ends and never waits.
    let stalled = client.forever(0).await.unwrap();
    // The other streams and calls of the same connection go at full rate.
    let items = client.count(0, 200_000).await.unwrap().count().await;
    assert_eq!(items, 200_000);
    for n in 0..100 {
        assert_eq!(client.ping(n).await.unwrap(), n);
    }
    // The stalled stream's producer made what its window let through, and no more: 256 KiB of items, packed
    // several to a frame, each costing at least its 4-byte length and a 1-byte number; plus at most one batch
    // of 64 pulled ahead.
    let window_items = rpc_core::stream::DEFAULT_STREAM_WINDOW / 5 + 64;
    let made = feed.produced.items.load(Ordering::SeqCst);
    assert!(made > 0);
    assert!(
        made <= window_items,
        "{made} items made for a consumer that reads nothing (bound {window_items})"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(feed.produced.items.load(Ordering::SeqCst), made);
    drop(stalled);
}

#[tokio::test]
async fn the_servers_layers_see_a_stream_as_one_call() {
    let metrics = Metrics::server();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .metrics(metrics.clone())
        .add_service(FeedServer::new(FeedImpl::default()))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener));
    let client = FeedClient::connect(addr).await.unwrap();
    let in_flight = || {
        let samples = parse(&metrics.render()).unwrap();
        value(&samples, "rpc_server_calls_in_flight", &[]).unwrap_or(-1.0)
    };
    let mut items = client.count(0, 10).await.unwrap();
    assert_eq!(items.next().await.unwrap().unwrap(), 0);
    let calls = |status: &str| {
        let samples = parse(&metrics.render()).unwrap();
        let labels = [("method", "count"), ("status", status)];
        value(&samples, "rpc_server_calls_total", &labels).unwrap_or(0.0)
    };
    let rest = tokio::time::timeout(Duration::from_secs(5), (&mut items).count()).await;
    assert_eq!(rest.unwrap(), 9);
    assert!(until(|| calls("Ok") == 1.0).await, "{}", metrics.render());
    assert!(until(|| in_flight() == 0.0).await);
    // A stream the client drops is a cancelled call.
    let mut forever = client.forever(1).await.unwrap();
    assert!(forever.next().await.unwrap().is_ok());
    assert_eq!(in_flight(), 1.0);
    drop(forever);
    let cancelled = || {
        let samples = parse(&metrics.render()).unwrap();
        let labels = [("method", "forever"), ("status", "Cancelled")];
        value(&samples, "rpc_server_calls_total", &labels).unwrap_or(0.0)
    };
    assert!(until(|| cancelled() == 1.0).await, "{}", metrics.render());
}

#[tokio::test]
async fn a_small_window_still_carries_large_items() {
    let config = ServerConfig {
        stream_window: 0,
        ..Default::default()
    };
    let addr = serve_feed(FeedImpl::default(), config).await;
    let client = connect_with(
        addr,
        ClientConfig {
            stream_window: 0,
            ..Default::default()
        },
    )
    .await;
    // Items larger than the 64 KiB a window of 0 counts as: each starts with some credit left.
    let blocks = client.blocks(40, 100_000).await.unwrap();
    let sizes: Vec<usize> = blocks.map(|b| b.unwrap().len()).collect().await;
    assert_eq!(sizes, vec![100_000; 40]);
    let sum = client
        .sum(futures_util::stream::iter((1..=50_000u64).map(|_| 1)))
        .await;
    assert_eq!(sum.unwrap(), Ok(50_000));
}

#[tokio::test]
async fn a_reader_of_the_clients_items_that_outlives_its_handler_hears_the_call_end() {
    let feed = FeedImpl::default();
    let client = client_of(feed.clone(), ServerConfig::default()).await;
    // The handler hands the items to a task of its own and answers at once.
    let answered = client.detach(futures_util::stream::iter(1..=1000u64)).await;
    assert_eq!(answered.unwrap(), 0);
    let ended = || feed.detached.lock().unwrap().clone();
    assert!(
        until(|| ended().is_some()).await,
        "the detached reader still waits"
    );
    let ended = ended().unwrap();
    assert!(
        ended == "ended" || ended == "Cancelled: the call of Feed.detach ended",
        "{ended}"
    );
}
