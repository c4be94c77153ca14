//! OTLP/HTTP span export: where to, with which headers, and the exporter itself.
//!
//! [`HttpExporter`] posts each batch as `application/x-protobuf` to the collector's
//! `/v1/traces`, the body written by [`TraceEncoder`] straight from the span data (its docs
//! say why, and `bench/RESULTS.md` what it saves). The services run it behind
//! [`EncodingBatchProcessor`], which encodes each span as it ends and posts the batches from a
//! thread of its own; it is also a `SpanExporter` for the SDK's processors. Either way it runs
//! off the request threads, so it uses a blocking HTTP client and may sleep between attempts:
//! request handling never waits on it.
//!
//! What it does with the collector's answers, which it treats as possibly wrong or hostile:
//! - 2xx: delivered; a `partial_success` with rejected spans is logged as a warning, as the
//!   OTLP specification asks;
//! - 429, 502, 503, 504, or no connection: retried, up to [`MAX_RETRIES`] times, after 100,
//!   200, 400 ms, each less a random part of up to half (the specification's "exponential
//!   backoff with jitter": services that lost the same collector do not all come back to it
//!   in step), or after the `Retry-After` seconds the collector asks for; all within the
//!   export timeout;
//! - anything else: failed, with the status and the start of the body in the error;
//! - a body is read up to [`MAX_RESPONSE_BYTES`] and no further, whatever the collector sends.
//!
//! gRPC export stays with `opentelemetry-otlp`'s tonic exporter, which reads the same
//! variables itself; [`OtlpTarget`] validates them for both protocols at start-up.

mod batch;
mod encode;

use std::{
    io::Read as _,
    time::{Duration, Instant},
};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter},
};
use prost::Message as _;
use reqwest::{
    StatusCode, Url,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER},
};

pub use batch::EncodingBatchProcessor;
pub use encode::{EncodedSpans, TraceEncoder};

use crate::config::{ConfigError, Vars, shared as var};

/// Retries of one export after its first attempt.
pub const MAX_RETRIES: u32 = 3;
/// The most of a collector's answer that is read.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const PROTOBUF: &str = "application/x-protobuf";

/// `delay` less a random part of up to half of it: the wait before a retry.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..=1.0))
}

/// Where spans go and the headers that go with them, from the `OTEL_EXPORTER_OTLP_*`
/// variables, checked at start-up.
#[derive(Clone, Debug, Default)]
pub struct OtlpTarget {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL, used as it is.
    pub traces_endpoint: Option<Url>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL; HTTP appends `/v1/traces`.
    pub endpoint: Option<Url>,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key=value`, values percent-decoded and
    /// marked sensitive (they are credentials, as a rule: `{:?}` does not print them).
    pub headers: HeaderMap,
}

impl OtlpTarget {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(OtlpTarget {
            traces_endpoint: vars
                .read_optional(&var::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, http_url)?,
            endpoint: vars.read_optional(&var::OTEL_EXPORTER_OTLP_ENDPOINT, http_url)?,
            headers: vars
                .read_optional(&var::OTEL_EXPORTER_OTLP_HEADERS, headers)?
                .unwrap_or_default(),
        })
    }

    /// Where OTLP/HTTP posts traces, as the specification resolves it: the signal's own
    /// endpoint as it is, else the base endpoint with `v1/traces` appended to its path, else
    /// `http://localhost:4318/v1/traces`.
    pub fn http_traces_url(&self) -> Url {
        if let Some(url) = &self.traces_endpoint {
            return url.clone();
        }
        let mut url = self
            .endpoint
            .clone()
            .unwrap_or_else(|| Url::parse("http://localhost:4318").expect("a valid URL"));
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{path}/v1/traces"));
        url
    }
}

/// An `http://` URL with a host. `https` is refused: the services are built without a TLS
/// stack, so such an endpoint could only fail at every export; say so at start-up instead.
fn http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" if url.host_str().is_some() => Ok(url),
        "https" => Err("https needs a TLS stack these services are built without; \
                        export to a local collector over http, and let it use TLS"
            .to_owned()),
        _ => Err("expected an http:// URL with a host".to_owned()),
    }
}

/// `key=value,key=value`, the W3C Baggage format the specification names: whitespace around
/// members trimmed, values percent-decoded. A malformed member is an error, not skipped: a
/// missing credential would otherwise show up only as every export being refused.
fn headers(raw: &str) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for member in raw.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (key, value) = member
            .split_once('=')
            .ok_or_else(|| format!("`{member}` is not key=value"))?;
        let name = HeaderName::from_bytes(key.trim().as_bytes())
            .map_err(|_| format!("`{}` is not a header name", key.trim()))?;
        let decoded = crate::propagation::baggage::percent_decode(value.trim())
            .ok_or_else(|| format!("the value of `{name}` has malformed percent-encoding"))?;
        let mut value = HeaderValue::from_str(&decoded)
            .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
        // Such headers carry credentials (an API key, a bearer token): sensitive values
        // print as `Sensitive` in `{:?}`, so a logged `?config` shows no key.
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// Posts batches of spans to an OTLP/HTTP collector; see the module docs.
#[derive(Debug)]
pub struct HttpExporter {
    client: reqwest::blocking::Client,
    url: Url,
    /// `url` without its user and password, if it has any, for error messages.
    shown_url: String,
    headers: HeaderMap,
    timeout: Duration,
    encoder: TraceEncoder,
}

impl HttpExporter {
    /// Posts to `url` with `headers`; each export, retries included, takes at most `timeout`.
    pub fn new(url: Url, headers: HeaderMap, timeout: Duration) -> anyhow::Result<Self> {
        // The blocking client runs a runtime of its own, on a thread of its own, and refuses
        // to be built inside another runtime (as `init` is): build it on a plain thread.
        let client = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                // The collector is a neighbour, not the internet: no proxy from the
                // environment, no redirects to follow somewhere else.
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("building the OTLP/HTTP client panicked"))??;
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Ok(HttpExporter {
            client,
            shown_url: shown.to_string(),
            url,
            headers,
            timeout,
            encoder: TraceEncoder::default(),
        })
    }

    /// One export: attempts until one is answered for good or the time is up.
    fn send(&self, body: &Bytes) -> OTelSdkResult {
        let deadline = Instant::now() + self.timeout;
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 0..=MAX_RETRIES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let retry_after = match self.attempt(body, left) {
                Attempt::Delivered => return Ok(()),
                Attempt::Failed(reason) => return Err(OTelSdkError::InternalFailure(reason)),
                Attempt::Retry { reason, .. } if attempt == MAX_RETRIES => {
                    return Err(OTelSdkError::InternalFailure(format!(
                        "{reason}, after {MAX_RETRIES} retries"
                    )));
                }
                Attempt::Retry { after, .. } => after,
            };
            // Compared with the time left, never added to now: a collector's `Retry-After`
            // can be any number, and an `Instant` plus a huge one overflows.
            let wait = retry_after.unwrap_or_else(|| jittered(delay));
            if wait >= deadline.saturating_duration_since(Instant::now()) {
                break;
            }
            std::thread::sleep(wait);
            delay *= 2;
        }
        Err(OTelSdkError::Timeout(self.timeout))
    }

    fn attempt(&self, body: &Bytes, left: Duration) -> Attempt {
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, PROTOBUF)
            .body(body.clone())
            .timeout(left)
            .send();
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                return Attempt::Retry {
                    after: None,
                    reason: format!("no connection to {}: {}", self.shown_url, e.without_url()),
                };
            }
            Err(e) => {
                return Attempt::Failed(format!(
                    "exporting to {}: {}",
                    self.shown_url,
                    e.without_url()
                ));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let answer = read_bounded(response);
        if status.is_success() {
            warn_of_rejected_spans(&answer);
            return Attempt::Delivered;
        }
        let reason = format!(
            "the collector at {} answered {status}: {}",
            self.shown_url,
            printable(&answer)
        );
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        ) {
            Attempt::Retry {
                after: retry_after,
                reason,
            }
        } else {
            Attempt::Failed(reason)
        }
    }
}

enum Attempt {
    Delivered,
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    Failed(String),
}

impl SpanExporter for HttpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = self.encoder.encode(&batch);
        // The spans are in the body now; free them before waiting on the network.
        drop(batch);
        self.send(&body)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.encoder = TraceEncoder::new(resource);
    }
}

/// At most [`MAX_RESPONSE_BYTES`] of the answer; what cannot be read is left unread.
fn read_bounded(response: reqwest::blocking::Response) -> Vec<u8> {
    let mut answer = Vec::new();
    let _ = response.take(MAX_RESPONSE_BYTES).read_to_end(&mut answer);
    answer
}

/// The specification's partial success: the collector took the request but rejected some
/// spans. Those are not retried; they are logged, with the collector's reason.
fn warn_of_rejected_spans(answer: &[u8]) {
    let Ok(response) = ExportTraceServiceResponse::decode(answer) else {
        return;
    };
    if let Some(partial) = response.partial_success
        && (partial.rejected_spans > 0 || !partial.error_message.is_empty())
    {
        tracing::warn!(
            spans.rejected = partial.rejected_spans,
            reason = %printable(partial.error_message.as_bytes()),
            "the collector rejected spans"
        );
    }
}

/// The start of a collector's text, safe to log: at most 200 characters, no control
/// characters (a hostile answer cannot forge log lines).
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future as _,
        net::SocketAddr,
        pin::pin,
        sync::{Arc, Mutex},
        task::{Context, Poll, Waker},
        time::{Duration, Instant, SystemTime},
    };

    use axum::{
        Router,
        body::Bytes,
        http::{HeaderMap, StatusCode},
        response::IntoResponse,
        routing::post,
    };
    use opentelemetry::{
        InstrumentationScope, KeyValue,
        trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_sdk::{
        Resource,
        error::OTelSdkResult,
        trace::{SpanData, SpanEvents, SpanExporter, SpanLinks},
    };
    use prost::Message as _;

    use super::{HttpExporter, OtlpTarget, jittered};
    use crate::config::Vars;

    fn target(pairs: &[(&str, &str)]) -> Result<OtlpTarget, String> {
        OtlpTarget::from_vars(&Vars::from_pairs(pairs.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn endpoints_resolve_as_the_specification_says() {
        let url =
            |pairs: &[(&str, &str)]| target(pairs).expect("valid").http_traces_url().to_string();
        assert_eq!(url(&[]), "http://localhost:4318/v1/traces");
        for base in ["http://jaeger:4318", "http://jaeger:4318/"] {
            assert_eq!(
                url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", base)]),
                "http://jaeger:4318/v1/traces"
            );
        }
        assert_eq!(
            url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gateway:8000/otlp/")]),
            "http://gateway:8000/otlp/v1/traces"
        );
        assert_eq!(
            url(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://collector:9999/custom"
                ),
            ]),
            "http://collector:9999/custom",
            "the signal's endpoint is used as it is, and wins"
        );
    }

    #[test]
    fn https_and_malformed_endpoints_stop_start_up() {
        let https =
            target(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")]).unwrap_err();
        assert!(
            https.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && https.contains("TLS"),
            "{https}"
        );
        for bad in ["jaeger:4318", "ftp://jaeger", "not a url"] {
            let error = target(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad)]).unwrap_err();
            assert!(
                error.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn headers_are_key_value_pairs_with_percent_decoded_values() {
        let headers = target(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            " api-key = s3cr%20t , x-tenant=t1,",
        )])
        .expect("valid")
        .headers;
        assert_eq!(headers["api-key"], "s3cr t");
        assert_eq!(headers["x-tenant"], "t1");
        let printed = format!("{headers:?}");
        assert!(
            !printed.contains("s3cr"),
            "a credential in a debug print: {printed}"
        );
        for bad in ["no-value", "bad name=v", "k=%zz", "k=line%0Abreak"] {
            let error = target(&[("OTEL_EXPORTER_OTLP_HEADERS", bad)]).unwrap_err();
            assert!(
                error.contains("OTEL_EXPORTER_OTLP_HEADERS"),
                "{bad}: {error}"
            );
        }
    }

    /// One answer of the fake collector: status, headers, body.
    pub(super) type Answer = (StatusCode, Vec<(&'static str, &'static str)>, Vec<u8>);

    /// An OTLP/HTTP collector that records each request and gives the next of its answers
    /// (200 when they run out), on a runtime of its own: the exporter under test blocks.
    pub(super) struct Collector {
        address: SocketAddr,
        pub(super) requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
        _runtime: tokio::runtime::Runtime,
    }

    impl Collector {
        pub(super) fn start(answers: Vec<Answer>) -> Collector {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let requests = Arc::new(Mutex::new(Vec::new()));
            let answers = Arc::new(Mutex::new(answers.into_iter()));
            let recorded = requests.clone();
            let app = Router::new().route(
                "/v1/traces",
                post(move |headers: HeaderMap, body: Bytes| async move {
                    recorded.lock().unwrap().push((headers, body));
                    let (status, headers, body) = answers.lock().unwrap().next().unwrap_or((
                        StatusCode::OK,
                        Vec::new(),
                        Vec::new(),
                    ));
                    let mut response = (status, body).into_response();
                    for (k, v) in headers {
                        response.headers_mut().insert(k, v.parse().unwrap());
                    }
                    response
                }),
            );
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("a free port");
            let address = listener.local_addr().expect("an address");
            runtime.spawn(async move { axum::serve(listener, app).await });
            Collector {
                address,
                requests,
                _runtime: runtime,
            }
        }

        pub(super) fn exporter(&self, timeout: Duration) -> HttpExporter {
            exporter_to(&format!("http://{}/v1/traces", self.address), timeout)
        }

        fn requests(&self) -> usize {
            self.requests.lock().unwrap().len()
        }
    }

    fn exporter_to(url: &str, timeout: Duration) -> HttpExporter {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-tenant", "t1".parse().unwrap());
        let mut exporter =
            HttpExporter::new(url.parse().unwrap(), headers, timeout).expect("a client");
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name("order-service")
                .build(),
        );
        exporter
    }

    pub(super) fn span(name: &'static str) -> SpanData {
        let now = SystemTime::now();
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: name.into(),
            start_time: now,
            end_time: now,
            attributes: vec![KeyValue::new("http.request.method", "POST")],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    /// Runs one export. It never waits on a future (it blocks its thread, as the batch
    /// processor's thread expects), so one poll finishes it.
    fn export(exporter: &HttpExporter, names: &[&'static str]) -> OTelSdkResult {
        let batch = names.iter().map(|n| span(n)).collect();
        match pin!(exporter.export(batch)).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("the export yielded instead of blocking"),
        }
    }

    #[test]
    fn a_batch_is_posted_as_protobuf_with_the_headers_and_the_resource() {
        let collector = Collector::start(Vec::new());
        export(
            &collector.exporter(Duration::from_secs(5)),
            &["POST /orders", "INSERT orders"],
        )
        .expect("delivered");
        let requests = collector.requests.lock().unwrap();
        let (headers, body) = &requests[0];
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["x-tenant"], "t1");
        let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        let resource = &request.resource_spans[0];
        let service = &resource.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let names: Vec<&str> = resource.scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["POST /orders", "INSERT orders"]);
    }

    #[test]
    fn unavailable_and_rate_limited_answers_are_retried_until_delivered() {
        let collector = Collector::start(vec![
            (StatusCode::SERVICE_UNAVAILABLE, Vec::new(), Vec::new()),
            (
                StatusCode::TOO_MANY_REQUESTS,
                vec![("retry-after", "0")],
                Vec::new(),
            ),
        ]);
        export(&collector.exporter(Duration::from_secs(5)), &["a"])
            .expect("delivered on the third try");
        assert_eq!(collector.requests(), 3);
    }

    #[test]
    fn a_hostile_retry_after_ends_the_export_instead_of_the_exporter() {
        let collector = Collector::start(vec![(
            StatusCode::SERVICE_UNAVAILABLE,
            vec![("retry-after", "18446744073709551615")],
            Vec::new(),
        )]);
        let started = Instant::now();
        let error = export(&collector.exporter(Duration::from_secs(5)), &["a"])
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no waiting on it either: {:?}",
            started.elapsed()
        );
        assert!(
            error.to_lowercase().contains("timed out") || error.contains("Timeout"),
            "{error}"
        );
    }

    #[test]
    fn credentials_in_the_endpoint_stay_out_of_the_errors() {
        let collector = Collector::start(vec![(StatusCode::BAD_REQUEST, Vec::new(), Vec::new())]);
        let url = format!("http://user:s3cret@{}/v1/traces", collector.address);
        let error = export(&exporter_to(&url, Duration::from_secs(5)), &["a"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("400") && !error.contains("s3cret"),
            "{error}"
        );
    }

    #[test]
    fn a_retry_waits_between_half_and_all_of_its_delay_and_not_always_the_same() {
        let delay = Duration::from_millis(400);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(delay)).collect();
        for wait in &waits {
            assert!(
                (delay / 2..=delay).contains(wait),
                "{wait:?} outside {:?}..={delay:?}",
                delay / 2
            );
        }
        let shortest = waits.iter().min().unwrap();
        let longest = waits.iter().max().unwrap();
        assert!(
            longest.saturating_sub(*shortest) > delay / 4,
            "services retrying together would still be in step: {shortest:?}..{longest:?}"
        );
    }

    #[test]
    fn retries_stop_at_the_limit() {
        let unavailable = || (StatusCode::BAD_GATEWAY, Vec::new(), Vec::new());
        let collector = Collector::start(vec![
            unavailable(),
            unavailable(),
            unavailable(),
            unavailable(),
            unavailable(),
        ]);
        let error = export(&collector.exporter(Duration::from_secs(5)), &["a"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("502") && error.contains("after 3 retries"),
            "{error}"
        );
        assert_eq!(collector.requests(), 4, "one attempt and three retries");
    }

    #[test]
    fn a_refused_batch_fails_at_once_with_the_status_and_the_collectors_words() {
        let collector = Collector::start(vec![(
            StatusCode::BAD_REQUEST,
            Vec::new(),
            b"bad span\n{\"level\":\"forged\"}".to_vec(),
        )]);
        let error = export(&collector.exporter(Duration::from_secs(5)), &["a"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("400 Bad Request"), "{error}");
        assert!(
            error.contains("bad span {\"level\""),
            "no line break gets through: {error}"
        );
        assert_eq!(collector.requests(), 1, "a 400 is not retried");
    }

    #[test]
    fn no_collector_fails_within_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let error = export(
            &exporter_to(
                &format!("http://127.0.0.1:{port}/v1/traces"),
                Duration::from_secs(1),
            ),
            &["a"],
        )
        .unwrap_err()
        .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            error.contains("no connection")
                || error.contains("timed out")
                || error.contains("Timeout"),
            "{error}"
        );
    }

    #[test]
    fn a_huge_or_partial_answer_still_counts_as_delivered() {
        let partial = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "span too old".to_owned(),
            }),
        };
        let collector = Collector::start(vec![
            (StatusCode::OK, Vec::new(), vec![b'x'; 8 * 1024 * 1024]),
            (StatusCode::OK, Vec::new(), partial.encode_to_vec()),
        ]);
        let exporter = collector.exporter(Duration::from_secs(5));
        export(&exporter, &["a"]).expect("an 8 MiB answer is read only in part");
        export(&exporter, &["b"]).expect("a partial success is a success, logged");
    }
}
