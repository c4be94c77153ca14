//! The payment service's HTTP endpoints.
//!
//! `POST /charge` checks, before anything is written, that the order service signed the
//! charge (`common::signing`): a charge it did not ask for, or asked for with other values,
//! is refused, recorded in `refused_charges`, and never claims the order's payment row.
//!
//! The handlers parse, call the domain and map its answer: `Payment::attempt` says whether a
//! claimed payment is charged, replayed or refused, and `Charge::screen` which charges the
//! service declines itself before asking the processor.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use common::{
    api::{ChargeRequest, ChargeResponse, PaymentStatus},
    extract,
    http_server::{readiness, run_to_completion},
    signing::{SIGNATURE_HEADER, SignatureError},
    telemetry::{current_trace_id, record_result},
};
use tracing::{Instrument, Span, field::Empty};

use crate::{
    AppState,
    domain::{Attempt, Charge, ChargeOutcome, PaymentId, User},
    error::PaymentError,
    store,
};

/// `POST /charge`: charges an order, at most once per order id.
#[tracing::instrument(
    name = "charge_card",
    skip_all,
    fields(order_id = %req.order_id, user.id = req.user_id.0, amount_minor = req.amount_minor, payment.id = Empty, payment.status = Empty)
)]
pub(crate) async fn charge(
    headers: HeaderMap,
    State(app): State<AppState>,
    extract::Json(req): extract::Json<ChargeRequest>,
) -> Result<Json<ChargeResponse>, PaymentError> {
    // Once a charge has started it finishes, and is recorded, even if the caller gives up.
    let signature = signature(&headers).map(|s| s.map(str::to_owned));
    let result = record_result(
        run_to_completion(async move { charge_card(&app, req, signature).await }).await,
    );
    if let Ok(response) = &result {
        let span = Span::current();
        span.record("payment.status", "succeeded");
        span.record("payment.id", response.payment_id.to_string());
    }
    result.map(Json)
}

async fn charge_card(
    app: &AppState,
    req: ChargeRequest,
    signature: Result<Option<String>, SignatureError>,
) -> Result<ChargeResponse, PaymentError> {
    let authorised = signature.and_then(|s| app.signer.verify(&req, s.as_deref()));
    // A malformed request is refused as such (422, nothing written) whoever sent it; a
    // well-formed one that the order service did not sign is the one to record.
    let charge = Charge::try_from(req).map_err(PaymentError::Invalid)?;
    if let Err(reason) = authorised {
        return Err(refuse(app, &charge, reason).await);
    }
    // The user and the claim run back to back on one connection, which goes back to the pool
    // before the processor is asked: a slow processor holds no connection.
    let mut db = app.store.session();
    let user = lookup_user(&mut db, &charge).await?;
    let payment = db.claim(PaymentId::generate(), &charge).await?;
    drop(db);
    let outcome = match payment.attempt(&charge) {
        Attempt::Conflict => return Err(PaymentError::Conflict(charge.order_id)),
        // Already settled: a retry gets the recorded answer, and nothing is charged again.
        Attempt::Replay(recorded) => {
            tracing::info!(payment.id = %payment.id, "charge already settled: replaying its outcome");
            recorded
        }
        Attempt::Charge => {
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
            payment_id: payment.id.0,
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

/// The `charge-signature` header, if there is one; two of them, or one that is not text, is
/// a malformed signature rather than a choice of either.
fn signature(headers: &HeaderMap) -> Result<Option<&str>, SignatureError> {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(Some)
            .map_err(|_| SignatureError::Malformed),
        (Some(_), Some(_)) => Err(SignatureError::Malformed),
    }
}

/// Records a charge refused for its signature and turns it into the error answered. Nothing
/// else is touched: the order's payment row stays free for the charge the order service signs.
async fn refuse(app: &AppState, charge: &Charge, reason: SignatureError) -> PaymentError {
    Span::current().record("payment.status", "refused");
    tracing::warn!(
        order_id = %charge.order_id,
        refusal.reason = reason.as_str(),
        "charge refused: the order service did not sign it"
    );
    let trace_id = current_trace_id().unwrap_or_default();
    match app.store.record_refused(charge, reason, &trace_id).await {
        Ok(()) => PaymentError::NotAuthorised(reason),
        // Refused all the same; the answer says the record could not be made.
        Err(e) => e.into(),
    }
}

async fn lookup_user(
    db: &mut store::Session<'_>,
    charge: &Charge,
) -> Result<Option<User>, PaymentError> {
    let span = tracing::info_span!("lookup_user", user.id = %charge.user_id, user.found = Empty, user.tier = Empty);
    async {
        let user = db.user(charge.user_id).await?;
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

/// Declines what the service declines itself (`Charge::screen`), and asks the processor
/// about the rest.
async fn decide(
    app: &AppState,
    charge: &Charge,
    user: Option<&User>,
    payment_id: PaymentId,
) -> ChargeOutcome {
    if let Err(reason) = charge.screen(user) {
        return ChargeOutcome::Declined(reason);
    }
    // The payment id is the processor's idempotency key: a retry of this charge reaches the
    // processor with the same key and is not charged twice.
    app.processor
        .charge(payment_id, charge.money.minor, charge.card_token.as_deref())
        .await
}

/// `GET /readyz`: the database answers.
pub(crate) async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    readiness(&[("database", app.store.database().ping().await)])
}
