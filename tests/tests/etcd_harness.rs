//! The etcd harness of `tests::etcd`, against real etcd processes: a member starts, answers its status and leaves
//! neither process nor directory behind; keys put through the JSON gateway read back by prefix; a cluster of
//! three elects a new leader when its leader is killed and takes the killed member back when it restarts; and a
//! missing or failing etcd binary is a clear error. The tests that need etcd skip when it is not installed,
//! unless `RPC_REQUIRE_ETCD=1`.

use std::path::Path;

use tests::etcd::{self, Etcd, EtcdCluster, EtcdError};

#[test]
fn base64_matches_the_rfc_4648_vectors_both_ways() {
    let vectors = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in vectors {
        assert_eq!(etcd::encode_base64(plain.as_bytes()), encoded);
        assert_eq!(etcd::decode_base64(encoded).unwrap(), plain.as_bytes());
    }
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(
        etcd::decode_base64(&etcd::encode_base64(&all)).unwrap(),
        all
    );
    for bad in ["Zg=", "Zg=a", "Z===", "Zg==Zg==", "Zm9*"] {
        assert!(etcd::decode_base64(bad).is_err(), "{bad:?} decoded");
    }
}

#[test]
fn prefix_end_is_the_first_key_after_the_prefix() {
    assert_eq!(etcd::prefix_end(b"/rpc/"), b"/rpc0");
    assert_eq!(etcd::prefix_end(b"a\xff"), b"b");
    assert_eq!(etcd::prefix_end(b"\xff\xff"), b"\0");
    assert_eq!(etcd::prefix_end(b""), b"\0");
}

#[tokio::test]
async fn a_missing_binary_says_to_install_etcd_server() {
    let e = EtcdCluster::start_with_bin("/nonexistent/etcd", 1)
        .await
        .unwrap_err();
    assert!(e.is_not_installed(), "{e}");
    assert!(e.to_string().contains("etcd-server"), "{e}");
}

#[tokio::test]
async fn a_binary_that_exits_at_once_fails_the_start_with_its_log() {
    // `sh` takes `--name` for an option it does not know, says so on stderr and exits.
    let e = EtcdCluster::start_with_bin("/bin/sh", 1).await.unwrap_err();
    let EtcdError::Exited { member, log, .. } = &e else {
        panic!("expected the member to exit, got {e}");
    };
    assert_eq!(member, "m0");
    assert!(log.contains("option"), "{e}");
}

#[tokio::test]
async fn a_member_starts_answers_its_status_and_leaves_nothing_behind() {
    let Some(etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let endpoint = etcd.endpoint();
    assert_eq!(endpoint, format!("http://{}", etcd.addr()));
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_eq!(etcd.endpoints(), [etcd.endpoint()]);
    assert_eq!(etcd.endpoint_list(), endpoint);

    let status = etcd::status(&endpoint).await.unwrap();
    assert_ne!(status.member_id, 0);
    assert_eq!(status.leader, status.member_id);
    assert!(status.version.starts_with("3."), "{status:?}");

    let dir = etcd.dir().to_path_buf();
    assert!(dir.join("m0/data/member").is_dir());
    assert!(dir.join("m0/etcd.log").is_file());
    let pid = etcd.pid().unwrap();
    drop(etcd);
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} still runs"
    );
}

#[tokio::test]
async fn get_prefix_reads_back_what_put_wrote_under_the_prefix_only() {
    let Some(etcd) = Etcd::start_or_skip().await else {
        return;
    };
    let endpoint = etcd.endpoint();
    // Large enough that etcd answers the range in chunks.
    let big = "x".repeat(10_000);
    for (key, value) in [
        ("/rpc/b", "two"),
        ("/rpc/a", "1"),
        ("/rpc/big", big.as_str()),
        ("/rpc", "the prefix without its slash"),
        ("/rpc0", "just after the prefix"),
        ("/rpc/ü", "ünïcode"),
    ] {
        etcd::put(&endpoint, key, value).await.unwrap();
    }
    let got = etcd::get_prefix(&endpoint, "/rpc/").await.unwrap();
    let expected = [
        ("/rpc/a", "1"),
        ("/rpc/b", "two"),
        ("/rpc/big", big.as_str()),
        ("/rpc/ü", "ünïcode"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(got, expected);
    assert_eq!(etcd::get_prefix(&endpoint, "/none/").await.unwrap(), []);
}

#[tokio::test]
async fn three_members_elect_a_new_leader_when_the_leader_dies_and_take_it_back() {
    let Some(mut cluster) = EtcdCluster::start_or_skip(3).await else {
        return;
    };
    assert_eq!(cluster.len(), 3);
    let endpoints = cluster.endpoints();
    assert_eq!(cluster.endpoint_list(), endpoints.join(","));
    assert_eq!(
        (0..3).map(|i| cluster.member(i)).collect::<Vec<_>>(),
        endpoints
    );

    let first = cluster.leader().await.unwrap();
    let id = ids(&cluster).await;
    for status in statuses(&cluster).await {
        assert_eq!(status.leader, id[first]);
    }

    cluster.kill(first);
    assert!(!cluster.is_running(first));
    assert!(etcd::status(&cluster.member(first)).await.is_err());
    let second = cluster.leader().await.unwrap();
    assert_ne!(second, first);
    for i in (0..3).filter(|&i| i != first) {
        let status = etcd::status(&cluster.member(i)).await.unwrap();
        assert_eq!(status.leader, id[second], "m{i}: {status:?}");
    }

    cluster.restart(first).await.unwrap();
    assert!(cluster.is_running(first));
    let third = cluster.leader().await.unwrap();
    // The same member came back (same name, ports and data: same id), and all three name one leader.
    assert_eq!(ids(&cluster).await, id);
    for status in statuses(&cluster).await {
        assert_eq!(status.leader, id[third], "{status:?}");
    }
}

/// Every member's status, in member order.
async fn statuses(cluster: &EtcdCluster) -> Vec<etcd::Status> {
    let mut all = Vec::new();
    for i in 0..cluster.len() {
        all.push(etcd::status(&cluster.member(i)).await.unwrap());
    }
    all
}

/// Every member's id, in member order.
async fn ids(cluster: &EtcdCluster) -> Vec<u64> {
    statuses(cluster)
        .await
        .into_iter()
        .map(|s| s.member_id)
        .collect()
}
