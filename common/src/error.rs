//! The JSON error body every service answers with, and how an error reaches the span.
//!
//! Every 4xx and 5xx response of every service has the same shape:
//!
//! ```json
//! {"error": {"code": "validation_failed", "message": "amount: must be greater than zero"},
//!  "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
//! ```
//!
//! `code` is stable and meant for programs; `message` is meant for people. A 4xx message says
//! what was wrong with the request. A 5xx message never carries internal text (SQL, host
//! names, stack traces): those go to the log line and to the span, where the trace id in the
//! body leads.
//!
//! A 4xx message may quote what the caller sent, so the caller can find it; it never quotes
//! all of it. [`echo`] is the one bound on a quoted value, [`bound_quotes`] applies it to
//! messages written by others (serde's), and every message is cut at [`MESSAGE_LIMIT`]
//! characters on its way out, so a 15 KB field cannot come back as a 15 KB error.
//!
//! Each service has its own error enum and turns it into an [`ApiError`]; `ApiError`'s
//! `IntoResponse` writes the body, logs, and leaves a [`Failure`] in the response's extensions
//! for the server layer to record on the request's span.

use std::borrow::Cow;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::telemetry::{Failure, current_trace_id};

/// The most characters of a caller's value an error message quotes.
pub const ECHO_LIMIT: usize = 64;

/// The most characters of an error message, whatever it quotes.
pub const MESSAGE_LIMIT: usize = 512;

/// `input` as an error message may quote it: its first [`ECHO_LIMIT`] characters, cut on a
/// character boundary, and `…` when something was cut.
pub fn echo(input: &str) -> Cow<'_, str> {
    truncate(input, ECHO_LIMIT)
}

/// `message` with each quoted part (between backticks, or a double-quoted string as `Debug`
/// writes it) cut with [`echo`]. For messages written by code that quotes the caller's input
/// whole, such as serde's `unknown variant `…`, expected one of …` or `invalid type: string
/// "…"`: the caller still reads what was wrong and what was expected, without the input.
pub fn bound_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_LIMIT));
    let mut rest = message;
    while let Some(start) = rest.find(['`', '"']) {
        let quote = rest.as_bytes()[start];
        out.push_str(&rest[..=start]);
        let inner = &rest[start + 1..];
        let Some(end) = closing_quote(inner, quote) else {
            // An unclosed quote: everything after it is quoted input.
            out.push_str(&echo(inner));
            return out;
        };
        out.push_str(&bound_quoted(&inner[..end], quote));
        out.push(char::from(quote));
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Where the quote that opened `inner` closes. In a `Debug` string an escaped `\"` does not
/// close it; backticks have no escapes.
fn closing_quote(inner: &str, quote: u8) -> Option<usize> {
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The quoted text cut to [`ECHO_LIMIT`]; a `Debug` string is cut between escapes (`\n`,
/// `\u{202e}`), never inside one, so what is left still reads as an escaped string.
fn bound_quoted(text: &str, quote: u8) -> Cow<'_, str> {
    if quote != b'"' {
        return echo(text);
    }
    let mut count = 0;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if count == ECHO_LIMIT {
            return Cow::Owned(format!("{}…", &text[..i]));
        }
        count += 1;
        // An escape is one character of the input: `\\`, `\"`, `\n`, or `\u{…}`.
        if c == '\\' && matches!(chars.next(), Some((_, 'u'))) {
            for (_, c) in chars.by_ref() {
                if c == '}' {
                    break;
                }
            }
        }
    }
    Cow::Borrowed(text)
}

/// The first `max` characters of `s`, with `…` when something was cut.
fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
        None => Cow::Borrowed(s),
    }
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The order the request created or concerned, when the failure came after the order was
    /// recorded (a declined or failed payment): the client can look it up, or retry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<uuid::Uuid>,
    /// The trace this request belongs to: paste it into Jaeger's search box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    /// Safe to show the caller.
    pub message: String,
    /// When set, the request's span is marked ERROR with this failure. 5xx responses always
    /// mark it; a 4xx marks it only when the request failed for a reason the operator should
    /// see in red (a declined payment), not when the caller sent something wrong.
    pub failure: Option<Failure>,
    pub order_id: Option<uuid::Uuid>,
}

impl ApiError {
    /// A response to a request the caller got wrong: the span stays unmarked.
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            failure: None,
            order_id: None,
        }
    }

    /// A 5xx with a message of its own (which must not leak internals) and its cause.
    pub fn server(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        failure: Failure,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            failure: Some(failure),
            order_id: None,
        }
    }

    /// Names the order the failed request concerns.
    pub fn with_order_id(mut self, order_id: uuid::Uuid) -> Self {
        self.order_id = Some(order_id);
        self
    }

    /// Marks the request's span ERROR with `failure`, whatever the status.
    pub fn with_failure(mut self, failure: Failure) -> Self {
        self.failure = Some(failure);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let trace_id = current_trace_id();
        match &self.failure {
            Some(failure) if self.status.is_server_error() => tracing::error!(
                http.response.status_code = self.status.as_u16(),
                code = self.code,
                error = %failure.message,
                "request failed"
            ),
            Some(failure) => tracing::warn!(
                http.response.status_code = self.status.as_u16(),
                code = self.code,
                error = %failure.message,
                "request failed"
            ),
            None => tracing::info!(
                http.response.status_code = self.status.as_u16(),
                code = self.code,
                reason = %self.message,
                "request rejected"
            ),
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                // The last bound, for a message that quotes more than it should.
                message: truncate(&self.message, MESSAGE_LIMIT).into_owned(),
            },
            order_id: self.order_id,
            trace_id,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(failure) = self.failure {
            response.extensions_mut().insert(failure);
        }
        response
    }
}

/// The fallback for paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::client(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The fallback for a known path called with a method it does not support.
pub async fn method_not_allowed() -> ApiError {
    ApiError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_cut_on_a_character_boundary_with_an_ellipsis() {
        assert_eq!(echo("gold"), "gold");
        let exact = "x".repeat(ECHO_LIMIT);
        assert_eq!(echo(&exact), exact);
        // Three-byte characters: a byte-based cut would split one and panic.
        let long = "€".repeat(ECHO_LIMIT + 10);
        let echoed = echo(&long);
        assert_eq!(echoed.chars().count(), ECHO_LIMIT + 1);
        assert!(echoed.ends_with("€…"), "{echoed}");
    }

    #[test]
    fn quoted_input_in_serdes_messages_is_bounded_and_the_rest_kept() {
        let tier = "A".repeat(15_000);
        let message = format!(
            "tier: unknown variant `{tier}`, expected one of `standard`, `silver`, `gold`, `platinum` at line 1 column 15031"
        );
        let bounded = bound_quotes(&message);
        assert_eq!(
            bounded,
            format!(
                "tier: unknown variant `{}…`, expected one of `standard`, `silver`, `gold`, `platinum` at line 1 column 15031",
                "A".repeat(ECHO_LIMIT)
            )
        );

        // A Debug string: escapes count as one character and are never split.
        let value = format!(
            "{}\\u{{202e}}{}",
            "b".repeat(ECHO_LIMIT - 1),
            "c".repeat(100)
        );
        let message = format!("user_id: invalid type: string \"{value}\", expected i64");
        assert_eq!(
            bound_quotes(&message),
            format!(
                "user_id: invalid type: string \"{}\\u{{202e}}…\", expected i64",
                "b".repeat(ECHO_LIMIT - 1)
            )
        );
        // An escaped quote does not end the string.
        let message = format!("string \"a\\\"{}\" after", "z".repeat(200));
        let bounded = bound_quotes(&message);
        assert!(bounded.ends_with("…\" after"), "{bounded}");
        assert!(bounded.len() < 100, "{bounded}");
        // Short quotes and unquoted text are untouched; an unclosed quote is bounded too.
        assert_eq!(bound_quotes("expected `gold`"), "expected `gold`");
        assert!(bound_quotes(&format!("`{}", "q".repeat(500))).len() < 100);
    }

    #[tokio::test]
    async fn no_error_message_is_longer_than_the_message_limit() {
        let response =
            ApiError::client(StatusCode::BAD_REQUEST, "bad", "m".repeat(10_000)).into_response();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.message.chars().count(), MESSAGE_LIMIT + 1);
        assert!(body.error.message.ends_with('…'));
    }
}
