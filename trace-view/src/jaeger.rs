//! Fetching one trace from Jaeger v2's query API.
//!
//! `GET {base}/api/v3/traces/{trace_id}` on Jaeger's UI port (16686) answers the trace as OTLP
//! JSON inside `{"result": ...}`, decoded by [`crate::json`]; a trace Jaeger does not have is
//! a 404 with `{"error":{"httpCode":404,"message":"No traces found"}}`. Jaeger is a neighbour
//! like any other: the client has a connect timeout and a total timeout, reads at most
//! [`MAX_ANSWER_BYTES`], and every failure is a [`FetchError`] that names the URL.

use std::time::Duration;

use crate::json::{self, JsonError};
use crate::span::ReceivedSpan;

/// The largest answer read: a trace of a hundred thousand spans fits.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// What can go wrong asking Jaeger for a trace.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("trace {trace_id} not found in Jaeger at {base}")]
    NotFound { trace_id: String, base: String },
    #[error("{base} is not an http:// URL (Jaeger's query API is plain HTTP here)")]
    BadUrl { base: String },
    #[error("Jaeger at {base} is unreachable: {reason}")]
    Unreachable { base: String, reason: String },
    #[error("Jaeger at {base} did not answer within {timeout:?}")]
    Timeout { base: String, timeout: Duration },
    #[error("Jaeger at {base} answered {status} for {url}: {body}")]
    Status {
        base: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("the answer of {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("the answer of {url} is {source}")]
    Malformed {
        url: String,
        #[source]
        source: JsonError,
    },
}

/// The timeouts of [`fetch_trace`].
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For the TCP connection.
    pub connect: Duration,
    /// For the whole exchange, answer included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            total: Duration::from_secs(10),
        }
    }
}

/// Fetches trace `trace_id` (32 lowercase hex digits) from the Jaeger at `base` (e.g.
/// `http://localhost:16686`).
pub async fn fetch_trace(
    base: &str,
    trace_id: &str,
    timeouts: Timeouts,
) -> Result<Vec<ReceivedSpan>, FetchError> {
    let base = base.trim_end_matches('/').to_owned();
    if !base.starts_with("http://") {
        return Err(FetchError::BadUrl { base });
    }
    let url = format!("{base}/api/v3/traces/{trace_id}");
    let client = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .build()
        .map_err(|e| FetchError::Unreachable {
            base: base.clone(),
            reason: e.to_string(),
        })?;
    let (status, body) = get_bounded(&client, &url, &base, timeouts).await?;
    if status == reqwest::StatusCode::NOT_FOUND && is_jaeger_not_found(&body) {
        return Err(FetchError::NotFound {
            trace_id: trace_id.to_owned(),
            base,
        });
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned();
        return Err(FetchError::Status {
            base,
            url,
            status: status.as_u16(),
            body: if text.is_empty() {
                "(empty body)".to_owned()
            } else {
                text
            },
        });
    }
    json::decode(&body).map_err(|source| FetchError::Malformed { url, source })
}

/// GETs `url` and reads at most [`MAX_ANSWER_BYTES`] of its body: a hostile or broken Jaeger
/// cannot make this tool buffer without bound.
async fn get_bounded(
    client: &reqwest::Client,
    url: &str,
    base: &str,
    timeouts: Timeouts,
) -> Result<(reqwest::StatusCode, Vec<u8>), FetchError> {
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            FetchError::Timeout {
                base: base.to_owned(),
                timeout: timeouts.total,
            }
        } else {
            FetchError::Unreachable {
                base: base.to_owned(),
                reason: error_chain(&e),
            }
        }
    };
    let mut response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(failed)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
                limit: MAX_ANSWER_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// Whether a 404 body is Jaeger's own "no such trace" (and not, say, a proxy's page for a
/// wrong URL, which deserves a different message).
fn is_jaeger_not_found(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v["error"].is_object())
}

/// The error and its causes in one line: reqwest's own message is only "error sending
/// request", the reason (connection refused, ...) is in the sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
