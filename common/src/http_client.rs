//! The client half of context propagation: calls to other services.
//!
//! A [`ServiceClient`] is a `reqwest` client with a middleware stack
//! (`reqwest-middleware`) that, for every attempt of every request,
//! 1. opens a CLIENT span named `{method} {url.template}` with the stable HTTP
//!    semantic-convention attributes (and `http.request.resend_count` on retries);
//! 2. injects that span's context, and the current baggage, into the request headers with the
//!    global propagator: `traceparent`, `tracestate`, `baggage`;
//! 3. records the outcome: the status code, and ERROR for a 4xx/5xx or a transport error.
//!
//! The receiving service's server layer extracts those headers, so its SERVER span becomes a
//! child of this CLIENT span, and the trace continues across the process boundary.
//!
//! Every attempt has a timeout; nothing here waits forever on another service. A
//! [`RetryMiddleware`] before the tracing middleware sends a request again when that is safe:
//! always when the connection could not be made (nothing was sent), and after a timeout or a
//! 502/503/504 only when the request is idempotent. Each attempt is its own CLIENT span, the
//! resends with `http.request.resend_count`, so retries are visible in the waterfall.

use std::time::Duration;

use http::Extensions;
use reqwest::{Method, Request, Response, StatusCode, Url};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next, RequestBuilder};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    propagation::HeaderInjector,
    telemetry::{Failure, record_failure},
};

/// The route template of a request (`/orders/{id}`), for the span name and `url.template`.
/// Attached by [`ServiceClient::request`]; a template keeps span names low-cardinality where
/// the full URL would make one name per order.
#[derive(Clone, Copy, Debug)]
pub struct UrlTemplate(pub &'static str);

/// How many times this request has been sent before (0 for the first attempt). Set by a retry
/// middleware placed before [`TracingMiddleware`]; recorded as `http.request.resend_count`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResendCount(pub u32);

/// Marks a request as safe to send more than once, because the receiver deduplicates it (the
/// payment service charges an order once; the order service recognises an `Idempotency-Key`).
/// GET, HEAD, OPTIONS, PUT and DELETE are idempotent by definition and need no mark.
#[derive(Clone, Copy, Debug)]
pub struct Idempotent;

/// How often, and how soon, a failed attempt is repeated.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Resends after the first attempt (so at most `1 + max_resends` attempts).
    pub max_resends: u32,
    /// The pause before the first resend; it doubles before each further one.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_resends: 2,
            backoff: Duration::from_millis(100),
        }
    }
}

/// A client for one downstream service.
#[derive(Clone, Debug)]
pub struct ServiceClient {
    base: Url,
    http: ClientWithMiddleware,
}

impl ServiceClient {
    /// `base` is the service's root URL; `timeout` bounds each attempt, from connecting to
    /// the last byte of the response. Attempts are retried by the default [`RetryPolicy`].
    pub fn new(base: Url, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            // Calls inside the system go straight to the service, whatever proxy variables the
            // container inherits.
            .no_proxy()
            .build()
            .expect("a client without TLS or proxies always builds");
        // Retries outside tracing: each attempt gets a span of its own.
        let http = ClientBuilder::new(http)
            .with(RetryMiddleware(RetryPolicy::default()))
            .with(TracingMiddleware)
            .build();
        ServiceClient { base, http }
    }

    /// A request to `path` (already filled in: `/orders/0193…`) whose route template is
    /// `template` (`/orders/{id}`).
    pub fn request(&self, method: Method, template: &'static str, path: &str) -> RequestBuilder {
        // `path` is ours (a constant route or a UUID), so it always joins onto the base URL.
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .expect("a service path joins onto its base URL");
        self.http
            .request(method, url)
            .with_extension(UrlTemplate(template))
    }
}

/// Sends a request again when that is safe; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryMiddleware(pub RetryPolicy);

#[async_trait::async_trait]
impl Middleware for RetryMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let idempotent = extensions.get::<Idempotent>().is_some()
            || matches!(
                *req.method(),
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
            );
        let mut resends = 0;
        loop {
            // A streamed body cannot be sent twice: such a request gets one attempt.
            let Some(attempt) = req.try_clone() else {
                return next.run(req, extensions).await;
            };
            extensions.insert(ResendCount(resends));
            let result = next.clone().run(attempt, extensions).await;
            let again = resends < self.0.max_resends
                && match &result {
                    // The connection was never made: nothing was sent, any request may go again.
                    Err(reqwest_middleware::Error::Reqwest(e)) if e.is_connect() => true,
                    Err(reqwest_middleware::Error::Reqwest(e)) if e.is_timeout() => idempotent,
                    Ok(response) => {
                        idempotent
                            && matches!(
                                response.status(),
                                StatusCode::BAD_GATEWAY
                                    | StatusCode::SERVICE_UNAVAILABLE
                                    | StatusCode::GATEWAY_TIMEOUT
                            )
                    }
                    Err(_) => false,
                };
            if !again {
                return result;
            }
            tokio::time::sleep(self.0.backoff * 2_u32.pow(resends)).await;
            resends += 1;
        }
    }
}

/// Opens the CLIENT span of each attempt and injects its context; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingMiddleware;

#[async_trait::async_trait]
impl Middleware for TracingMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let span = client_span(&req, extensions);
        // The propagators write nothing for an invalid span context or empty baggage.
        let cx = span.context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut HeaderInjector(req.headers_mut()));
        });

        let result = next.run(req, extensions).instrument(span.clone()).await;

        match &result {
            Ok(response) => {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                // For a client, any 4xx or 5xx means the call did not do what it was for.
                if status.is_client_error() || status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                    span.set_attribute("error.type", status.as_str().to_owned());
                }
            }
            Err(error) => record_failure(&span, &Failure::of(error_type(error), error)),
        }
        result
    }
}

/// `error.type` for a call that got no response.
pub fn error_type(error: &reqwest_middleware::Error) -> &'static str {
    match error {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => "timeout",
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => "connection_failed",
        reqwest_middleware::Error::Reqwest(e) if e.is_body() || e.is_decode() => "response_body",
        reqwest_middleware::Error::Reqwest(_) => "request_failed",
        reqwest_middleware::Error::Middleware(_) => "middleware",
    }
}

fn client_span(req: &Request, extensions: &Extensions) -> tracing::Span {
    let method = req.method();
    let url = req.url();
    let template = extensions.get::<UrlTemplate>().map(|t| t.0);
    let name = match template {
        Some(template) => format!("{method} {template}"),
        None => method.to_string(),
    };
    let resend = extensions
        .get::<ResendCount>()
        .map(|r| i64::from(r.0))
        .filter(|&n| n > 0);
    tracing::info_span!(
        "HTTP client request",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method.as_str(),
        http.request.resend_count = resend,
        http.response.status_code = Empty,
        url.full = url.as_str(),
        url.template = template,
        server.address = url.host_str(),
        server.port = url.port_or_known_default().map(i64::from),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_join_the_path_to_the_base_url() {
        let client = ServiceClient::new(
            "http://order-service:8081".parse().unwrap(),
            Duration::from_secs(1),
        );
        let req = client
            .request(Method::GET, "/orders/{id}", "/orders/42")
            .build()
            .unwrap();
        assert_eq!(req.url().as_str(), "http://order-service:8081/orders/42");
    }
}
