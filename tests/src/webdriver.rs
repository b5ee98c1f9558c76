//! A minimal W3C WebDriver client for tests that drive a headless Chromium: it starts `chromedriver --port=0`
//! as a child process (killed on drop), learns its port from the line it prints, opens one browser session and
//! speaks the WebDriver protocol to it as JSON over plain HTTP/1.1 on 127.0.0.1, one connection per command,
//! each exchange bounded by a timeout. When chromedriver or the browser is missing, [`WebDriver::start`] says
//! so with [`WebDriverError::NotInstalled`], so a test can skip, unless [`REQUIRE_BROWSER_ENV`] is `1`.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Set to `1` (as CI does) to make a missing browser a failure instead of a reason to skip.
pub const REQUIRE_BROWSER_ENV: &str = "RPC_REQUIRE_BROWSER";

/// The browser's command-line flags: headless, and nothing that reaches the network on its own.
pub const CHROME_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1180",
];

/// How long [`WebDriver::start`] waits for chromedriver to print its port: 10 s.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// How long creating a session (starting the browser) may take: 30 s.
pub const SESSION_LIMIT: Duration = Duration::from_secs(30);

/// How long any other command may take, connection to last byte: 10 s.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(10);

/// The largest response read from chromedriver: 64 MiB (a screenshot is a few hundred KiB).
const MAX_RESPONSE: usize = 64 << 20;

/// The key under which WebDriver names an element (W3C WebDriver, "web element identifier").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why a WebDriver command failed.
#[derive(Debug)]
pub enum WebDriverError {
    /// chromedriver or the browser is not installed; the test may skip unless [`browser_required`].
    NotInstalled(String),
    /// chromedriver could not be run or reached.
    Io(String),
    /// No answer within the bound.
    Timeout(String),
    /// An answer that is not HTTP with a JSON body.
    Malformed(String),
    /// chromedriver answered with a WebDriver error.
    Command {
        /// The HTTP status.
        status: u16,
        /// The WebDriver error code, e.g. `no such element`.
        error: String,
        /// Its message.
        message: String,
    },
}

impl WebDriverError {
    /// Whether this says that chromedriver or the browser is missing.
    pub fn is_not_installed(&self) -> bool {
        matches!(self, WebDriverError::NotInstalled(_))
    }
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebDriverError::NotInstalled(what) => write!(f, "not installed: {what}"),
            WebDriverError::Io(what) => write!(f, "webdriver i/o: {what}"),
            WebDriverError::Timeout(what) => write!(f, "webdriver timeout: {what}"),
            WebDriverError::Malformed(what) => write!(f, "malformed webdriver response: {what}"),
            WebDriverError::Command {
                status,
                error,
                message,
            } => write!(f, "webdriver error {status} `{error}`: {message}"),
        }
    }
}

impl std::error::Error for WebDriverError {}

/// Whether [`REQUIRE_BROWSER_ENV`] is `1`: a missing browser must fail the test.
pub fn browser_required() -> bool {
    std::env::var(REQUIRE_BROWSER_ENV).as_deref() == Ok("1")
}

/// An element of the current page, as chromedriver names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element(String);

/// A chromedriver process with one headless browser session. Dropping it ends the session (a bounded, blocking
/// request) and kills chromedriver.
#[derive(Debug)]
pub struct WebDriver {
    port: u16,
    session: Option<String>,
    child: Child,
}

impl WebDriver {
    /// Starts chromedriver on a port the OS assigns and a headless browser session with [`CHROME_ARGS`].
    pub async fn start() -> Result<WebDriver, WebDriverError> {
        let mut child = match Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WebDriverError::NotInstalled(String::from(
                    "chromedriver is not on the PATH",
                )));
            }
            Err(e) => return Err(WebDriverError::Io(format!("cannot run chromedriver: {e}"))),
        };
        let mut stdout = child.stdout.take().ok_or_else(|| {
            WebDriverError::Io(String::from("chromedriver's output is not piped"))
        })?;
        let mut printed = Vec::new();
        let port = tokio::time::timeout(STARTUP_LIMIT, async {
            let mut chunk = [0u8; 1024];
            loop {
                if let Some(port) = port_in(&printed) {
                    return Ok(port);
                }
                match stdout.read(&mut chunk).await {
                    Ok(0) => {
                        return Err(WebDriverError::Io(format!(
                            "chromedriver exited without a port: {:?}",
                            String::from_utf8_lossy(&printed)
                        )));
                    }
                    Ok(n) if printed.len() < 64 * 1024 => printed.extend_from_slice(&chunk[..n]),
                    Ok(_) => {
                        return Err(WebDriverError::Io(String::from(
                            "chromedriver says too much",
                        )));
                    }
                    Err(e) => return Err(WebDriverError::Io(e.to_string())),
                }
            }
        })
        .await
        .map_err(|_| {
            WebDriverError::Timeout(format!("chromedriver printed no port in {STARTUP_LIMIT:?}"))
        })??;
        // Keep reading what it prints, so that a full pipe never blocks it.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
        });
        let mut driver = WebDriver {
            port,
            session: None,
            child,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": CHROME_ARGS},
            "timeouts": {"script": 5_000, "pageLoad": 10_000, "implicit": 0},
        }}});
        let created = exchange(port, "POST", "/session", Some(&capabilities), SESSION_LIMIT).await;
        let value = match created {
            Err(WebDriverError::Command { message, .. })
                if message.to_ascii_lowercase().contains("chrome binary") =>
            {
                return Err(WebDriverError::NotInstalled(format!(
                    "chromedriver cannot start the browser: {message}"
                )));
            }
            other => other?,
        };
        let session = value["sessionId"].as_str().ok_or_else(|| {
            WebDriverError::Malformed(format!("a session without an id: {value}"))
        })?;
        driver.session = Some(session.to_owned());
        Ok(driver)
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap_or("-"))
    }

    async fn command(
        &self,
        method: &str,
        rest: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        exchange(self.port, method, &self.path(rest), body, COMMAND_LIMIT).await
    }

    /// Loads `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.command("POST", "/url", Some(&json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// The elements that match the CSS `selector`, in document order.
    pub async fn find_all(&self, selector: &str) -> Result<Vec<Element>, WebDriverError> {
        let by = json!({"using": "css selector", "value": selector});
        let found = self.command("POST", "/elements", Some(&by)).await?;
        let found = found.as_array().ok_or_else(|| {
            WebDriverError::Malformed(format!("elements that are not a list: {found}"))
        })?;
        found.iter().map(element).collect()
    }

    /// The first element that matches the CSS `selector`, if any.
    pub async fn find(&self, selector: &str) -> Result<Option<Element>, WebDriverError> {
        let by = json!({"using": "css selector", "value": selector});
        match self.command("POST", "/element", Some(&by)).await {
            Ok(found) => element(&found).map(Some),
            Err(WebDriverError::Command { error, .. }) if error == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The text of `element` as it is rendered (empty when it is hidden).
    pub async fn text(&self, element: &Element) -> Result<String, WebDriverError> {
        let text = self
            .command("GET", &format!("/element/{}/text", element.0), None)
            .await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// The attribute `name` of `element`, if it has one.
    pub async fn attribute(
        &self,
        element: &Element,
        name: &str,
    ) -> Result<Option<String>, WebDriverError> {
        let value = self
            .command(
                "GET",
                &format!("/element/{}/attribute/{name}", element.0),
                None,
            )
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, WebDriverError> {
        let body = json!({"script": script, "args": args});
        self.command("POST", "/execute/sync", Some(&body)).await
    }

    /// A PNG of the browser's viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        let encoded = self.command("GET", "/screenshot", None).await?;
        let encoded = encoded.as_str().ok_or_else(|| {
            WebDriverError::Malformed(String::from("a screenshot that is not a string"))
        })?;
        base64_decode(encoded).ok_or_else(|| {
            WebDriverError::Malformed(String::from("a screenshot that is not base64"))
        })
    }

    /// Ends the session (the browser exits) and then chromedriver.
    pub async fn close(mut self) -> Result<(), WebDriverError> {
        let path = self.path("");
        self.session = None;
        let ended = exchange(self.port, "DELETE", &path, None, COMMAND_LIMIT).await;
        let _ = self.child.start_kill();
        ended.map(drop)
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        if self.session.is_some() {
            // Drop cannot await: end the session over a blocking connection, bounded like any command.
            let request = request("DELETE", &self.path(""), self.port, None);
            let _ =
                std::net::TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut stream| {
                    stream.set_read_timeout(Some(COMMAND_LIMIT))?;
                    stream.set_write_timeout(Some(COMMAND_LIMIT))?;
                    stream.write_all(&request)?;
                    let mut response = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !matches!(parse(&response, false), Ok(Some(_)) | Err(_)) {
                        match stream.read(&mut chunk)? {
                            0 => break,
                            n => response.extend_from_slice(&chunk[..n]),
                        }
                    }
                    Ok(())
                });
        }
        let _ = self.child.start_kill();
    }
}

/// The port in chromedriver's "ChromeDriver was started successfully on port N." line, once it is complete.
fn port_in(printed: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(printed);
    let (_, after) = text.split_once("started successfully on port ")?;
    let (digits, _) = after.split_once('.')?;
    digits.trim().parse().ok()
}

fn element(value: &Value) -> Result<Element, WebDriverError> {
    value[ELEMENT_KEY]
        .as_str()
        .map(|id| Element(id.to_owned()))
        .ok_or_else(|| WebDriverError::Malformed(format!("not an element: {value}")))
}

/// An HTTP/1.1 request with a JSON body, asking the server to close the connection after answering.
fn request(method: &str, path: &str, port: u16, body: Option<&Value>) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\
         content-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// One command: the request, then the response's `value`, or the WebDriver error it carries.
async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    limit: Duration,
) -> Result<Value, WebDriverError> {
    let io = |e: std::io::Error| WebDriverError::Io(format!("{method} {path}: {e}"));
    let talk = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(io)?;
        stream
            .write_all(&request(method, path, port, body))
            .await
            .map_err(io)?;
        let mut response = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(done) = parse(&response, false)? {
                return Ok(done);
            }
            match stream.read(&mut chunk).await.map_err(io)? {
                0 => {
                    return parse(&response, true)?.ok_or_else(|| {
                        WebDriverError::Malformed(format!("{method} {path}: cut short"))
                    });
                }
                n => response.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let (status, body) = tokio::time::timeout(limit, talk).await.map_err(|_| {
        WebDriverError::Timeout(format!("{method} {path}: no answer in {limit:?}"))
    })??;
    let json: Value = serde_json::from_slice(&body).map_err(|e| {
        WebDriverError::Malformed(format!(
            "{method} {path}: {e} in {:?}",
            String::from_utf8_lossy(&body)
        ))
    })?;
    let value = json.get("value").cloned().unwrap_or(Value::Null);
    if status == 200 {
        return Ok(value);
    }
    Err(WebDriverError::Command {
        status,
        error: value["error"].as_str().unwrap_or("http").to_owned(),
        message: match value["message"].as_str() {
            Some(message) => message.to_owned(),
            None => String::from_utf8_lossy(&body).into_owned(),
        },
    })
}

/// The status and body of a whole response in `buf`; `None` while more is needed (`eof`: no more will come).
/// Knows `content-length` (as chromedriver sends it) and bodies that end with the connection, not chunks.
fn parse(buf: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, WebDriverError> {
    if buf.len() > MAX_RESPONSE {
        return Err(WebDriverError::Malformed(format!(
            "a response over {MAX_RESPONSE} bytes"
        )));
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let rest = &buf[end + 4..];
    let status = head
        .split("\r\n")
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| WebDriverError::Malformed(format!("no status in {head:?}")))?;
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| WebDriverError::Malformed(format!("content-length {length:?}")))?;
        return Ok((rest.len() >= length).then(|| (status, rest[..length].to_vec())));
    }
    Ok(eof.then(|| (status, rest.to_vec())))
}

/// Standard base64 (with or without padding, whitespace ignored); `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            base64_decode("iVBORw0K\nGgo=").as_deref(),
            Some(&b"\x89PNG\r\n\x1a\n"[..])
        );
        assert_eq!(base64_decode("a*b"), None);
    }

    #[test]
    fn responses_are_whole_only_when_their_body_is() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length:4\r\n\r\nnull";
        assert_eq!(parse(whole, false).unwrap(), Some((200, b"null".to_vec())));
        assert_eq!(parse(&whole[..whole.len() - 1], false).unwrap(), None);
        let error = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse(error, false).unwrap(), Some((404, b"{}".to_vec())));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\n[]", false).unwrap(), None);
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n[]", true).unwrap(),
            Some((200, b"[]".to_vec()))
        );
    }

    #[test]
    fn the_port_is_read_from_the_startup_line() {
        let printed = b"Starting ChromeDriver 1.2 on port 0\nChromeDriver was started successfully on port 41234.\n";
        assert_eq!(port_in(printed), Some(41234));
        assert_eq!(
            port_in(b"ChromeDriver was started successfully on port 412"),
            None
        );
    }
}
