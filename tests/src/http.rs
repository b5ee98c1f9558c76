//! A plain HTTP/1.1 exchange over a fresh connection (`connection: close`), with the headers a test chooses:
//! `host` is the address connected to unless the test gives its own (to play a page of another name); the
//! same with a JSON body, read as JSON; and, for connections kept alive or sent in parts, one answer read off any
//! stream by its `content-length`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer: its status line (`HTTP/1.1 200 OK`), headers (names in lowercase) and body.
pub type Answer = (String, Vec<(String, String)>, String);

/// Sends `method path` with `headers` and `body` to `addr` and reads the whole answer, within 5 s.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        String::from_utf8(response).map_err(|e| e.to_string())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| String::from("no response in 5 s"))??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {response:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, body.to_owned()))
}

/// An answer whose body is JSON: its status code, headers (names in lowercase) and body.
#[derive(Debug)]
pub struct JsonAnswer {
    /// The status code.
    pub code: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: serde_json::Value,
}

/// Sends `method path` with `content-type: application/json`, `headers` and `body` to `addr`, and reads the
/// answer; panics, saying what came, if there is none or its body is not JSON.
pub async fn json_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> JsonAnswer {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, headers, body) = request(addr, method, path, &all, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {status:?}"));
    let body = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: {status}: not JSON ({e}): {body:?}"));
    JsonAnswer {
        code,
        headers,
        body,
    }
}

/// Most bytes of an answer [`read_answer`] takes: 1 MiB.
const MAX_ANSWER: usize = 1 << 20;

/// Reads one answer off `stream`, within 5 s: its head, then the `content-length` bytes of its body (none
/// without one). For connections kept alive, where the answer does not end with the connection.
pub async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Answer, String> {
    let read = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 || got.len() > MAX_ANSWER {
                return Err(format!(
                    "the connection ended before a whole head: {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
            got.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(got[..head_end].to_vec()).map_err(|e| e.to_string())?;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(Ok(0), |(_, v)| v.parse::<usize>())
            .map_err(|e| e.to_string())?
            .min(MAX_ANSWER);
        let mut body = got[head_end + 4..].to_vec();
        while body.len() < len {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!(
                    "the connection ended {} bytes into a body of {len}",
                    body.len()
                ));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
        let body = String::from_utf8(body).map_err(|e| e.to_string())?;
        Ok((status, headers, body))
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| String::from("no answer in 5 s"))?
}

/// The value of the header `name` (lowercase) in `answer`, if it has one.
pub fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
