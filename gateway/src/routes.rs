//! The gateway's HTTP endpoints: the public API.
//!
//! `POST /api/orders` runs as the span `create_order`, started from a context to which the
//! gateway has added two baggage entries, `user_id` and `customer_tier`. The order service
//! and the payment service read them from the `baggage` header and record them on their spans
//! and log lines: context that travels with the request, set once at the edge.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use common::{
    api::{CreateOrderRequest, OrderCreated, OrderView},
    extract::{self, IdempotencyKey},
    http_client::Idempotent,
    http_server::readiness,
    propagation::with_baggage_entries,
    telemetry::{current_trace_id, record_result},
};
use opentelemetry::KeyValue;
use reqwest::Method;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::{
    AppState,
    error::{GatewayError, UpstreamBody},
};

/// `POST /api/orders`.
pub(crate) async fn create_order(
    State(app): State<AppState>,
    key: Option<IdempotencyKey>,
    extract::Json(req): extract::Json<CreateOrderRequest>,
) -> Result<Response, GatewayError> {
    let tier = req.tier.unwrap_or_default();
    // `create_order` starts from a context with two more baggage entries. They travel with
    // every request made inside the span, and every span that starts under it, here and in the
    // services downstream, carries them as attributes (`user_id`, `customer_tier`): see
    // `common::telemetry`. Set at the gateway from the request body, they override anything
    // an outside caller sent under these keys.
    let span = tracing::info_span!("create_order", order_id = Empty);
    let cx = with_baggage_entries(
        &Span::current().context(),
        [
            KeyValue::new("user_id", req.user_id.to_string()),
            KeyValue::new("customer_tier", tier.as_str()),
        ],
    );
    let _ = span.set_parent(cx);
    async move { record_result(forward_order(&app, key.as_ref(), &req).await) }
        .instrument(span)
        .await
}

async fn forward_order(
    app: &AppState,
    key: Option<&IdempotencyKey>,
    req: &CreateOrderRequest,
) -> Result<Response, GatewayError> {
    let mut request = app
        .orders
        .request(Method::POST, "/orders", "/orders")
        .json(req);
    // The client's key travels on: the order service is where a retried order is recognised.
    // With a key, the order service recognises a repeat, so a retry is safe. The key was
    // checked at the edge by the rule the order service applies too (one header, visible
    // ASCII), so what is forwarded is exactly the one key the client sent.
    if let Some(key) = key {
        request = request
            .header("idempotency-key", key.as_str())
            .with_extension(Idempotent);
    }
    let response = request.send().await.map_err(GatewayError::Unreachable)?;
    let replayed = response.headers().get("idempotent-replayed").cloned();
    let (status, body) = read(app, response).await?;
    if status != StatusCode::CREATED {
        return Err(upstream_error(status, &body));
    }
    let created: OrderCreated = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::BadUpstreamResponse(e.to_string()))?;
    Span::current().record("order_id", tracing::field::display(created.order_id));
    let body = OrderCreated {
        // The caller's trace is the gateway's (the same one, unless a service has propagation
        // switched off).
        trace_id: current_trace_id().unwrap_or(created.trace_id),
        ..created
    };
    let mut response = (StatusCode::CREATED, Json(&body)).into_response();
    let response_headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{}", body.order_id)) {
        response_headers.insert(header::LOCATION, location);
    }
    if let Some(replayed) = replayed {
        response_headers.insert("idempotent-replayed", replayed);
    }
    Ok(response)
}

/// `GET /api/orders/{id}`.
#[tracing::instrument(name = "get_order", skip_all, fields(order_id = %id))]
pub(crate) async fn get_order(
    State(app): State<AppState>,
    extract::Path(id): extract::Path<String>,
) -> Result<Json<OrderView>, GatewayError> {
    let result = async {
        // Only a UUID goes into the path: anything else (a `..`, an encoded `/` or `?`) could
        // address another endpoint of the order service.
        let id = Uuid::parse_str(&id).map_err(|_| GatewayError::MalformedOrderId)?;
        let path = format!("/orders/{id}");
        let response = app
            .orders
            .request(Method::GET, "/orders/{id}", &path)
            .send()
            .await
            .map_err(GatewayError::Unreachable)?;
        let (status, body) = read(&app, response).await?;
        if status != StatusCode::OK {
            return Err(upstream_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map(Json)
            .map_err(|e| GatewayError::BadUpstreamResponse(e.to_string()))
    }
    .await;
    record_result(result)
}

/// The order service's answer, read within the configured limit and never followed if it is
/// a redirect (`common::http_client::ServiceClient::read_answer`).
async fn read(
    app: &AppState,
    response: reqwest::Response,
) -> Result<(StatusCode, Bytes), GatewayError> {
    let answer = app
        .orders
        .read_answer(response)
        .await
        .map_err(GatewayError::BadAnswer)?;
    Ok((answer.status, answer.body))
}

fn upstream_error(status: StatusCode, body: &[u8]) -> GatewayError {
    match serde_json::from_slice::<UpstreamBody>(body) {
        Ok(body) if status.is_client_error() || status.is_server_error() => {
            GatewayError::Upstream { status, body }
        }
        _ => GatewayError::BadUpstreamResponse(format!("status {status}")),
    }
}

/// `GET /readyz`: the order service answers.
pub(crate) async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let order_service = app
        .orders
        .request(Method::GET, "/healthz", "/healthz")
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    readiness(&[("order_service", order_service)])
}
