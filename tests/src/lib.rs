//! End-to-end tests of the traced order flow; see `harness` for what a test starts and
//! `otlp` for the receiver that stands in for Jaeger.

pub mod harness;
pub mod otlp;
