//! Reading the Prometheus text format in tests: samples by name and labels, a `GET` over plain HTTP, and
//! `promtool check metrics` when it is installed (required when `RPC_REQUIRE_PROMTOOL=1`, as CI sets it).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric's name (with `_bucket`, `_sum` or `_count` for histogram lines).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The samples of an exposition, or the first line that is not one.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .map_err(|e| format!("bad value in {line:?}: {e}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or_else(|| format!("unclosed labels in {line:?}"))?;
                (
                    name,
                    labels_of(body).map_err(|e| format!("{e} in {line:?}"))?,
                )
            }
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// `k="v",k2="v2"`, with `\"`, `\\` and `\n` escapes in values.
fn labels_of(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("a dangling escape".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("an unclosed label value".into()),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Ok(labels)
}

/// The value of the one sample named `name` whose labels include `labels`; `None` if there is none.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "more than one {name} with {labels:?}: {matching:?}"
    );
    matching.first().map(|s| s.value)
}

/// `GET path` from `addr`: the status line, the headers (lowercased names) and the body; fails after 5 s.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
) -> Result<(String, Vec<(String, String)>, String), String> {
    crate::http::request(addr, "GET", path, &[], "").await
}

/// `GET /metrics` from `addr`, checked as an exposition: status 200, the text format's content type, samples
/// that parse, and `promtool check metrics` when it is installed. Returns the body and its samples; panics
/// with the reason otherwise.
pub async fn scrape(addr: SocketAddr) -> (String, Vec<Sample>) {
    let (status, headers, body) = http_get(addr, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    match promtool_check(&body) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("promtool is not installed: the format was checked by this parser only")
        }
        Err(problems) => panic!("{problems}\n{body}"),
    }
    (body, samples)
}

/// What `promtool check metrics` says of `text`: `Ok(true)` if it passed, `Ok(false)` if promtool is not
/// installed (and not required), `Err` with its output if it found problems.
pub fn promtool_check(text: &str) -> Result<bool, String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var("RPC_REQUIRE_PROMTOOL").as_deref() == Ok("1") => {
            return Err(format!(
                "RPC_REQUIRE_PROMTOOL=1 but promtool does not run: {e}"
            ));
        }
        Err(_) => return Ok(false),
    };
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(format!(
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
