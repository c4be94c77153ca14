//! The payment service's HTTP endpoints.

use axum::{Json, extract::State, http::StatusCode};
use common::{
    api::{ChargeRequest, ChargeResponse, PaymentStatus},
    extract,
    http_server::run_to_completion,
    telemetry::record_result,
};
use tracing::{Instrument, Span, field::Empty};
use uuid::Uuid;

use crate::{
    AppState,
    domain::{Charge, DeclineReason, User},
    error::PaymentError,
    processor::ChargeOutcome,
};

/// `POST /charge`: charges an order, at most once per order id.
#[tracing::instrument(
    name = "charge_card",
    skip_all,
    fields(order_id = %req.order_id, user.id = req.user_id, amount_minor = req.amount_minor, payment.id = Empty, payment.status = Empty)
)]
pub async fn charge(
    State(app): State<AppState>,
    extract::Json(req): extract::Json<ChargeRequest>,
) -> Result<Json<ChargeResponse>, PaymentError> {
    // Once a charge has started it finishes, and is recorded, even if the caller gives up.
    let result =
        record_result(run_to_completion(async move { charge_card(&app, req).await }).await);
    if let Ok(response) = &result {
        let span = Span::current();
        span.record("payment.status", "succeeded");
        span.record("payment.id", response.payment_id.to_string());
    }
    result.map(Json)
}

async fn charge_card(app: &AppState, req: ChargeRequest) -> Result<ChargeResponse, PaymentError> {
    let charge = Charge::try_from(req).map_err(PaymentError::Invalid)?;
    let user = lookup_user(app, &charge).await?;

    let payment = app.store.claim(Uuid::now_v7(), &charge).await?;
    if !payment.matches(&charge) {
        return Err(PaymentError::Conflict(charge.order_id));
    }
    let outcome = match payment.outcome() {
        // Already settled: a retry gets the recorded answer, and nothing is charged again.
        Some(recorded) => {
            tracing::info!(payment.id = %payment.id, "charge already settled: replaying its outcome");
            recorded
        }
        None => {
            let outcome = decide(app, &charge, user.as_ref(), payment.id).await;
            app.store.settle(payment.id, &outcome).await?;
            match &outcome {
                ChargeOutcome::Succeeded { charge_id } => tracing::info!(
                    payment.id = %payment.id,
                    payment.status = "succeeded",
                    processor.charge_id = %charge_id,
                    "charge settled"
                ),
                ChargeOutcome::Declined(reason) => tracing::info!(
                    payment.id = %payment.id,
                    payment.status = "declined",
                    payment.decline_reason = %reason,
                    "charge settled"
                ),
            }
            outcome
        }
    };
    match outcome {
        ChargeOutcome::Succeeded { charge_id } => Ok(ChargeResponse {
            payment_id: payment.id,
            status: PaymentStatus::Succeeded,
            charge_id: Some(charge_id),
        }),
        ChargeOutcome::Declined(reason) => {
            Span::current().record("payment.status", "declined");
            Err(PaymentError::Declined {
                payment_id: payment.id,
                reason,
            })
        }
    }
}

async fn lookup_user(app: &AppState, charge: &Charge) -> Result<Option<User>, PaymentError> {
    let span = tracing::info_span!("lookup_user", user.id = %charge.user_id, user.found = Empty, user.tier = Empty);
    async {
        let user = app.store.user(charge.user_id).await?;
        let span = Span::current();
        span.record("user.found", user.is_some());
        if let Some(user) = &user {
            span.record("user.tier", user.tier.as_str());
        }
        Ok(user)
    }
    .instrument(span)
    .await
}

/// Declines what the service can decline itself, and asks the processor about the rest.
async fn decide(
    app: &AppState,
    charge: &Charge,
    user: Option<&User>,
    payment_id: Uuid,
) -> ChargeOutcome {
    let Some(user) = user else {
        return ChargeOutcome::Declined(DeclineReason::UnknownUser);
    };
    if charge.amount_minor > user.credit_limit_minor {
        return ChargeOutcome::Declined(DeclineReason::CreditLimitExceeded);
    }
    // The payment id is the processor's idempotency key: a retry of this charge reaches the
    // processor with the same key and is not charged twice.
    app.processor
        .charge(
            payment_id,
            charge.amount_minor,
            charge.card_token.as_deref(),
        )
        .await
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    if app.store.database().ping().await {
        (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ready", "database": "ok"})),
        )
    } else {
        tracing::warn!("not ready: database unavailable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not_ready", "database": "unavailable"})),
        )
    }
}
