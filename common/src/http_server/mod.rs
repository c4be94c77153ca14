//! Everything an axum service has around its own routes, and the server that runs them.
//!
//! [`with_common_routes_and_layers`] is the one assembly every service uses: the service's
//! routes, with `GET /healthz` and `GET /metrics`, JSON answers for unknown routes and methods,
//! the size limits, and, outermost, the request-span middleware [`trace_requests`], so even a
//! rejected request has a span and a trace id in its error body. [`serve`] runs the result.
//!
//! One file per reason to change:
//! - `span.rs`: the SERVER span of each request ([`trace_requests`]), and the W3C response
//!   trace headers on every answer;
//! - `limits.rs`: what one request may be ([`HttpLimits`], [`limit_header_size`]) and what
//!   clients may hold of the server ([`ConnectionLimits`]);
//! - `serve.rs`: hyper's HTTP/1 connections with a header read timeout, bounded in number,
//!   drained on shutdown ([`serve`]); and [`run_to_completion`], for a handler's work that a
//!   closing connection must not cut short;
//! - `metrics.rs`: [`healthz`] and [`metrics`].

mod limits;
mod metrics;
mod serve;
mod span;

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, middleware, routing::get};

pub use limits::{ConnectionLimits, HttpLimits, limit_header_size};
pub use metrics::{healthz, metrics, readiness};
pub use serve::{run_to_completion, serve, serve_until_signal};
pub use span::trace_requests;

use crate::{
    error::{method_not_allowed, not_found},
    propagation::InboundPolicy,
};

/// A service's own routes, with what every service has around them:
/// `GET /healthz`, `GET /metrics`, JSON answers for unknown routes (404) and methods (405),
/// the body and header limits, and the tracing middleware, outermost, so even a rejected
/// request has a span and a trace id in its error body.
pub fn with_common_routes_and_layers(
    routes: Router,
    policy: Arc<InboundPolicy>,
    limits: HttpLimits,
) -> Router {
    routes
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.body))
        .layer(middleware::from_fn_with_state(
            limits.headers,
            limit_header_size,
        ))
        .layer(middleware::from_fn_with_state(policy, trace_requests))
}
