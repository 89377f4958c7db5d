//! The HTTP side of the client: one blocking `reqwest` client with timeouts, the API's
//! error shape turned into sentences, and retries where a retry cannot do harm.

use std::time::Duration;

use anyhow::anyhow;
use gigawatt_api::ApiErrorBody;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

use super::config::{ENV_SERVER, Resolved, Source, config_path_for_people};

/// How many times a request is tried when the failure is one a retry may fix.
const ATTEMPTS: u32 = 3;

/// When a request may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and submissions carrying an `Idempotency-Key`: any transport failure or a
    /// 502/503/504 is retried, since a second copy changes nothing.
    Safe,
    /// Writes without a key (cancel): retried only when the connection was never made,
    /// so the server cannot have acted on the first copy.
    ConnectOnly,
}

/// An answer from the API: its status and JSON body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status (2xx: errors are returned as `Err`).
    pub status: StatusCode,
    /// The body.
    pub body: Value,
}

/// A connection to one control plane with one token.
#[derive(Debug)]
pub struct Api {
    http: Client,
    settings: Resolved,
}

impl Api {
    /// A client for `settings`.
    pub fn new(settings: Resolved, ca_file: Option<&std::path::Path>) -> anyhow::Result<Api> {
        let mut builder = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("gigawatt-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca_file {
            builder = builder.add_root_certificate(read_ca(ca)?);
        }
        let http = builder.build().map_err(|e| anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(Api { http, settings })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.settings.server
    }

    /// `GET path` (with a query), answering the JSON body.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = self.url(path);
        Ok(self.send(Retry::Safe, || self.http.get(&url).query(query))?.body)
    }

    /// `GET path` (with a query), answering the body as text (an export's JSON Lines),
    /// with a longer timeout: an export of a large log takes a while.
    pub fn get_text(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .query(query)
            .bearer_auth(&self.settings.token)
            .timeout(Duration::from_secs(600))
            .send()
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let text = resp.text().map_err(|e| self.transport_error(&e))?;
        if status.is_success() { Ok(text) } else { Err(anyhow!(self.api_error(status, &text))) }
    }

    /// `POST path` with a JSON body and extra headers.
    pub fn post(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
        retry: Retry,
    ) -> anyhow::Result<Answer> {
        let url = self.url(path);
        self.send(retry, || {
            let mut req = self.http.post(&url).json(body);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req
        })
    }

    /// `PUT path` with a JSON body (idempotent, so retried).
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let url = self.url(path);
        self.send(Retry::Safe, || self.http.put(&url).json(body))
    }

    /// `DELETE path`, retried only when the connection was never made.
    pub fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        let url = self.url(path);
        self.send(Retry::ConnectOnly, || self.http.delete(&url))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.server)
    }

    fn send(&self, retry: Retry, build: impl Fn() -> RequestBuilder) -> anyhow::Result<Answer> {
        let mut attempt = 1;
        loop {
            let req = build().bearer_auth(&self.settings.token);
            let last = attempt >= ATTEMPTS;
            match req.send() {
                Ok(resp) => {
                    let status = resp.status();
                    let retryable = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if retryable && retry == Retry::Safe && !last {
                        backoff(attempt);
                        attempt += 1;
                        continue;
                    }
                    return self.answer(resp);
                }
                Err(e) => {
                    let may_retry = match retry {
                        Retry::Safe => true,
                        Retry::ConnectOnly => e.is_connect(),
                    };
                    if may_retry && !last {
                        backoff(attempt);
                        attempt += 1;
                        continue;
                    }
                    return Err(self.transport_error(&e));
                }
            }
        }
    }

    fn answer(&self, resp: Response) -> anyhow::Result<Answer> {
        let status = resp.status();
        let text = resp.text().map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            let body = serde_json::from_str(&text).map_err(|e| {
                anyhow!(
                    "the server at {} answered {status} with a body that is not JSON ({e}); is it a gigawatt server?",
                    self.settings.server
                )
            })?;
            return Ok(Answer { status, body });
        }
        Err(anyhow!(self.api_error(status, &text)))
    }

    /// The API's error in one sentence: `message (field: X)`, with a hint for the
    /// errors a person can fix on their side.
    fn api_error(&self, status: StatusCode, text: &str) -> String {
        match serde_json::from_str::<ApiErrorBody>(text) {
            Ok(body) => {
                let mut s = body.message;
                if let Some(f) = body.field.filter(|f| !f.is_empty()) {
                    s.push_str(&format!(" (field: {f})"));
                }
                if status == StatusCode::UNAUTHORIZED {
                    s.push_str(&format!(
                        "; check the token given by --token, ${} or {}",
                        super::config::ENV_TOKEN,
                        config_path_for_people()
                    ));
                }
                s
            }
            Err(_) => {
                let snippet: String = text.chars().take(200).collect();
                format!(
                    "the server at {} answered {status}: {}; is it a gigawatt server?",
                    self.settings.server,
                    if snippet.trim().is_empty() { "(no body)" } else { snippet.trim() }
                )
            }
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let server = &self.settings.server;
        let how = match &self.settings.server_source {
            Source::Default => format!(
                "No server was given, so the default was used; set one with --server URL, ${ENV_SERVER} \
                 or `server = \"...\"` in {}",
                config_path_for_people()
            ),
            src => format!(
                "The address comes from {src}; change it with --server URL, ${ENV_SERVER} or `server = \"...\"` in {}",
                config_path_for_people()
            ),
        };
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "failed"
        };
        anyhow!(
            "cannot reach the gigawatt server at {server} ({what}: {}); is `gigawatt serve` running there? {how}",
            root_cause(e)
        )
    }
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
}

/// The innermost cause ("Connection refused (os error 111)"), which is what a person
/// can act on; reqwest's own text repeats the URL.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Reads a CA certificate (PEM) to trust.
fn read_ca(path: &std::path::Path) -> anyhow::Result<reqwest::Certificate> {
    let pem = std::fs::read(path).map_err(|e| anyhow!("--ca-file {}: {e}", path.display()))?;
    reqwest::Certificate::from_pem(&pem)
        .map_err(|e| anyhow!("--ca-file {}: not a PEM certificate: {e}", path.display()))
}
