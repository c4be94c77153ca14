//! A response read whole, and the checks every test makes of this project's answers.
//!
//! Shared by the end-to-end tests (responses from the running gateway, over reqwest) and the
//! services' handler tests (responses from a router called with `oneshot`, as axum gives
//! them), so "what an error body must look like" is written once.

use axum::body::Body;
use reqwest::{
    Method, StatusCode,
    header::{CONTENT_TYPE, HeaderMap},
};
use serde_json::Value;
use tower::ServiceExt as _;
use uuid::Uuid;

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The raw body, for failure messages and for byte-level assertions.
    pub body: String,
    /// The body parsed as JSON, or `Null` when it is not JSON.
    pub json: Value,
}

impl TestResponse {
    /// Reads a response from a running service.
    pub async fn from_reqwest(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("reading the response body");
        Self::new(status, headers, &bytes)
    }

    /// Reads a response from a router called in-process.
    pub async fn from_axum(response: axum::response::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("reading the response body");
        Self::new(status, headers, &bytes)
    }

    fn new(status: StatusCode, headers: HeaderMap, bytes: &[u8]) -> Self {
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(bytes).into_owned(),
            json: serde_json::from_slice(bytes).unwrap_or(Value::Null),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body's `trace_id`, which every answer of every service has; fails the test if it
    /// is missing.
    pub fn trace_id(&self) -> &str {
        self.json["trace_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace_id in {} {}", self.status, self.body))
    }

    /// The body's `order_id`; fails the test if it is missing.
    pub fn order_id(&self) -> Uuid {
        self.json["order_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no order_id in {} {}", self.status, self.body))
    }

    /// `error.code` of the project's error body.
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }

    /// `error.message` of the project's error body.
    pub fn error_message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or_default()
    }

    /// Fails the test unless this is the project's error body: `status`, JSON, `code`, a
    /// message that explains, and the trace id.
    pub fn assert_error(&self, status: StatusCode, code: &str, context: &str) {
        assert_eq!(self.status, status, "{context}: {}", self.body);
        assert_eq!(
            self.header(CONTENT_TYPE.as_str()),
            Some("application/json"),
            "{context}: an error body is JSON"
        );
        assert_eq!(self.error_code(), code, "{context}: {}", self.body);
        assert!(
            !self.error_message().is_empty(),
            "{context}: an error body explains itself: {}",
            self.body
        );
        assert!(
            is_trace_id(self.trace_id()),
            "{context}: the body carries a trace id: {}",
            self.body
        );
    }
}

/// Calls `router` in-process with one request (the path is sent exactly as given) and reads
/// the answer: how handler tests talk to a service without a socket.
pub async fn oneshot(
    router: &axum::Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> TestResponse {
    let mut request = axum::http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).expect("a valid request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("a router is infallible");
    TestResponse::from_axum(response).await
}

/// Whether `s` is a W3C trace id: 32 lowercase hex digits, not all zero.
pub fn is_trace_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}
