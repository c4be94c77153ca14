//! Context that travels: baggage, sampling, log correlation, and propagation switched off on
//! purpose, across the three real services.

use std::{collections::HashMap, time::Duration};

use e2e::{
    ORDER_TRACE_SPANS,
    harness::{Binary, Options, PATIENCE, System},
    order_trace_without,
};
use serde_json::{Value, json};
use testkit::{
    otlp::{ReceivedSpan, find, render_shape, render_tree},
    response::TestResponse,
};

fn order(user_id: i64) -> Value {
    json!({"user_id": user_id, "amount": 12.34, "currency": "USD", "tier": "gold"})
}

/// The trace ids the payment service logged its "charge settled" lines under, oldest first.
fn charges_settled_under(system: &System) -> Vec<String> {
    system
        .payments
        .log_lines()
        .into_iter()
        .filter(|l| l["message"] == "charge settled")
        .filter_map(|l| l["trace_id"].as_str().map(str::to_owned))
        .collect()
}

/// An order placed by a caller that sends `traceparent`, and `tracestate` if given.
async fn post_as_a_caller(
    system: &System,
    traceparent: &str,
    tracestate: Option<&str>,
) -> TestResponse {
    let mut headers = vec![("traceparent", traceparent)];
    headers.extend(tracestate.map(|value| ("tracestate", value)));
    system.post_order_with_headers(order(1), &headers).await
}

/// The trace id in a `traceresponse` header (which every answer has, sampled or not).
fn traceresponse(response: &TestResponse) -> (String, String) {
    let value = response
        .header("traceresponse")
        .expect("a traceresponse header");
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].to_owned(), parts[3].to_owned())
}

#[tokio::test]
async fn baggage_set_at_the_gateway_is_on_the_payment_services_spans_and_log_lines() {
    let system = System::start().await;
    let response = system.post_order(order(2)).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let trace_id = response.trace_id();
    let spans = system
        .receiver
        .wait_for_trace(trace_id, ORDER_TRACE_SPANS, PATIENCE)
        .await;

    for span in spans.iter().filter(|s| s.service_name == "payment-service") {
        assert_eq!(
            span.str_attr("user_id"),
            Some("2"),
            "{} carries user_id",
            span.name
        );
        assert_eq!(
            span.str_attr("customer_tier"),
            Some("gold"),
            "{} carries customer_tier",
            span.name
        );
    }

    // The log line written while settling the charge: correlated and carrying the baggage.
    let charge_card = find(&spans, "payment-service", "charge_card");
    let line = system
        .payments
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "charge settled")
        .unwrap_or_else(|| panic!("no 'charge settled' line in {:#?}", system.payments.logs()));
    assert_eq!(line["trace_id"], trace_id);
    assert_eq!(line["span_id"], charge_card.span_id.as_str());
    assert_eq!(line["service"], "payment-service");
    assert_eq!(line["user_id"], "2");
    assert_eq!(line["customer_tier"], "gold");
    assert_eq!(line["level"], "INFO");

    // And the event logged inside the span is a span event too.
    assert!(
        charge_card
            .events
            .iter()
            .any(|e| e.name == "charge settled"),
        "events of charge_card: {:?}",
        charge_card.events
    );
}

#[tokio::test]
async fn a_one_percent_sampler_gives_whole_traces_or_none() {
    let options = Options::default()
        .everywhere("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .everywhere("OTEL_TRACES_SAMPLER_ARG", "0.01")
        .env(Binary::PaymentService, "PROCESSOR_LATENCY_MS", "0");
    let mut system = System::start_with(options).await;

    let mut trace_ids = Vec::new();
    for i in 0..300 {
        let response = system.post_order(order(1 + i % 2)).await;
        assert_eq!(response.status, 201, "{}", response.body);
        let (trace_id, flags) = traceresponse(&response);
        assert_eq!(
            trace_id,
            response.trace_id(),
            "unsampled requests have a trace id too"
        );
        trace_ids.push((trace_id, flags));
    }
    // Stopping flushes: after this, every span any service recorded has been received.
    for service in [
        &mut system.gateway,
        &mut system.orders,
        &mut system.payments,
    ] {
        assert!(service.terminate().await.success());
    }

    let mut sampled = 0;
    for (trace_id, flags) in &trace_ids {
        let spans = system.receiver.trace(trace_id);
        match spans.len() {
            0 => assert_eq!(
                flags, "02",
                "an unsampled trace says so, and keeps the random flag"
            ),
            ORDER_TRACE_SPANS => {
                assert_eq!(flags, "03");
                sampled += 1;
            }
            n => panic!(
                "trace {trace_id} is half-sampled: {n} spans\n{}",
                render_tree(&spans)
            ),
        }
    }
    println!("{sampled} of {} traces sampled at 1%", trace_ids.len());
    assert!(sampled < 30, "about 1% should be sampled, got {sampled}");
    // The unsampled ones still carried their context: the payment service logged under the
    // gateway's trace ids.
    let logged = charges_settled_under(&system);
    for (trace_id, _) in &trace_ids {
        assert!(
            logged.contains(trace_id),
            "payment logged nothing under {trace_id}"
        );
    }
}

#[tokio::test]
async fn health_and_readiness_probes_produce_no_spans() {
    let system = System::start().await;
    for service in [&system.gateway, &system.orders, &system.payments] {
        for path in ["/healthz", "/readyz"] {
            let response = system
                .http
                .get(format!("{}{path}", service.url()))
                .send()
                .await
                .expect("the probe answers");
            assert_eq!(response.status(), 200, "{path}");
        }
    }
    // One real request afterwards, so the exporters have something to send.
    let response = system.post_order(order(1)).await;
    system
        .receiver
        .wait_for_trace(response.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probes: Vec<ReceivedSpan> = system
        .receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id != response.trace_id())
        .collect();
    assert!(probes.is_empty(), "probe spans:\n{}", render_tree(&probes));
}

#[tokio::test]
async fn with_propagation_off_at_the_payment_service_the_trace_splits_in_two() {
    let system =
        System::start_with(Options::default().env(Binary::PaymentService, "PROPAGATION", "off"))
            .await;
    let response = system.post_order(order(1)).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let trace_id = response.trace_id().to_owned();

    let expected = order_trace_without("payment-service");
    let first = system
        .receiver
        .wait_for_trace(&trace_id, expected.lines().count(), PATIENCE)
        .await;
    assert_eq!(
        render_shape(&first),
        expected,
        "the CLIENT call to the payment service has no child in this trace"
    );

    let orphans = system
        .receiver
        .wait_for(PATIENCE, |spans| {
            spans
                .iter()
                .any(|s| s.service_name == "payment-service" && s.name == "UPDATE payments")
        })
        .await;
    let orphan = orphans
        .iter()
        .find(|s| s.service_name == "payment-service" && s.name == "POST /charge")
        .expect("the payment service's spans");
    assert_ne!(orphan.trace_id, trace_id, "a second trace");
    assert_eq!(orphan.parent_span_id, None, "the orphan is a root");
    let second = system.receiver.trace(&orphan.trace_id);
    assert_eq!(second.len(), 7, "{}", render_tree(&second));
    assert!(
        second.iter().all(|s| s.attr("user_id").is_none()),
        "no baggage crossed either"
    );
}

#[tokio::test]
async fn outside_baggage_beyond_the_allow_list_does_not_reach_the_order_service() {
    let system = System::start().await;
    let response = system
        .post_order_with_headers(
            order(1),
            &[(
                "baggage",
                "session_id=abc123,evil=1,user_id=999,customer_tier=platinum",
            )],
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    let order_server = find(&spans, "order-service", "POST /orders");
    assert_eq!(
        order_server.str_attr("session_id"),
        Some("abc123"),
        "allow-listed"
    );
    assert_eq!(order_server.attr("evil"), None, "not allow-listed");
    assert_eq!(
        order_server.str_attr("user_id"),
        Some("1"),
        "the gateway's value, not the caller's"
    );
    assert_eq!(order_server.str_attr("customer_tier"), Some("gold"));
    let gateway_server = find(&spans, "gateway", "POST /api/orders");
    assert_eq!(gateway_server.attr("evil"), None);
}

#[tokio::test]
async fn a_caller_that_does_not_sample_gets_no_spans_but_its_context_still_travels() {
    let system = System::start().await;
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{caller_trace}-b7ad6b7169203331-00");
    let response = post_as_a_caller(&system, &traceparent, None).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.trace_id(), caller_trace);
    let (trace_id, flags) = traceresponse(&response);
    assert_eq!((trace_id.as_str(), flags.as_str()), (caller_trace, "00"));

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        system.receiver.trace(caller_trace).is_empty(),
        "nothing recorded"
    );
    let line = system
        .payments
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "charge settled")
        .expect("the payment service logged the charge");
    assert_eq!(
        line["trace_id"], caller_trace,
        "the context reached the last service"
    );
}

#[tokio::test]
async fn the_gateway_can_start_its_own_trace_and_link_to_the_callers() {
    let system = System::start_with(Options::default().env(
        Binary::Gateway,
        "CONTINUE_EXTERNAL_TRACES",
        "false",
    ))
    .await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{caller_trace}-00f067aa0ba902b7-01");
    let response = post_as_a_caller(&system, &traceparent, None).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_ne!(response.trace_id(), caller_trace, "a trace of its own");
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    let root = find(&spans, "gateway", "POST /api/orders");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(
        root.links,
        vec![(caller_trace.to_owned(), "00f067aa0ba902b7".to_owned())],
        "linked to the caller's span"
    );
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "a table of malformed headers, one row each, with the checks every row shares"
)]
async fn malformed_trace_headers_never_fail_a_request_and_start_a_new_trace() {
    let system = System::start().await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "upper case",
            vec![(
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            )],
        ),
        (
            "all-zero trace id",
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
        ),
        (
            "version ff",
            vec![(
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
        ),
        (
            "trailing data",
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            )],
        ),
        (
            "short span id",
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-01",
            )],
        ),
        ("garbage", vec![("traceparent", "\u{1f600} not a header")]),
        (
            "duplicated",
            vec![("traceparent", valid), ("traceparent", valid)],
        ),
        ("baggage garbage", vec![("baggage", ";;;===%%%,,,")]),
    ];
    let mut seen = HashMap::new();
    for (case, headers) in &cases {
        let response = system.post_order_with_headers(order(1), headers).await;
        assert_eq!(response.status, 201, "{case}: {}", response.body);
        assert_ne!(
            response.trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{case}: not continued"
        );
        seen.insert(response.trace_id().to_owned(), *case);
    }
    assert_eq!(seen.len(), cases.len(), "each a new trace");

    // A valid traceparent with an oversized tracestate of one repeated member: the trace
    // continues, and the tracestate keeps the first member only.
    let huge = "a=b,".repeat(2000);
    let response = system
        .post_order_with_headers(order(1), &[("traceparent", valid), ("tracestate", &huge)])
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    assert!(
        spans.iter().all(|s| s.trace_state == "a=b"),
        "the repeats are discarded: {:?}",
        spans.iter().map(|s| &s.trace_state).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_service_with_the_sdk_disabled_passes_the_context_through_unchanged() {
    let system = System::start_with(Options::default().env(
        Binary::OrderService,
        "OTEL_SDK_DISABLED",
        "true",
    ))
    .await;
    let response = system.post_order(order(1)).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let trace_id = response.trace_id();

    let spans = system.receiver.wait_for_trace(trace_id, 10, PATIENCE).await;
    assert!(
        spans.iter().all(|s| s.service_name != "order-service"),
        "no spans from the disabled SDK"
    );
    // The order service hands on the context it received, so the payment service's span is a
    // child of the gateway's call, in the same trace.
    let gateway_call = find(&spans, "gateway", "POST /orders");
    let charge = find(&spans, "payment-service", "POST /charge");
    assert_eq!(
        charge.parent_span_id.as_deref(),
        Some(gateway_call.span_id.as_str())
    );
    assert_eq!(charge.str_attr("user_id"), Some("1"), "baggage too");
    let line = system
        .orders
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "order recorded")
        .expect("the order service still logs");
    assert_eq!(
        line["trace_id"], trace_id,
        "and its log lines still lead to the trace"
    );
}

#[tokio::test]
async fn baggage_values_are_percent_encoded_between_services_and_arrive_decoded() {
    let system = System::start().await;
    let response = system
        .post_order_with_headers(order(1), &[("baggage", "session_id=Trom%20Chocolatier")])
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    // Decoded at the gateway, encoded again to the order service, and again to the payment
    // service: the value arrives whole at the end of the chain.
    for service in ["order-service", "payment-service"] {
        let server = find(
            &spans,
            service,
            if service == "order-service" {
                "POST /orders"
            } else {
                "POST /charge"
            },
        );
        assert_eq!(
            server.str_attr("session_id"),
            Some("Trom Chocolatier"),
            "{service}"
        );
    }
}

// W3C Trace Context to the payment service, observed on the wire

/// One call that passed through a [`Tap`]: what the caller sent and what the callee answered.
#[derive(Clone, Debug)]
struct Exchange {
    path: String,
    request: reqwest::header::HeaderMap,
    response: reqwest::header::HeaderMap,
}

/// A pass-through in front of a service that records the headers of every call: the order
/// service is pointed at it instead of the payment service, so a test sees exactly what the
/// payment service received (`traceparent`, `tracestate`) and what it answered
/// (`traceresponse`, `server-timing`), while the real payment service does the work. It is
/// started before the system, so it learns where to forward afterwards ([`Tap::forward_to`]);
/// until then it answers 503.
#[derive(Clone)]
struct Tap {
    url: String,
    upstream: std::sync::Arc<std::sync::OnceLock<String>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Exchange>>>,
}

impl Tap {
    async fn start() -> Self {
        let upstream = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain client");
        let (to, log) = (upstream.clone(), seen.clone());
        let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (to, log, client) = (to.clone(), log.clone(), client.clone());
            async move { Self::forward(request, to.get().cloned(), &client, &log).await }
        });
        let url = testkit::fake::serve(router).await;
        Tap {
            url,
            upstream,
            seen,
        }
    }

    /// The whole system, with the order service calling the payment service through a tap.
    async fn in_front_of_the_payment_service() -> (System, Tap) {
        let tap = Tap::start().await;
        let system = System::start_with(Options::default().env(
            Binary::OrderService,
            "PAYMENT_SERVICE_URL",
            &tap.url,
        ))
        .await;
        tap.forward_to(system.payments.url());
        (system, tap)
    }

    fn forward_to(&self, upstream: String) {
        self.upstream
            .set(upstream)
            .expect("the tap's upstream is set once");
    }

    async fn forward(
        request: axum::extract::Request,
        upstream: Option<String>,
        client: &reqwest::Client,
        log: &std::sync::Mutex<Vec<Exchange>>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let Some(upstream) = upstream else {
            return reqwest::StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .expect("a small request body");
        let mut headers = parts.headers.clone();
        headers.remove(reqwest::header::HOST);
        let answer = client
            .request(parts.method, format!("{upstream}{path}"))
            .headers(headers)
            .body(body)
            .send()
            .await
            .expect("the payment service answers the tap");
        let (status, response_headers) = (answer.status(), answer.headers().clone());
        let bytes = answer.bytes().await.expect("reading the answer");
        log.lock().expect("tap lock").push(Exchange {
            path,
            request: parts.headers,
            response: response_headers.clone(),
        });
        let mut response = (status, bytes).into_response();
        *response.headers_mut() = response_headers;
        response
    }

    /// The calls to `path` whose `traceparent` names `trace_id`.
    fn calls(&self, path: &str, trace_id: &str) -> Vec<Exchange> {
        self.seen
            .lock()
            .expect("tap lock")
            .iter()
            .filter(|e| e.path == path)
            .filter(|e| header_of(&e.request, "traceparent").is_some_and(|v| v.contains(trace_id)))
            .cloned()
            .collect()
    }
}

fn header_of<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The four fields of a version 00 `traceparent`/`traceresponse` value.
fn fields(value: &str) -> [String; 4] {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    [0, 1, 2, 3].map(|i| parts[i].to_owned())
}

/// Asserts that `headers` has a `traceresponse` and a `server-timing` `trace` metric with the
/// same value, and returns it.
fn response_trace_context(headers: &reqwest::header::HeaderMap, context: &str) -> String {
    let traceresponse = header_of(headers, "traceresponse")
        .unwrap_or_else(|| panic!("{context}: no traceresponse in {headers:?}"))
        .to_owned();
    assert_eq!(
        header_of(headers, "server-timing"),
        Some(format!("trace;desc={traceresponse}").as_str()),
        "{context}: server-timing carries the traceresponse value"
    );
    traceresponse
}

/// Keys the current W3C grammar allows and opentelemetry 0.33's `TraceState` rejects (two
/// `@`, and 15 characters after one), next to an ordinary member.
const TRACESTATE_THE_LIBRARY_REJECTS: &str =
    "foo@@bar=1,tenant@fifteen-chars-x=2,congo=t61rcWkgMzE";

#[tokio::test]
async fn a_random_callers_flags_and_tracestate_reach_the_payment_service_with_only_the_parent_changed()
 {
    let (system, tap) = Tap::in_front_of_the_payment_service().await;
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = post_as_a_caller(
        &system,
        &format!("00-{caller_trace}-{caller_span}-03"),
        Some(TRACESTATE_THE_LIBRARY_REJECTS),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.trace_id(), caller_trace);
    let spans = system
        .receiver
        .wait_for_trace(caller_trace, ORDER_TRACE_SPANS, PATIENCE)
        .await;

    // The parent chain: caller -> gateway SERVER -> ... -> order CLIENT -> payment SERVER.
    let gateway_server = find(&spans, "gateway", "POST /api/orders");
    assert_eq!(gateway_server.parent_span_id.as_deref(), Some(caller_span));
    let charge_call = spans
        .iter()
        .find(|s| s.service_name == "order-service" && s.name == "POST /charge")
        .expect("the order service's call");
    let charge = find(&spans, "payment-service", "POST /charge");
    assert!(charge.is_child_of(charge_call), "{}", render_tree(&spans));
    let mut up = charge;
    while let Some(parent) = up.parent_span_id.as_deref() {
        match spans.iter().find(|s| s.span_id == parent) {
            Some(next) => up = next,
            None => break,
        }
    }
    assert_eq!(
        up.span_id, gateway_server.span_id,
        "one chain up to the gateway"
    );
    assert_eq!(charge.trace_id, caller_trace);
    assert_eq!(
        charge.flags & 0xff,
        0x03,
        "the payment service saw sampled + random"
    );

    // On the wire into the payment service: the caller's trace id, flags and tracestate, with
    // the order service's CLIENT span as the parent.
    let [call] = tap
        .calls("/charge", caller_trace)
        .try_into()
        .expect("one charge call");
    assert_eq!(
        header_of(&call.request, "traceparent"),
        Some(format!("00-{caller_trace}-{}-03", charge_call.span_id).as_str())
    );
    assert_eq!(
        header_of(&call.request, "tracestate"),
        Some(TRACESTATE_THE_LIBRARY_REJECTS),
        "passed on unchanged"
    );
    // The payment service's answer names its SERVER span, with the same flags.
    assert_eq!(
        response_trace_context(&call.response, "payment service"),
        format!("00-{caller_trace}-{}-03", charge.span_id)
    );
    // And the gateway's answer names the gateway's.
    assert_eq!(
        response_trace_context(&response.headers, "gateway"),
        format!("00-{caller_trace}-{}-03", gateway_server.span_id)
    );
}

#[tokio::test]
async fn an_unsampled_callers_flags_reach_the_payment_service_random_or_not() {
    let (system, tap) = Tap::in_front_of_the_payment_service().await;
    let caller_span = "b7ad6b7169203331";
    // `-02` is what the OpenTelemetry Python SDK sends for every unsampled root.
    let cases = [
        ("02", "0af7651916cd43dd8448eb211c80319c"),
        ("00", "1baad25c36c11c1e7fbd6d122bd85db6"),
    ];
    for (flags, caller_trace) in cases {
        let response = post_as_a_caller(
            &system,
            &format!("00-{caller_trace}-{caller_span}-{flags}"),
            Some(TRACESTATE_THE_LIBRARY_REJECTS),
        )
        .await;
        assert_eq!(response.status, 201, "{flags}: {}", response.body);
        assert_eq!(response.trace_id(), caller_trace);
        let [version, trace_id, span_id, answered] =
            fields(&response_trace_context(&response.headers, "gateway"));
        assert_eq!(
            (version.as_str(), trace_id.as_str(), answered.as_str()),
            ("00", caller_trace, flags),
            "the gateway answers with the caller's flags"
        );
        assert_ne!(span_id, caller_span, "the gateway's own span");

        let [call] = tap
            .calls("/charge", caller_trace)
            .try_into()
            .unwrap_or_else(|calls| panic!("{flags}: one charge call, got {calls:?}"));
        let received = header_of(&call.request, "traceparent").expect("a traceparent");
        let [_, received_trace, received_parent, received_flags] = fields(received);
        assert_eq!(
            (received_trace.as_str(), received_flags.as_str()),
            (caller_trace, flags),
            "{flags}: what the payment service received"
        );
        assert_ne!(received_parent, caller_span, "a parent of this system's");
        assert_eq!(
            header_of(&call.request, "tracestate"),
            Some(TRACESTATE_THE_LIBRARY_REJECTS),
            "{flags}: passed on unchanged"
        );
        let [_, answered_trace, _, answered_flags] =
            fields(&response_trace_context(&call.response, "payment service"));
        assert_eq!(
            (answered_trace.as_str(), answered_flags.as_str()),
            (caller_trace, flags),
            "{flags}: the payment service kept them too"
        );
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    let logged = charges_settled_under(&system);
    for (flags, caller_trace) in cases {
        assert!(
            system.receiver.trace(caller_trace).is_empty(),
            "{flags}: nothing recorded"
        );
        assert!(
            logged.iter().any(|t| t == caller_trace),
            "{flags}: the payment service logged under the caller's trace id: {logged:?}"
        );
    }
}

#[tokio::test]
async fn every_answer_of_every_service_carries_its_trace_context_in_traceresponse_and_server_timing()
 {
    let mut system = System::start().await;
    let services = [
        ("gateway", system.gateway.url(), "/api/orders"),
        ("order-service", system.orders.url(), "/orders"),
        ("payment-service", system.payments.url(), "/charge"),
    ];
    for (service, url, route) in &services {
        let requests = [
            ("success", system.http.get(format!("{url}/healthz")), 200),
            (
                "unknown route",
                system.http.get(format!("{url}/no/such/route")),
                404,
            ),
            (
                "wrong method",
                system.http.delete(format!("{url}/healthz")),
                405,
            ),
            (
                "bad JSON",
                system
                    .http
                    .post(format!("{url}{route}"))
                    .header("content-type", "application/json")
                    .body("{not json"),
                400,
            ),
        ];
        for (case, request, status) in requests {
            let response =
                TestResponse::from_reqwest(request.send().await.expect("the service answers"))
                    .await;
            assert_eq!(
                response.status, status,
                "{service} {case}: {}",
                response.body
            );
            let [_, trace_id, _, _] = fields(&response_trace_context(
                &response.headers,
                &format!("{service} {case}"),
            ));
            if status != 200 {
                assert_eq!(
                    trace_id,
                    response.trace_id(),
                    "{service} {case}: the body's trace"
                );
            }
        }
    }

    // A 5xx: the gateway cannot reach the order service.
    system.orders.kill();
    let response = system.post_order(order(1)).await;
    assert!(response.status.is_server_error(), "{}", response.body);
    let [_, trace_id, _, flags] = fields(&response_trace_context(&response.headers, "gateway 5xx"));
    assert_eq!(trace_id, response.trace_id());
    assert_eq!(
        flags, "03",
        "a trace the gateway started: sampled and random"
    );
}
