//! The client half of context propagation: calls to other services.
//!
//! A [`ServiceClient`] is a `reqwest` client with a middleware stack
//! (`reqwest-middleware`) that, for every attempt of every request,
//! 1. opens a CLIENT span named `{method} {url.template}` with the stable HTTP
//!    semantic-convention attributes (and `http.request.resend_count` on retries);
//! 2. injects that span's context, and the current baggage, into the request headers with the
//!    global propagator: `traceparent`, `tracestate`, `baggage`;
//! 3. records the outcome: the status code, and, through `record_failure`, ERROR for a
//!    3xx/4xx/5xx (`error.type` is the status code) or a transport error.
//!
//! The receiving service's server layer extracts those headers, so its SERVER span becomes a
//! child of this CLIENT span, and the trace continues across the process boundary.
//!
//! Every attempt has a timeout; nothing here waits forever on another service. A retry
//! middleware before the tracing middleware sends a request again (twice at most) when that
//! is safe: always when the connection could not be made (nothing was sent), and after a
//! timeout or a 502/503/504 only when the request is idempotent. Each attempt is its own
//! CLIENT span, the resends with `http.request.resend_count`, so retries are visible in the
//! waterfall.
//!
//! The service on the other end may be wrong or hostile, so what comes back is bounded too:
//! - **No redirects are followed.** A redirect would re-send the request (its body, its
//!   `traceparent` and `baggage`) to wherever the answer points, outside the system perhaps.
//!   Services call each other at fixed addresses; a 3xx is a fault of the neighbour, and
//!   [`ServiceClient::read_answer`] turns it into an [`AnswerError::Redirect`].
//! - **An answer is read into memory only up to a limit** ([`ResponseLimit`],
//!   `UPSTREAM_RESPONSE_LIMIT_BYTES`): a `Content-Length` over it is refused before a byte of
//!   the body is read, and a body without one (chunked) is counted as it streams and dropped
//!   the moment it passes the limit, so a neighbour cannot make a service buffer a body of any
//!   size by lying about it or leaving its length out.
//!
//! A call that gets no usable answer says why as a [`CallFailure`], whether it failed on the
//! way ([`CallFailure::of`]) or while its answer was read ([`AnswerError::kind`]): the CLIENT
//! span's `error.type`, and what a caller matches on to decide what the failure means.

use std::time::Duration;

use axum::body::Bytes;
use http::Extensions;
use reqwest::{Method, Request, Response, StatusCode, Url, header::LOCATION};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next, RequestBuilder};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    config::{ConfigError, Vars, shared},
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

/// Resends after the first attempt, when a resend is safe (so at most three attempts).
const MAX_RESENDS: u32 = 2;

/// The pause before the first resend; it doubles before each further one.
const BACKOFF: Duration = Duration::from_millis(100);

/// The most bytes of one answer a [`ServiceClient`] reads into memory
/// (`UPSTREAM_RESPONSE_LIMIT_BYTES`).
///
/// The default, 1 MiB, is thousands of times what this system's answers are (an order is
/// about 300 bytes), and small enough that a few hundred answers at the limit at once still
/// fit in a small container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseLimit(pub usize);

impl Default for ResponseLimit {
    /// The declared default (`config::shared::UPSTREAM_RESPONSE_LIMIT_BYTES`).
    fn default() -> Self {
        ResponseLimit::from_vars(&Vars::from_pairs([])).expect("the declared limit parses")
    }
}

impl ResponseLimit {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        vars.read(&shared::UPSTREAM_RESPONSE_LIMIT_BYTES, |raw| {
            match raw.parse() {
                Ok(0) => Err("a limit of 0 would refuse every answer".to_owned()),
                limit => limit.map(ResponseLimit).map_err(|e| e.to_string()),
            }
        })
    }
}

/// An answer read whole: a final (non-redirect) status and a body within the limit.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Why an answer could not be read; see the module docs.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// A 3xx: service calls follow no redirects.
    #[error(
        "answered {status} (a redirect to {location:?}), and service calls follow no redirects"
    )]
    Redirect {
        status: StatusCode,
        location: Option<String>,
    },
    /// The body is (or says it is) longer than the limit; it was not read past the limit.
    #[error("answered {status} with a body over the {limit}-byte limit")]
    TooLarge { status: StatusCode, limit: usize },
    /// The body could not be read: the connection broke, or the attempt timed out.
    #[error("reading the answer")]
    Body(#[source] reqwest::Error),
}

impl AnswerError {
    /// What kind of failure this is, for the span of the request that needed the answer.
    pub fn kind(&self) -> CallFailure {
        match self {
            AnswerError::Redirect { .. } => CallFailure::Redirect,
            AnswerError::TooLarge { .. } => CallFailure::ResponseTooLarge,
            AnswerError::Body(e) if e.is_timeout() => CallFailure::Timeout,
            AnswerError::Body(_) => CallFailure::ResponseBody,
        }
    }
}

/// Why a call to another service got no usable answer; see the module docs.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The connection could not be made: nothing was sent.
    ConnectionFailed,
    /// No answer, or no whole body, in time: the request may have been acted on.
    Timeout,
    /// The request could not be sent for another reason.
    RequestFailed,
    /// The answer's body broke off, or could not be decoded.
    ResponseBody,
    /// A 3xx, which service calls do not follow.
    Redirect,
    /// A body over the [`ResponseLimit`].
    ResponseTooLarge,
    /// A middleware of the client failed the call.
    Middleware,
}

impl CallFailure {
    /// The kind of a call that got no response at all.
    pub fn of(error: &reqwest_middleware::Error) -> Self {
        match error {
            reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => CallFailure::Timeout,
            reqwest_middleware::Error::Reqwest(e) if e.is_connect() => {
                CallFailure::ConnectionFailed
            }
            reqwest_middleware::Error::Reqwest(e) if e.is_body() || e.is_decode() => {
                CallFailure::ResponseBody
            }
            reqwest_middleware::Error::Reqwest(_) => CallFailure::RequestFailed,
            reqwest_middleware::Error::Middleware(_) => CallFailure::Middleware,
        }
    }

    /// Its `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallFailure::ConnectionFailed => "connection_failed",
            CallFailure::Timeout => "timeout",
            CallFailure::RequestFailed => "request_failed",
            CallFailure::ResponseBody => "response_body",
            CallFailure::Redirect => "redirect",
            CallFailure::ResponseTooLarge => "response_too_large",
            CallFailure::Middleware => "middleware",
        }
    }
}

/// How long an idle pooled connection is kept for reuse; see [`ServiceClient::new`].
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for one downstream service.
#[derive(Clone, Debug)]
pub struct ServiceClient {
    base: Url,
    http: ClientWithMiddleware,
    response_limit: ResponseLimit,
}

impl ServiceClient {
    /// `base` is the service's root URL; `timeout` bounds each attempt, from connecting to
    /// the last byte of the response. Attempts are retried (see the module docs);
    /// answers are read up to the default [`ResponseLimit`] (see
    /// [`with_response_limit`](Self::with_response_limit)).
    pub fn new(base: Url, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            // Calls inside the system go straight to the service, whatever proxy variables the
            // container inherits.
            .no_proxy()
            // A redirect is answered to the caller as a fault (see the module docs); reqwest's
            // default would follow up to ten, re-sending the body and the trace context.
            .redirect(reqwest::redirect::Policy::none())
            // Give up an idle connection before the next service does (its
            // `HTTP_HEADER_READ_TIMEOUT_MS`, 5 s by default, also closes idle keep-alive
            // connections): a request sent on a connection the server is closing at that
            // moment would fail, and a POST is not safe to resend.
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .build()
            .expect("a client without TLS or proxies always builds");
        // Retries outside tracing: each attempt gets a span of its own.
        let http = ClientBuilder::new(http)
            .with(RetryMiddleware)
            .with(TracingMiddleware)
            .build();
        ServiceClient {
            base,
            http,
            response_limit: ResponseLimit::default(),
        }
    }

    /// Reads answers up to `limit` bytes instead of the default.
    #[must_use]
    pub fn with_response_limit(mut self, limit: ResponseLimit) -> Self {
        self.response_limit = limit;
        self
    }

    /// Reads `response` whole, within this client's [`ResponseLimit`], refusing a redirect;
    /// see the module docs. Every answer a service reads into memory goes through here.
    pub async fn read_answer(&self, mut response: Response) -> Result<Answer, AnswerError> {
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers().get(LOCATION).map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(256)
                    .collect()
            });
            return Err(AnswerError::Redirect { status, location });
        }
        let limit = self.response_limit.0;
        let too_large = AnswerError::TooLarge { status, limit };
        // Dropping `response` unread closes its connection: nothing more is received.
        let declared = response.content_length();
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large);
        }
        // At most `limit` (a usize) by the check above.
        let mut body =
            Vec::with_capacity(declared.map_or(0, |length| usize::try_from(length).unwrap_or(0)));
        while let Some(chunk) = response.chunk().await.map_err(AnswerError::Body)? {
            // Counted before it is kept, so memory never holds more than the limit (plus one
            // chunk, which hyper has already read).
            if body.len() + chunk.len() > limit {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            body: Bytes::from(body),
        })
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
#[derive(Clone, Copy, Debug)]
struct RetryMiddleware;

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
            let again = resends < MAX_RESENDS
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
            tokio::time::sleep(BACKOFF * 2_u32.pow(resends)).await;
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
                // For a client, any 4xx or 5xx means the call did not do what it was for; so
                // does a 3xx, as redirects are not followed.
                if status.is_redirection() || status.is_client_error() || status.is_server_error() {
                    record_failure(&span, &Failure::status(status));
                }
            }
            Err(error) => {
                record_failure(&span, &Failure::of(CallFailure::of(error).as_str(), error));
            }
        }
        result
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

    #[test]
    fn the_response_limit_defaults_to_a_mebibyte_and_cannot_be_zero() {
        let limit = |pairs: &[(&str, &str)]| {
            ResponseLimit::from_vars(&Vars::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(limit(&[]), Ok(ResponseLimit(1_048_576)));
        assert_eq!(
            limit(&[("UPSTREAM_RESPONSE_LIMIT_BYTES", "4096")]),
            Ok(ResponseLimit(4096))
        );
        for bad in ["0", "-1", "1MiB"] {
            assert!(
                matches!(
                    limit(&[("UPSTREAM_RESPONSE_LIMIT_BYTES", bad)]),
                    Err(ConfigError::Invalid {
                        name: "UPSTREAM_RESPONSE_LIMIT_BYTES",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
