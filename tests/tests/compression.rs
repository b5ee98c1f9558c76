//! Compression negotiated per connection (protocol 1.1), end to end on 127.0.0.1: a client that offers lz4 or
//! zstd gets large answers compressed and sends large requests compressed once the server answered its offer,
//! while small calls cost the same bytes as without compression; a server that does not compress settles the
//! offer after one request; a decompression bomb is refused on its declared length, either way, and the
//! connection serves on; an encoding a side does not take is refused naming those it does.

use std::time::Duration;

use rpc_core::codec::{Flags, Header, PayloadCodec, Status, compression};
use rpc_core::{Client, ClientConfig, CompressionConfig, Encoding, Metrics, ServerConfig};
use serde_bytes::ByteBuf;
use tests::lab::{LabClient, LabImpl};
use tests::peer::RawPeer;
use tests::prom::{parse, value};
use tests::serve::{serve_lab, serve_lab_metered};

/// 64 KiB of text, which compresses well.
fn text() -> ByteBuf {
    let line = b"{\"name\": \"alice\", \"zone\": \"a\", \"items\": [1, 2, 3]}\n";
    ByteBuf::from(
        line.iter()
            .copied()
            .cycle()
            .take(64 * 1024)
            .collect::<Vec<u8>>(),
    )
}

/// The server's byte counters: received, sent.
fn bytes(metrics: &Metrics) -> (f64, f64) {
    let samples = parse(&metrics.render()).unwrap();
    let get = |name| value(&samples, name, &[]).unwrap_or(0.0);
    (
        get("rpc_server_received_bytes_total"),
        get("rpc_server_sent_bytes_total"),
    )
}

/// A server of `Lab` with `config` (running until the returned handle drops), its metrics, and a client to it
/// with `compression`.
async fn pair(
    config: ServerConfig,
    compression: CompressionConfig,
) -> (LabClient, Metrics, tests::serve::Running) {
    let metrics = Metrics::server();
    let running = serve_lab_metered(LabImpl::default(), config, None, metrics.clone())
        .await
        .unwrap();
    let client_config = ClientConfig {
        compression,
        ..ClientConfig::default()
    };
    let client = LabClient::new(
        Client::connect_with(running.addr, client_config)
            .await
            .unwrap(),
    );
    (client, metrics, running)
}

/// The bytes the server received and sent for one call of `mirror` with `data`, after the connection settled.
async fn mirror_bytes(client: &LabClient, metrics: &Metrics, data: &ByteBuf) -> (f64, f64) {
    let before = bytes(metrics);
    assert_eq!(&client.mirror(data.clone()).await.unwrap(), data);
    // The counters move as the bytes pass; the answer has been read when the call returns.
    let after = bytes(metrics);
    (after.0 - before.0, after.1 - before.1)
}

#[tokio::test]
async fn large_calls_travel_compressed_both_ways_and_small_ones_as_before() {
    let data = text();
    let (plain, plain_metrics, _plain) =
        pair(ServerConfig::default(), CompressionConfig::off()).await;
    for encoding in Encoding::supported() {
        let (client, metrics, _server) = pair(
            ServerConfig::default(),
            CompressionConfig::with(&[encoding]),
        )
        .await;
        // The first call carries the offer, and its answer the server's list; from the second on, both ways.
        assert_eq!(client.mirror(data.clone()).await.unwrap(), data);
        let (received, sent) = mirror_bytes(&client, &metrics, &data).await;
        assert!(
            received < 8_192.0 && sent < 8_192.0,
            "{encoding}: {received} bytes in, {sent} out for 64 KiB each way"
        );
        // A small call: the same bytes as a client that does not compress.
        let small = ByteBuf::from(vec![7u8; 32]);
        assert_eq!(plain.mirror(small.clone()).await.unwrap(), small);
        let without = mirror_bytes(&plain, &plain_metrics, &small).await;
        let with = mirror_bytes(&client, &metrics, &small).await;
        assert_eq!(with, without, "{encoding}: a small call costs nothing more");
    }
    let (received, sent) = mirror_bytes(&plain, &plain_metrics, &data).await;
    assert!(received > 65_536.0 && sent > 65_536.0, "{received} {sent}");
}

#[tokio::test]
async fn a_server_that_does_not_compress_settles_the_offer_and_the_calls_go_plain() {
    let config = ServerConfig {
        compression: CompressionConfig::off(),
        ..ServerConfig::default()
    };
    let (client, metrics, _server) = pair(config, CompressionConfig::with(&[Encoding::Lz4])).await;
    let data = text();
    let first = mirror_bytes(&client, &metrics, &data).await;
    let second = mirror_bytes(&client, &metrics, &data).await;
    assert!(second.0 > 65_536.0 && second.1 > 65_536.0, "{second:?}");
    // Only the first request carried the offer (its metadata entry), the answer ended it.
    let offer = format!("{}: lz4", rpc_core::ACCEPT_ENCODING).len() as f64;
    assert!(
        first.0 - second.0 >= offer - 2.0 && first.0 - second.0 <= offer + 3.0,
        "{first:?} {second:?}"
    );
    assert_eq!(first.1, second.1, "the server never announced anything");
}

/// The header of request `id` of `Lab.echo`, its payload flagged as compressed with `encoding`.
fn compressed_request(id: u64, encoding: Encoding) -> Header {
    let header = Header::request(id, rpc_core::codec::method_id("Lab", "echo"));
    Header {
        flags: Flags::EMPTY.with(Flags::of(encoding)),
        ..header
    }
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_on_its_length_and_the_connection_serves_on() {
    let running = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let mut peer = RawPeer::connect(running.addr).await.unwrap();
    // 1 GiB declared, in 7 bytes.
    let mut bomb = (1u32 << 30).to_le_bytes().to_vec();
    bomb.extend_from_slice(&[0x1f, 0x00, 0x01]);
    peer.send_frame(compressed_request(1, Encoding::Lz4), &bomb)
        .await
        .unwrap();
    let refused = peer.frame(Duration::from_secs(5)).await;
    assert_eq!(
        (refused.header.request_id, refused.header.status),
        (1, Status::ResourceExhausted)
    );
    assert_eq!(
        refused.message(),
        "the request's payload does not decompress: a compressed payload declares 1073741824 bytes once \
         decompressed, over the limit of 16777216 (the smaller of max_decoded_len and max_frame_len)"
    );
    // A well-formed compressed request on the same connection is served.
    let codec = rpc_core::codec::Bincode;
    let args = codec
        .encode_to_vec(&(41u64,), codec.encoded_len(&(41u64,)).unwrap())
        .unwrap();
    let mut packed = Vec::new();
    compression::compress(Encoding::Lz4, &args, &mut packed).unwrap();
    peer.send_frame(compressed_request(2, Encoding::Lz4), &packed)
        .await
        .unwrap();
    let answer = peer.frame(Duration::from_secs(5)).await;
    assert_eq!(answer.header.request_id, 2);
    assert_eq!(
        answer.header.kind,
        rpc_core::codec::Kind::Response,
        "{}",
        answer.message()
    );
}

#[tokio::test]
async fn an_encoding_the_server_does_not_take_is_refused_naming_those_it_does() {
    let config = ServerConfig {
        compression: CompressionConfig::with(&[Encoding::Lz4]),
        ..ServerConfig::default()
    };
    let running = serve_lab(LabImpl::default(), config, 0).await.unwrap();
    let mut peer = RawPeer::connect(running.addr).await.unwrap();
    let payload = [8u8, 0, 0, 0, 1, 2, 3];
    peer.send_frame(compressed_request(1, Encoding::Zstd), &payload)
        .await
        .unwrap();
    let refused = peer.frame(Duration::from_secs(5)).await;
    assert_eq!(refused.header.status, Status::InvalidArgument);
    assert_eq!(
        refused.message(),
        "the request's payload is compressed with zstd, which this server does not accept (it accepts: lz4)"
    );
}

/// A fake server: answers the first request it reads with a `Response` whose payload is `payload`, flagged as
/// compressed with lz4; what the client's call returned.
async fn answered_compressed(
    compression: CompressionConfig,
    payload: Vec<u8>,
) -> Result<u64, rpc_core::RpcError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&listener).await.unwrap();
        let request = peer.frame(Duration::from_secs(5)).await;
        let header = Header {
            flags: Flags::LZ4,
            ..Header::response(request.header.request_id)
        };
        peer.send_frame(header, &payload).await.unwrap();
        peer
    });
    let config = ClientConfig {
        compression,
        ..ClientConfig::default()
    };
    let client = LabClient::new(Client::connect_with(addr, config).await.unwrap());
    let result = client.echo(5).await;
    drop(server.await.unwrap());
    result
}

#[tokio::test]
async fn a_client_takes_a_compressed_answer_it_can_read_and_refuses_one_that_declares_too_much() {
    let mut packed = Vec::new();
    compression::compress(Encoding::Lz4, &5u64.to_le_bytes()[..1], &mut packed).unwrap();
    // Not offered (a caller may have put an offer in a call's metadata), but this build reads lz4.
    assert_eq!(
        answered_compressed(CompressionConfig::off(), packed.clone()).await,
        Ok(5)
    );
    let mut bomb = (1u32 << 30).to_le_bytes().to_vec();
    bomb.extend_from_slice(&[0x1f, 0x00, 0x01]);
    let refused = answered_compressed(CompressionConfig::with(&[Encoding::Lz4]), bomb)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Status::ResourceExhausted);
    assert!(
        refused
            .message()
            .contains("declares 1073741824 bytes once decompressed, over the limit of 16777216"),
        "{refused}"
    );
    assert_eq!(
        answered_compressed(CompressionConfig::with(&[Encoding::Lz4]), packed).await,
        Ok(5)
    );
}

#[tokio::test]
async fn an_offer_is_the_connection_s_and_no_handler_sees_one() {
    let (client, _metrics, _server) = pair(
        ServerConfig::default(),
        CompressionConfig::with(&[Encoding::Lz4]),
    )
    .await;
    let key = rpc_core::ACCEPT_ENCODING.to_owned();
    // The client's own offer (first call), then a caller's entry of that key: neither reaches the handler.
    assert_eq!(client.header(key.clone()).await.unwrap(), None);
    let forged = rpc_core::Metadata::from_pairs([(key.as_str(), "zstd")]).unwrap();
    assert_eq!(
        client
            .with_metadata(forged.clone())
            .header(key.clone())
            .await
            .unwrap(),
        None
    );
    // A client that compresses nothing, whose caller sets the entry: its calls still work.
    let (plain, _metrics, _server) = pair(ServerConfig::default(), CompressionConfig::off()).await;
    let data = text();
    let echoed = plain
        .with_metadata(forged)
        .mirror(data.clone())
        .await
        .unwrap();
    assert_eq!(echoed, data);
}

#[tokio::test]
async fn a_compressed_request_may_not_unfold_past_the_frame_limit() {
    let running = serve_lab(LabImpl::default(), ServerConfig::default(), 0)
        .await
        .unwrap();
    let mut peer = RawPeer::connect(running.addr).await.unwrap();
    // 17 MiB of zeros: over max_frame_len (16 MiB), within max_decoded_len (64 MiB); a few KiB on the wire.
    let mut packed = Vec::new();
    compression::compress(Encoding::Lz4, &vec![0u8; 17 << 20], &mut packed).unwrap();
    peer.send_frame(compressed_request(1, Encoding::Lz4), &packed)
        .await
        .unwrap();
    let refused = peer.frame(Duration::from_secs(5)).await;
    assert_eq!(refused.header.status, Status::ResourceExhausted);
    assert!(
        refused.message().ends_with(
            "declares 17825792 bytes once decompressed, over the limit of 16777216 (the smaller of \
             max_decoded_len and max_frame_len)"
        ),
        "{}",
        refused.message()
    );
}
