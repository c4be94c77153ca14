//! gateway: the public entry point, and the system's trust boundary.
//!
//! `POST /api/orders` and `GET /api/orders/{id}` are forwarded to the order service. The
//! gateway's SERVER span is the root of each trace (or a child of an outside caller's span,
//! when `CONTINUE_EXTERNAL_TRACES` allows), and it decides what outside callers may put in
//! the trace's baggage; see `config`.

pub mod config;
mod error;
mod routes;
pub mod trace_link;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{get, post},
};
use common::{http_client::ServiceClient, http_server::with_common_routes_and_layers};

pub use config::Config;

/// What every request handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    orders: ServiceClient,
}

impl AppState {
    pub fn new(config: &Config) -> Self {
        AppState {
            orders: ServiceClient::new(
                config.order_service_url.clone(),
                config.order_service_timeout,
            )
            .with_response_limit(config.order_service_response_limit),
        }
    }
}

/// The public routes, inside the layers every service has (tracing with the gateway's
/// inbound policy, limits, `/healthz`, `/metrics`; see `common::http_server`), and, outermost
/// with `TRACE_UI_URL` set, the link from each answer to its trace (see [`trace_link`]).
pub fn router(state: AppState, config: &Config) -> Router {
    let routes = Router::new()
        .route("/api/orders", post(routes::create_order))
        .route("/api/orders/{id}", get(routes::get_order))
        .route("/readyz", get(routes::readyz))
        .with_state(state);
    let app = with_common_routes_and_layers(routes, config.inbound.clone(), config.service.http);
    match &config.trace_ui {
        Some(ui) => app.layer(middleware::from_fn_with_state(
            Arc::new(ui.clone()),
            trace_link::link_to_trace,
        )),
        None => app,
    }
}
