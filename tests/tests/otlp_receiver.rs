//! Self-test of the in-process OTLP receiver (`testkit::otlp`, which is `trace_view::receiver`),
//! without the services: hand-built export requests go in over OTLP/HTTP (protobuf and JSON)
//! and OTLP/gRPC, and every field must come out decoded; hostile requests (compressed, of an
//! unknown type, too large) are refused clearly, and the store stays within its bounds. The end-to-end tests trust
//! this receiver to tell them what the services exported, and its fault
//! injection (stop, restart, failing, slow) to simulate a broken collector, so
//! both are checked here where a failure points at the receiver itself.

use std::time::{Duration, Instant};
use std::{collections::BTreeMap, fmt::Write as _};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use testkit::otlp::{
    AttrValue, Behaviour, OtlpReceiver, ReceivedEvent, ReceivedSpan, ReceiverConfig, SpanKind,
    SpanStatus, children, find, render_tree,
};

const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

const TRACE_VIA_HTTP: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_VIA_GRPC: [u8; 16] = [
    0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c,
];
const ROOT: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const CLIENT: [u8; 8] = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];
const ORDER: [u8; 8] = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x19];
const LINKED_TRACE: [u8; 16] = [0xff; 16];
const LINKED_SPAN: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];

#[expect(
    clippy::unnecessary_wraps,
    reason = "the protobuf's `value` fields are `Option`s: this fills one"
)]
fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value(v),
        ..Default::default()
    }
}

fn string(key: &str, s: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(s.to_owned()))
}

fn resource_spans(service: &str, scope: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                string("service.name", service),
                string("deployment.environment.name", "test"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: scope.to_owned(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A gateway that serves `POST /api/orders` by calling the order service,
/// whose handler fails: three spans over two services, each span exercising
/// different fields.
#[expect(
    clippy::too_many_lines,
    reason = "the request is data: one protobuf span after another"
)]
fn order_request(trace_id: [u8; 16]) -> ExportTraceServiceRequest {
    let root = Span {
        trace_id: trace_id.to_vec(),
        span_id: ROOT.to_vec(),
        name: "POST /api/orders".to_owned(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 312 * MS,
        flags: 0x301,
        attributes: vec![
            string("http.request.method", "POST"),
            kv("http.response.status_code", any_value::Value::IntValue(201)),
        ],
        ..Default::default()
    };
    let client = Span {
        trace_id: trace_id.to_vec(),
        span_id: CLIENT.to_vec(),
        parent_span_id: ROOT.to_vec(),
        name: "POST order-service".to_owned(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: T0 + 10 * MS,
        end_time_unix_nano: T0 + 300 * MS,
        events: vec![span::Event {
            time_unix_nano: T0 + 150 * MS,
            name: "retry".to_owned(),
            attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
            ..Default::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Ok as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    let order = Span {
        trace_id: trace_id.to_vec(),
        span_id: ORDER.to_vec(),
        parent_span_id: CLIENT.to_vec(),
        trace_state: "vendor=abc".to_owned(),
        name: "create_order".to_owned(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: T0 + 20 * MS,
        end_time_unix_nano: T0 + 290 * MS,
        attributes: vec![
            kv("ratio", any_value::Value::DoubleValue(0.5)),
            kv("retried", any_value::Value::BoolValue(true)),
            kv("payload", any_value::Value::BytesValue(vec![0xde, 0xad])),
            kv(
                "items",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::StringValue("a".to_owned())),
                        },
                        AnyValue {
                            value: Some(any_value::Value::IntValue(7)),
                        },
                    ],
                }),
            ),
        ],
        links: vec![span::Link {
            trace_id: LINKED_TRACE.to_vec(),
            span_id: LINKED_SPAN.to_vec(),
            ..Default::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Error as i32,
            message: "payment declined".to_owned(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans("gateway", "gateway-scope", vec![root, client]),
            resource_spans("order-service", "order-scope", vec![order]),
        ],
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

async fn post_http(
    client: &reqwest::Client,
    receiver: &OtlpReceiver,
    request: &ExportTraceServiceRequest,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}/v1/traces", receiver.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
}

/// The order trace [`TRACE_VIA_HTTP`], exported over OTLP/HTTP on a connection of its own.
async fn export_order_over_http(receiver: &OtlpReceiver) -> reqwest::Result<reqwest::Response> {
    post_http(
        &reqwest::Client::new(),
        receiver,
        &order_request(TRACE_VIA_HTTP),
    )
    .await
}

/// Checks every decoded field of the three spans of `order_request(trace_id)`.
#[expect(clippy::too_many_lines, reason = "the expected trace, span by span")]
fn assert_order_trace(spans: &[ReceivedSpan], trace_id: [u8; 16]) {
    assert_eq!(spans.len(), 3, "{}", render_tree(spans));
    let trace = hex(&trace_id);
    assert_eq!(trace.len(), 32);

    let root = find(spans, "gateway", "POST /api/orders");
    let client = find(spans, "gateway", "POST order-service");
    let order = find(spans, "order-service", "create_order");

    for s in [root, client, order] {
        assert_eq!(s.trace_id, trace);
        assert_eq!(
            s.resource.get("deployment.environment.name"),
            Some(&AttrValue::Str("test".to_owned()))
        );
    }

    assert_eq!(root.span_id, "00f067aa0ba902b7");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.scope_name, "gateway-scope");
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(root.flags, 0x301);
    assert_eq!(root.trace_state, "");
    assert_eq!(root.start_unix_nano, T0);
    assert_eq!(root.end_unix_nano, T0 + 312 * MS);
    assert_eq!(root.duration(), Duration::from_millis(312));
    assert_eq!(root.str_attr("http.request.method"), Some("POST"));
    assert_eq!(root.int_attr("http.response.status_code"), Some(201));
    assert_eq!(
        root.attr("http.response.status_code"),
        Some(&AttrValue::Int(201))
    );
    assert_eq!(
        root.str_attr("http.response.status_code"),
        None,
        "an integer must not read as a string"
    );
    assert_eq!(root.status, SpanStatus::Unset);
    assert!(root.events.is_empty() && root.links.is_empty());

    assert_eq!(client.span_id, "53995c3f42cd8ad8");
    assert_eq!(client.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert!(client.is_child_of(root));
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.status, SpanStatus::Ok);
    assert_eq!(
        client.events,
        vec![ReceivedEvent {
            name: "retry".to_owned(),
            time_unix_nano: T0 + 150 * MS,
            attributes: BTreeMap::from([("attempt".to_owned(), AttrValue::Int(2))]),
        }]
    );

    assert_eq!(order.service_name, "order-service");
    assert_eq!(order.scope_name, "order-scope");
    assert_eq!(order.span_id, "b7ad6b7169203319");
    assert!(order.is_child_of(client));
    assert_eq!(order.kind, SpanKind::Server);
    assert_eq!(order.trace_state, "vendor=abc");
    assert_eq!(
        order.status,
        SpanStatus::Error("payment declined".to_owned())
    );
    assert_eq!(order.attr("ratio"), Some(&AttrValue::Double(0.5)));
    assert_eq!(order.attr("retried"), Some(&AttrValue::Bool(true)));
    assert_eq!(
        order.attr("payload"),
        Some(&AttrValue::Bytes(vec![0xde, 0xad]))
    );
    assert_eq!(
        order.attr("items"),
        Some(&AttrValue::Array(vec![
            AttrValue::Str("a".to_owned()),
            AttrValue::Int(7)
        ]))
    );
    assert_eq!(
        order.links,
        vec![("f".repeat(32), "0102030405060708".to_owned())]
    );

    let kids: Vec<&str> = children(spans, root)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(kids, ["POST order-service"]);
}

#[tokio::test]
async fn spans_exported_over_http_and_grpc_are_decoded_field_by_field() {
    let receiver = OtlpReceiver::start().await;

    let response = export_order_over_http(&receiver)
        .await
        .expect("POST /v1/traces");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let body = response.bytes().await.expect("read the export response");
    ExportTraceServiceResponse::decode(body).expect("the body is an ExportTraceServiceResponse");

    let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect to the gRPC receiver");
    grpc.export(order_request(TRACE_VIA_GRPC))
        .await
        .expect("gRPC export");

    assert_eq!(receiver.export_requests(), 2);
    assert_eq!(receiver.spans().len(), 6);
    assert_order_trace(&receiver.trace(&hex(&TRACE_VIA_HTTP)), TRACE_VIA_HTTP);
    assert_order_trace(&receiver.trace(&hex(&TRACE_VIA_GRPC)), TRACE_VIA_GRPC);
    assert_eq!(
        receiver.trace(&hex(&TRACE_VIA_GRPC).to_uppercase()).len(),
        3,
        "trace ids are matched regardless of case"
    );
}

#[tokio::test]
async fn render_tree_draws_the_waterfall_and_marks_spans_whose_parent_is_missing() {
    let receiver = OtlpReceiver::start().await;
    let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect to the gRPC receiver");
    grpc.export(order_request(TRACE_VIA_GRPC))
        .await
        .expect("gRPC export");
    let spans = receiver.trace(&hex(&TRACE_VIA_GRPC));

    assert_eq!(
        render_tree(&spans),
        "POST /api/orders [gateway, SERVER, 312ms]\n\
         \x20 POST order-service [gateway, CLIENT, 290ms]\n\
         \x20   create_order [order-service, SERVER, 270ms]\n"
    );

    let without_root: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_some())
        .cloned()
        .collect();
    assert_eq!(
        render_tree(&without_root),
        "POST order-service [gateway, CLIENT, 290ms] (parent not received)\n\
         \x20 create_order [order-service, SERVER, 270ms]\n"
    );
}

#[test]
fn render_tree_orders_siblings_by_start_time() {
    let span = ReceivedSpan::for_test;
    let spans = [
        span("c", Some("a"), "second", 5, 9),
        span("a", None, "root", 0, 10),
        span("b", Some("a"), "first", 1, 2),
        span("d", Some("a"), "instant", 9, 9),
    ];
    assert_eq!(
        render_tree(&spans),
        "root [svc, INTERNAL, 10ms]\n\
         \x20 first [svc, INTERNAL, 1ms]\n\
         \x20 second [svc, INTERNAL, 4ms]\n\
         \x20 instant [svc, INTERNAL, 0µs]\n"
    );
}

#[test]
#[should_panic(
    expected = "expected exactly one span \"missing\" from service \"gateway\", found 0"
)]
fn find_panics_with_the_received_tree_when_no_span_matches() {
    let spans: Vec<ReceivedSpan> = Vec::new();
    find(&spans, "gateway", "missing");
}

#[tokio::test]
async fn a_stopped_receivers_ports_stay_its_own_until_it_restarts() {
    // Were a stopped port free, the kernel could give it to another receiver binding port 0
    // (tests run side by side), which would then answer the exporters of a system whose
    // collector is meant to be down. A socket without SO_REUSEADDR binds only to a port
    // nobody holds, so it tells whether the stopped receiver still holds its own.
    let receiver = OtlpReceiver::start().await;
    receiver.stop().await;
    for addr in [receiver.http_addr(), receiver.grpc_addr()] {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        let error = socket
            .bind(addr)
            .expect_err("a stopped receiver's port is not free for another socket");
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::AddrInUse,
            "{addr}: {error}"
        );
    }
    receiver.restart().await;
    let after = post_http(
        &reqwest::Client::new(),
        &receiver,
        &order_request(TRACE_VIA_HTTP),
    )
    .await
    .expect("export after restart");
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn a_stopped_receiver_refuses_connections_and_accepts_again_after_restart() {
    let receiver = OtlpReceiver::start().await;
    let request = order_request(TRACE_VIA_HTTP);
    // One client throughout, as an exporter has: its pooled keep-alive
    // connection must not survive the stop.
    let http = reqwest::Client::new();
    let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect to the gRPC receiver");
    let before = post_http(&http, &receiver, &request)
        .await
        .expect("export before stop");
    assert_eq!(before.status(), 200);
    grpc.export(request.clone())
        .await
        .expect("gRPC export before stop");

    receiver.stop().await;

    let error = post_http(&http, &receiver, &request)
        .await
        .expect_err("a stopped receiver must not answer over a kept-alive connection");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    let error = post_http(&reqwest::Client::new(), &receiver, &request)
        .await
        .expect_err("a stopped receiver must refuse new connections");
    assert!(error.is_connect(), "{error:?}");
    grpc.export(request.clone())
        .await
        .expect_err("a stopped receiver must not answer gRPC");
    assert!(
        TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .is_err(),
        "a stopped gRPC receiver must refuse new connections"
    );
    assert_eq!(receiver.export_requests(), 2);

    receiver.restart().await;

    let after = post_http(&http, &receiver, &request)
        .await
        .expect("export after restart");
    assert_eq!(after.status(), 200);
    // The gRPC channel reconnects on its own, possibly after one more failed
    // call, as the exporters' channels do.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match grpc.export(request.clone()).await {
            Ok(_) => break,
            Err(status) if Instant::now() < deadline => {
                eprintln!("gRPC export after restart failed, retrying: {status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("gRPC export after restart kept failing: {status}"),
        }
    }
    assert_eq!(receiver.spans().len(), 12);
}

#[tokio::test]
async fn a_failing_receiver_answers_503_and_unavailable_and_stores_nothing() {
    let receiver = OtlpReceiver::start().await;
    let request = order_request(TRACE_VIA_HTTP);
    let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect to the gRPC receiver");

    receiver.set_behaviour(Behaviour::Fail);
    let response = post_http(&reqwest::Client::new(), &receiver, &request)
        .await
        .expect("the failing receiver still answers");
    assert_eq!(response.status(), 503);
    let status = grpc
        .export(request.clone())
        .await
        .expect_err("gRPC export must fail");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(receiver.export_requests(), 2);
    assert!(receiver.spans().is_empty());

    receiver.set_behaviour(Behaviour::Normal);
    grpc.export(request)
        .await
        .expect("gRPC export once normal again");
    assert_eq!(receiver.spans().len(), 3);
}

#[tokio::test]
async fn a_slow_receiver_answers_after_the_delay() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_behaviour(Behaviour::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let response = export_order_over_http(&receiver)
        .await
        .expect("the slow receiver answers");
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(receiver.spans().len(), 3);
}

#[tokio::test]
async fn an_undecodable_body_gets_400() {
    let receiver = OtlpReceiver::start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", receiver.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .expect("POST /v1/traces");
    assert_eq!(response.status(), 400);
    assert!(receiver.spans().is_empty());
}

#[tokio::test]
async fn wait_for_trace_returns_once_enough_spans_arrived_or_the_timeout_passed() {
    let receiver = OtlpReceiver::start().await;
    let trace = hex(&TRACE_VIA_GRPC);
    let endpoint = receiver.grpc_endpoint();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut grpc = TraceServiceClient::connect(endpoint)
            .await
            .expect("connect to the gRPC receiver");
        grpc.export(order_request(TRACE_VIA_GRPC))
            .await
            .expect("gRPC export");
    });

    let spans = receiver
        .wait_for_trace(&trace, 3, Duration::from_secs(10))
        .await;
    assert_eq!(spans.len(), 3, "{}", render_tree(&spans));
    sender.await.expect("the sender task");

    let started = Instant::now();
    let spans = receiver
        .wait_for_trace(&trace, 4, Duration::from_millis(200))
        .await;
    assert_eq!(spans.len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

/// The JSON encoding of `order_request(trace_id)`, as an OTLP/HTTP JSON exporter sends it.
fn order_request_json(trace_id: [u8; 16]) -> Vec<u8> {
    let spans = trace_view::span::decode_request(order_request(trace_id));
    serde_json::to_vec(&trace_view::json::encode(&spans)).expect("encode OTLP JSON")
}

async fn post_raw(
    receiver: &OtlpReceiver,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/traces", receiver.http_endpoint()))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /v1/traces");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn spans_exported_as_otlp_json_are_decoded_like_protobuf() {
    let receiver = OtlpReceiver::start().await;
    let (status, body) = post_raw(
        &receiver,
        &[("content-type", "application/json")],
        order_request_json(TRACE_VIA_HTTP),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_order_trace(&receiver.trace(&hex(&TRACE_VIA_HTTP)), TRACE_VIA_HTTP);
    assert_eq!(receiver.spans_received(), 3);
}

#[tokio::test]
async fn compressed_unknown_and_malformed_bodies_are_refused_with_what_is_wrong() {
    let receiver = OtlpReceiver::start().await;
    let protobuf = order_request(TRACE_VIA_HTTP).encode_to_vec();
    for (headers, body, status, says) in [
        (
            vec![
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            protobuf.clone(),
            415,
            "Content-Encoding \"gzip\" is not supported",
        ),
        (
            vec![("content-type", "text/plain")],
            protobuf.clone(),
            415,
            "send application/x-protobuf or application/json",
        ),
        (
            vec![("content-type", "application/json")],
            b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": \"zz\"}]}]}]}"
                .to_vec(),
            400,
            "traceId \"zz\" is not 32 hex digits",
        ),
        (
            vec![("content-type", "application/json")],
            b"[1, 2".to_vec(),
            400,
            "not OTLP JSON",
        ),
    ] {
        let (got, text) = post_raw(&receiver, &headers, body).await;
        assert_eq!(got, status, "{headers:?}: {text}");
        assert!(text.contains(says), "{headers:?}: {text}");
    }
    assert!(receiver.spans().is_empty());
    assert_eq!(receiver.spans_received(), 0);
}

#[tokio::test]
async fn the_store_keeps_the_last_traces_and_counts_everything_received() {
    let receiver = OtlpReceiver::bind(ReceiverConfig {
        max_traces: 2,
        max_spans_per_trace: 2,
        max_body_bytes: 64 * 1024,
        ..ReceiverConfig::default()
    })
    .await
    .expect("bind the receiver");
    let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect to the gRPC receiver");
    let traces = [TRACE_VIA_HTTP, TRACE_VIA_GRPC, LINKED_TRACE];
    for trace in traces {
        grpc.export(order_request(trace))
            .await
            .expect("gRPC export");
    }
    assert_eq!(receiver.spans_received(), 9, "every span is counted");
    assert_eq!(receiver.traces_evicted(), 1, "the oldest trace made room");
    assert_eq!(
        receiver.spans_dropped(),
        3,
        "one span over the limit per trace"
    );
    assert!(receiver.trace(&hex(&TRACE_VIA_HTTP)).is_empty());
    assert_eq!(receiver.trace(&hex(&TRACE_VIA_GRPC)).len(), 2);
    assert_eq!(receiver.trace(&hex(&LINKED_TRACE)).len(), 2);
    let summaries: Vec<String> = receiver
        .trace_summaries()
        .into_iter()
        .map(|s| s.trace_id)
        .collect();
    assert_eq!(summaries, [hex(&TRACE_VIA_GRPC), hex(&LINKED_TRACE)]);

    // A body over the limit is refused over both protocols, and not stored.
    let big = ExportTraceServiceRequest {
        resource_spans: (0..400)
            .map(|_| order_request(TRACE_VIA_HTTP).resource_spans.remove(0))
            .collect(),
    };
    assert!(big.encoded_len() > 64 * 1024);
    let (status, _) = post_raw(
        &receiver,
        &[("content-type", "application/x-protobuf")],
        big.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 413);
    let error = grpc.export(big).await.expect_err("too large for gRPC");
    assert_eq!(error.code(), tonic::Code::OutOfRange, "{error}");
    assert_eq!(receiver.spans_received(), 9);
}

#[tokio::test]
async fn a_counting_receiver_counts_what_every_protocol_brings_and_keeps_none_of_it() {
    let receiver = OtlpReceiver::bind(ReceiverConfig {
        keep_spans: false,
        ..ReceiverConfig::default()
    })
    .await
    .expect("bind the receiver");

    let response = export_order_over_http(&receiver)
        .await
        .expect("POST /v1/traces");
    assert_eq!(response.status(), 200);
    let mut grpc = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .expect("connect to the gRPC receiver");
    let mut two_traces = order_request(TRACE_VIA_GRPC);
    two_traces
        .resource_spans
        .extend(order_request(LINKED_TRACE).resource_spans);
    grpc.export(two_traces).await.expect("gRPC export");
    let (status, _) = post_raw(
        &receiver,
        &[("content-type", "application/json")],
        order_request_json(TRACE_VIA_HTTP),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post_raw(
        &receiver,
        &[("content-type", "application/x-protobuf")],
        b"\xff\xff not protobuf".to_vec(),
    )
    .await;
    assert_eq!(
        status, 400,
        "still decoded, and refused when it is not OTLP"
    );

    assert_eq!(receiver.spans_received(), 12, "3 + 6 + 3 spans");
    assert!(receiver.spans().is_empty(), "none kept");
    assert!(receiver.trace_summaries().is_empty());
}
