//! The agent's side of the HTTP protocol (see `gigawatt_api::agent`).
//!
//! Errors are sorted by what the agent does about them, not by where they come from:
//! a transport failure or a 5xx is transient (retry), a 4xx is the control plane's
//! verdict (its `ApiErrorBody` message is what the operator must read), and
//! `409 stale-generation` means this agent has been fenced.

use std::time::Duration;

use gigawatt_api::ApiErrorBody;
use gigawatt_api::agent::{AgentChanges, Desired, Heartbeat, LogAck, LogChunk, RegisterAgent, Registered};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// No answer: connection refused, timeout, or an answer that is not the protocol's.
    #[error("{0}")]
    Transport(String),
    /// The control plane answered with an error status.
    #[error("{status} {}: {}", body.code, body.message)]
    Status {
        /// HTTP status.
        status: u16,
        /// The error body (synthesised when the answer had none).
        body: ApiErrorBody,
    },
}

impl CallError {
    /// `409 stale-generation`: another registration or the control plane fenced us.
    pub fn is_stale(&self) -> bool {
        matches!(self, CallError::Status { status: 409, body } if body.code == "stale-generation")
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            CallError::Transport(_) => None,
        }
    }

    /// A 4xx answer: the request itself is refused, resending it will not help.
    pub fn is_refusal(&self) -> bool {
        self.status().is_some_and(|s| (400..500).contains(&s))
    }
}

/// An authenticated client of one control plane.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of `server` (`http://host:port`, checked) with bearer `token`.
    #[cfg(test)]
    pub fn new(server: &str, token: &str) -> Result<Client, String> {
        Client::with_ca(server, token, None)
    }

    /// A client of `server` with bearer `token`, trusting the CA certificate (PEM) in
    /// `ca` besides the public ones, for a control plane whose certificate it signed.
    pub fn with_ca(server: &str, token: &str, ca: Option<&std::path::Path>) -> Result<Client, String> {
        let base = server.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("invalid server URL `{server}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("invalid server URL `{server}`: expected http:// or https://"));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("gigawatt-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("CA file {}: not a PEM certificate: {e}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client { http, base, token: token.to_owned() })
    }

    /// Exchanges the join token this client holds for the node's credential.
    pub async fn enroll(
        &self,
        body: &gigawatt_api::AgentEnroll,
        timeout: Duration,
    ) -> Result<gigawatt_api::NodeCredential, CallError> {
        self.post("/v1/agent/enroll", body, timeout).await
    }

    pub async fn register(&self, body: &RegisterAgent, timeout: Duration) -> Result<Registered, CallError> {
        self.post("/v1/agent/register", body, timeout).await
    }

    pub async fn heartbeat(&self, body: &Heartbeat, timeout: Duration) -> Result<Desired, CallError> {
        self.post("/v1/agent/heartbeat", body, timeout).await
    }

    pub async fn logs(&self, body: &LogChunk, timeout: Duration) -> Result<LogAck, CallError> {
        self.post("/v1/agent/logs", body, timeout).await
    }

    /// Waits (long poll) until the node's assignments change from version `seen`.
    pub async fn changes(
        &self,
        node: &str,
        generation: u64,
        seen: Option<u64>,
        timeout: Duration,
    ) -> Result<AgentChanges, CallError> {
        let url = format!("{}/v1/agent/changes", self.base);
        let mut query = vec![("node", node.to_owned()), ("generation", generation.to_string())];
        if let Some(v) = seen {
            query.push(("seen", v.to_string()));
        }
        let req = self.http.get(&url).query(&query).bearer_auth(&self.token).timeout(timeout);
        Self::answer("GET", &url, req).await
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let url = format!("{}{path}", self.base);
        let req = self.http.post(&url).bearer_auth(&self.token).json(body).timeout(timeout);
        Self::answer("POST", &url, req).await
    }

    async fn answer<R: DeserializeOwned>(
        method: &str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<R, CallError> {
        let answer = req
            .send()
            .await
            .map_err(|e| CallError::Transport(format!("{method} {url}: {}", error_chain(&e))))?;
        let status = answer.status();
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| CallError::Transport(format!("{method} {url}: {}", error_chain(&e))))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| CallError::Transport(format!("{method} {url}: unexpected answer: {e}")));
        }
        let body = serde_json::from_slice::<ApiErrorBody>(&bytes).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&bytes);
            ApiErrorBody {
                code: format!("http-{}", status.as_u16()),
                message: text.chars().take(300).collect::<String>().trim().to_owned(),
                field: None,
            }
        });
        Err(CallError::Status { status: status.as_u16(), body })
    }
}

/// An error and its causes, `: `-separated (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(Client::new("http://127.0.0.1:7070/", "t").is_ok());
        assert!(Client::new("127.0.0.1:7070", "t").is_err());
        assert!(Client::new("ftp://x", "t").is_err());
    }

    #[test]
    fn stale_generation_is_recognised() {
        let body = |code: &str| ApiErrorBody { code: code.into(), message: "m".into(), field: None };
        assert!(CallError::Status { status: 409, body: body("stale-generation") }.is_stale());
        assert!(!CallError::Status { status: 409, body: body("conflict") }.is_stale());
        assert!(CallError::Status { status: 404, body: body("not-found") }.is_refusal());
        assert!(!CallError::Transport("refused".into()).is_refusal());
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        // Port 9 (discard) on localhost is closed on any sane test machine.
        let c = Client::new("http://127.0.0.1:9", "t").expect("valid");
        let hb = Heartbeat { node: "n".into(), generation: 1, telemetry: Default::default(), tasks: vec![] };
        let e = c.heartbeat(&hb, Duration::from_secs(2)).await.expect_err("nothing listens");
        assert!(matches!(e, CallError::Transport(_)), "{e}");
    }
}
