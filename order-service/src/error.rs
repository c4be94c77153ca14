//! Everything that can go wrong with an order, and the response each gets.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use common::{
    api::{OrderId, ValidationError},
    error::ApiError,
    telemetry::{Failure, SpanFailure},
};

use crate::payments::PaymentFailure;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("this Idempotency-Key was used for a different order")]
    IdempotencyKeyReused { order_id: OrderId },
    #[error("order ids are UUIDs")]
    MalformedId,
    #[error("no order {0}")]
    NotFound(OrderId),
    /// The payment service declined the charge; the order is `payment_declined`.
    #[error("{message}")]
    PaymentDeclined { order_id: OrderId, message: String },
    /// The charge got no definite answer; the order is `payment_failed` or `payment_unknown`.
    #[error("charging order {order_id}")]
    Payment {
        order_id: OrderId,
        #[source]
        failure: PaymentFailure,
    },
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for OrderError {
    fn from(e: sqlx::Error) -> Self {
        if common::db::is_unavailable(&e) {
            OrderError::DatabaseUnavailable(e)
        } else {
            OrderError::Database(e)
        }
    }
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let failure = self.failure();
        let message = self.to_string();
        let error = match &self {
            OrderError::Validation(_) => {
                ApiError::client(S::UNPROCESSABLE_ENTITY, "validation_failed", message)
            }
            // The IETF idempotency-key draft's answer to a key reused with another payload.
            OrderError::IdempotencyKeyReused { order_id } => {
                ApiError::client(S::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message)
                    .with_order_id(order_id.0)
            }
            OrderError::MalformedId => {
                ApiError::client(S::BAD_REQUEST, "malformed_order_id", message)
            }
            OrderError::NotFound(_) => ApiError::client(S::NOT_FOUND, "order_not_found", message),
            OrderError::PaymentDeclined { order_id, .. } => {
                ApiError::client(S::PAYMENT_REQUIRED, "payment_declined", message)
                    .with_order_id(order_id.0)
            }
            OrderError::Payment { order_id, failure } => {
                let (status, code, message) = match failure {
                    PaymentFailure::Unreachable(_) => (
                        S::SERVICE_UNAVAILABLE,
                        "payment_unavailable",
                        "the payment service is unavailable; nothing was charged. Retry with the same Idempotency-Key",
                    ),
                    PaymentFailure::Timeout(_) => (
                        S::GATEWAY_TIMEOUT,
                        "payment_timeout",
                        "the payment service did not answer in time. Retry with the same Idempotency-Key: the order is charged at most once",
                    ),
                    PaymentFailure::Error(_) => (
                        S::BAD_GATEWAY,
                        "payment_error",
                        "the payment service failed. Retry with the same Idempotency-Key: the order is charged at most once",
                    ),
                };
                ApiError::client(status, code, message).with_order_id(order_id.0)
            }
            OrderError::DatabaseUnavailable(_) => ApiError::client(
                S::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the order database is unavailable; retry later",
            ),
            OrderError::Database(_) => {
                ApiError::client(S::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
            }
        };
        match failure {
            Some(failure) => error.with_failure(failure),
            None => error,
        }
        .into_response()
    }
}

impl SpanFailure for OrderError {
    /// What the failure looks like on a span, for errors that mark spans red. A request the
    /// caller got wrong does not: the service did its job by refusing it.
    fn failure(&self) -> Option<Failure> {
        let error_type = match self {
            OrderError::Validation(_)
            | OrderError::IdempotencyKeyReused { .. }
            | OrderError::MalformedId
            | OrderError::NotFound(_) => return None,
            OrderError::PaymentDeclined { .. } => "payment_declined",
            OrderError::Payment { failure, .. } => match failure {
                PaymentFailure::Unreachable(_) => "payment_unreachable",
                PaymentFailure::Timeout(_) => "payment_timeout",
                PaymentFailure::Error(_) => "payment_error",
            },
            OrderError::DatabaseUnavailable(_) => "database_unavailable",
            OrderError::Database(_) => "database_error",
        };
        Some(Failure::of(error_type, self))
    }
}
