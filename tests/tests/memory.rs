//! Memory stays bounded when a peer pushes more than the limits allow: alone in its test binary, so that no
//! other test's allocations move the process's resident memory while it is measured.

use std::time::Duration;

use rpc_codec::{Header, Kind, Metadata, method_id};
use rpc_core::ServerConfig;
use tests::lab::{LabClient, LabImpl};
use tests::peer::{RawPeer, resident_bytes};
use tests::serve::serve_lab;

#[tokio::test]
async fn a_frame_over_the_limit_is_skipped_without_buffering_it() {
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
    let before = resident_bytes();
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
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "256 MiB went through the skipped frame; resident memory grew by {grown} bytes"
    );
}
