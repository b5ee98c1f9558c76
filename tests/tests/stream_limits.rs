//! Streams (protocol 1.1) against a hostile peer, on 127.0.0.1: an item past its credit fails its stream alone;
//! streams over the limit, and a `STREAM` flag that does not match the method, are refused on their ids; frames
//! of streams that are not open cost nothing; a server sends no more than the credit a client grants; a server
//! that sends past a client's credit gets the stream cancelled, and the client's consumer an error.

use std::time::Duration;

use rpc_codec::{Frame, Header, Kind, Metadata, Status, method_id};
use rpc_core::ServerConfig;
use tests::feed::{FeedClient, FeedImpl, serve_feed};
use tests::peer::{Next, RawPeer, frame_bytes};

const WAIT: Duration = Duration::from_secs(5);

fn feed(method: &str) -> u32 {
    method_id("Feed", method)
}

/// Opens stream `id` of `Feed.method` with `args`.
async fn open<A: serde::Serialize>(peer: &mut RawPeer, id: u64, method: &str, args: &A) {
    let bytes = frame_bytes(Header::stream(id, feed(method)), &Metadata::new(), args);
    peer.send_bytes(&bytes).await.unwrap();
}

/// Calls `Feed.ping(n)` as request `id` and checks the answer: the connection still serves.
async fn still_serves(peer: &mut RawPeer, id: u64) {
    let bytes = frame_bytes(
        Header::request(id, feed("ping")),
        &Metadata::new(),
        &(7u32,),
    );
    peer.send_bytes(&bytes).await.unwrap();
    let frame = skip_items(peer).await;
    assert_eq!(
        (frame.header.kind, frame.header.request_id),
        (Kind::Response, id)
    );
    assert_eq!(&frame.payload[..], &[7]);
}

/// The next frame that is not an item or a credit.
async fn skip_items(peer: &mut RawPeer) -> Frame {
    for _ in 0..100_000 {
        let frame = peer.frame(WAIT).await;
        if !matches!(frame.header.kind, Kind::Item | Kind::Credit) {
            return frame;
        }
    }
    panic!("only items")
}

#[tokio::test]
async fn an_item_past_its_credit_fails_that_stream_alone() {
    let config = ServerConfig {
        stream_window: 0,
        ..Default::default()
    };
    let addr = serve_feed(FeedImpl::default(), config).await;
    let mut peer = RawPeer::connect(addr).await.unwrap();
    open(&mut peer, 1, "hold", &()).await;
    // 100 items of 1000 bytes, each costing 1028 of the 65536 bytes of credit a sender starts with: the 64th
    // starts with 772 left (and takes it to -256), the 65th breaks the rule.
    for _ in 0..100 {
        peer.send_frame(Header::item(1), &[0u8; 1000])
            .await
            .unwrap();
    }
    let frame = peer.frame(WAIT).await;
    assert_eq!(frame.header.kind, Kind::Error);
    assert_eq!(frame.header.request_id, 1);
    assert_eq!(frame.header.status, Status::ResourceExhausted);
    assert_eq!(
        frame.message(),
        "stream 1 sent an item of 1028 bytes with -256 bytes of credit left (expected at most its credit: \
         docs/PROTOCOL.md section 14)"
    );
    still_serves(&mut peer, 2).await;
}

#[tokio::test]
async fn a_compressed_item_costs_its_length_as_sent() {
    let config = ServerConfig {
        stream_window: 0,
        ..Default::default()
    };
    let addr = serve_feed(FeedImpl::default(), config).await;
    let mut peer = RawPeer::connect(addr).await.unwrap();
    open(&mut peer, 1, "hold", &()).await;
    // 20 items of 10,000 bytes each once decompressed, well within the 64 KiB of credit as sent.
    let mut packed = Vec::new();
    rpc_codec::compression::compress(rpc_codec::Encoding::Lz4, &[0u8; 10_000], &mut packed)
        .unwrap();
    assert!(packed.len() < 100);
    let header = Header {
        flags: rpc_codec::Flags::LZ4,
        ..Header::item(1)
    };
    for _ in 0..20 {
        peer.send_frame(header, &packed).await.unwrap();
    }
    // No refusal: the connection answers the next call first.
    still_serves(&mut peer, 2).await;
}

#[tokio::test]
async fn streams_over_the_limit_are_refused_on_their_ids() {
    let config = ServerConfig {
        max_streams_per_connection: 2,
        ..Default::default()
    };
    let addr = serve_feed(FeedImpl::default(), config).await;
    let mut peer = RawPeer::connect(addr).await.unwrap();
    for id in 1..=3 {
        open(&mut peer, id, "forever", &(60_000u64,)).await;
    }
    let frame = skip_items(&mut peer).await;
    assert_eq!(
        (
            frame.header.kind,
            frame.header.request_id,
            frame.header.status
        ),
        (Kind::Error, 3, Status::ResourceExhausted)
    );
    assert_eq!(
        frame.message(),
        "this connection has 2 streams open, the limit (max_streams_per_connection)"
    );
    // One ends: a new one opens.
    peer.send_frame(Header::cancel(1), &[]).await.unwrap();
    still_serves(&mut peer, 4).await;
    open(&mut peer, 5, "forever", &(60_000u64,)).await;
    still_serves(&mut peer, 6).await;
}

#[tokio::test]
async fn the_stream_flag_must_match_the_method() {
    let addr = serve_feed(FeedImpl::default(), ServerConfig::default()).await;
    let mut peer = RawPeer::connect(addr).await.unwrap();
    open(&mut peer, 1, "ping", &(1u32,)).await;
    let frame = peer.frame(WAIT).await;
    assert_eq!(
        (
            frame.header.kind,
            frame.header.request_id,
            frame.header.status
        ),
        (Kind::Error, 1, Status::InvalidArgument)
    );
    assert_eq!(
        frame.message(),
        "Feed.ping does not stream: it is called with a plain request, without the STREAM flag (0x08)"
    );
    let bytes = frame_bytes(
        Header::request(2, feed("count")),
        &Metadata::new(),
        &(0u64, 3u64),
    );
    peer.send_bytes(&bytes).await.unwrap();
    let frame = peer.frame(WAIT).await;
    assert_eq!(
        (
            frame.header.kind,
            frame.header.request_id,
            frame.header.status
        ),
        (Kind::Error, 2, Status::InvalidArgument)
    );
    assert!(
        frame
            .message()
            .starts_with("Feed.count streams: it is opened with the STREAM flag")
    );
    still_serves(&mut peer, 3).await;
}

#[tokio::test]
async fn frames_of_streams_that_are_not_open_are_dropped() {
    let addr = serve_feed(FeedImpl::default(), ServerConfig::default()).await;
    let mut peer = RawPeer::connect(addr).await.unwrap();
    for id in [1u64, 99, u64::MAX] {
        peer.send_frame(Header::item(id), b"\x05").await.unwrap();
        peer.send_frame(Header::credit(id), &u32::MAX.to_le_bytes())
            .await
            .unwrap();
        peer.send_frame(Header::end(id), &[]).await.unwrap();
    }
    assert!(matches!(
        peer.next(Duration::from_millis(100)).await,
        Next::Silent
    ));
    still_serves(&mut peer, 1).await;
}

/// What the `Item` frames that come until the peer is silent for 200 ms cost (payload and 28 each), and what
/// the last one cost.
async fn items_until_silent(peer: &mut RawPeer) -> (i64, i64) {
    let (mut used, mut last) = (0, 0);
    for _ in 0..10_000 {
        match peer.next(Duration::from_millis(200)).await {
            Next::Frame(f) if f.header.kind == Kind::Item => {
                last = 28 + f.payload.len() as i64;
                used += last;
            }
            Next::Silent => return (used, last),
            other => panic!("{other:?}"),
        }
    }
    panic!("items without end")
}

#[tokio::test]
async fn a_server_sends_no_more_than_the_credit_a_client_grants() {
    let addr = serve_feed(FeedImpl::default(), ServerConfig::default()).await;
    let mut peer = RawPeer::connect(addr).await.unwrap();
    open(&mut peer, 1, "blocks", &(1000u64, 1000u32)).await;
    // The server may start a frame while any credit is left (a frame of several items only within it), and
    // then waits: it spent the 65,536 bytes every sender starts with, and started its last frame before.
    let (used, last) = items_until_silent(&mut peer).await;
    assert!(
        used >= 65_536 && used - last < 65_536,
        "{used} bytes, the last frame {last}"
    );
    // A grant that takes the credit from where the last frame left it to 10,000 bytes.
    let left = 65_536 - used;
    let grant = u32::try_from(10_000 - left).unwrap();
    peer.send_frame(Header::credit(1), &grant.to_le_bytes())
        .await
        .unwrap();
    let (more, last) = items_until_silent(&mut peer).await;
    assert!(
        more >= 10_000 && more - last < 10_000,
        "{more} bytes, the last frame {last}"
    );
    still_serves(&mut peer, 2).await;
}

#[tokio::test]
async fn a_server_past_the_clients_credit_gets_its_stream_cancelled() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let config = rpc_core::ClientConfig {
            stream_window: 0,
            ..Default::default()
        };
        let client = FeedClient::new(rpc_core::Client::connect_with(addr, config).await.unwrap());
        let mut items = client.blocks(10, 10).await.unwrap();
        // Read nothing until the server has sent past the credit.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut read = 0u32;
        loop {
            match items.next().await {
                Some(Ok(_)) => read += 1,
                Some(Err(e)) => return (read, e),
                None => panic!("the stream ended well"),
            }
            assert!(read < 1000);
        }
    });
    let mut server = RawPeer::accept(&listener).await.unwrap();
    let open = server.frame(WAIT).await;
    assert_eq!(open.header.kind, Kind::Request);
    let id = open.header.request_id;
    // 100 items of 1000 bytes (a byte string of 997: bincode's 3-byte length, then the bytes) with 64 KiB of
    // credit.
    let mut item = vec![0xfb, 0xe5, 0x03];
    item.resize(1000, 0);
    for _ in 0..100 {
        server.send_frame(Header::item(id), &item).await.unwrap();
    }
    let cancel = server.frame(WAIT).await;
    assert_eq!(
        (cancel.header.kind, cancel.header.request_id),
        (Kind::Cancel, id)
    );
    let (read, error) = client.await.unwrap();
    assert_eq!(error.code(), Status::ResourceExhausted, "{error}");
    assert!(
        error
            .message()
            .starts_with(&format!("stream {id} sent an item of 1028 bytes"))
    );
    // The items within the credit came first: 64 of them fit in the window of 64 KiB (the 64th starts with
    // 772 bytes left), then the one past it failed the stream.
    assert_eq!(read, 64);
}
