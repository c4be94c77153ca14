//! Everything that can go wrong with an order, and the response each gets: one
//! [`Classification`] per variant, which `common::error` answers and records. Bodies name the
//! order a failure concerns ([`OrderContext`]) beside the error.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use common::{
    api::{OrderId, ValidationError},
    error::{Classification, Classify},
};
use serde::Serialize;

use crate::payments::PaymentFailure;

#[derive(Debug, thiserror::Error)]
pub(crate) enum OrderError {
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

/// What the order service says beside an error: the order it concerns, when the failure came
/// after the order was recorded (a declined or failed payment, a reused key), so the client
/// can look it up, or retry it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct OrderContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
}

impl OrderContext {
    fn of(order_id: OrderId) -> Self {
        OrderContext {
            order_id: Some(order_id),
        }
    }
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        common::error::respond(&self)
    }
}

impl Classify for OrderError {
    type Context = OrderContext;

    /// A request the caller got wrong is rejected and leaves the span alone: the service did
    /// its job by refusing it. Everything else is a failure, red.
    fn classify(&self) -> Classification<OrderContext> {
        use StatusCode as S;
        match self {
            OrderError::Validation(_) => {
                Classification::rejected(S::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            // The IETF idempotency-key draft's answer to a key reused with another payload.
            OrderError::IdempotencyKeyReused { order_id } => {
                Classification::rejected(S::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
                    .with_context(OrderContext::of(*order_id))
            }
            OrderError::MalformedId => {
                Classification::rejected(S::BAD_REQUEST, "malformed_order_id")
            }
            OrderError::NotFound(_) => Classification::rejected(S::NOT_FOUND, "order_not_found"),
            OrderError::PaymentDeclined { order_id, .. } => {
                Classification::failed(S::PAYMENT_REQUIRED, "payment_declined")
                    .with_context(OrderContext::of(*order_id))
            }
            OrderError::Payment { order_id, failure } => match failure {
                PaymentFailure::Unreachable(_) => {
                    Classification::failed(S::SERVICE_UNAVAILABLE, "payment_unavailable")
                        .error_type("payment_unreachable")
                        .message(
                            "the payment service is unavailable; nothing was charged. \
                             Retry with the same Idempotency-Key",
                        )
                }
                PaymentFailure::Timeout(_) => {
                    Classification::failed(S::GATEWAY_TIMEOUT, "payment_timeout").message(
                        "the payment service did not answer in time. \
                         Retry with the same Idempotency-Key: the order is charged at most once",
                    )
                }
                PaymentFailure::Error(_) => Classification::failed(S::BAD_GATEWAY, "payment_error")
                    .message(
                        "the payment service failed. \
                         Retry with the same Idempotency-Key: the order is charged at most once",
                    ),
            }
            .with_context(OrderContext::of(*order_id)),
            OrderError::DatabaseUnavailable(_) => {
                Classification::failed(S::SERVICE_UNAVAILABLE, "database_unavailable")
                    .message("the order database is unavailable; retry later")
            }
            OrderError::Database(_) => {
                Classification::failed(S::INTERNAL_SERVER_ERROR, "internal_error")
                    .error_type("database_error")
                    .message("internal error")
            }
        }
    }
}
