//! gateway: the public entry point, and the system's trust boundary.
//!
//! `POST /api/orders` and `GET /api/orders/{id}` are forwarded to the order service. The
//! gateway's SERVER span is the root of each trace (or a child of an outside caller's span,
//! when `CONTINUE_EXTERNAL_TRACES` allows), and it decides what outside callers may put in
//! the trace's baggage; see `config`.

pub mod config;
mod error;
mod routes;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use common::http_client::ServiceClient;

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
            ),
        }
    }
}

/// The public routes, with the tracing middleware around each of them.
pub fn router(state: AppState, config: &Config) -> Router {
    Router::new()
        .route("/api/orders", post(routes::create_order))
        .route("/api/orders/{id}", get(routes::get_order))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .fallback(common::error::not_found)
        .method_not_allowed_fallback(common::error::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn_with_state(
            config.inbound.clone(),
            common::http_server::trace_requests,
        ))
        .with_state(state)
}
