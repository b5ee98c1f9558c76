//! Tests of `rules`: routes chosen first match first and split by weight, policies merged, authorization
//! decided, and every problem of a bad document reported with its field.

use rpc_codec::Metadata;

use super::*;

fn rules(json: &str) -> Rules {
    let mut rules: Rules = serde_json::from_str(json).unwrap();
    rules.check().unwrap();
    rules
}

fn problems(json: &str) -> Vec<String> {
    let mut rules: Rules = serde_json::from_str(json).unwrap();
    match rules.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn call<'a>(method: &'a str, metadata: &'a Metadata, callers: &'a [&'a str]) -> CallSite<'a> {
    CallSite {
        method,
        metadata,
        callers,
    }
}

const CANARY: &str = r#"{
    "service": "Calc",
    "routes": [
        {"name": "header", "match": {"metadata": [{"key": "x-canary", "exact": "1"}]},
         "to": [{"subset": "version=v2", "weight": 1}]},
        {"name": "beta", "match": {"metadata": [{"key": "user", "regex": "beta-[0-9]+"}], "methods": ["div"]},
         "to": [{"subset": "version=v2", "weight": 1}]},
        {"name": "ops", "match": {"callers": ["token:ops"], "metadata": [{"key": "region", "prefix": "eu-"}]}},
        {"name": "split", "to": [{"subset": "version=v1", "weight": 90}, {"subset": "version=v2", "weight": 10}],
         "policy": {"deadline_ms": 500, "retry": {"max_retries": 1}}}
    ],
    "methods": {"div": {"fault": {"delay_ms": 200, "delay_percent": 5}}, "*": {"deadline_ms": 800}}
}"#;

#[test]
fn the_first_route_that_matches_takes_the_call() {
    let rules = rules(CANARY);
    let none = Metadata::new();
    let canary = Metadata::from_pairs([("x-canary", "1")]).unwrap();
    let beta = Metadata::from_pairs([("user", "beta-42")]).unwrap();
    let not_beta = Metadata::from_pairs([("user", "xbeta-42")]).unwrap();
    let eu = Metadata::from_pairs([("region", "eu-west")]).unwrap();
    let route = |c: CallSite<'_>| rules.route(&c).map(|r| r.name.clone());
    assert_eq!(route(call("add", &canary, &[])).as_deref(), Some("header"));
    assert_eq!(route(call("div", &beta, &[])).as_deref(), Some("beta"));
    assert_eq!(
        route(call("add", &beta, &[])).as_deref(),
        Some("split"),
        "beta is for div only"
    );
    assert_eq!(
        route(call("div", &not_beta, &[])).as_deref(),
        Some("split"),
        "anchored at both ends"
    );
    assert_eq!(
        route(call("add", &eu, &["token:ops"])).as_deref(),
        Some("ops")
    );
    assert_eq!(
        route(call("add", &eu, &["token:dev"])).as_deref(),
        Some("split")
    );
    assert_eq!(route(call("add", &none, &[])).as_deref(), Some("split"));
}

#[test]
fn a_route_splits_its_calls_by_weight() {
    let rules = rules(CANARY);
    let split = rules.routes.iter().find(|r| r.name == "split").unwrap();
    let mut v2 = 0;
    for i in 0..10_000 {
        let draw = (f64::from(i) + 0.5) / 10_000.0;
        if split.subset(draw).unwrap().to_string() == "version=v2" {
            v2 += 1;
        }
    }
    assert_eq!(v2, 1_000, "10% of evenly spread draws");
    let ops = rules.routes.iter().find(|r| r.name == "ops").unwrap();
    assert_eq!(ops.subset(0.5), None, "no split: any instance");
}

#[test]
fn a_methods_policy_overrides_its_routes_field_by_field() {
    let rules = rules(CANARY);
    let split = rules.routes.iter().find(|r| r.name == "split");
    let div = rules.policy(split, "div");
    assert_eq!(div.deadline_ms, Some(800), "`*` over the route's 500");
    assert_eq!(
        div.retry.and_then(|r| r.max_retries),
        Some(1),
        "the route's"
    );
    assert_eq!(div.fault.and_then(|f| f.delay_ms), Some(200), "div's own");
    let add = rules.policy(split, "add");
    assert_eq!(add.fault, None);
}

#[test]
fn authorization_takes_the_first_grant_that_names_caller_and_method_else_the_default() {
    let rules = rules(
        r#"{"service": "Calc", "authorization": {"default": "deny", "grants": [
            {"name": "no-div-for-dev", "callers": ["token:dev"], "methods": ["div"], "access": "deny"},
            {"name": "staff", "callers": ["token:*", "mtls:calc-client"], "methods": ["*"], "access": "allow"}
        ]}}"#,
    );
    let auth = rules.authorization.as_ref().unwrap();
    assert_eq!(auth.decide(&["token:dev"], "add"), Ok(()));
    assert_eq!(
        auth.decide(&["token:dev"], "div"),
        Err(Denied {
            rule: "no-div-for-dev".into()
        })
    );
    assert_eq!(auth.decide(&["mtls:calc-client"], "div"), Ok(()));
    assert_eq!(
        auth.decide(&["mtls:other"], "add"),
        Err(Denied {
            rule: "default".into()
        })
    );
    assert_eq!(
        auth.decide(&[], "add"),
        Err(Denied {
            rule: "default".into()
        })
    );
    let open = self::rules(
        r#"{"service": "Calc", "authorization": {"default": "deny", "grants": [
            {"name": "anyone", "callers": ["*"], "methods": ["add"], "access": "allow"}
        ]}}"#,
    );
    let open = open.authorization.as_ref().unwrap();
    assert_eq!(
        open.decide(&[], "add"),
        Ok(()),
        "`*` admits a caller without an identity"
    );
    assert!(open.decide(&[], "div").is_err());
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let found = problems(
        r#"{"service": "Calc", "routes": [
            {"name": "a", "match": {"metadata": [{"key": "k", "exact": "1", "prefix": "2"}]}},
            {"name": "all"},
            {"name": "a", "match": {"metadata": [{"key": "k", "regex": "("}]}, "to": [{"weight": 0}]}
        ],
        "methods": {"no such": {"deadline_ms": 0, "hedge": {}}},
        "limits": [{"methods": ["div"]}, {"methods": ["*"], "max_concurrency": 0, "rate_per_second": -1}],
        "authorization": {"default": "allow", "grants": [{"name": "", "callers": [], "methods": ["*"], "access": "deny"}]}
        }"#,
    );
    let expected = [
        "routes[0].match.metadata[0]: expected exactly one of `exact`, `prefix` and `regex`",
        "routes[2]: no call can reach it: routes[1] before it has no condition and takes every call",
        "routes[2].name: the name `a` is taken by an earlier route",
        "routes[2].to: every split has weight 0: the route could send a call nowhere",
        "methods.no such: a method (or `*`) is named by 1 to 128 letters, digits and `_`, found `no such`",
        "methods.no such.deadline_ms: expected 1 to 3600000 milliseconds, found 0",
        "methods.no such.hedge: expected exactly one of `delay_ms` and `percentile`",
        "limits[0]: expected `max_concurrency` or `rate_per_second` (or both)",
        "limits[1].max_concurrency: 0 would refuse every call; expected at least 1",
        "limits[1].rate_per_second: expected more than 0 and at most 10000000, found -1",
        "authorization.grants[0].name: a grant needs a name",
        "authorization.grants[0].callers: a grant names its callers (`*` for all)",
    ];
    for line in expected {
        assert!(
            found.iter().any(|f| f == line),
            "missing {line:?} in {found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("routes[2].match.metadata[0].regex: ")),
        "{found:#?}"
    );
    assert_eq!(found.len(), expected.len() + 1, "{found:#?}");
}

#[test]
fn values_a_type_refuses_say_what_was_expected() {
    let error = |json: &str| serde_json::from_str::<Rules>(json).unwrap_err().to_string();
    assert!(
        error(r#"{"service": "Calc", "limits": [{"methods": ["div"], "callers": ["root"], "max_concurrency": 1}]}"#)
            .contains("expected `*` or KIND:NAME with KIND one of token, mtls, jwt"),
    );
    assert!(
        error(r#"{"service": "Calc", "methods": {"div": {"fault": {"abort_percent": 150}}}}"#)
            .contains("expected a percentage from 0 to 100, found 150"),
    );
    assert!(
        error(r#"{"service": "Calc", "methods": {"div": {"fault": {"abort_percent": 5, "abort_status": "oops"}}}}"#)
            .contains("expected a status name (ok, cancelled,"),
    );
    assert!(
        error(r#"{"service": "Calc", "routes": [{"name": "r", "to": [{"subset": "version", "weight": 1}]}]}"#)
            .contains("subset `version`: expected KEY=VALUE pairs"),
    );
    assert!(error(r#"{"service": "Calc", "rutes": []}"#).contains("unknown field `rutes`"));
}

#[test]
fn a_regex_past_its_limits_is_refused() {
    let long = format!(
        r#"{{"service": "Calc", "routes": [{{"name": "r", "match": {{"metadata": [{{"key": "k", "regex": "{}"}}]}}}}]}}"#,
        "a".repeat(MAX_REGEX_LEN + 1)
    );
    assert_eq!(
        problems(&long),
        [format!(
            "routes[0].match.metadata[0].regex: a regular expression of {} bytes, over the limit of {MAX_REGEX_LEN}",
            MAX_REGEX_LEN + 1
        )]
    );
    let huge = r#"{"service": "Calc", "routes": [{"name": "r", "match": {"metadata": [{"key": "k", "regex": "(a{1000}){1000}"}]}}]}"#;
    let found = problems(huge);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("routes[0].match.metadata[0].regex: "),
        "{found:?}"
    );
}

#[test]
fn a_policy_s_settings_replace_the_client_s_field_by_field() {
    use crate::balance::OutlierConfig;
    use crate::client::layer::{HedgeConfig, HedgeDelay};
    let policy: CallPolicy = serde_json::from_str(
        r#"{"hedge": {"percentile": 99}, "outliers": {"consecutive_failures": 1, "failure_percent": 30,
            "max_ejection_percent": 50}}"#,
    )
    .unwrap();
    let outliers = policy.outliers.unwrap().over(&OutlierConfig::default());
    assert_eq!(outliers.consecutive_failures, 1);
    assert!((outliers.failure_rate - 0.3).abs() < 1e-9);
    assert_eq!(outliers.max_ejection_percent, 50);
    assert_eq!(
        outliers.base_ejection,
        OutlierConfig::default().base_ejection,
        "left as it was"
    );
    let base = HedgeConfig {
        min_samples: 7,
        ..HedgeConfig::default()
    };
    let hedge = policy.hedge.unwrap().over(&base);
    assert_eq!(
        (hedge.delay, hedge.min_samples),
        (HedgeDelay::Percentile(99.0), 7)
    );
}
