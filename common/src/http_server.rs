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
//!    error left in the response) and answers with a W3C `traceresponse` header.
//!
//! It runs after routing (that is what `Router::layer` does in axum 0.8), so the matched route
//! template (`/api/orders/{id}`) is known and the span name stays low-cardinality.

use std::sync::Arc;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, Version, header},
    middleware::Next,
    response::Response,
};
use opentelemetry::{
    Context,
    baggage::{Baggage, BaggageExt, KeyValueMetadata},
    trace::TraceContextExt,
};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    propagation::{
        BaggageLimits, HeaderExtractor, copy_baggage, mark_random_trace_id, parse_baggage,
        traceresponse,
    },
    telemetry::{Failure, record_failure},
};

/// What a service accepts from its callers' propagation headers.
///
/// Services inside the system trust each other and take everything. The gateway is the trust
/// boundary: what an outside caller sends is data from the internet.
#[derive(Clone, Debug)]
pub struct InboundPolicy {
    /// Continue the caller's trace (its `traceparent`), or start a new one and link to it.
    pub continue_remote_trace: bool,
    /// Which baggage entries are kept.
    pub baggage: BaggagePolicy,
}

#[derive(Clone, Debug)]
pub enum BaggagePolicy {
    /// Every entry the W3C limits allow.
    AcceptAll,
    /// Only these keys, within these limits; everything else is dropped without failing the
    /// request.
    AllowList {
        keys: Arc<[String]>,
        limits: BaggageLimits,
    },
}

impl InboundPolicy {
    /// For services behind the gateway: continue the trace, keep all baggage.
    pub fn internal() -> Arc<Self> {
        Arc::new(InboundPolicy {
            continue_remote_trace: true,
            baggage: BaggagePolicy::AcceptAll,
        })
    }

    /// The context to run the request in: the caller's, as far as this policy trusts it.
    pub fn extract(&self, headers: &HeaderMap) -> Extracted {
        let extracted = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract_with_context(&Context::new(), &HeaderExtractor(headers))
        });
        let remote = extracted.span().span_context().clone();
        let continued = self.continue_remote_trace && remote.is_valid();
        let link = (!self.continue_remote_trace && remote.is_valid()).then(|| remote.clone());

        let mut cx = match &self.baggage {
            // Services inside the system: the caller's context as it came.
            BaggagePolicy::AcceptAll if continued || !remote.is_valid() => extracted,
            BaggagePolicy::AcceptAll => {
                Context::new().with_baggage(copy_baggage(extracted.baggage()))
            }
            BaggagePolicy::AllowList { keys, limits } => {
                // An empty extracted baggage means no header, or propagation switched off.
                let baggage = if extracted.baggage().is_empty() {
                    Baggage::new()
                } else {
                    // Parse again with the boundary's own limits, then keep the allowed keys.
                    let values: Vec<&str> = headers
                        .get_all("baggage")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    let all = parse_baggage(&values, *limits);
                    all.iter()
                        .filter(|(key, _)| keys.iter().any(|allowed| allowed == key.as_str()))
                        .map(|(key, (value, metadata))| {
                            KeyValueMetadata::new(key.clone(), value.clone(), metadata.clone())
                        })
                        .collect()
                };
                let base = if continued {
                    Context::new().with_remote_span_context(remote)
                } else {
                    Context::new()
                };
                base.with_baggage(baggage)
            }
        };
        if !cx.has_active_span() {
            // A new trace: its id comes from the SDK's random generator, which W3C Trace
            // Context Level 2 lets us announce with the `random` flag.
            cx = mark_random_trace_id(&cx);
        }
        Extracted { cx, link }
    }
}

/// The result of [`InboundPolicy::extract`].
pub struct Extracted {
    /// The parent context: a remote span context (or none) and the accepted baggage.
    pub cx: Context,
    /// The caller's span, when the policy starts a new trace instead of continuing it.
    pub link: Option<opentelemetry::trace::SpanContext>,
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

    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    // An i64, so the attribute is an integer in the exported span (a u16 would be a string).
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if let Some(failure) = response.extensions().get::<Failure>() {
        record_failure(&span, failure);
    } else if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.set_attribute("error.type", status.as_str().to_owned());
    }
    if let Some(value) = traceresponse(&span.context()).and_then(|v| HeaderValue::from_str(&v).ok())
    {
        response.headers_mut().insert("traceresponse", value);
    }
    response
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
