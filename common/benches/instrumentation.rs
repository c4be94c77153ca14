//! The per-request instrumentation path on its own, without a network or a database.
//!
//! One "request" is what the order service does for `POST /orders`, as spans and events:
//! a server span whose parent is extracted from a `traceparent` (and `baggage`) header, two
//! internal child spans with attributes, a DB span with the real helper
//! ([`common::db::Database::traced`], on a pool that never connects), a client span whose
//! context is injected into outgoing headers, and a log event with the trace ids. That is 5
//! spans. Five set-ups:
//!
//! - `bare tracing`: a registry and the services' JSON log layer
//!   ([`common::telemetry::log_layer`]) writing to a sink, no OpenTelemetry layer: the floor;
//! - `sdk disabled`: the OpenTelemetry layer over the API's no-op tracer (`OTEL_SDK_DISABLED`);
//! - `unsampled`: the SDK with `parentbased_always_off`, the incoming context unsampled;
//! - `sampled`: the SDK with `parentbased_always_on`, the baggage span processor, and the
//!   SDK's batch processor (its own thread) feeding an exporter that discards, so OTLP
//!   encoding and the network are not in these numbers;
//! - `sampled, exported`: the services' own export path instead
//!   ([`common::telemetry::otlp::EncodingBatchProcessor`] behind the queue's admission, which
//!   encodes each span as it ends, and the OTLP/HTTP exporter on its thread) posting to a
//!   collector in this process that reads each request and answers 200: a span all-in, as the
//!   issue's per-span target counts it (creation, attributes, export encoding).
//!
//! Each reports time per request (criterion) and, printed before it, allocations and bytes
//! per span (a counting global allocator). The OpenTelemetry layer and its filter are the
//! services' own ([`common::telemetry::otel_layer`], [`common::telemetry::span_filter`]).
//!
//! ```sh
//! cargo bench -p common --bench instrumentation
//! # Instructions of exactly 10 000 requests of one set-up, repeatable on a busy machine:
//! INSTRUMENTATION_SETUP=unsampled valgrind --tool=callgrind --toggle-collect='*::counted*' \
//!     target/release/deps/instrumentation-<hash> --bench --profile-time 1
//! ```

use std::{
    alloc::System,
    collections::HashMap,
    hint::black_box,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::Arc,
    time::Duration,
};

use common::{
    db::{Database, PoolSettings, Statement},
    telemetry::{
        baggage::WithBaggage,
        export::{Admission, ExportStats},
        otlp::{EncodingBatchProcessor, HttpExporter},
    },
};
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter},
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tracing::{Dispatch, Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer as _, Registry, layer::SubscriberExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SPANS_PER_REQUEST: u64 = 5;

const INSERT_ORDER: Statement = Statement::new(
    "INSERT orders",
    "INSERT INTO orders (id, user_id, amount_minor, currency, status, trace_id) VALUES ($1, $2, $3, $4, 'pending', $5)",
);

/// An exporter that drops what it is given: the SDK's side of the cost, without encoding.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn provider(sampled: bool) -> SdkTracerProvider {
    let base = if sampled {
        Sampler::AlwaysOn
    } else {
        Sampler::AlwaysOff
    };
    SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(base)))
        // As in the services: the baggage processor wrapped around the batch processor.
        .with_span_processor(WithBaggage(BatchSpanProcessor::builder(Discard).build()))
        .build()
}

/// The services' export path (`common::telemetry::init` with `OTEL_EXPORTER_OTLP_PROTOCOL=
/// http/protobuf` and the SDK's default batch settings), posting to `collector`; `stats`
/// says afterwards whether every span was exported.
fn exporting_provider(collector: reqwest::Url, stats: &Arc<ExportStats>) -> SdkTracerProvider {
    let exporter = HttpExporter::new(
        collector,
        reqwest::header::HeaderMap::new(),
        Duration::from_secs(10),
    )
    .expect("an OTLP/HTTP exporter");
    let batch =
        EncodingBatchProcessor::new(exporter, Arc::clone(stats), Duration::from_secs(5), 512)
            .expect("the export thread");
    SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_span_processor(WithBaggage(Admission::new(batch, Arc::clone(stats))))
        .build()
}

/// A collector on a port of its own that reads each OTLP/HTTP request (keep-alive, a body of
/// `content-length` bytes, as the exporter sends them) and answers 200 with an empty
/// `ExportTraceServiceResponse`, so the export thread's side is real but cheap.
fn sink_collector() -> reqwest::Url {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the collector");
    let address = listener.local_addr().expect("the collector's address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_each_request(stream));
        }
    });
    format!("http://{address}/v1/traces")
        .parse()
        .expect("the collector's URL")
}

fn answer_each_request(stream: TcpStream) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // The request line and the headers, up to the empty line.
        let mut content_length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        std::io::copy(
            &mut (&mut reader).take(content_length),
            &mut std::io::sink(),
        )?;
        writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )?;
    }
}

/// The services' own log layer (JSON lines, `info,sqlx=warn`), writing to a sink.
fn log_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    common::telemetry::log_layer(
        "bench",
        common::telemetry::LogFormat::Json,
        common::telemetry::log_filter(None).expect("the default filter parses"),
        std::io::sink,
    )
}

/// The OpenTelemetry layer, with the services' span filter as in `common::telemetry::init`,
/// and their log layer, over `tracer`.
fn traced(tracer: opentelemetry_sdk::trace::SdkTracer) -> Dispatch {
    Dispatch::new(
        Registry::default()
            .with(
                common::telemetry::otel_layer(tracer).with_filter(common::telemetry::span_filter()),
            )
            .with(log_layer()),
    )
}

/// One way of instrumenting the request.
struct Setup {
    name: &'static str,
    dispatch: Dispatch,
    /// The provider to keep alive beside the dispatch, and shut down after it.
    provider: Option<SdkTracerProvider>,
    /// The export counters, where the services' export path runs.
    export: Option<Arc<ExportStats>>,
}

impl Setup {
    fn untraced(name: &'static str, dispatch: Dispatch) -> Self {
        Setup {
            name,
            dispatch,
            provider: None,
            export: None,
        }
    }

    fn traced(name: &'static str, provider: SdkTracerProvider) -> Self {
        Setup {
            name,
            dispatch: traced(provider.tracer("bench")),
            provider: Some(provider),
            export: None,
        }
    }
}

/// The five set-ups.
fn setups() -> Vec<Setup> {
    let mut out = vec![
        Setup::untraced(
            "bare tracing",
            Dispatch::new(Registry::default().with(log_layer())),
        ),
        Setup::untraced(
            "sdk disabled",
            Dispatch::new(
                Registry::default()
                    .with(
                        common::telemetry::otel_layer(
                            opentelemetry::trace::noop::NoopTracer::new(),
                        )
                        .with_filter(common::telemetry::span_filter()),
                    )
                    .with(log_layer()),
            ),
        ),
        Setup::traced("unsampled", provider(false)),
        Setup::traced("sampled", provider(true)),
    ];
    // The queue bound of the services' default (`OTEL_BSP_MAX_QUEUE_SIZE`).
    let stats = ExportStats::new(2048);
    out.push(Setup {
        export: Some(Arc::clone(&stats)),
        ..Setup::traced(
            "sampled, exported",
            exporting_provider(sink_collector(), &stats),
        )
    });
    out
}

/// One request's instrumentation; `flag` is the sampled flag of the incoming traceparent.
async fn request(db: &Database, propagator: &impl TextMapPropagator, flag: &str) {
    let mut incoming = HashMap::new();
    incoming.insert(
        "traceparent".to_owned(),
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flag}"),
    );
    incoming.insert(
        "baggage".to_owned(),
        "user_id=42,customer_tier=gold".to_owned(),
    );
    let parent = propagator.extract(&incoming);
    let server = tracing::info_span!(
        "POST /orders",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/orders",
        url.path = "/orders",
        http.response.status_code = Empty,
    );
    let _ = server.set_parent(parent);
    async {
        let save = tracing::info_span!(
            "save_order",
            order.id = Empty,
            order.amount_minor = 4250_i64
        );
        async {
            tracing::info_span!("validate_order", user_id = 42_i64).in_scope(|| {
                black_box(42);
            });
            let _ = db
                .traced(&INSERT_ORDER, async { Ok::<_, sqlx::Error>(()) }, |()| 1)
                .await;
            let client = tracing::info_span!(
                "POST /charge",
                otel.kind = "client",
                http.request.method = "POST",
                server.address = "payment-service",
                http.response.status_code = Empty,
            );
            let mut outgoing: HashMap<String, String> = HashMap::new();
            propagator.inject_context(&client.context(), &mut outgoing);
            black_box(&outgoing);
            client.record("http.response.status_code", 201_i64);
            drop(client);
            save.record("order.id", "0196f7a0-0000-7000-8000-000000000000");
            tracing::info!(order.status = "confirmed", "order saved");
        }
        .instrument(save.clone())
        .await;
        tracing::Span::current().record("http.response.status_code", 201_i64);
    }
    .instrument(server)
    .await;
}

/// `N` requests, the allocations they made counted. Not inlined, so a profiler can count
/// exactly these requests: `valgrind --tool=callgrind --toggle-collect='*::counted*'`
/// collects the instructions of this loop alone, a fixed amount of work however busy the
/// machine is (criterion's timed iterations run a number of times that depends on the clock).
#[inline(never)]
fn counted(
    rt: &tokio::runtime::Runtime,
    db: &Database,
    propagator: &impl TextMapPropagator,
    flag: &str,
) -> stats_alloc::Stats {
    let region = Region::new(GLOBAL);
    for _ in 0..COUNTED_REQUESTS {
        rt.block_on(request(db, propagator, flag));
    }
    region.change()
}

const COUNTED_REQUESTS: u64 = 10_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let db = rt.block_on(async {
        Database::connect_lazy(
            &common::config::Secret::new(
                "postgres://bench@127.0.0.1:1/bench".parse().expect("a URL"),
            ),
            PoolSettings {
                max_connections: 1,
                acquire_timeout: Duration::from_secs(1),
                statement_timeout: Duration::from_secs(1),
                ..PoolSettings::default()
            },
        )
    });
    let propagator = common::telemetry::propagator();
    // `INSTRUMENTATION_SETUP=unsampled` runs only the set-up of that name, so a profile of
    // one set-up holds only that set-up's requests.
    let filter = std::env::var("INSTRUMENTATION_SETUP").ok();
    let mut group = c.benchmark_group("request instrumentation (5 spans)");
    for Setup {
        name,
        dispatch,
        provider,
        export,
    } in setups()
    {
        if filter.as_deref().is_some_and(|f| f != name) {
            continue;
        }
        let flag = if name == "unsampled" { "00" } else { "01" };
        tracing::dispatcher::with_default(&dispatch, || {
            // Allocations, counted over many requests after a warm-up.
            for _ in 0..100 {
                rt.block_on(request(&db, &propagator, flag));
            }
            let stats = counted(&rt, &db, &propagator, flag);
            let spans = (COUNTED_REQUESTS * SPANS_PER_REQUEST) as f64;
            println!(
                "{name}: {:.1} allocations and {:.0} bytes per span",
                stats.allocations as f64 / spans,
                stats.bytes_allocated as f64 / spans,
            );
            group.bench_function(name, |b| {
                b.iter(|| rt.block_on(request(&db, &propagator, flag)));
            });
        });
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        if let Some(export) = export {
            report_export(name, &export);
        }
    }
    group.finish();
    println!("divide each time by {SPANS_PER_REQUEST} for the time per span");
}

/// How many of the set-up's spans were exported. One lost (the queue full: criterion ends
/// spans faster than any service does) was never encoded, so the time per span understates
/// by about the share lost.
fn report_export(name: &str, stats: &ExportStats) {
    let export = stats.snapshot();
    let ended = export.exported + export.lost();
    #[expect(clippy::cast_precision_loss, reason = "a share, printed")]
    let lost_share = 100.0 * export.lost() as f64 / ended.max(1) as f64;
    println!(
        "{name}: {} spans exported, {} lost ({lost_share:.4}%)",
        export.exported,
        export.lost()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
