//! The JSON error body every service answers with, and the one classification of a failure.
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
//! body leads. A service may add fields of its own beside `error` ([`ErrorBody::context`]: the
//! order service names the order a failed payment concerns); this module knows none of them.
//!
//! A 4xx message may quote what the caller sent, so the caller can find it; it never quotes
//! all of it. [`echo`] is the one bound on a quoted value, [`bound_quotes`] applies it to
//! messages written by others (serde's), and every message is cut at [`MESSAGE_LIMIT`]
//! characters on its way out, so a 15 KB field cannot come back as a 15 KB error.
//!
//! A failure is classified once, by type. Each service's error enum implements [`Classify`]
//! with one `match`: per variant, a [`Classification`] that says the status, the code, the
//! message where it is not the error's `Display`, and whether the span turns red, with which
//! `error.type`. Everything after that is here, the same for every service: [`respond`] turns
//! the error into an [`ApiError`], whose `IntoResponse` writes the body, logs, and leaves a
//! [`Failure`] in the response's extensions for the server layer to record on the request's
//! span; [`record_result`](crate::telemetry::record_result) marks a handler's own span from
//! the same classification. Rejections that are not a service's error (an extractor's, an
//! unknown route's) build an [`ApiError`] directly.

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
///
/// `X` is what a service says beside the error, flattened so its fields sit next to `error`
/// and `trace_id` (the order service's `order_id`). Most errors say nothing more: [`NoContext`].
/// A service that relays another's error body reads it with a `serde_json::Map` as `X`, so every
/// field the other service added passes through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<X = NoContext> {
    pub error: ErrorDetail,
    /// Declared between the two so the fields keep their order on the wire.
    #[serde(flatten)]
    pub context: X,
    /// The trace this request belongs to: paste it into Jaeger's search box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// The context of an error that has nothing to add to its code and message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoContext {}

/// A service's error, classified: how it is answered, and whether it turns the span red.
///
/// Built by a [`Classify`] impl, one per variant; [`ApiError::from_error`] and
/// [`record_result`](crate::telemetry::record_result) read it.
#[must_use = "a classification does nothing until it is answered"]
#[derive(Clone, Debug)]
pub struct Classification<X = NoContext> {
    pub status: StatusCode,
    /// The stable `code` of the body.
    pub code: Cow<'static, str>,
    /// What the caller reads, when it is not the error's `Display`: a 5xx's, which must not
    /// show internal text, or a wording of its own.
    pub message: Option<Cow<'static, str>>,
    /// `Some`: the failure is the service's own, and the span turns red with this
    /// `error.type` (which may say more than the code: the order service answers
    /// `payment_unavailable`, its span says `payment_unreachable`). `None`: the caller's
    /// mistake, refused; the span stays as it is.
    pub error_type: Option<Cow<'static, str>>,
    /// The fields beside `error` in the body.
    pub context: X,
}

impl<X: Default> Classification<X> {
    /// A request the caller got wrong, refused: a 4xx that leaves the span alone.
    pub fn rejected(status: StatusCode, code: impl Into<Cow<'static, str>>) -> Self {
        // A 5xx is the service's own failure: the server layer would turn its span red from
        // the status alone, without the code.
        debug_assert!(!status.is_server_error(), "a {status} is a failure");
        Classification {
            status,
            code: code.into(),
            message: None,
            error_type: None,
            context: X::default(),
        }
    }

    /// A failure of the service (every 5xx, and a 4xx an operator should see in red, such as
    /// a declined payment): the span turns red, with `error.type` = `code` unless
    /// [`error_type`](Self::error_type) says otherwise.
    pub fn failed(status: StatusCode, code: impl Into<Cow<'static, str>>) -> Self {
        let code = code.into();
        Classification {
            status,
            error_type: Some(code.clone()),
            code,
            message: None,
            context: X::default(),
        }
    }
}

impl<X> Classification<X> {
    /// Answers with `message` instead of the error's `Display`.
    pub fn message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Marks the span with this `error.type` instead of the code. Only for [`failed`](Self::failed).
    pub fn error_type(mut self, error_type: impl Into<Cow<'static, str>>) -> Self {
        debug_assert!(
            self.error_type.is_some(),
            "a rejection leaves the span alone"
        );
        self.error_type = Some(error_type.into());
        self
    }

    /// Adds `context` beside `error` in the body.
    pub fn with_context(mut self, context: X) -> Self {
        self.context = context;
        self
    }
}

/// An error that knows how it is answered: a service's error enum, classified with one
/// `match`, one arm per variant. See the module documentation.
pub trait Classify: std::error::Error + Sized + 'static {
    /// The fields the service adds beside `error` in its bodies ([`NoContext`] for none).
    type Context: Serialize;

    fn classify(&self) -> Classification<Self::Context>;
}

/// The response to a service's error. Each service's `IntoResponse` is this one line (the
/// orphan rule keeps a blanket impl out of this crate).
pub fn respond<E: Classify>(error: &E) -> Response {
    ApiError::from_error(error).into_response()
}

/// An error on its way to becoming a response.
#[must_use = "an error does nothing until it is answered"]
#[derive(Debug)]
pub struct ApiError<X = NoContext> {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    /// Safe to show the caller.
    pub message: String,
    /// When set, the request's span is marked ERROR with this failure. 5xx responses always
    /// mark it; a 4xx marks it only when the request failed for a reason the operator should
    /// see in red (a declined payment), not when the caller sent something wrong.
    pub failure: Option<Failure>,
    /// The fields beside `error` in the body.
    pub context: X,
}

impl ApiError {
    /// A response to a request the caller got wrong: the span stays unmarked (unless the
    /// status is a 5xx, which the server layer marks from the status).
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            failure: None,
            context: NoContext {},
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
            code: code.into(),
            message: message.into(),
            failure: Some(failure),
            context: NoContext {},
        }
    }
}

impl<X> ApiError<X> {
    /// The answer to `error`, as its [`Classification`] says.
    pub fn from_error<E: Classify<Context = X>>(error: &E) -> Self {
        let class = error.classify();
        ApiError {
            status: class.status,
            code: class.code,
            message: match class.message {
                Some(message) => message.into_owned(),
                None => error.to_string(),
            },
            failure: class
                .error_type
                .map(|error_type| Failure::of(error_type, error)),
            context: class.context,
        }
    }
}

impl<X: Serialize> IntoResponse for ApiError<X> {
    fn into_response(self) -> Response {
        let trace_id = current_trace_id();
        let status = self.status.as_u16();
        match &self.failure {
            Some(failure) if self.status.is_server_error() => tracing::error!(
                http.response.status_code = status,
                code = self.code.as_ref(),
                error = %failure.description(),
                "request failed"
            ),
            Some(failure) => tracing::warn!(
                http.response.status_code = status,
                code = self.code.as_ref(),
                error = %failure.description(),
                "request failed"
            ),
            None => tracing::info!(
                http.response.status_code = status,
                code = self.code.as_ref(),
                reason = %self.message,
                "request rejected"
            ),
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into_owned(),
                // The last bound, for a message that quotes more than it should.
                message: truncate(&self.message, MESSAGE_LIMIT).into_owned(),
            },
            context: self.context,
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

    /// What a service's error enum looks like to this module.
    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error("amount: must be greater than zero")]
        Invalid,
        #[error("connection refused by db:5432")]
        Broken,
    }

    #[derive(Default, Serialize)]
    struct Order {
        #[serde(skip_serializing_if = "Option::is_none")]
        order_id: Option<u32>,
    }

    impl Classify for TestError {
        type Context = Order;

        fn classify(&self) -> Classification<Order> {
            match self {
                TestError::Invalid => {
                    Classification::rejected(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                }
                TestError::Broken => {
                    Classification::failed(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
                        .error_type("database_down")
                        .message("the database is unavailable; retry later")
                        .with_context(Order { order_id: Some(7) })
                }
            }
        }
    }

    async fn body_text(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_rejection_answers_its_display_and_leaves_the_span_alone() {
        let response = respond(&TestError::Invalid);
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.extensions().get::<Failure>().is_none());
        assert_eq!(
            body_text(response).await,
            r#"{"error":{"code":"validation_failed","message":"amount: must be greater than zero"}}"#
        );
    }

    #[tokio::test]
    async fn a_failure_answers_its_safe_message_and_marks_the_span_with_its_error_type() {
        let response = respond(&TestError::Broken);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let failure = response.extensions().get::<Failure>().unwrap().clone();
        assert_eq!(failure.error_type, "database_down");
        let exception = failure
            .exception
            .expect("an error's failure has its exception");
        assert_eq!(exception.message, "connection refused by db:5432");
        assert!(exception.exception_type.ends_with("TestError"));
        // The context sits between `error` and `trace_id`, where `order_id` always was; the
        // internal text is nowhere in the body.
        assert_eq!(
            body_text(response).await,
            r#"{"error":{"code":"database_unavailable","message":"the database is unavailable; retry later"},"order_id":7}"#
        );
    }

    #[test]
    fn a_relayed_body_keeps_every_field_beside_the_error() {
        let wire = r#"{"error":{"code":"payment_declined","message":"declined"},"order_id":"01a1fcc5-41ee-727c-9814-840bf163ff1f","retry_after":3,"trace_id":"abc"}"#;
        let relayed: ErrorBody<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(wire).unwrap();
        assert_eq!(relayed.trace_id.as_deref(), Some("abc"));
        assert_eq!(
            relayed.context.keys().collect::<Vec<_>>(),
            ["order_id", "retry_after"]
        );
        assert_eq!(serde_json::to_string(&relayed).unwrap(), wire);
        // Read without a context, the extra fields are ignored, not refused.
        let plain: ErrorBody = serde_json::from_str(wire).unwrap();
        assert_eq!(plain.error.code, "payment_declined");
    }
}
