//! Test support shared by the services' handler tests (`gateway`, `order-service`,
//! `payment-service`), the end-to-end tests (`e2e`) and the bench: nothing here starts a
//! service binary; that is `e2e::harness`.
//!
//! - [`db`]: a fresh Postgres database per test, dropped with it;
//! - [`otlp`]: the OTLP receiver that stands in for Jaeger, and the span helpers;
//! - [`fake`]: neighbours on a local port, well-behaved or not, and a port that is down;
//! - [`proxy`]: a TCP proxy a test can cut;
//! - [`response`]: a response read whole, and the check of the project's error body;
//! - [`service`]: a service's router called in-process, with telemetry installed
//!   ([`telemetry`]), the way each service's `tests/support` builds its `TestApp`.

pub mod db;
pub mod fake;
pub mod otlp;
pub mod proxy;
pub mod response;
pub mod service;
pub mod telemetry;

/// The `CHARGE_SIGNING_KEY` the order and payment services share in tests (see
/// `common::signing`): `e2e::harness` gives it to the binaries unless a test sets another,
/// and the handler tests configure both services with it.
pub const CHARGE_SIGNING_KEY: &str = "the e2e tests' charge signing key, 32+ bytes";
