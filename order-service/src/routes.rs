//! The order service's HTTP endpoints.
//!
//! `POST /orders` is the span `save_order`: `validate_order` turns the request into a
//! `NewOrder`, `save_to_db` inserts it as `pending`, the payment client charges it (a CLIENT
//! span, continued by the payment service), and the order's status records the answer.
//!
//! With an `Idempotency-Key`, the same request sent again (a client retry after a timeout)
//! finds the order it created: a settled order is answered as before, an unsettled one is
//! charged again, which is safe because the payment service charges an order at most once.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use common::{
    api::{ChargeRequest, CreateOrderRequest, OrderCreated, OrderStatus, OrderView},
    extract::{self, IdempotencyKey},
    http_server::run_to_completion,
    telemetry::{current_trace_id, record_result},
};
use reqwest::Method;
use tracing::{Instrument, Span, field::Empty};
use uuid::Uuid;

use crate::{
    AppState,
    domain::{Currency, Money, NewOrder, OrderId, ValidationError},
    error::OrderError,
    payments::ChargeResult,
    store::OrderRow,
};

/// `POST /orders`.
#[tracing::instrument(
    name = "save_order",
    skip_all,
    fields(order_id = Empty, order.status = Empty, idempotency.replayed = Empty)
)]
pub async fn create_order(
    State(app): State<AppState>,
    key: Option<IdempotencyKey>,
    extract::Json(req): extract::Json<CreateOrderRequest>,
) -> Result<Response, OrderError> {
    // Once the order is being saved and charged, that finishes, and is recorded, even if the
    // caller gives up: an order is never left charged but `pending`.
    record_result(
        run_to_completion(async move {
            save_order(&app, key.as_ref().map(IdempotencyKey::as_str), &req).await
        })
        .await,
    )
}

async fn save_order(
    app: &AppState,
    key: Option<&str>,
    req: &CreateOrderRequest,
) -> Result<Response, OrderError> {
    let span = Span::current();
    let mut order = validate_order(req)?;
    span.record("order_id", tracing::field::display(order.id));

    if let Some(existing) = save_to_db(app, &order, key).await? {
        // The key belongs to an order created earlier: this request is a retry of it.
        if existing.request_fingerprint.as_deref() != Some(order.fingerprint().as_str()) {
            return Err(OrderError::IdempotencyKeyReused {
                order_id: OrderId(existing.id),
            });
        }
        order.id = OrderId(existing.id);
        span.record("order_id", tracing::field::display(order.id));
        span.record("idempotency.replayed", true);
        match existing.status() {
            OrderStatus::Confirmed => {
                span.record("order.status", "confirmed");
                return Ok(created(order.id, OrderStatus::Confirmed, true));
            }
            OrderStatus::PaymentDeclined => {
                span.record("order.status", "payment_declined");
                return Err(OrderError::PaymentDeclined {
                    order_id: order.id,
                    message: "the payment was declined".into(),
                });
            }
            // Not settled: charge again. The payment service answers a charge it has
            // already made with the same payment, so this never charges twice.
            OrderStatus::Pending | OrderStatus::PaymentFailed | OrderStatus::PaymentUnknown => {}
        }
    }
    charge(app, &order).await
}

#[tracing::instrument(name = "validate_order", skip_all)]
fn validate_order(req: &CreateOrderRequest) -> Result<NewOrder, ValidationError> {
    NewOrder::parse(OrderId::generate(), req)
}

/// Inserts the order; returns the existing order when the idempotency key is taken.
async fn save_to_db(
    app: &AppState,
    order: &NewOrder,
    key: Option<&str>,
) -> Result<Option<OrderRow>, OrderError> {
    async {
        let trace_id = current_trace_id().unwrap_or_default();
        if app.store.insert(order, key, &trace_id).await? {
            return Ok(None);
        }
        let key = key.expect("only an idempotency key can conflict");
        match app.store.get_by_idempotency_key(key).await? {
            Some(existing) => Ok(Some(existing)),
            // The conflicting row is gone (deleted by hand): nothing to replay, and nothing
            // safe to do but say so.
            None => Err(OrderError::Database(sqlx::Error::RowNotFound)),
        }
    }
    .instrument(tracing::info_span!("save_to_db"))
    .await
}

/// Charges the order and records the answer in its status.
async fn charge(app: &AppState, order: &NewOrder) -> Result<Response, OrderError> {
    let request = ChargeRequest {
        order_id: order.id.0,
        user_id: order.user_id,
        amount_minor: order.money.minor,
        currency: order.money.currency.code.to_owned(),
        card_token: order.card_token.clone(),
    };
    let result = app.payments.charge(&request).await;
    let status = match &result {
        ChargeResult::Charged => OrderStatus::Confirmed,
        ChargeResult::Declined(_) => OrderStatus::PaymentDeclined,
        ChargeResult::Failed(failure) if failure.may_have_charged() => OrderStatus::PaymentUnknown,
        ChargeResult::Failed(_) => OrderStatus::PaymentFailed,
    };
    app.store.set_status(order.id, status).await?;
    Span::current().record("order.status", status.as_str());
    tracing::info!(order_id = %order.id, order.status = status.as_str(), "order recorded");
    match result {
        ChargeResult::Charged => Ok(created(order.id, status, false)),
        ChargeResult::Declined(body) => Err(OrderError::PaymentDeclined {
            order_id: order.id,
            message: body.error.message,
        }),
        ChargeResult::Failed(failure) => Err(OrderError::Payment {
            order_id: order.id,
            failure,
        }),
    }
}

fn created(id: OrderId, status: OrderStatus, replayed: bool) -> Response {
    let body = OrderCreated {
        order_id: id.0,
        status,
        trace_id: current_trace_id().unwrap_or_default(),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        // Stripe's header for an answer served from an earlier request with the same key.
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `GET /orders/{id}`.
#[tracing::instrument(name = "load_order", skip_all, fields(order_id = %id))]
pub async fn get_order(
    State(app): State<AppState>,
    extract::Path(id): extract::Path<String>,
) -> Result<Json<OrderView>, OrderError> {
    let id = OrderId(Uuid::parse_str(&id).map_err(|_| OrderError::MalformedId)?);
    let row = app.store.get(id).await?.ok_or(OrderError::NotFound(id))?;
    let currency = Currency::from_code(&row.currency).unwrap_or(Currency {
        code: "XXX",
        exponent: 2,
    });
    Ok(Json(OrderView {
        order_id: row.id,
        user_id: row.user_id,
        amount: Money {
            minor: row.amount_minor,
            currency,
        }
        .to_decimal(),
        status: row.status(),
        currency: row.currency,
        created_at: row.created_at,
        updated_at: row.updated_at,
        trace_id: row.trace_id,
    }))
}

/// `GET /readyz`: the database and the payment service answer.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let database = app.store.database().ping().await;
    let payment = app
        .payments
        .service()
        .request(Method::GET, "/healthz", "/healthz")
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let status = if database && payment {
        StatusCode::OK
    } else {
        tracing::warn!(database, payment_service = payment, "not ready");
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(serde_json::json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "database": word(database),
            "payment_service": word(payment),
        })),
    )
}
