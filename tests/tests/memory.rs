//! Memory stays bounded when a peer pushes more than the limits allow: the process's peak resident memory
//! (`VmHWM`, reset before each exchange) over the whole exchange, so that a burst at any moment counts. In a test
//! binary of its own, and one test at a time (they take turns through `MEASURING`), so that no other test's
//! allocations move the process's memory while it is measured.

use std::time::Duration;

use rpc_codec::{Header, Kind, Metadata, method_id};
use rpc_core::ServerConfig;
use tests::lab::{LabClient, LabImpl};
use tests::peer::{RawPeer, peak_resident_bytes, reset_peak_resident};
use tests::serve::serve_lab;

/// Held while a test measures resident memory.
static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_frame_over_the_limit_is_skipped_without_buffering_it() {
    let _turn = MEASURING.lock().await;
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
    let chunk = vec![0u8; 1 << 20];
    // Warm up: the buffers of both connections exist before the first reading.
    assert_eq!(client.echo(1).await, Ok(1));
    let before = reset_peak_resident();
    // A request declaring 256 MiB of payload, 256 times the limit, then all of it.
    let declared: u32 = 256 << 20;
    let header = Header::request(1, method_id("Lab", "echo")).to_bytes(0, declared);
    peer.send_bytes(&header).await.unwrap();
    let refusal = peer.frame(Duration::from_secs(10)).await;
    assert_eq!(refusal.header.kind, Kind::Error);
    for n in 0..256u64 {
        peer.send_bytes(&chunk).await.unwrap();
        if n % 64 == 0 {
            assert_eq!(client.echo(n).await, Ok(n));
        }
    }
    peer.send_request(2, method_id("Lab", "echo"), &Metadata::new(), &(7u64,))
        .await
        .unwrap();
    let answer = peer.frame(Duration::from_secs(10)).await;
    assert_eq!(
        (answer.header.kind, answer.header.request_id),
        (Kind::Response, 2)
    );
    let grown = peak_resident_bytes().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "256 MiB went through the skipped frame; resident memory rose by {grown} bytes at its peak"
    );
}

#[tokio::test]
async fn answers_to_a_peer_that_does_not_read_are_bounded_by_max_pending_output() {
    let _turn = MEASURING.lock().await;
    let config = ServerConfig {
        max_pending_output: 64 << 10,
        ..ServerConfig::default()
    };
    let server = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let client = LabClient::connect(server.addr).await.unwrap();
    assert_eq!(client.echo(1).await, Ok(1));
    let mut peer = RawPeer::connect(server.addr).await.unwrap();
    let before = reset_peak_resident();
    // 1,000 requests, each for a 64 KiB answer: 64 MiB of answers, which this peer does not read until the other
    // client's calls are done. The server takes no new request while 64 KiB of answers wait, so it holds one
    // answer past that at most; without the bound, it would make the 64 MiB of answers as fast as it reads the
    // requests, whenever the peer reads.
    let requests: Vec<u8> = (1..=1000u64)
        .flat_map(|id| {
            tests::peer::request_bytes(
                id,
                method_id("Lab", "fill"),
                &Metadata::new(),
                &(64u64 << 10,),
            )
        })
        .collect();
    peer.send_bytes(&requests).await.unwrap();
    // Others carry on meanwhile.
    for n in 0..100 {
        assert_eq!(client.echo(n).await, Ok(n));
    }
    // Once the peer reads, every answer comes, in order: holding back lost nothing.
    for id in 1..=1000u64 {
        let answer = peer.frame(Duration::from_secs(10)).await;
        assert_eq!(
            (answer.header.kind, answer.header.request_id),
            (Kind::Response, id)
        );
        // 64 KiB of bytes after their length, a 5-byte varint (0xfc then a u32).
        assert_eq!(answer.payload.len(), (64 << 10) + 5);
    }
    let grown = peak_resident_bytes().saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "64 MiB of answers were asked for; resident memory rose by {grown} bytes at its peak"
    );
}
