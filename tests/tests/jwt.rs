//! JWT bearer tokens as caller identities, end to end on 127.0.0.1: HS256, RS256 and EdDSA tokens that verify
//! name their caller by subject, which the rules' grants see as `jwt:SUBJECT`; an expired token, a forged
//! signature, another issuer and a token past the size limit are refused `Unauthenticated`, saying why and never
//! showing the token. The keys are test fixtures (`tests/fixtures/jwt/`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rpc_core::server::layer::{Authorize, FollowRules, Grant, JwtKeys};
use rpc_core::{Metadata, Status};
use tests::lab::{LabClient, LabImpl, LabServer};

const SECRET: &[u8] = b"a-shared-secret-for-the-jwt-tests";
const RSA: &[u8] = include_bytes!("../fixtures/jwt/rsa-test-key.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../fixtures/jwt/rsa-test-key.pub.pem");
const ED25519: &[u8] = include_bytes!("../fixtures/jwt/ed25519-test-key.pem");
const ED25519_PUBLIC: &[u8] = include_bytes!("../fixtures/jwt/ed25519-test-key.pub.pem");

fn token(
    algorithm: Algorithm,
    key: &EncodingKey,
    subject: &str,
    issuer: &str,
    exp_from_now: i64,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({"sub": subject, "iss": issuer, "exp": now + exp_from_now});
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

async fn server() -> LabClient {
    let keys = JwtKeys::new()
        .hs256(SECRET.to_vec())
        .rs256_pem(RSA_PUBLIC)
        .unwrap()
        .eddsa_pem(ED25519_PUBLIC)
        .unwrap()
        .issuer("auth.test");
    let mut rules: rpc_core::rules::Rules = serde_json::from_str(
        r#"{"service": "Lab", "authorization": {"default": "deny", "grants": [
            {"name": "alice", "callers": ["jwt:alice"], "methods": ["*"], "access": "allow"}
        ]}}"#,
    )
    .unwrap();
    rules.check().unwrap();
    // The sender goes: the rules stay what they are.
    let (_, feed) = tokio::sync::watch::channel(Some(Arc::new(rules)));
    let addr = tests::serve::serve_builder(
        rpc_core::Server::builder()
            .layer(Authorize::new().jwt(keys, Grant::all()))
            .layer(FollowRules::new(feed))
            .add_service(LabServer::new(LabImpl::default())),
    )
    .await;
    LabClient::connect(addr).await.unwrap()
}

fn bearer(client: &LabClient, token: &str) -> LabClient {
    client.with_metadata(
        Metadata::from_pairs([("authorization", format!("Bearer {token}"))]).unwrap(),
    )
}

#[tokio::test]
async fn jwts_that_verify_name_their_caller_and_the_rules_grant_by_subject() {
    let client = server().await;
    let hs = EncodingKey::from_secret(SECRET);
    let rs = EncodingKey::from_rsa_pem(RSA).unwrap();
    let ed = EncodingKey::from_ed_pem(ED25519).unwrap();
    for (algorithm, key) in [
        (Algorithm::HS256, &hs),
        (Algorithm::RS256, &rs),
        (Algorithm::EdDSA, &ed),
    ] {
        let alice = token(algorithm, key, "alice", "auth.test", 3600);
        assert_eq!(
            bearer(&client, &alice).echo(1).await.unwrap(),
            1,
            "{algorithm:?}"
        );
    }
    let bob = token(Algorithm::HS256, &hs, "bob", "auth.test", 3600);
    let denied = bearer(&client, &bob).echo(2).await.unwrap_err();
    assert_eq!(denied.code(), Status::PermissionDenied);
    assert_eq!(
        denied.message(),
        "Lab.echo refused for jwt:bob by rule `default` of the rules of Lab"
    );
}

#[tokio::test]
async fn jwts_that_do_not_verify_are_refused_saying_why_without_showing_them() {
    let client = server().await;
    let hs = EncodingKey::from_secret(SECRET);
    let refused = |why: &'static str| {
        move |e: rpc_core::RpcError| {
            assert_eq!(e.code(), Status::Unauthenticated, "{e}");
            assert!(e.message().contains(why), "{e}");
            e.message().to_owned()
        }
    };
    let expired = token(Algorithm::HS256, &hs, "alice", "auth.test", -3600);
    let message = refused("ExpiredSignature")(bearer(&client, &expired).echo(1).await.unwrap_err());
    assert!(
        !message.contains(&expired),
        "the token is never shown: {message}"
    );
    let forged = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret"),
        "alice",
        "auth.test",
        3600,
    );
    refused("InvalidSignature")(bearer(&client, &forged).echo(1).await.unwrap_err());
    let elsewhere = token(Algorithm::HS256, &hs, "alice", "other.issuer", 3600);
    refused("InvalidIssuer")(bearer(&client, &elsewhere).echo(1).await.unwrap_err());
    refused("not a JWT")(
        bearer(&client, "not-a-jwt-at-all")
            .echo(1)
            .await
            .unwrap_err(),
    );
    // Past the frame's metadata limit a token never arrives; a server that raised that limit still reads none
    // past the JWT's own.
    let huge = "x".repeat(9 * 1024);
    let why = JwtKeys::new()
        .hs256(SECRET.to_vec())
        .verify(huge.as_bytes())
        .unwrap_err();
    assert_eq!(why, "a JWT of 9216 bytes, over the limit of 8192");
}
