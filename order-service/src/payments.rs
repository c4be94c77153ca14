//! The order service's client for the payment service.
//!
//! One call, `POST /charge`, whose answer is sorted into what it means for the order: charged,
//! declined, or failed, and if failed, whether money may have moved. That distinction decides
//! the order's status: `payment_failed` when nothing can have been charged (the request never
//! reached the payment service), `payment_unknown` when it might have been (a timeout or a
//! 5xx after the request was sent). Either way a retry is safe: the payment service charges an
//! order at most once.
//!
//! Every charge is signed (`common::signing`): the signature is this service's word that the
//! order exists, with this user, amount and currency, and the payment service charges nothing
//! without it. The answer is read through `ServiceClient::read_answer`, so a redirect or an
//! oversized body is a failed call, never followed or buffered.

use common::{
    api::{ChargeRequest, ChargeResponse},
    error::ErrorBody,
    http_client::{AnswerError, CallFailure, Idempotent, ServiceClient},
    signing::{ChargeSigner, SIGNATURE_HEADER},
};
use reqwest::{Method, StatusCode};

/// What became of a charge.
#[derive(Debug)]
pub(crate) enum ChargeResult {
    Charged,
    /// The payment service declined the charge (402); its error body says why.
    Declined(ErrorBody),
    Failed(PaymentFailure),
}

/// A charge that did not get a definite answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PaymentFailure {
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
    pub(crate) fn may_have_charged(&self) -> bool {
        !matches!(self, PaymentFailure::Unreachable(_))
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PaymentClient {
    client: ServiceClient,
    signer: ChargeSigner,
}

impl PaymentClient {
    pub(crate) fn new(client: ServiceClient, signer: ChargeSigner) -> Self {
        PaymentClient { client, signer }
    }

    pub(crate) fn service(&self) -> &ServiceClient {
        &self.client
    }

    /// Asks for `request` to be charged, signed. Call it only for an order that is stored:
    /// the signature vouches that the order exists as the request describes it.
    pub(crate) async fn charge(&self, request: &ChargeRequest) -> ChargeResult {
        let response = match self
            .client
            .request(Method::POST, "/charge", "/charge")
            // The payment service charges an order once, however often it is asked.
            .with_extension(Idempotent)
            .header(SIGNATURE_HEADER, self.signer.sign(request))
            .json(request)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => {
                return ChargeResult::Failed(match CallFailure::of(&e) {
                    CallFailure::ConnectionFailed => PaymentFailure::Unreachable(e),
                    CallFailure::Timeout => PaymentFailure::Timeout(e),
                    _ => PaymentFailure::Error(common::telemetry::error_chain(&e)),
                });
            }
        };
        let (status, body) = match self.client.read_answer(response).await {
            Ok(answer) => (answer.status, answer.body),
            Err(AnswerError::Body(e)) if e.is_timeout() => {
                return ChargeResult::Failed(PaymentFailure::Timeout(e.into()));
            }
            // A redirect or an oversized answer: the charge may have been made all the same.
            Err(e) => {
                return ChargeResult::Failed(PaymentFailure::Error(
                    common::telemetry::error_chain(&e),
                ));
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
