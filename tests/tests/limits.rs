//! Every server limit crossed by a raw-socket peer: the server answers with the documented status, or closes
//! that connection alone, while a well-behaved client on another connection carries on. (That memory stays
//! bounded is checked in `memory.rs`, alone in its test binary.) Servers run in-process on 127.0.0.1.
//!
//! These tests run on the real clock, with the timeouts under test configured to a few hundred milliseconds:
//! tokio's paused clock jumps to the next timer whenever the runtime parks, and a loopback write may reach the
//! receiving socket a moment after the write returns, so on a paused clock a bounded wait for another task's
//! answer can expire before that task has run. Each bound asserts the lower limit exactly (nothing happens
//! before its timeout) and allows seconds of slack above it.

use std::time::Duration;

use rpc_codec::{Header, Kind, Metadata, Status, method_id};
use rpc_core::ServerConfig;
use tests::lab::{LabClient, LabImpl};
use tests::peer::{Next, RawPeer, request_bytes};
use tests::serve::serve_lab;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);
/// Slack allowed above a timeout before the test calls it late.
const SLACK: Duration = Duration::from_secs(3);

fn lab(method: &str) -> u32 {
    method_id("Lab", method)
}

/// An error frame's request id, status and message.
fn error_of(frame: &rpc_codec::Frame) -> (u64, Status, String) {
    assert_eq!(frame.header.kind, Kind::Error, "{frame:?}");
    (
        frame.header.request_id,
        frame.header.status,
        frame.message().into_owned(),
    )
}

/// The value of a response frame answering `id`.
fn value_of<T: serde::de::DeserializeOwned>(frame: &rpc_codec::Frame, id: u64) -> T {
    assert_eq!(
        (frame.header.kind, frame.header.request_id),
        (Kind::Response, id),
        "{frame:?}"
    );
    rpc_codec::PayloadCodec::decode(&rpc_codec::Bincode, &frame.payload)
        .expect("a response decodes")
}

/// A well-behaved client makes a call and gets its own answer.
async fn others_carry_on(client: &LabClient, n: u64) {
    assert_eq!(client.echo(n).await, Ok(n));
}

#[tokio::test]
async fn a_frame_over_the_size_limit_is_refused_skipped_and_the_connection_carries_on() {
    let config = ServerConfig {
        codec: rpc_codec::Config {
            max_frame_len: 1 << 20,
            ..rpc_codec::Config::default()
        },
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    // A request declaring 4 MiB of payload, four times the limit, then all of it.
    let declared: u32 = 4 << 20;
    let header = Header::request(1, lab("echo")).to_bytes(0, declared);
    peer.send_bytes(&header).await.unwrap();
    let (id, status, message) = error_of(&peer.frame(WAIT).await);
    assert_eq!((id, status), (1, Status::ResourceExhausted));
    assert!(
        message.contains("exceeds limit 1048576"),
        "the refusal names the limit: {message}"
    );
    let chunk = vec![0u8; 1 << 20];
    for n in 0..4 {
        peer.send_bytes(&chunk).await.unwrap();
        others_carry_on(&client, n).await;
    }
    // The connection is in sync again: the next request is answered.
    peer.send_request(2, lab("echo"), &Metadata::new(), &(7u64,))
        .await
        .unwrap();
    assert_eq!(value_of::<u64>(&peer.frame(WAIT).await, 2), 7);
}

#[tokio::test]
async fn metadata_over_its_limits_is_refused_and_the_connection_carries_on() {
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    // 65 entries, one over the default 64.
    let many = Metadata::from_pairs((0..65).map(|i| (format!("k{i}"), "v"))).unwrap();
    peer.send_request(1, lab("echo"), &many, &(1u64,))
        .await
        .unwrap();
    let (id, status, message) = error_of(&peer.frame(WAIT).await);
    assert_eq!((id, status), (1, Status::ResourceExhausted), "{message}");
    assert!(message.contains("64"), "{message}");
    // 9 KiB of metadata, over the default 8 KiB.
    let big = Metadata::from_pairs([("blob", vec![b'x'; 9 * 1024])]).unwrap();
    peer.send_request(2, lab("echo"), &big, &(2u64,))
        .await
        .unwrap();
    let (id, status, message) = error_of(&peer.frame(WAIT).await);
    assert_eq!((id, status), (2, Status::ResourceExhausted), "{message}");
    assert!(message.contains("8192"), "{message}");
    peer.send_request(3, lab("echo"), &Metadata::new(), &(3u64,))
        .await
        .unwrap();
    assert_eq!(value_of::<u64>(&peer.frame(WAIT).await, 3), 3);
    others_carry_on(&client, 4).await;
}

#[tokio::test]
async fn arguments_that_would_decode_past_the_memory_limit_are_resource_exhausted() {
    let config = ServerConfig {
        codec: rpc_codec::Config {
            max_decoded_len: 1 << 20,
            ..rpc_codec::Config::default()
        },
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    // 100,000 empty byte strings: about 100 KB on the wire, 2.4 MB of vectors once decoded.
    let items: Vec<Vec<u8>> = vec![Vec::new(); 100_000];
    let bytes = request_bytes(1, lab("tally"), &Metadata::new(), &(items,));
    assert!(bytes.len() < 110_000);
    peer.send_bytes(&bytes).await.unwrap();
    let (id, status, message) = error_of(&peer.frame(WAIT).await);
    assert_eq!((id, status), (1, Status::ResourceExhausted));
    assert!(
        message.contains("more than 1048576 bytes of memory"),
        "{message}"
    );
    // The same request within the limit is served, on the same connection.
    let items: Vec<Vec<u8>> = vec![Vec::new(); 1000];
    peer.send_request(2, lab("tally"), &Metadata::new(), &(items,))
        .await
        .unwrap();
    assert_eq!(value_of::<u64>(&peer.frame(WAIT).await, 2), 1000);
    others_carry_on(&client, 5).await;
}

#[tokio::test]
async fn a_connection_over_the_limit_is_refused_at_once_naming_the_limit_and_the_others_carry_on() {
    let config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    // Two clients take the two places (a connection is established by its first call).
    let (first, second) = (
        LabClient::connect(server.addr).await.unwrap(),
        LabClient::connect(server.addr).await.unwrap(),
    );
    others_carry_on(&first, 1).await;
    others_carry_on(&second, 2).await;
    // On the wire: a `GoAway` naming the limit, with last request id 0, and the connection closes.
    let mut raw = RawPeer::connect(server.addr).await.unwrap();
    let frames = raw.until_closed(WAIT).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let go_away = &frames[0];
    assert_eq!(
        (
            go_away.header.kind,
            go_away.header.request_id,
            go_away.header.status
        ),
        (Kind::GoAway, 0, Status::ResourceExhausted)
    );
    assert_eq!(
        go_away.message(),
        "server at its connection limit of 2 (max_connections)"
    );
    // A third client's call fails with that status and reason, not with a timeout: its deadline and connect
    // timeout are a minute away.
    let patient = rpc_core::ClientConfig {
        default_deadline: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        ..rpc_core::ClientConfig::default()
    };
    let third = LabClient::new(
        rpc_core::Client::connect_with(server.addr, patient)
            .await
            .unwrap(),
    );
    let err = third.echo(3).await.unwrap_err();
    assert_eq!(err.code(), Status::ResourceExhausted, "{err}");
    assert!(
        err.message()
            .contains("server at its connection limit of 2 (max_connections)"),
        "{err}"
    );
    assert!(err.is_not_processed(), "{err}");
    // Its next call waits for the backoff, and still says why.
    let err = third.echo(4).await.unwrap_err();
    assert_eq!(err.code(), Status::ResourceExhausted, "{err}");
    assert!(
        err.message().contains("connection limit of 2") && err.message().contains("next attempt"),
        "{err}"
    );
    // The two clients served carry on.
    others_carry_on(&first, 5).await;
    others_carry_on(&second, 6).await;
    // Once one leaves, a newcomer is served (the server notices the close a moment later).
    drop(second);
    let mut served = None;
    for attempt in 0..200 {
        let client = LabClient::new(
            rpc_core::Client::connect_with(server.addr, rpc_core::ClientConfig::default())
                .await
                .unwrap(),
        );
        match client.echo(attempt).await {
            Ok(n) => {
                served = Some(n);
                break;
            }
            Err(e) => assert_eq!(e.code(), Status::ResourceExhausted, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served.is_some(), "no place came free");
    others_carry_on(&first, 7).await;
}

/// Opens `n` connections that never send a whole frame (half of them send a part of one), while `client` keeps
/// making calls; returns them, oldest first.
async fn stall(addr: std::net::SocketAddr, n: usize, client: &LabClient) -> Vec<RawPeer> {
    let partial = request_bytes(1, lab("echo"), &Metadata::new(), &(1u64,));
    let mut stalled = Vec::with_capacity(n);
    for i in 0..n {
        let mut peer = RawPeer::connect(addr).await.unwrap();
        if i % 2 == 1 {
            peer.send_bytes(&partial[..10]).await.unwrap();
        }
        stalled.push(peer);
        if i % 100 == 0 {
            others_carry_on(client, i as u64).await;
        }
    }
    stalled
}

#[tokio::test]
async fn connections_that_never_send_a_frame_cannot_keep_out_clients_that_do() {
    // The defaults: 1,024 connections, 256 of them still handshaking (no whole first frame yet).
    let server = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let established = LabClient::connect(server.addr).await.unwrap();
    others_carry_on(&established, 0).await;
    // 1,100 connections that never send a whole frame: more than the server holds.
    let stalled = stall(server.addr, 1100, &established).await;
    // A new client is served while they are held...
    let newcomer = LabClient::connect(server.addr).await.unwrap();
    for n in 0..10 {
        others_carry_on(&newcomer, n).await;
        others_carry_on(&established, n).await;
    }
    // ...because the oldest of the stalled connections made room: the first was closed without a word.
    let mut oldest = stalled.into_iter().next().unwrap();
    assert!(matches!(oldest.next(WAIT).await, Next::Closed));
}

#[tokio::test]
async fn calls_over_the_in_flight_limit_on_a_raw_connection_are_resource_exhausted() {
    let config = ServerConfig {
        max_in_flight_per_connection: 4,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    for id in 1..=5 {
        peer.send_request(id, lab("hang"), &Metadata::new(), &())
            .await
            .unwrap();
    }
    let (id, status, message) = error_of(&peer.frame(WAIT).await);
    assert_eq!((id, status), (5, Status::ResourceExhausted));
    assert!(
        message.contains("4 calls in flight on this connection"),
        "{message}"
    );
    others_carry_on(&client, 1).await;
    // A cancel frees a place: the next call is served.
    let cancel = Header::cancel(1).to_bytes(0, 0);
    peer.send_bytes(&cancel).await.unwrap();
    let mut served = None;
    for id in 6..56u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        peer.send_request(id, lab("echo"), &Metadata::new(), &(id,))
            .await
            .unwrap();
        let frame = peer.frame(WAIT).await;
        if frame.header.kind == Kind::Response {
            served = Some(value_of::<u64>(&frame, id));
            break;
        }
        // Until the cancelled handler has ended, the limit still holds.
        assert_eq!(error_of(&frame).1, Status::ResourceExhausted);
    }
    assert!(served.is_some(), "no call was served after the cancel");
}

#[tokio::test]
async fn an_idle_connection_is_told_go_away_and_closed() {
    let idle_timeout = Duration::from_millis(600);
    let config = ServerConfig {
        idle_timeout,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let mut idle = RawPeer::connect(server.addr).await.unwrap();
    // The server's idle time runs from its last read, which comes after this.
    let quiet_since = Instant::now();
    idle.send_request(1, lab("echo"), &Metadata::new(), &(1u64,))
        .await
        .unwrap();
    assert_eq!(value_of::<u64>(&idle.frame(WAIT).await, 1), 1);
    // (That a connection with a call in flight is never idle is pinned on paused time, where silence proves it:
    // rpc-core's `server::tests`.)
    let frames = idle.until_closed(idle_timeout + SLACK).await;
    let closed_after = quiet_since.elapsed();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].header.kind, Kind::GoAway);
    assert_eq!(frames[0].header.request_id, 1, "the last request it saw");
    assert!(
        frames[0].message().contains("idle"),
        "{:?}",
        frames[0].message()
    );
    assert!(
        closed_after >= idle_timeout && closed_after <= idle_timeout + SLACK,
        "{closed_after:?}"
    );
    // Others are served meanwhile.
    others_carry_on(&LabClient::connect(server.addr).await.unwrap(), 2).await;
}

#[tokio::test]
async fn a_frame_trickled_in_slower_than_the_frame_timeout_closes_that_connection() {
    let frame_timeout = Duration::from_millis(500);
    let config = ServerConfig {
        frame_timeout,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    let mut slow = RawPeer::connect(server.addr).await.unwrap();
    let request = request_bytes(1, lab("echo"), &Metadata::new(), &(1u64,));
    let started = Instant::now();
    // One byte every 100 ms: bytes keep coming, but the frame would take 2.9 s.
    let mut answer = None;
    for byte in &request {
        slow.send_bytes(std::slice::from_ref(byte)).await.unwrap();
        match slow.next(Duration::from_millis(100)).await {
            Next::Silent => {}
            other => {
                answer = Some(other);
                break;
            }
        }
        others_carry_on(&client, 1).await;
    }
    let took = started.elapsed();
    let Some(Next::Frame(frame)) = answer else {
        panic!("no answer to the trickle: {answer:?}");
    };
    let (id, status, message) = error_of(&frame);
    assert_eq!(
        (id, status),
        (0, Status::ResourceExhausted),
        "a connection-level refusal"
    );
    assert!(message.contains("frame_timeout"), "{message}");
    assert!(
        took >= frame_timeout && took <= frame_timeout + SLACK,
        "{took:?}"
    );
    assert!(matches!(slow.next(WAIT).await, Next::Closed));
    others_carry_on(&client, 2).await;
}

#[tokio::test]
async fn a_steady_stream_whose_reads_end_mid_frame_is_not_a_slow_frame() {
    let frame_timeout = Duration::from_millis(500);
    let config = ServerConfig {
        frame_timeout,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    // Frames of 29 bytes back to back, sent 10 bytes every 100 ms: nearly every read ends inside a frame, for
    // 3.5 s, seven frame timeouts; but each frame arrives within 300 ms.
    let stream: Vec<u8> = (1..=12u64)
        .flat_map(|id| request_bytes(id, lab("echo"), &Metadata::new(), &(id,)))
        .collect();
    let started = Instant::now();
    for chunk in stream.chunks(10) {
        peer.send_bytes(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= frame_timeout * 6,
        "{:?}",
        started.elapsed()
    );
    let mut answered = Vec::new();
    for _ in 0..12 {
        let frame = peer.frame(WAIT).await;
        answered.push(value_of::<u64>(&frame, frame.header.request_id));
    }
    assert_eq!(answered, (1..=12).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_peer_that_does_not_read_its_answers_is_cut_off_at_the_write_timeout() {
    let write_timeout = Duration::from_millis(500);
    let config = ServerConfig {
        max_pending_output: 64 << 10,
        write_timeout,
        ..ServerConfig::default()
    };
    let metrics = rpc_core::Metrics::server();
    let server = tests::serve::serve_lab_metered(LabImpl::default(), config, None, metrics.clone())
        .await
        .unwrap();
    let connections = || {
        let samples = tests::prom::parse(&metrics.render()).unwrap();
        tests::prom::value(&samples, "rpc_server_connections", &[])
    };
    let client = LabClient::connect(server.addr).await.unwrap();
    others_carry_on(&client, 1).await;
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    peer.send_request(1, lab("echo"), &Metadata::new(), &(1u64,))
        .await
        .unwrap();
    assert_eq!(value_of::<u64>(&peer.frame(WAIT).await, 1), 1);
    assert_eq!(connections(), Some(2.0));
    // 1,000 requests for 64 KiB answers each, none of them read.
    let requests: Vec<u8> = (2..=1001u64)
        .flat_map(|id| request_bytes(id, lab("fill"), &Metadata::new(), &(64u64 << 10,)))
        .collect();
    let sent = Instant::now();
    peer.send_bytes(&requests).await.unwrap();
    others_carry_on(&client, 2).await;
    // The server cuts the connection (its count of connections falls) once it has waited the write timeout for
    // the peer to read: not before, and not much after.
    let mut cut_after = None;
    for _ in 0..2000 {
        if connections() == Some(1.0) {
            cut_after = Some(sent.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cut_after = cut_after.expect("the server did not cut the connection within 10 s");
    assert!(
        cut_after >= write_timeout && cut_after <= write_timeout + SLACK,
        "cut {cut_after:?} after the requests were sent"
    );
    others_carry_on(&client, 3).await;
    // What had reached this peer before the cut is there to read; then the connection is closed.
    let answered = peer.until_closed(WAIT).await;
    assert!(
        answered.len() < 1000,
        "{} answers before the close",
        answered.len()
    );
    others_carry_on(&client, 4).await;
}
