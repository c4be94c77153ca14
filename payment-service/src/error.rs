//! Everything that can go wrong with a charge, and the response each gets: one
//! [`Classification`] per variant, which `common::error` answers and records.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use common::{
    api::{OrderId, ValidationError},
    error::{Classification, Classify, NoContext},
    signing::SignatureError,
};

use crate::domain::{DeclineReason, PaymentId};

#[derive(Debug, thiserror::Error)]
pub(crate) enum PaymentError {
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
        common::error::respond(&self)
    }
}

impl Classify for PaymentError {
    type Context = NoContext;

    fn classify(&self) -> Classification {
        use StatusCode as S;
        match self {
            PaymentError::Invalid(_) => {
                Classification::rejected(S::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            // Red: either the keys of the two services differ, or someone who is not the order
            // service tried to move money. An operator must see both.
            PaymentError::NotAuthorised(_) => {
                Classification::failed(S::FORBIDDEN, "charge_not_authorised")
            }
            PaymentError::Declined { reason, .. } => {
                Classification::failed(S::PAYMENT_REQUIRED, "payment_declined")
                    .message(format!("the payment was declined ({reason})"))
            }
            PaymentError::Conflict(_) => Classification::rejected(S::CONFLICT, "payment_conflict"),
            PaymentError::Unavailable(_) => {
                Classification::failed(S::SERVICE_UNAVAILABLE, "database_unavailable")
                    .message("the payment database is unavailable; retry later")
            }
            PaymentError::Database(_) => {
                Classification::failed(S::INTERNAL_SERVER_ERROR, "internal_error")
                    .error_type("database_error")
                    .message("internal error")
            }
        }
    }
}
