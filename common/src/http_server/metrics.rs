//! `GET /healthz` and `GET /metrics`, which every service answers, and the answer of each
//! service's `GET /readyz`.

use axum::{
    Json,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::{Map, Value};

use crate::telemetry::export;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> StatusCode {
    StatusCode::OK
}

/// The answer to `GET /readyz`, from whether each of the service's dependencies answered:
/// `200 {"status": "ready", "database": "ok", …}`, or `503` with `"not_ready"` and the one that
/// did not (`"unavailable"`), logged as a warning.
pub fn readiness(dependencies: &[(&'static str, bool)]) -> (StatusCode, Json<Value>) {
    let ready = dependencies.iter().all(|&(_, ok)| ok);
    let mut body = Map::new();
    body.insert(
        "status".into(),
        (if ready { "ready" } else { "not_ready" }).into(),
    );
    for &(name, ok) in dependencies {
        body.insert(name.into(), (if ok { "ok" } else { "unavailable" }).into());
    }
    if ready {
        (StatusCode::OK, Json(Value::Object(body)))
    } else {
        let body = Value::Object(body);
        tracing::warn!(dependencies = %body, "not ready");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

/// `GET /metrics`: the telemetry counters in the Prometheus text format. Spans that never
/// reached the collector are counted here (see [`export`]).
pub async fn metrics() -> impl IntoResponse {
    let stats = export::stats().unwrap_or_default();
    let body = format!(
        "# HELP spans_exported_total Spans the collector accepted.\n\
         # TYPE spans_exported_total counter\n\
         spans_exported_total {}\n\
         # HELP spans_lost_total Spans that never reached the collector.\n\
         # TYPE spans_lost_total counter\n\
         spans_lost_total{{reason=\"queue_full\"}} {}\n\
         spans_lost_total{{reason=\"export_failed\"}} {}\n\
         # HELP spans_in_flight Spans queued or being exported.\n\
         # TYPE spans_in_flight gauge\n\
         spans_in_flight {}\n",
        stats.exported, stats.dropped_queue_full, stats.export_failed, stats.in_flight
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
