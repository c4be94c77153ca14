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
//! Each service has its own error enum and turns it into an [`ApiError`]; `ApiError`'s
//! `IntoResponse` writes the body, logs, and leaves a [`Failure`] in the response's extensions
//! for the server layer to record on the request's span.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::telemetry::{Failure, current_trace_id};

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
                message: self.message,
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
