//! order-service: validates an order, saves it, has it charged, and records the outcome.
//!
//! `POST /orders` runs as the span `save_order` with `validate_order`, `save_to_db` (and its
//! `INSERT orders`), the CLIENT call to the payment service and the `UPDATE orders` that
//! records the payment's answer as children; see `routes`, and `domain` for the rules (the
//! order's status after a payment answer, and what a retried request does). `GET /orders/{id}`
//! reads an order back.

pub mod config;
mod domain;
mod error;
mod payments;
mod routes;
mod store;

use axum::{
    Router,
    routing::{get, post},
};
use common::{
    db::Database, http_client::ServiceClient, http_server::with_common_routes_and_layers,
    propagation::InboundPolicy, signing::ChargeSigner,
};

pub use config::Config;
use payments::PaymentClient;
use store::Store;

/// What every request handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    payments: PaymentClient,
}

impl AppState {
    pub fn new(config: &Config, db: Database) -> Self {
        AppState {
            store: Store::new(db),
            payments: PaymentClient::new(
                ServiceClient::new(config.payment_service_url.clone(), config.payment_timeout)
                    .with_response_limit(config.payment_response_limit),
                ChargeSigner::new(config.backend.charge_signing_key.clone()),
            ),
        }
    }
}

/// The service's routes, inside the layers every service has (tracing, limits, `/healthz`,
/// `/metrics`; see `common::http_server`).
pub fn router(state: AppState, config: &Config) -> Router {
    let routes = Router::new()
        .route("/orders", post(routes::create_order))
        .route("/orders/{id}", get(routes::get_order))
        .route("/readyz", get(routes::readyz))
        .with_state(state);
    with_common_routes_and_layers(routes, InboundPolicy::internal(), config.service.http)
}
