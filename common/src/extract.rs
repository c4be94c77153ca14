//! Request extractors whose rejections are JSON errors.
//!
//! axum's own extractors reject bad input with a plain-text body (`400 Invalid URL: Invalid
//! UTF-8 in id`). The ones here keep axum's parsing, and its precise messages, but answer with
//! the project's [`ErrorBody`](crate::error::ErrorBody) and the trace id, so a client sees one
//! error format whatever went wrong, in every service:
//!
//! - [`Json`]: the body (400 `malformed_json`, 422 `invalid_body`, 413, 415);
//! - [`Path`]: the path parameters (400 `invalid_path`);
//! - [`Query`]: the query string (400 `invalid_query`);
//! - [`IdempotencyKey`]: the `Idempotency-Key` header (400 `invalid_idempotency_key`), with the
//!   one rule the gateway and the order service both apply.
//!
//! Handlers take these, never axum's: `clippy.toml` disallows `axum::extract::Path` and
//! `axum::extract::Query` outside this module. (`State` and `HeaderMap` cannot fail.) Every
//! message that quotes the caller's input goes through [`echo`] or [`bound_quotes`], so what
//! comes back is bounded whatever was sent.

// This module is the one place axum's extractors are wrapped.
#![allow(clippy::disallowed_types)]

use axum::{
    extract::{
        FromRequest, FromRequestParts, OptionalFromRequestParts, Request,
        path::ErrorKind,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{
    error::{ApiError, bound_quotes, echo},
    telemetry::Failure,
};

/// A JSON request body; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(json_rejection)`"
)]
fn json_rejection(rejection: JsonRejection) -> ApiError {
    let (status, code, message) = match &rejection {
        JsonRejection::JsonDataError(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            // "user_id: invalid type: string \"x\", expected i64 at line 1 column 15"
            bound_quotes(&source_text(e)),
        ),
        JsonRejection::JsonSyntaxError(e) => (
            StatusCode::BAD_REQUEST,
            "malformed_json",
            bound_quotes(&source_text(e)),
        ),
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a body with Content-Type: application/json".to_owned(),
        ),
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than this endpoint accepts".to_owned(),
            )
        }
        _ => (rejection.status(), "unreadable_body", rejection.body_text()),
    };
    ApiError::client(status, code, message)
}

/// The route's path parameters; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::extract::Path<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
        {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(path_rejection)`"
)]
fn path_rejection(rejection: PathRejection) -> ApiError {
    // A route and its extractor that do not fit (a missing parameter, a type serde cannot
    // read from a path) are a bug in the service, not in the request: a 500, and a red span.
    if rejection.status().is_server_error() {
        let message = rejection.body_text();
        return ApiError::server(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
            Failure::exception(
                "path_extractor",
                std::any::type_name::<PathRejection>(),
                message,
            ),
        );
    }
    let message = match &rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => {
                format!("`{}` is not valid UTF-8 once percent-decoded", echo(key))
            }
            ErrorKind::ParseErrorAtKey {
                key,
                value,
                expected_type,
            } => format!(
                "`{}` cannot be read as {expected_type}: `{}`",
                echo(key),
                echo(value)
            ),
            ErrorKind::ParseError {
                value,
                expected_type,
            }
            | ErrorKind::ParseErrorAtIndex {
                value,
                expected_type,
                ..
            } => format!("`{}` cannot be read as {expected_type}", echo(value)),
            other => bound_quotes(&other.to_string()),
        },
        other => bound_quotes(&other.body_text()),
    };
    ApiError::client(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        format!("invalid path: {message}"),
    )
}

/// The query string, deserialized; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::extract::Query<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
        {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    let message = match rejection {
        QueryRejection::FailedToDeserializeQueryString(e) => bound_quotes(&source_text(e)),
        other => bound_quotes(&other.body_text()),
    };
    ApiError::client(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("invalid query string: {message}"),
    )
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters, sent at most once.
///
/// The rule lives here so the gateway and the order service apply the same one at their edge.
/// Taken as `Option<IdempotencyKey>`: no header is `None`; a malformed value, or the header
/// sent more than once, is refused with 400 `invalid_idempotency_key`. Refusing several values
/// is the safe choice: which one would a retry send, and which one did a proxy keep? (A
/// proxy that joins repeated headers writes `a, b`, whose space no valid key has, so the
/// joined form is refused too.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted, as Stripe's API does.
    pub const MAX_LEN: usize = 255;

    /// The key in `headers`, if there is one; see the type's documentation.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, InvalidIdempotencyKey> {
        let mut values = headers.get_all("idempotency-key").iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(InvalidIdempotencyKey::Repeated);
        }
        match value.to_str() {
            Ok(key)
                if !key.is_empty()
                    && key.len() <= Self::MAX_LEN
                    && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Some(IdempotencyKey(key.to_owned())))
            }
            _ => Err(InvalidIdempotencyKey::Malformed),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an `Idempotency-Key` header was refused. The message does not quote the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdempotencyKey {
    #[error("send one Idempotency-Key header, not several")]
    Repeated,
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    Malformed,
}

impl From<InvalidIdempotencyKey> for ApiError {
    fn from(e: InvalidIdempotencyKey) -> Self {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            e.to_string(),
        )
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers)?)
    }
}

/// axum wraps serde's error in its own ("Failed to deserialize the JSON body..."); the
/// innermost error is the part that says what is wrong.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut innermost = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use tower::ServiceExt as _;

    use super::*;
    use crate::error::{ECHO_LIMIT, ErrorBody};

    /// One request to a router of the extractors, and its status and error body.
    async fn call(uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Option<ErrorBody>) {
        #[derive(serde::Deserialize)]
        struct Page {
            #[allow(dead_code)]
            limit: u32,
        }
        let router = Router::new()
            .route("/text/{id}", get(|Path(_): Path<String>| async {}))
            .route("/number/{n}", get(|Path(_): Path<u32>| async {}))
            .route("/query", get(|Query(_): Query<Page>| async {}))
            .route(
                "/key",
                get(|key: Option<IdempotencyKey>| async move {
                    key.map(|k| k.as_str().to_owned()).unwrap_or_default()
                }),
            );
        let mut request = axum::http::Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).ok())
    }

    /// The error body of a request that must be refused with 400; fails the test, naming
    /// `case`, if it is not.
    async fn refusal(uri: &str, headers: &[(&str, &str)], case: &str) -> ErrorBody {
        let (status, body) = call(uri, headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}");
        body.unwrap_or_else(|| panic!("{case}: the body is not the JSON error"))
    }

    #[tokio::test]
    async fn every_rejection_is_a_json_error_with_a_bounded_message() {
        let long = "9".repeat(5_000);
        let number = format!("/number/{long}");
        let query = format!("/query?limit={long}");
        // (request, code, what the message must say)
        let cases = [
            ("/text/%FF%FE", "invalid_path", "`id` is not valid UTF-8"),
            ("/number/abc", "invalid_path", "`abc` cannot be read as u32"),
            (number.as_str(), "invalid_path", "cannot be read as u32"),
            ("/query?limit=abc", "invalid_query", "limit"),
            (query.as_str(), "invalid_query", "limit"),
            ("/query", "invalid_query", "missing field `limit`"),
        ];
        for (uri, code, says) in cases {
            let context = &uri[..uri.len().min(40)];
            let body = refusal(uri, &[], context).await;
            assert_eq!(body.error.code, code, "{context}");
            assert!(
                body.error.message.contains(says),
                "{context}: {}",
                body.error.message
            );
            assert!(
                body.error.message.len() < 3 * ECHO_LIMIT,
                "{context}: {} bytes",
                body.error.message.len()
            );
        }
    }

    #[tokio::test]
    async fn an_idempotency_key_is_one_header_of_visible_ascii() {
        assert_eq!(call("/key", &[]).await, (StatusCode::OK, None));
        assert_eq!(
            call("/key", &[("idempotency-key", "k-1")]).await.0,
            StatusCode::OK
        );
        let too_long = "k".repeat(IdempotencyKey::MAX_LEN + 1);
        let cases: [(&str, &[(&str, &str)]); 5] = [
            (
                "two headers",
                &[("idempotency-key", "a"), ("idempotency-key", "b")],
            ),
            ("two values joined", &[("idempotency-key", "a, b")]),
            ("empty", &[("idempotency-key", "")]),
            ("a control character", &[("idempotency-key", "a\tb")]),
            ("too long", &[("idempotency-key", too_long.as_str())]),
        ];
        for (case, headers) in cases {
            let body = refusal("/key", headers, case).await;
            assert_eq!(body.error.code, "invalid_idempotency_key", "{case}");
        }
    }
}
