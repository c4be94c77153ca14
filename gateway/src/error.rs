//! What can go wrong at the gateway, and the response each gets.
//!
//! Errors from the order service are relayed with their status and body (they are this
//! system's own JSON errors, safe to show), every field of the body passed through, with the
//! trace id replaced by the gateway's: the caller's trace starts here. Failing to reach the
//! order service at all, or to read its answer, gets a 502, 503 or 504 of the gateway's own.
//! Each variant is classified once ([`Classify`]); `common::error` answers and records it.

use std::borrow::Cow;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use common::{
    error::{Classification, Classify, ErrorBody},
    http_client::{AnswerError, CallFailure},
};

/// An error body of the order service, read whole: whatever it says beside `error` (the
/// order's id) is kept, to be relayed as it was.
pub(crate) type UpstreamBody = ErrorBody<serde_json::Map<String, serde_json::Value>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    /// The order service answered with an error.
    #[error("the order service answered {status}: {}", body.error.message)]
    Upstream {
        status: StatusCode,
        body: UpstreamBody,
    },
    /// The order service could not be reached or did not answer in time.
    #[error("calling the order service")]
    Unreachable(#[source] reqwest_middleware::Error),
    /// The order id in the path is not a UUID; nothing was forwarded.
    #[error("order ids are UUIDs")]
    MalformedOrderId,
    /// The order service answered something that is not this system's JSON.
    #[error("unexpected answer from the order service: {0}")]
    BadUpstreamResponse(String),
    /// The order service's answer could not be read: a redirect (not followed), a body over
    /// `UPSTREAM_RESPONSE_LIMIT_BYTES` (not read past the limit), or a connection that broke.
    #[error("reading the order service's answer")]
    BadAnswer(#[source] AnswerError),
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        common::error::respond(&self)
    }
}

impl Classify for GatewayError {
    type Context = serde_json::Map<String, serde_json::Value>;

    fn classify(&self) -> Classification<Self::Context> {
        match self {
            // A 4xx relayed from the order service marks nothing, except a declined payment:
            // the request was fine, the payment failed, and that is what an operator looks for
            // in red.
            GatewayError::Upstream { status, body } => {
                let code = body.error.code.clone();
                if status.is_server_error() || *status == StatusCode::PAYMENT_REQUIRED {
                    Classification::failed(*status, code)
                } else {
                    Classification::rejected(*status, code)
                }
                .message(body.error.message.clone())
                .with_context(body.context.clone())
            }
            GatewayError::Unreachable(e) => call_failed(CallFailure::of(e)),
            GatewayError::MalformedOrderId => {
                Classification::rejected(StatusCode::BAD_REQUEST, "malformed_order_id")
            }
            GatewayError::BadUpstreamResponse(_) => {
                Classification::failed(StatusCode::BAD_GATEWAY, "order_service_error")
                    .error_type("order_service_bad_response")
                    .message(FAILED)
            }
            GatewayError::BadAnswer(e) => call_failed(e.kind()),
        }
    }
}

const FAILED: &str = "the order service failed; retry later";

/// A call to the order service that got no usable answer, by why; its span's `error.type` is
/// `order_service_` and the kind (`order_service_connection_failed`).
fn call_failed<X: Default>(kind: CallFailure) -> Classification<X> {
    use StatusCode as S;
    let (status, code, message) = match kind {
        CallFailure::ConnectionFailed => (
            S::SERVICE_UNAVAILABLE,
            "order_service_unavailable",
            "the order service is unavailable; retry later",
        ),
        CallFailure::Timeout => (
            S::GATEWAY_TIMEOUT,
            "order_service_timeout",
            "the order service did not answer in time. \
             Retry with the same Idempotency-Key: the order is charged at most once",
        ),
        CallFailure::Redirect => (
            S::BAD_GATEWAY,
            "order_service_error",
            "the order service answered with a redirect, which the gateway does not follow",
        ),
        CallFailure::ResponseTooLarge => (
            S::BAD_GATEWAY,
            "order_service_error",
            "the order service's answer was larger than the gateway accepts",
        ),
        CallFailure::RequestFailed | CallFailure::ResponseBody | CallFailure::Middleware => {
            (S::BAD_GATEWAY, "order_service_error", FAILED)
        }
    };
    Classification::failed(status, code)
        .error_type(Cow::Owned(format!("order_service_{}", kind.as_str())))
        .message(message)
}
