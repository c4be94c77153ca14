//! What can go wrong at the gateway, and the response each gets.
//!
//! Errors from the order service are relayed with their status and body (they are this
//! system's own JSON errors, safe to show), with the trace id replaced by the gateway's: the
//! caller's trace starts here. Failing to reach the order service at all gets a 502, 503 or
//! 504 of the gateway's own.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use common::{
    error::{ApiError, ErrorBody},
    http_client::{AnswerError, error_type},
    telemetry::{Failure, SpanFailure, current_trace_id},
};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The order service answered with an error.
    #[error("the order service answered {status}: {}", body.error.message)]
    Upstream { status: StatusCode, body: ErrorBody },
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
        let failure = self.failure();
        let error = match self {
            GatewayError::Upstream { status, mut body } => {
                body.trace_id = current_trace_id();
                let mut response = (status, Json(body)).into_response();
                if let Some(failure) = failure {
                    response.extensions_mut().insert(failure);
                }
                return response;
            }
            GatewayError::Unreachable(ref e) => {
                let (status, code, message) = match error_type(e) {
                    "connection_failed" => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "order_service_unavailable",
                        "the order service is unavailable; retry later",
                    ),
                    "timeout" => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "order_service_timeout",
                        "the order service did not answer in time. Retry with the same Idempotency-Key: the order is charged at most once",
                    ),
                    _ => (
                        StatusCode::BAD_GATEWAY,
                        "order_service_error",
                        "the order service failed; retry later",
                    ),
                };
                ApiError::client(status, code, message)
            }
            GatewayError::MalformedOrderId => ApiError::client(
                StatusCode::BAD_REQUEST,
                "malformed_order_id",
                "order ids are UUIDs",
            ),
            GatewayError::BadUpstreamResponse(_) => ApiError::client(
                StatusCode::BAD_GATEWAY,
                "order_service_error",
                "the order service failed; retry later",
            ),
            GatewayError::BadAnswer(ref e) => {
                let (status, code, message) = match e {
                    AnswerError::Body(e) if e.is_timeout() => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "order_service_timeout",
                        "the order service did not answer in time. Retry with the same Idempotency-Key: the order is charged at most once",
                    ),
                    AnswerError::Redirect { .. } => (
                        StatusCode::BAD_GATEWAY,
                        "order_service_error",
                        "the order service answered with a redirect, which the gateway does not follow",
                    ),
                    AnswerError::TooLarge { .. } => (
                        StatusCode::BAD_GATEWAY,
                        "order_service_error",
                        "the order service's answer was larger than the gateway accepts",
                    ),
                    AnswerError::Body(_) => (
                        StatusCode::BAD_GATEWAY,
                        "order_service_error",
                        "the order service failed; retry later",
                    ),
                };
                ApiError::client(status, code, message)
            }
        };
        match failure {
            Some(failure) => error.with_failure(failure),
            None => error,
        }
        .into_response()
    }
}

impl SpanFailure for GatewayError {
    /// What the failure looks like on a span, for errors that mark spans red. A 4xx relayed
    /// from the order service marks nothing, except a declined payment: the request was fine,
    /// the payment failed, and that is what an operator looks for in red.
    fn failure(&self) -> Option<Failure> {
        match self {
            GatewayError::Upstream { status, body }
                if status.is_server_error() || *status == StatusCode::PAYMENT_REQUIRED =>
            {
                Some(Failure::of(body.error.code.clone(), self))
            }
            GatewayError::Upstream { .. } | GatewayError::MalformedOrderId => None,
            GatewayError::Unreachable(e) => Some(Failure::of(
                format!("order_service_{}", error_type(e)),
                self,
            )),
            GatewayError::BadUpstreamResponse(_) => {
                Some(Failure::of("order_service_bad_response", self))
            }
            GatewayError::BadAnswer(e) => Some(Failure::of(
                format!("order_service_{}", e.error_type()),
                self,
            )),
        }
    }
}
