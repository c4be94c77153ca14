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
//!
//! [`serve`] runs the result: hyper's HTTP/1 connections with a header read timeout and a
//! bound on connections ([`ConnectionLimits`]), drained on shutdown.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, Version, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::FutureExt as _;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::sync::Semaphore;
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    config::{ConfigError, Vars, shared},
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
            body: vars.parse(&shared::REQUEST_BODY_LIMIT_BYTES)?,
            headers: vars.parse(&shared::REQUEST_HEADER_LIMIT_BYTES)?,
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

/// What one client may hold of the server: how long it may take to send a request's
/// headers, and how many connections all clients together may have open.
///
/// Without these, a client that sends its headers one byte a second keeps its connection (and
/// the task serving it) forever, and enough such clients exhaust the process's file
/// descriptors: the "slowloris" attack. axum's own `serve` builds hyper connections without a
/// timer, so no header timeout is in effect there; [`serve`] configures hyper itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: the time a client has to send a request's headers,
    /// counted from the moment the server waits for them: when the connection is accepted, and
    /// on a keep-alive connection when the previous answer has been sent. hyper starts the same
    /// timer for both, so this is also how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: connections served at once. Past it the server stops
    /// accepting: new connections wait in the kernel's listen backlog (they are neither served
    /// nor refused) until one closes, and their own connect or read timeouts bound the wait.
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(ConnectionLimits {
            // hyper reads a zero timeout as "expired at once": no request could be served.
            header_read_timeout: vars.read(&shared::HTTP_HEADER_READ_TIMEOUT_MS, |raw| {
                match crate::config::millis(raw)? {
                    zero if zero.is_zero() => Err("must be at least 1 millisecond".to_owned()),
                    timeout => Ok(timeout),
                }
            })?,
            max_connections: vars.read(&shared::HTTP_MAX_CONNECTIONS, |raw| {
                match crate::config::from_str(raw)? {
                    0 => Err("must be at least 1".to_owned()),
                    max => Ok(max),
                }
            })?,
        })
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then waits for
/// in-flight requests to finish (their spans end, and are queued for export, before this
/// returns).
///
/// The shape is axum's own `serve` and hyper-util's graceful-shutdown example: accept, serve
/// each connection on its own task with hyper's HTTP/1 connection, and on shutdown stop
/// accepting and let every connection finish the request it is serving (idle ones close at
/// once). The differences are the reason this exists: hyper gets a timer, so the header read
/// timeout is in effect, and a semaphore bounds the connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(
        address = %listener.local_addr()?,
        http.header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        http.max_connections = limits.max_connections,
        "listening"
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let service = TowerToHyperService::new(router);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // A slot first, then a connection: past the bound, connections wait in the backlog
        // rather than being accepted and left unserved. The semaphore is never closed.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    on_accept_error(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            // A client that goes away, sends garbage or is too slow with its headers ends
            // its connection with an error; the server carries on.
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection closed with an error");
            }
            drop(slot);
        });
    }

    // Stop accepting at once: new connections are refused instead of waiting in a backlog
    // no one reads.
    drop(listener);
    graceful.shutdown().await;
    tracing::info!("stopped: all in-flight requests answered");
    Ok(())
}

/// What to do when `accept` fails: errors that concern one connection (the client reset it
/// before it was accepted) are nothing to act on; anything else, such as running out of file
/// descriptors, is logged and retried after a pause, so the loop does not spin (as hyper's
/// and axum's accept loops do).
async fn on_accept_error(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
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

    /// The server under test: `serve` with `limits` on 127.0.0.1:0, a `/healthz` and a
    /// `/slow` that answers after 300 ms. Dropping the sender starts the shutdown.
    async fn server(
        limits: ConnectionLimits,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", get(healthz)).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        (address, stop, server)
    }

    fn limits(header_read_timeout_ms: u64, max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_millis(header_read_timeout_ms),
            max_connections,
        }
    }

    const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

    /// Reads one HTTP/1.1 answer (head and `Content-Length` body) and returns its head.
    async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = Vec::new();
        let mut chunk = [0; 1024];
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buffer.len() >= end + 4 + length {
                    return head;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before a whole answer");
            buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits up to `within` for the server to close `stream`, and says how long it took.
    async fn closed_within(
        stream: &mut tokio::net::TcpStream,
        within: Duration,
    ) -> Option<Duration> {
        use tokio::io::AsyncReadExt as _;
        let start = std::time::Instant::now();
        let mut byte = [0; 1];
        match tokio::time::timeout(within, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => Some(start.elapsed()),
            Ok(Ok(_)) => panic!("the server sent bytes instead of closing"),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn a_client_that_sends_its_headers_a_byte_at_a_time_is_disconnected() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = server(limits(300, 16)).await;
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        // One byte every 50 ms: never idle long, but the headers take 1.8 s to arrive.
        let drip = tokio::spawn(async move {
            for byte in GET_HEALTHZ {
                if write.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let start = std::time::Instant::now();
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), async {
            use tokio::io::AsyncReadExt as _;
            read.read_to_end(&mut buffer).await
        })
        .await;
        let elapsed = start.elapsed();
        assert!(read.is_ok(), "still open after {elapsed:?}");
        assert!(
            elapsed < Duration::from_millis(300 + 500),
            "closed only after {elapsed:?}"
        );
        assert!(buffer.is_empty(), "the slow request was served");
        drip.abort();
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = server(limits(300, 16)).await;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(GET_HEALTHZ).await.unwrap();
        let head = read_answer(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        // The answer was kept alive; then nothing more is sent.
        let closed = closed_within(&mut stream, Duration::from_secs(2)).await;
        let elapsed = closed.expect("an idle connection stayed open for 2 s");
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(800),
            "closed after {elapsed:?}, expected about 300 ms"
        );
    }

    #[tokio::test]
    async fn a_connection_past_the_bound_is_served_only_when_another_closes() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = server(limits(10_000, 1)).await;
        let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
        first.write_all(GET_HEALTHZ).await.unwrap();
        read_answer(&mut first).await;

        // The kernel completes the handshake (the backlog), but the server does not accept.
        let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
        second.write_all(GET_HEALTHZ).await.unwrap();
        let early =
            tokio::time::timeout(Duration::from_millis(500), read_answer(&mut second)).await;
        assert!(
            early.is_err(),
            "the second connection was served past the bound"
        );

        drop(first);
        let head = tokio::time::timeout(Duration::from_secs(2), read_answer(&mut second))
            .await
            .expect("the second connection is served once the first closes");
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }

    #[tokio::test]
    async fn shutdown_answers_the_request_in_flight_then_stops_accepting() {
        use tokio::io::AsyncWriteExt as _;
        let (address, stop, server) = server(limits(5_000, 16)).await;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        // An idle keep-alive connection too: shutdown closes it at once rather than waiting.
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        idle.write_all(GET_HEALTHZ).await.unwrap();
        read_answer(&mut idle).await;

        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stop);
        let head = read_answer(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            closed_within(&mut idle, Duration::from_secs(1))
                .await
                .is_some()
        );
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("serve returns once the connections are done")
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(address).await.is_err());
    }

    #[test]
    fn connection_limits_come_from_the_environment_and_refuse_zero() {
        let defaults = ConnectionLimits::from_vars(&Vars::from_pairs([])).unwrap();
        assert_eq!(defaults, limits(5_000, 1024));
        let set = ConnectionLimits::from_vars(&Vars::from_pairs([
            ("HTTP_HEADER_READ_TIMEOUT_MS", "250"),
            ("HTTP_MAX_CONNECTIONS", "8"),
        ]))
        .unwrap();
        assert_eq!(set, limits(250, 8));
        for (name, value) in [
            ("HTTP_HEADER_READ_TIMEOUT_MS", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ] {
            assert!(
                ConnectionLimits::from_vars(&Vars::from_pairs([(name, value)])).is_err(),
                "{name}={value}"
            );
        }
    }
}
