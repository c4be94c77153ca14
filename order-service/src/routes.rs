//! The order service's HTTP endpoints.
//!
//! `POST /orders` is the span `save_order`: `validate_order` turns the request into a
//! `NewOrder`, `save_to_db` inserts it as `pending`, the payment client charges it (a CLIENT
//! span, continued by the payment service), and the order's status records the answer.
//!
//! With an `Idempotency-Key`, the same request sent again (a client retry after a timeout)
//! finds the order it created, and the order decides what the retry does
//! (`domain::Order::retry`): a settled order is answered as before, an unsettled one is
//! charged again. The handlers parse, call the domain, and turn its answer into a response.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use common::{
    api::{
        ChargeRequest, CreateOrderRequest, OrderCreated, OrderId, OrderStatus, OrderView,
        ValidationError,
    },
    extract::{self, IdempotencyKey},
    http_server::{readiness, run_to_completion},
    telemetry::{current_trace_id, record_result},
};
use reqwest::Method;
use tracing::{Instrument, Span, field::Empty};
use uuid::Uuid;

use crate::{
    AppState,
    domain::{NewOrder, Order, PaymentAnswer, Retry},
    error::OrderError,
    payments::ChargeResult,
};

/// `POST /orders`.
#[tracing::instrument(
    name = "save_order",
    skip_all,
    fields(order_id = Empty, order.status = Empty, idempotency.replayed = Empty)
)]
pub(crate) async fn create_order(
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
    let order = validate_order(req)?;
    span.record("order_id", tracing::field::display(order.id));

    let order = match save_to_db(app, &order, key).await? {
        None => order,
        // The key belongs to an order created earlier: this request is a retry of it.
        Some(existing) => match existing.retry(order) {
            Retry::KeyReused => {
                return Err(OrderError::IdempotencyKeyReused {
                    order_id: existing.id,
                });
            }
            Retry::Confirmed => {
                replaying(&span, &existing);
                return Ok(created(existing.id, existing.status, true));
            }
            Retry::Declined => {
                replaying(&span, &existing);
                return Err(OrderError::PaymentDeclined {
                    order_id: existing.id,
                    message: "the payment was declined".into(),
                });
            }
            Retry::ChargeAgain(order) => {
                span.record("order_id", tracing::field::display(order.id));
                span.record("idempotency.replayed", true);
                order
            }
        },
    };
    charge(app, &order).await
}

/// Marks the span as answering a retry from the stored order, which settled it earlier.
fn replaying(span: &Span, existing: &Order) {
    span.record("order_id", tracing::field::display(existing.id));
    span.record("idempotency.replayed", true);
    span.record("order.status", existing.status.as_str());
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
) -> Result<Option<Order>, OrderError> {
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
        order_id: order.id,
        user_id: order.user_id,
        amount_minor: order.money.minor,
        currency: order.money.currency.code().to_owned(),
        card_token: order.card_token.clone(),
    };
    let result = app.payments.charge(&request).await;
    let answer = match &result {
        ChargeResult::Charged => PaymentAnswer::Charged,
        ChargeResult::Declined(_) => PaymentAnswer::Declined,
        ChargeResult::Failed(failure) if failure.may_have_charged() => PaymentAnswer::MaybeCharged,
        ChargeResult::Failed(_) => PaymentAnswer::NothingCharged,
    };
    let status = answer.order_status();
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
        order_id: id,
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
pub(crate) async fn get_order(
    State(app): State<AppState>,
    extract::Path(id): extract::Path<String>,
) -> Result<Json<OrderView>, OrderError> {
    let id = OrderId(Uuid::parse_str(&id).map_err(|_| OrderError::MalformedId)?);
    let order = app.store.get(id).await?.ok_or(OrderError::NotFound(id))?;
    Ok(Json(OrderView {
        order_id: order.id,
        user_id: order.user_id,
        amount: order.money.to_decimal(),
        currency: order.money.currency.code().to_owned(),
        status: order.status,
        created_at: order.created_at,
        updated_at: order.updated_at,
        trace_id: order.trace_id,
    }))
}

/// `GET /readyz`: the database and the payment service answer.
pub(crate) async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let database = app.store.database().ping().await;
    let payment = app
        .payments
        .service()
        .request(Method::GET, "/healthz", "/healthz")
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    readiness(&[("database", database), ("payment_service", payment)])
}
