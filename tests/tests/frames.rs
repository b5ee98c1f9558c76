//! The frames beside requests and responses, end to end over raw sockets on 127.0.0.1: a ping answered by a pong
//! (by a server and by a client), a one-way call that runs its handler and gets no answer, the go-away of a
//! draining server (its last request id, and the answer to a request above it) and a client's handling of one,
//! a request sent to a client (it serves no methods), and the answer to arguments nested deeper than
//! `rpc_codec::MAX_DEPTH`. Paused time: the waits cost nothing, and bound every step.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_codec::{Header, Kind, Metadata, Status, method_id};
use rpc_core::{ClientConfig, ServerConfig};
use tests::lab::{LabClient, LabImpl, Tree};
use tests::peer::{RawPeer, frame_bytes, request_bytes};
use tests::serve::{serve_lab, until};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

fn lab(method: &str) -> u32 {
    method_id("Lab", method)
}

/// A frame's kind, request id and status.
fn head(frame: &rpc_codec::Frame) -> (Kind, u64, Status) {
    (
        frame.header.kind,
        frame.header.request_id,
        frame.header.status,
    )
}

fn value_of<T: serde::de::DeserializeOwned>(frame: &rpc_codec::Frame) -> T {
    assert_eq!(frame.header.kind, Kind::Response, "{frame:?}");
    rpc_codec::PayloadCodec::decode(&rpc_codec::Bincode, &frame.payload)
        .expect("a response decodes")
}

#[tokio::test(start_paused = true)]
async fn a_server_answers_a_ping_with_a_pong_of_the_same_nonce() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    for nonce in [0, 42, u64::MAX] {
        peer.send_frame(Header::ping(nonce), b"").await.unwrap();
        let pong = peer.frame(WAIT).await;
        assert_eq!(head(&pong), (Kind::Pong, nonce, Status::Ok));
        assert!(pong.payload.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_one_way_call_runs_its_handler_and_is_not_answered() {
    let lab_impl = LabImpl::default();
    let server = serve_lab(lab_impl.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    // `delayed(7, 10)` as a one-way call, with id 0 (one-way ids are informational), then a ping.
    let one_way = frame_bytes(
        Header::one_way(0, lab("delayed")),
        &Metadata::new(),
        &(7u64, 10u64),
    );
    peer.send_bytes(&one_way).await.unwrap();
    let observed = &lab_impl.observed;
    assert!(until(|| observed.delayed_started.load(Ordering::SeqCst) == 1).await);
    // The handler ran; once it has finished, the next frame is the pong: nothing answered the one-way call.
    tokio::time::sleep(Duration::from_millis(20)).await;
    peer.send_frame(Header::ping(9), b"").await.unwrap();
    assert_eq!(head(&peer.frame(WAIT).await), (Kind::Pong, 9, Status::Ok));
    // A one-way call to a method that does not exist is not answered either.
    let unknown = frame_bytes(Header::one_way(2, 0xdead_beef), &Metadata::new(), &());
    peer.send_bytes(&unknown).await.unwrap();
    peer.send_frame(Header::ping(10), b"").await.unwrap();
    assert_eq!(head(&peer.frame(WAIT).await), (Kind::Pong, 10, Status::Ok));
}

#[tokio::test(start_paused = true)]
async fn a_draining_server_names_its_last_request_and_refuses_those_above_it() {
    let lab_impl = LabImpl::default();
    let mut server = serve_lab(lab_impl.clone(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    // Requests 1 and 3 are in flight (ids may skip).
    peer.send_request(1, lab("delayed"), &Metadata::new(), &(1u64, 500u64))
        .await
        .unwrap();
    peer.send_request(3, lab("delayed"), &Metadata::new(), &(3u64, 500u64))
        .await
        .unwrap();
    let observed = &lab_impl.observed;
    assert!(until(|| observed.delayed_started.load(Ordering::SeqCst) == 2).await);
    server.begin_shutdown();
    let go_away = peer.frame(WAIT).await;
    assert_eq!(
        head(&go_away),
        (Kind::GoAway, 3, Status::Ok),
        "the last request id the server took"
    );
    assert_eq!(go_away.message(), "server shutting down");
    // A request above it, sent while the calls in flight finish, is refused as not processed.
    peer.send_request(4, lab("echo"), &Metadata::new(), &(4u64,))
        .await
        .unwrap();
    let refused = peer.frame(WAIT).await;
    assert_eq!(head(&refused), (Kind::Error, 4, Status::Unavailable));
    assert_eq!(
        refused.message(),
        "the server is draining; this call was not processed"
    );
    // The calls at or below it are answered; then the server closes.
    let mut answered: Vec<u64> = Vec::new();
    for frame in peer.until_closed(WAIT).await {
        answered.push(value_of(&frame));
    }
    answered.sort_unstable();
    assert_eq!(answered, [1, 3]);
    server.finished(WAIT).await.unwrap();
}

/// A client of a raw peer acting as its server, and that peer.
async fn client_of_raw_server() -> (LabClient, RawPeer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        rpc_core::Client::connect_with(addr, ClientConfig::default()),
        RawPeer::accept(&listener)
    );
    (LabClient::new(client.unwrap()), server.unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_client_told_go_away_fails_the_calls_above_its_id_and_finishes_the_rest() {
    let (client, mut server) = client_of_raw_server().await;
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.echo(10).await }
    });
    let (id1, _) = {
        let frame = server.frame(WAIT).await;
        (frame.header.request_id, frame)
    };
    let second = tokio::spawn({
        let client = client.clone();
        async move { client.echo(20).await }
    });
    let id2 = server.frame(WAIT).await.header.request_id;
    assert!(id2 > id1);
    server
        .send_frame(Header::go_away(id1, Status::Ok), b"maintenance")
        .await
        .unwrap();
    let err = second.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Status::Unavailable, "{err}");
    assert!(err.is_not_processed(), "{err}");
    assert!(err.message().contains("maintenance"), "{err}");
    // The call the server took is still answered.
    server.send_response(id1, &10u64).await.unwrap();
    assert_eq!(first.await.unwrap(), Ok(10));
}

#[tokio::test(start_paused = true)]
async fn a_client_answers_a_request_unimplemented_a_ping_with_a_pong_and_a_one_way_with_nothing() {
    let (client, mut server) = client_of_raw_server().await;
    server
        .send_frame(Header::request(5, lab("echo")), &[7])
        .await
        .unwrap();
    let answer = server.frame(WAIT).await;
    assert_eq!(head(&answer), (Kind::Error, 5, Status::Unimplemented));
    assert_eq!(answer.message(), "this peer serves no methods");
    server
        .send_frame(Header::one_way(0, lab("echo")), &[7])
        .await
        .unwrap();
    server.send_frame(Header::ping(77), b"").await.unwrap();
    assert_eq!(
        head(&server.frame(WAIT).await),
        (Kind::Pong, 77, Status::Ok),
        "the pong comes next: nothing answered the one-way call"
    );
    // The connection still carries the client's own calls.
    let call = tokio::spawn(async move { client.echo(3).await });
    let request = server.frame(WAIT).await;
    assert_eq!(request.header.kind, Kind::Request);
    server
        .send_response(request.header.request_id, &3u64)
        .await
        .unwrap();
    assert_eq!(call.await.unwrap(), Ok(3));
}

/// The arguments of `Lab.depth`: a tree `nodes` levels deep, written out by hand (bincode: a variant index per
/// level), so that the test does not depend on the client's own limits.
fn tree_bytes(id: u64, nodes: usize) -> Vec<u8> {
    let mut payload = vec![1u8; nodes];
    payload.push(0);
    let mut bytes = Header::request(id, lab("depth"))
        .to_bytes(0, payload.len() as u32)
        .to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

#[tokio::test(start_paused = true)]
async fn arguments_nested_past_max_depth_are_resource_exhausted_over_the_wire() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    // 100 levels decode (the test's own encoding agrees with the client's).
    let hundred = (0..100).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)));
    assert_eq!(
        request_bytes(1, lab("depth"), &Metadata::new(), &(hundred,)),
        tree_bytes(1, 100)
    );
    peer.send_bytes(&tree_bytes(1, 100)).await.unwrap();
    assert_eq!(value_of::<u64>(&peer.frame(WAIT).await), 100);
    // Past `MAX_DEPTH` levels: refused, and the server's stack is never at risk (a million levels).
    for (id, nodes) in [(2, rpc_codec::MAX_DEPTH + 1), (3, 1_000_000)] {
        peer.send_bytes(&tree_bytes(id, nodes)).await.unwrap();
        let refused = peer.frame(WAIT).await;
        assert_eq!(
            head(&refused),
            (Kind::Error, id, Status::ResourceExhausted),
            "{nodes} levels"
        );
        assert_eq!(
            refused.message(),
            format!(
                "the arguments of Lab.depth do not decode: the value is nested more than {} levels deep, \
                 the limit",
                rpc_codec::MAX_DEPTH
            )
        );
    }
    peer.send_request(4, lab("echo"), &Metadata::new(), &(4u64,))
        .await
        .unwrap();
    assert_eq!(value_of::<u64>(&peer.frame(WAIT).await), 4);
}
