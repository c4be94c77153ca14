//! payment-service: charges an order to the user's card, at most once per order.
//!
//! `POST /charge` runs as the span `charge_card`, with `lookup_user` (and its `SELECT users`),
//! the payment's `INSERT payments` claim, the processor call `call_stripe_api` and the
//! `UPDATE payments` that records its answer as children. See `routes` for the flow,
//! `domain` for the rules (the payment's state machine, which keeps a retried charge from
//! charging twice, and the credit limit), and `store` for the claim of the order's one payment.
//!
//! Only a charge the order service signed is made (`common::signing`); any other is refused
//! with 403 `charge_not_authorised` and recorded in `refused_charges`.

pub mod config;
mod domain;
mod error;
mod processor;
mod routes;
mod store;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};
use common::{
    db::Database, http_server::with_common_routes_and_layers, propagation::InboundPolicy,
    signing::ChargeSigner,
};

pub use config::Config;
use processor::Processor;
use store::Store;

/// What every request handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    processor: Arc<Processor>,
    /// Checks that the order service asked for each charge.
    signer: ChargeSigner,
}

impl AppState {
    pub fn new(config: &Config, db: Database) -> Self {
        AppState {
            store: Store::new(db),
            processor: Arc::new(Processor::new(config.processor)),
            signer: ChargeSigner::new(config.backend.charge_signing_key.clone()),
        }
    }
}

/// The service's routes, inside the layers every service has (tracing, limits, `/healthz`,
/// `/metrics`; see `common::http_server`).
pub fn router(state: AppState, config: &Config) -> Router {
    let routes = Router::new()
        .route("/charge", post(routes::charge))
        .route("/readyz", get(routes::readyz))
        .with_state(state);
    with_common_routes_and_layers(routes, InboundPolicy::internal(), config.service.http)
}
