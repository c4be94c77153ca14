//! The order service's client for the payment service.
//!
//! One call, `POST /charge`, whose answer is sorted into what it means for the order: charged,
//! declined, or failed, and if failed, whether money may have moved. That distinction decides
//! the order's status: `payment_failed` when nothing can have been charged (the request never
//! reached the payment service), `payment_unknown` when it might have been (a timeout or a
//! 5xx after the request was sent). Either way a retry is safe: the payment service charges an
//! order at most once.

use common::{
    api::{ChargeRequest, ChargeResponse},
    error::ErrorBody,
    http_client::{Idempotent, ServiceClient, error_type},
};
use reqwest::{Method, StatusCode};

/// What became of a charge.
#[derive(Debug)]
pub enum ChargeResult {
    Charged,
    /// The payment service declined the charge (402); its error body says why.
    Declined(ErrorBody),
    Failed(PaymentFailure),
}

/// A charge that did not get a definite answer.
#[derive(Debug, thiserror::Error)]
pub enum PaymentFailure {
    /// The request never reached the payment service: nothing was charged.
    #[error("the payment service is unreachable")]
    Unreachable(#[source] reqwest_middleware::Error),
    /// No answer in time: the charge may or may not have happened.
    #[error("the payment service did not answer in time")]
    Timeout(#[source] reqwest_middleware::Error),
    /// An answer that is not a charge or a decline (a 5xx, an unexpected 4xx, a body that
    /// does not parse): the charge may or may not have happened.
    #[error("the payment service failed: {0}")]
    Error(String),
}

impl PaymentFailure {
    /// Whether the payment service may have charged the card.
    pub fn may_have_charged(&self) -> bool {
        !matches!(self, PaymentFailure::Unreachable(_))
    }
}

#[derive(Clone, Debug)]
pub struct PaymentClient {
    client: ServiceClient,
}

impl PaymentClient {
    pub fn new(client: ServiceClient) -> Self {
        PaymentClient { client }
    }

    pub fn service(&self) -> &ServiceClient {
        &self.client
    }

    pub async fn charge(&self, request: &ChargeRequest) -> ChargeResult {
        let response = match self
            .client
            .request(Method::POST, "/charge", "/charge")
            // The payment service charges an order once, however often it is asked.
            .with_extension(Idempotent)
            .json(request)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => {
                return ChargeResult::Failed(match error_type(&e) {
                    "connection_failed" => PaymentFailure::Unreachable(e),
                    "timeout" => PaymentFailure::Timeout(e),
                    _ => PaymentFailure::Error(common::telemetry::error_chain(&e)),
                });
            }
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) if e.is_timeout() => {
                return ChargeResult::Failed(PaymentFailure::Timeout(e.into()));
            }
            Err(e) => {
                return ChargeResult::Failed(PaymentFailure::Error(format!(
                    "reading the response: {e}"
                )));
            }
        };
        match status {
            // The body is checked so a success that is not a charge is not taken for one.
            StatusCode::OK => match serde_json::from_slice::<ChargeResponse>(&body) {
                Ok(_) => ChargeResult::Charged,
                Err(e) => ChargeResult::Failed(PaymentFailure::Error(format!(
                    "unreadable success body: {e}"
                ))),
            },
            StatusCode::PAYMENT_REQUIRED => match serde_json::from_slice(&body) {
                Ok(declined) => ChargeResult::Declined(declined),
                Err(e) => ChargeResult::Failed(PaymentFailure::Error(format!(
                    "unreadable decline body: {e}"
                ))),
            },
            other => ChargeResult::Failed(PaymentFailure::Error(format!("answered {other}"))),
        }
    }
}
