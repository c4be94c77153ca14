//! End-to-end tests of the traced order flow; see `harness` for what a test starts and
//! `otlp` for the receiver that stands in for Jaeger. `fake`, `response` and `telemetry` also
//! serve the services' handler tests.

pub mod fake;
pub mod harness;
pub mod otlp;
pub mod response;
pub mod telemetry;
