//! The HTTP flags of servers (`--http`, `--cors-origin`) and the settings they make: HTTP/1.1 and JSON on the
//! server's own port, beside its binary clients, for curl, browsers and programs in any language
//! (`examples/python/calc_client.py`; `docs/PROTOCOL.md` section 16).

use rpc_core::http::{Cors, HttpConfig};

/// The HTTP flags.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct HttpArgs {
    /// Also answer HTTP/1.1 on the same port: `POST /Calc/add` with the arguments as JSON (`{"a":2,"b":3}`),
    /// answered in JSON.
    #[arg(long)]
    pub http: bool,
    /// With --http: pages of this origin may call from a browser (CORS), `https://app.example.com`, or `*` for
    /// any origin. Repeatable.
    #[arg(long = "cors-origin", value_name = "ORIGIN", requires = "http")]
    pub cors_origins: Vec<String>,
}

impl HttpArgs {
    /// The settings, if --http.
    ///
    /// ```
    /// use clap::Parser;
    ///
    /// #[derive(Parser)]
    /// struct Flags {
    ///     #[command(flatten)]
    ///     http: examples::http::HttpArgs,
    /// }
    /// let flags = Flags::parse_from(["server", "--http", "--cors-origin", "http://localhost:5173"]);
    /// let config = flags.http.config().unwrap();
    /// assert!(config.cors.unwrap().allows("http://localhost:5173"));
    /// assert!(Flags::parse_from(["server"]).http.config().is_none());
    /// ```
    pub fn config(&self) -> Option<HttpConfig> {
        if !self.http {
            return None;
        }
        let cors = (!self.cors_origins.is_empty()).then(|| Cors::allow(self.cors_origins.clone()));
        Some(HttpConfig {
            cors,
            ..HttpConfig::default()
        })
    }

    /// What a server says of them on stderr, if --http: `HTTP/JSON on ADDRESS too: POST /{Service}/{method}
    /// (no CORS)`.
    pub fn describe(&self, address: &str) -> Option<String> {
        if !self.http {
            return None;
        }
        let cors = match self.cors_origins.is_empty() {
            true => String::from("no CORS"),
            false => format!("CORS for {}", self.cors_origins.join(", ")),
        };
        Some(format!(
            "HTTP/JSON on {address} too: POST /{{Service}}/{{method}} ({cors})"
        ))
    }
}
