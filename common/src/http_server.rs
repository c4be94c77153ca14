//! The server half of context propagation: one SERVER span per request.
//!
//! [`trace_requests`] is an axum middleware every service installs with
//! [`Router::layer`](axum::Router::layer). For each request it
//! 1. extracts the caller's context (`traceparent`, `tracestate`, `baggage`) with the global
//!    propagator, filtered by this service's [`InboundPolicy`];
//! 2. opens a SERVER span named `{method} {route}` with the stable HTTP semantic-convention
//!    attributes, as a child of the caller's span (or as the root of a new trace);
//! 3. runs the handler inside it, so every span the handler opens, and every outgoing call
//!    it makes, belongs to the same trace;
//! 4. records the status code (5xx marks the span ERROR; so does a [`Failure`] the handler's
//!    error left in the response) and answers with the W3C response trace context:
//!    `traceresponse` and `server-timing: trace;desc=...` with the same value
//!    ([`set_response_headers`]), on every answer, including 4xx, 404/405 and 5xx.
//!
//! It runs after routing (that is what `Router::layer` does in axum 0.8), so the matched route
//! template (`/api/orders/{id}`) is known and the span name stays low-cardinality.
//!
//! [`with_common_routes_and_layers`] puts it, with everything else every service needs
//! (`/healthz`, `/metrics`, JSON answers for unknown routes and methods, size limits), around a
//! service's own routes.

use std::{panic::AssertUnwindSafe, sync::Arc};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, Version, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::FutureExt as _;
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    config::{ConfigError, Vars},
    error::{ApiError, method_not_allowed, not_found},
    propagation::{Extracted, InboundPolicy, set_response_headers},
    telemetry::{Failure, export, record_failure},
};

/// Limits on what a request may be, before a handler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// `REQUEST_BODY_LIMIT_BYTES`: larger bodies get 413.
    pub body: usize,
    /// `REQUEST_HEADER_LIMIT_BYTES`: larger header sections get 431.
    pub headers: usize,
}

impl HttpLimits {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(HttpLimits {
            body: vars.or("REQUEST_BODY_LIMIT_BYTES", 16 * 1024)?,
            // Room for the W3C limits: 8 KiB of baggage, 512+ bytes of tracestate.
            headers: vars.or("REQUEST_HEADER_LIMIT_BYTES", 32 * 1024)?,
        })
    }
}

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

/// Refuses requests whose header section is larger than `max` bytes with 431.
pub async fn limit_header_size(State(max): State<usize>, request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
    if size > max {
        return ApiError::client(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request's headers are larger than {max} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// The middleware; see the module documentation.
pub async fn trace_requests(
    State(policy): State<Arc<InboundPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let Extracted { cx, link } = policy.extract(request.headers());
    let span = server_span(&request);
    // `set_parent` fails only when no OpenTelemetry layer is installed (handler tests):
    // then there is no trace to continue, and nothing to do about it.
    let _ = span.set_parent(cx);
    if let Some(remote) = link {
        span.add_link(remote);
    }

    // A panic in a handler is a bug, but the caller still gets an answer (a 500 with the trace
    // id) and the span says what happened; the connection and the process carry on.
    let mut response = match AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .instrument(span.clone())
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
            let failure = Failure {
                error_type: "panic".to_owned(),
                exception_type: "panic".to_owned(),
                message,
            };
            span.in_scope(|| {
                ApiError::server(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error",
                    failure,
                )
                .into_response()
            })
        }
    };

    let status = response.status();
    // An i64, so the attribute is an integer in the exported span (a u16 would be a string).
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if let Some(failure) = response.extensions().get::<Failure>() {
        record_failure(&span, failure);
    } else if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.set_attribute("error.type", status.as_str().to_owned());
    }
    // `traceresponse` and `server-timing: trace;desc=...`, on every answer.
    set_response_headers(&span.context(), response.headers_mut());
    response
}

/// Runs `work` to completion even if the caller goes away.
///
/// hyper drops a request's future when its connection closes, and a caller that times out
/// closes it. For work with effects outside the process (a charge, a row), being dropped
/// half-way leaves them half-done: a card charged and the order still `pending`. Spawned, the
/// work finishes and records its outcome; only the answer is lost, and a retry with the same
/// idempotency key finds the outcome. The work runs in the current span.
pub async fn run_to_completion<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    match tokio::spawn(work.instrument(tracing::Span::current())).await {
        Ok(value) => value,
        // A panic in the work is a panic in the handler (the server layer answers 500).
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("the work was cancelled: {error}"),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for in-flight requests
/// to finish (their spans end, and are queued for export, before this returns).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped: all in-flight requests answered");
    Ok(())
}

fn server_span(request: &Request) -> tracing::Span {
    let method = request.method().as_str();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    // Semantic conventions: `{method} {route}`, or just `{method}` when no route matched
    // (a 404), so unknown paths do not create one span name each.
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    let (host, port) = host_and_port(request.headers());
    tracing::info_span!(
        "HTTP request",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        url.path = request.uri().path(),
        url.scheme = "http",
        server.address = host,
        server.port = port,
        network.protocol.version = protocol_version(request.version()),
        user_agent.original = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// `server.address` and `server.port` from the `Host` header, as the conventions ask.
fn host_and_port(headers: &HeaderMap) -> (Option<&str>, Option<i64>) {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return (None, None);
    };
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || name.starts_with('[') => {
            match port.parse::<u16>() {
                Ok(port) => (Some(name), Some(i64::from(port))),
                Err(_) => (Some(host), None),
            }
        }
        _ => (Some(host), None),
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn host_and_port_are_split_from_the_host_header() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("gateway:8080"));
        assert_eq!(host_and_port(&h), (Some("gateway"), Some(8080)));
        h.insert(header::HOST, HeaderValue::from_static("localhost"));
        assert_eq!(host_and_port(&h), (Some("localhost"), None));
        h.insert(header::HOST, HeaderValue::from_static("[::1]:8080"));
        assert_eq!(host_and_port(&h), (Some("[::1]"), Some(8080)));
    }
}
