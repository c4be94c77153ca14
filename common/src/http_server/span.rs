//! The server half of context propagation: one SERVER span per request.
//!
//! [`trace_requests`] is an axum middleware every service installs (through
//! [`with_common_routes_and_layers`](super::with_common_routes_and_layers)). For each request it
//! 1. takes the caller's context (`traceparent`, `tracestate`, `baggage`) as far as this
//!    service's [`InboundPolicy`] trusts it;
//! 2. opens a SERVER span named `{method} {route}` with the stable HTTP semantic-convention
//!    attributes, as a child of the caller's span (or as the root of a new trace);
//! 3. runs the handler inside it, so every span the handler opens, and every outgoing call
//!    it makes, belongs to the same trace;
//! 4. records the status code and the outcome through
//!    [`record_failure`](crate::telemetry::record_failure): the [`Failure`] the handler's error
//!    left in the response, else, for a 5xx, the status code alone; and answers with the W3C
//!    response trace context: `traceresponse` and `server-timing: trace;desc=...` with the
//!    same value ([`set_response_headers`]), on every answer, including 4xx, 404/405 and 5xx.
//!
//! It runs after routing (that is what `Router::layer` does in axum 0.8), so the matched route
//! template (`/api/orders/{id}`) is known and the span name stays low-cardinality.

use std::{panic::AssertUnwindSafe, sync::Arc};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, Version, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures_util::FutureExt as _;
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    error::ApiError,
    propagation::{InboundPolicy, set_response_headers},
    telemetry::{Failure, record_failure},
};

/// The middleware; see the module documentation.
pub async fn trace_requests(
    State(policy): State<Arc<InboundPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let span = server_span(&request);
    policy.extract(request.headers()).parent(&span);

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
            let failure = Failure::exception("panic", "panic", message);
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
        record_failure(&span, &Failure::status(status));
    }
    // `traceresponse` and `server-timing: trace;desc=...`, on every answer.
    set_response_headers(&span.context(), response.headers_mut());
    response
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
