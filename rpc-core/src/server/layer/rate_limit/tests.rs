//! Tests of `rate_limit`, on a paused clock where time matters.
use super::*;
use crate::server::layer::{Caller, test_request};
use crate::server::request::Peer;

const CALL: MethodInfo = MethodInfo {
    service: "Lab",
    name: "call",
    id: rpc_codec::method_id("Lab", "call"),
    idempotent: false,
};
const FREE: MethodInfo = MethodInfo {
    service: "Lab",
    name: "free",
    id: rpc_codec::method_id("Lab", "free"),
    idempotent: false,
};

fn passing() -> impl Service<
    Request,
    Response = Response,
    Error = BoxError,
    Future = impl Future<Output = Result<Response, BoxError>>,
> {
    tower::service_fn(|_: Request| async { Ok::<_, BoxError>(Response::value_bytes(vec![])) })
}

fn from(ip: &str, method: &'static MethodInfo) -> Request {
    let mut request = test_request(method);
    let addr = format!("{ip}:4000")
        .parse::<std::net::SocketAddr>()
        .unwrap();
    request.peer = Arc::new(Peer {
        addr: Some(PeerAddr::Tcp(addr)),
        names: None,
    });
    request
}

async fn status(
    service: &mut RateLimited<impl Service<Request, Response = Response, Error = BoxError>>,
    request: Request,
) -> (Status, Option<Duration>) {
    let response = service.call(request).await.unwrap();
    (response.status(), response.retry_after())
}

#[tokio::test(start_paused = true)]
async fn a_callers_burst_passes_then_it_waits_for_a_token_while_others_pass() {
    let limit = RateLimit::new(RateLimitConfig {
        rates: PerMethod::new(None).method("Lab.call", Some(Rate::per_second(10.0).with_burst(3))),
        ..RateLimitConfig::default()
    });
    let mut service = limit.layer(passing());
    for _ in 0..3 {
        assert_eq!(
            status(&mut service, from("10.0.0.1", &CALL)).await,
            (Status::Ok, None)
        );
    }
    // The fourth finds no token: one is back in 100 ms (10 a second).
    let refused = service.call(from("10.0.0.1", &CALL)).await.unwrap();
    assert_eq!(refused.status(), Status::ResourceExhausted);
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(
        refused.message(),
        Some(
            "Lab.call allows 10 calls/s per caller in bursts of 3; 10.0.0.1 is over it: a token is back in 100 ms"
        )
    );
    // Another caller has its own burst; a method without a rate is not limited.
    assert_eq!(
        status(&mut service, from("10.0.0.2", &CALL)).await,
        (Status::Ok, None)
    );
    for _ in 0..10 {
        assert_eq!(
            status(&mut service, from("10.0.0.1", &FREE)).await,
            (Status::Ok, None)
        );
    }
    // 40 ms on, the wait left is 60 ms; at 100 ms, a token is back (and one only).
    tokio::time::advance(Duration::from_millis(40)).await;
    assert_eq!(
        status(&mut service, from("10.0.0.1", &CALL)).await,
        (Status::ResourceExhausted, Some(Duration::from_millis(60)))
    );
    tokio::time::advance(Duration::from_millis(60)).await;
    assert_eq!(
        status(&mut service, from("10.0.0.1", &CALL)).await,
        (Status::Ok, None)
    );
    assert_eq!(
        status(&mut service, from("10.0.0.1", &CALL)).await.0,
        Status::ResourceExhausted
    );
    assert_eq!(limit.tracked(), 2);
}

#[test]
fn the_caller_is_the_authorized_name_then_the_certificate_then_the_metadata_key_then_the_ip() {
    let key = Some("x-tenant");
    let mut request = from("10.0.0.7", &CALL);
    assert_eq!(
        Identity::of(&request, key),
        Identity::Ip("10.0.0.7".parse().unwrap())
    );
    request.metadata = rpc_codec::Metadata::from_pairs([("x-tenant", "acme")]).unwrap();
    assert_eq!(Identity::of(&request, key), Identity::Metadata(b"acme"));
    assert_eq!(
        Identity::of(&request, None),
        Identity::Ip("10.0.0.7".parse().unwrap())
    );
    request.peer = Arc::new(Peer {
        addr: request.peer.addr.clone(),
        names: Some(vec!["calc.client.test".to_owned()].into()),
    });
    assert_eq!(
        Identity::of(&request, key),
        Identity::Certificate("calc.client.test")
    );
    request.set_caller(Caller {
        token: Some("ops".into()),
        carried_token: true,
        certificates: vec![],
        subject: None,
    });
    assert_eq!(Identity::of(&request, key), Identity::Token("ops"));
    assert_eq!(Identity::Token("ops").to_string(), "token ops");
    assert_eq!(Identity::Metadata(b"a\nb").to_string(), "caller a\\u{a}b");
    let unix = Peer {
        addr: Some(PeerAddr::Unix(None)),
        names: None,
    };
    let mut local = test_request(&CALL);
    local.peer = Arc::new(unix);
    assert_eq!(Identity::of(&local, key), Identity::Local);
}

#[tokio::test(start_paused = true)]
async fn buckets_stay_within_their_cap_forgetting_the_longest_idle_or_the_refilled_first() {
    let limit = RateLimit::new(RateLimitConfig {
        rates: PerMethod::new(Some(Rate::per_second(1.0).with_burst(2))),
        max_callers: 8,
        ..RateLimitConfig::default()
    });
    let mut service = limit.layer(passing());
    let caller = |i: u32| {
        from(
            &std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string(),
            &CALL,
        )
    };
    // Eight callers spend their burst, 10 ms apart: none has refilled when a ninth comes, so the two idle
    // longest (and an eighth of the cap) are forgotten.
    for i in 0..8 {
        for _ in 0..2 {
            assert_eq!(status(&mut service, caller(i)).await.0, Status::Ok);
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    assert_eq!(status(&mut service, caller(8)).await.0, Status::Ok);
    assert_eq!(limit.tracked(), 7);
    // The first caller, forgotten, has a full burst again; the last one is still refused.
    assert_eq!(status(&mut service, caller(0)).await.0, Status::Ok);
    assert_eq!(
        status(&mut service, caller(7)).await.0,
        Status::ResourceExhausted
    );

    // Seconds later, every bucket has refilled but the one the last caller empties now: at the cap, the
    // refilled ones are forgotten, and that one is kept.
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(status(&mut service, caller(7)).await.0, Status::Ok);
    assert_eq!(status(&mut service, caller(7)).await.0, Status::Ok);
    assert_eq!(limit.tracked(), 8);
    assert_eq!(status(&mut service, caller(9)).await.0, Status::Ok);
    assert_eq!(limit.tracked(), 2);
    assert_eq!(
        status(&mut service, caller(7)).await.0,
        Status::ResourceExhausted
    );

    // A thousand callers later, still within the cap.
    for i in 100..1100 {
        assert_eq!(status(&mut service, caller(i)).await.0, Status::Ok);
        assert!(limit.tracked() <= 8, "{}", limit.tracked());
    }
}
