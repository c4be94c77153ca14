//! `GET /healthz` and `GET /metrics`, which every service answers.

use axum::{
    http::{StatusCode, header},
    response::IntoResponse,
};

use crate::telemetry::export;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> StatusCode {
    StatusCode::OK
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
