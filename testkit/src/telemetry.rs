//! Telemetry for tests that call a service's router in-process.
//!
//! Handler tests build a router and call it with `oneshot`, without the service's `main`, so
//! nothing has installed telemetry. [`install`] gives the test's thread what `main` would:
//! the W3C propagators and a tracing subscriber with the OpenTelemetry layer. The tracer
//! provider has no exporter: spans exist (so trace ids, `traceparent` and baggage are real)
//! and are dropped when they end.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Current on this thread until the guard is dropped; keep it for the whole test.
#[must_use = "telemetry is uninstalled when the guard is dropped"]
pub fn install() -> DefaultGuard {
    opentelemetry::global::set_text_map_propagator(common::telemetry::propagator());
    let tracer = SdkTracerProvider::builder().build().tracer("handler-tests");
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .set_default()
}
