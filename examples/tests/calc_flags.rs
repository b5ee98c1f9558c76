//! The flags of `calc-server` and `calc-client`, run as a user runs them: a server with limits and a fault that
//! aborts every call says what it applies, and the client sees each call fail with that status; the client's
//! own faults fail its calls before they are sent, or delay them; servers registered with labels are called
//! by subset, and bad labels, subsets and metadata are refused with what came. Real processes, so real time;
//! every wait is bounded.

use std::process::Stdio;
use std::time::Duration;

use rpc_registry::RegistryConfig;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, Command};

mod support;

/// Starts `calc-server` registering with `registry`, with `extra` flags, and waits until it has registered;
/// the process, and what it said on stderr until then.
async fn calc_server(registry: &str, extra: &[&str]) -> (tokio::process::Child, Vec<String>) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args(["--registry", registry])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let said = lines_until(&mut lines, "calc-server: registered").await;
    // Keep reading (and dropping) what it says, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, said)
}

/// Reads `lines` up to one that starts with `prefix` (at most 20 lines, each within 10 s); all of them.
async fn lines_until(lines: &mut Lines<BufReader<ChildStderr>>, prefix: &str) -> Vec<String> {
    let mut said = Vec::new();
    for _ in 0..20 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line starting {prefix:?} within 10 s: {said:?}"))
            .unwrap()
            .unwrap_or_else(|| {
                panic!("the output ended before a line starting {prefix:?}: {said:?}")
            });
        let done = line.starts_with(prefix);
        said.push(line);
        if done {
            return said;
        }
    }
    panic!("no line starting {prefix:?} among {said:?}");
}

/// Runs `calc-client` against `registry` with `args` to its end (at most 60 s): its exit status, the JSON of
/// its last line, and its stderr.
async fn calc_client(registry: &str, args: &[&str]) -> (bool, serde_json::Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_calc-client"))
        .args(["--registry", registry, "--progress", "never"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("calc-client finishes within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {stderr}"));
    let summary = serde_json::from_str(last).unwrap_or_else(|e| panic!("{last}: {e}"));
    (output.status.success(), summary, stderr)
}

#[tokio::test]
async fn calc_server_applies_its_limits_and_its_faults_reach_the_client() {
    let registry = support::start_registry(RegistryConfig::default()).await;
    let (_server, said) = calc_server(
        &registry,
        &[
            "--max-concurrency",
            "64",
            "--adaptive-limit",
            "--rate-limit",
            "100000",
            "--fault-abort-percent",
            "100",
            "--fault-abort-status",
            "data_loss",
        ],
    )
    .await;
    let applied = "calc-server: at most 64 calls of each method at once, an adaptive limit on calls under way, \
                   100000 calls/s of each method per caller, 100% of calls failed data_loss";
    assert!(said.iter().any(|l| l == applied), "{said:?}");

    let (ok, summary, stderr) =
        calc_client(&registry, &["--calls", "20", "--concurrency", "2"]).await;
    assert!(!ok, "{stderr}");
    assert_eq!(
        (summary["ok"].as_u64(), summary["failed"].as_u64()),
        (Some(0), Some(20)),
        "{stderr}"
    );
    let first = "calc-client: first failure: data_loss: calc-server: fault injected (--fault-abort-percent 100)";
    assert!(stderr.lines().any(|l| l == first), "{stderr}");
}

#[tokio::test]
async fn calc_clients_faults_fail_calls_before_sending_or_delay_them() {
    let registry = support::start_registry(RegistryConfig::default()).await;
    let (_server, said) = calc_server(&registry, &[]).await;
    assert_eq!(
        said.len(),
        1,
        "no limit and no fault: nothing more said: {said:?}"
    );

    let abort = [
        "--calls",
        "10",
        "--fault-abort-percent",
        "100",
        "--fault-abort-status",
        "internal",
    ];
    let (ok, summary, stderr) = calc_client(&registry, &abort).await;
    assert!(!ok, "{stderr}");
    assert_eq!(summary["failed"].as_u64(), Some(10), "{stderr}");
    assert!(
        stderr.contains("calc-client: 100% of calls failed internal"),
        "{stderr}"
    );
    let first = "calc-client: first failure: internal: calc-client: fault injected (--fault-abort-percent 100)";
    assert!(stderr.lines().any(|l| l == first), "{stderr}");

    let delay = ["--calls", "10", "--fault-delay-ms", "1"];
    let (ok, summary, stderr) = calc_client(&registry, &delay).await;
    assert!(ok, "{stderr}");
    assert_eq!(summary["ok"].as_u64(), Some(10), "{stderr}");
    assert!(
        stderr.contains("calc-client: 100% of calls delayed 1 ms"),
        "{stderr}"
    );
}

/// The address in the line `calc-server: registered ADDR (weight ...`.
fn registered_address(said: &[String]) -> String {
    let line = said.last().expect("a line");
    let rest = line
        .strip_prefix("calc-server: registered ")
        .unwrap_or_else(|| panic!("{line}"));
    rest.split(' ').next().unwrap().to_owned()
}

#[tokio::test]
async fn servers_labelled_by_version_are_called_by_subset_and_bad_flags_say_what_came() {
    let registry = support::start_registry(RegistryConfig::default()).await;
    let (_v1, said) = calc_server(&registry, &["--label", "version=v1", "--label", "zone=a"]).await;
    let v1 = registered_address(&said);
    let (_v2, said) = calc_server(&registry, &["--label", "version=v2", "--weight", "5"]).await;
    let v2 = registered_address(&said);

    let args = [
        "--calls",
        "200",
        "--subset",
        "version=v1",
        "--metadata",
        "x-canary=1",
    ];
    let (ok, summary, stderr) = calc_client(&registry, &args).await;
    assert!(ok, "{stderr}");
    let by_instance = summary["by_instance"].as_object().unwrap();
    assert_eq!(by_instance.len(), 1, "only the subset: {summary}");
    assert_eq!(by_instance[&v1].as_u64(), Some(200), "{summary}");
    assert!(
        stderr.contains(&format!("1 instances of Calc: {v1}")),
        "{stderr}"
    );

    let (ok, summary, stderr) = calc_client(&registry, &["--calls", "200"]).await;
    assert!(ok, "{stderr}");
    let by_instance = summary["by_instance"].as_object().unwrap();
    assert!(
        by_instance.contains_key(&v2) && by_instance.contains_key(&v1),
        "{summary}"
    );

    let refused = |args: &'static [&'static str], program: &'static str| {
        let registry = registry.clone();
        async move {
            let mut command = match program {
                "calc-server" => Command::new(env!("CARGO_BIN_EXE_calc-server")),
                _ => Command::new(env!("CARGO_BIN_EXE_calc-client")),
            };
            let output = command
                .args(["--registry", &registry])
                .args(args)
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(Duration::from_secs(60), output)
                .await
                .expect("it ends within 60 s")
                .unwrap();
            assert!(!output.status.success(), "{args:?} succeeded");
            String::from_utf8_lossy(&output.stderr).into_owned()
        }
    };
    let said = refused(&["--calls", "10", "--subset", "version=v3"], "calc-client").await;
    assert!(
        said.contains("none of the 2 instances of Calc at the registry")
            && said.contains("is in the subset version=v3"),
        "{said}"
    );
    let said = refused(&["--subset", "version"], "calc-client").await;
    assert!(
        said.contains(
            "subset `version`: expected KEY=VALUE pairs separated by commas, found `version`"
        ),
        "{said}"
    );
    let said = refused(&["--calls", "1", "--metadata", "x-canary"], "calc-client").await;
    assert!(
        said.contains("expected KEY=VALUE, found `x-canary`"),
        "{said}"
    );
    let said = refused(&["--label", "ver sion=2"], "calc-server").await;
    assert!(
        said.contains("a label's key is 1 to 63 letters, digits and `._-/`, found `ver sion`"),
        "{said}"
    );
}

#[tokio::test]
async fn calc_server_takes_jwts_as_callers_and_follows_the_registrys_authorization() {
    const TOKEN: &str = "the-registry-token";
    const SECRET: &[u8] = b"a-secret-for-the-calc-jwt-test";
    let registry = support::start_registry(RegistryConfig {
        token: Some(TOKEN.into()),
        ..RegistryConfig::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("calc-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let admin = rpc_registry::RegistryClient::new(
        rpc_core::Client::connect(registry.as_str()).await.unwrap(),
    )
    .with_metadata(
        rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {TOKEN}"))]).unwrap(),
    );
    let rules = r#"{"service": "Calc", "authorization": {"default": "deny", "grants": [
        {"name": "alice", "callers": ["jwt:alice"], "methods": ["*"], "access": "allow"}]}}"#;
    admin.apply_rules(rules.to_owned()).await.unwrap().unwrap();
    let (_server, said) = calc_server(
        &registry,
        &[
            "--token",
            TOKEN,
            "--jwt-hs256-secret-file",
            &secret.display().to_string(),
            "--jwt-issuer",
            "auth.test",
        ],
    )
    .await;
    assert!(
        said.iter()
            .any(|l| l == "calc-server: bearer JWTs name their callers (jwt:SUBJECT)"),
        "{said:?}"
    );
    let jwt = |subject: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let claims = serde_json::json!({"sub": subject, "iss": "auth.test", "exp": exp});
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let bearer = |subject: &str| format!("authorization=Bearer {}", jwt(subject));
    let alice = bearer("alice");
    let (ok, summary, stderr) = calc_client(
        &registry,
        &["--calls", "5", "--token", TOKEN, "--metadata", &alice],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(summary["ok"].as_u64(), Some(5), "{stderr}");
    let bob = bearer("bob");
    let (ok, summary, stderr) = calc_client(
        &registry,
        &["--calls", "5", "--token", TOKEN, "--metadata", &bob],
    )
    .await;
    assert!(!ok);
    assert_eq!(summary["failed"].as_u64(), Some(5), "{stderr}");
    assert!(
        stderr.contains(
            "permission_denied: Calc.add refused for jwt:bob by rule `default` of the rules of Calc"
        ),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
