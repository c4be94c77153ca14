//! What encoding one OTLP export costs per span: `opentelemetry-otlp`'s way (convert the batch
//! into `opentelemetry-proto`'s generated structs, then `prost`-encode them) beside
//! [`common::telemetry::otlp::TraceEncoder`] (encode straight from the span data). Both get
//! the same owned batch of 512 spans (the batch processor's default batch size) shaped like
//! the services' own: server, internal, database and client spans with the attributes those
//! carry, their string values owned, as `tracing-opentelemetry` records them. Both include
//! dropping the batch, which an export does too.
//!
//! ```sh
//! cargo bench -p common --bench otlp_encoding
//! ```

use std::{
    alloc::System,
    hint::black_box,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use common::telemetry::otlp::TraceEncoder;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::{
    InstrumentationScope, KeyValue,
    trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_proto::{
    tonic::collector::trace::v1::ExportTraceServiceRequest,
    transform::{
        common::tonic::ResourceAttributesWithSchema,
        trace::tonic::group_spans_by_resource_and_scope,
    },
};
use opentelemetry_sdk::{Resource, trace::SpanData};
use prost::Message as _;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BATCH: usize = 512;

fn owned(key: &'static str, value: &str) -> KeyValue {
    KeyValue::new(key, value.to_owned())
}

/// Name, kind and attributes of the kind of span `i` picks, in a trace of four.
fn shape(i: usize) -> (&'static str, SpanKind, Vec<KeyValue>) {
    match i % 4 {
        0 => (
            "POST /orders",
            SpanKind::Server,
            vec![
                owned("http.request.method", "POST"),
                owned("http.route", "/orders"),
                owned("url.path", "/orders"),
                owned("url.scheme", "http"),
                owned("server.address", "order-service"),
                KeyValue::new("server.port", 8081_i64),
                owned("network.protocol.version", "1.1"),
                owned("user_agent.original", "loadgen/0.1"),
                KeyValue::new("http.response.status_code", 201_i64),
                owned("user.tier", "gold"),
            ],
        ),
        1 => (
            "create_order",
            SpanKind::Internal,
            vec![
                owned("order.id", "0192f8a1-7c4e-7d2b-9a51-3c1e2f4a5b6c"),
                KeyValue::new("order.amount_minor", 4250_i64),
                owned("user.tier", "gold"),
            ],
        ),
        2 => (
            "INSERT orders",
            SpanKind::Client,
            vec![
                owned("db.system.name", "postgresql"),
                owned("db.namespace", "orders"),
                owned("db.operation.name", "INSERT"),
                owned("db.collection.name", "orders"),
                owned(
                    "db.query.text",
                    "INSERT INTO orders (id, user_id, amount_minor, currency, status, trace_id) \
                     VALUES ($1, $2, $3, $4, 'pending', $5)",
                ),
                owned("server.address", "127.0.0.1"),
                KeyValue::new("server.port", 5432_i64),
                owned("user.tier", "gold"),
            ],
        ),
        _ => (
            "POST",
            SpanKind::Client,
            vec![
                owned("http.request.method", "POST"),
                owned("url.full", "http://payment-service:8082/payments"),
                owned("server.address", "payment-service"),
                KeyValue::new("server.port", 8082_i64),
                KeyValue::new("http.response.status_code", 201_i64),
                owned("user.tier", "gold"),
            ],
        ),
    }
}

/// One span of the kind `i` picks, in a trace of four.
fn span(i: usize, scope: &InstrumentationScope) -> SpanData {
    let start = SystemTime::now();
    let (name, kind, attributes) = shape(i);
    let n = i as u64 + 1;
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(u128::from(n / 4 + 1) << 64 | 0xa3ce),
            SpanId::from(n),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: if i.is_multiple_of(4) {
            SpanId::INVALID
        } else {
            SpanId::from(n - 1)
        },
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: start,
        end_time: start + Duration::from_micros(800),
        attributes,
        dropped_attributes_count: 0,
        events: opentelemetry_sdk::trace::SpanEvents::default(),
        links: opentelemetry_sdk::trace::SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

fn setup() -> (Resource, Vec<SpanData>) {
    let resource = Resource::builder_empty()
        .with_service_name("order-service")
        .with_attribute(KeyValue::new("service.version", "0.1.0"))
        .with_attribute(KeyValue::new("deployment.environment.name", "compose"))
        .build();
    let scope = InstrumentationScope::builder("tracing-opentelemetry")
        .with_version("0.34.0")
        .build();
    let spans = (0..BATCH).map(|i| span(i, &scope)).collect();
    (resource, spans)
}

fn generated_types(resource: &ResourceAttributesWithSchema, batch: Vec<SpanData>) -> Bytes {
    // A `Vec` becomes `Bytes` without a copy, as the exporter sends it.
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(batch, resource),
    }
    .encode_to_vec()
    .into()
}

fn direct(encoder: &TraceEncoder, batch: Vec<SpanData>) -> Bytes {
    let body = encoder.encode(&batch);
    drop(batch);
    body
}

/// Allocations and bytes per span of one encoding, measured once, printed beside criterion's
/// times.
fn allocations(name: &str, encode: impl FnOnce(Vec<SpanData>) -> Bytes, batch: Vec<SpanData>) {
    let region = Region::new(GLOBAL);
    black_box(encode(batch));
    let stats = region.change();
    println!(
        "{name}: {:.1} allocations and {:.0} bytes allocated per span",
        stats.allocations as f64 / BATCH as f64,
        stats.bytes_allocated as f64 / BATCH as f64
    );
}

fn encoding(c: &mut Criterion) {
    let (resource, spans) = setup();
    let schema = ResourceAttributesWithSchema::from(&resource);
    let encoder = TraceEncoder::new(&resource);
    assert_eq!(
        direct(&encoder, spans.clone()),
        generated_types(&schema, spans.clone()),
        "the two encodings agree"
    );
    allocations(
        "generated types",
        |b| generated_types(&schema, b),
        spans.clone(),
    );
    allocations("direct", |b| direct(&encoder, b), spans.clone());

    let mut group = c.benchmark_group("otlp encoding, 512 spans");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("generated types (opentelemetry-otlp)", |b| {
        b.iter_batched(
            || spans.clone(),
            |batch| generated_types(&schema, batch),
            BatchSize::LargeInput,
        );
    });
    group.bench_function("direct (TraceEncoder)", |b| {
        b.iter_batched(
            || spans.clone(),
            |batch| direct(&encoder, batch),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = encoding
}
criterion_main!(benches);
