//! Everything that can go wrong with a charge, and the response each gets.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use common::{
    api::{OrderId, ValidationError},
    error::ApiError,
    signing::SignatureError,
    telemetry::{Failure, SpanFailure},
};

use crate::domain::{DeclineReason, PaymentId};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The request is not a valid charge (the order service sent something wrong).
    #[error("{0}")]
    Invalid(ValidationError),
    /// The order service did not sign this charge: it did not ask for it, or not with these
    /// values. Nothing is charged; the refusal is recorded. 403, and a red span.
    #[error("the charge is not authorised by the order service: {0}")]
    NotAuthorised(#[source] SignatureError),
    /// The charge was declined; the payment is recorded as such. 402, and a red span.
    #[error("payment declined: {reason}")]
    Declined {
        payment_id: PaymentId,
        reason: DeclineReason,
    },
    /// The order already has a payment for a different user, amount or currency.
    #[error("order {0} already has a payment with different details")]
    Conflict(OrderId),
    /// The database is unreachable or overloaded; the caller may retry.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for PaymentError {
    fn from(e: sqlx::Error) -> Self {
        if common::db::is_unavailable(&e) {
            PaymentError::Unavailable(e)
        } else {
            PaymentError::Database(e)
        }
    }
}

impl IntoResponse for PaymentError {
    fn into_response(self) -> Response {
        let failure = self.failure();
        let error = match &self {
            PaymentError::Invalid(invalid) => ApiError::client(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                invalid.to_string(),
            ),
            PaymentError::NotAuthorised(_) => ApiError::client(
                StatusCode::FORBIDDEN,
                "charge_not_authorised",
                self.to_string(),
            ),
            PaymentError::Declined { reason, .. } => ApiError::client(
                StatusCode::PAYMENT_REQUIRED,
                "payment_declined",
                format!("the payment was declined ({reason})"),
            ),
            PaymentError::Conflict(_) => {
                ApiError::client(StatusCode::CONFLICT, "payment_conflict", self.to_string())
            }
            PaymentError::Unavailable(_) => ApiError::client(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the payment database is unavailable; retry later",
            ),
            PaymentError::Database(_) => ApiError::client(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error",
            ),
        };
        match failure {
            Some(failure) => error.with_failure(failure),
            None => error,
        }
        .into_response()
    }
}

impl SpanFailure for PaymentError {
    /// What the failure looks like on a span, for errors that mark spans red.
    fn failure(&self) -> Option<Failure> {
        match self {
            PaymentError::Invalid(_) | PaymentError::Conflict(_) => None,
            // Red: either the keys of the two services differ, or someone who is not the order
            // service tried to move money. An operator must see both.
            PaymentError::NotAuthorised(_) => Some(Failure::of("charge_not_authorised", self)),
            PaymentError::Declined { .. } => Some(Failure::of("payment_declined", self)),
            PaymentError::Unavailable(_) => Some(Failure::of("database_unavailable", self)),
            PaymentError::Database(_) => Some(Failure::of("database_error", self)),
        }
    }
}
