//! Telemetry for one service: spans exported over OTLP, log lines on stdout, both correlated.
//!
//! [`init`] is the first thing a service's `main` does after reading its configuration. It
//! installs, in this order:
//! 1. the W3C propagators as the global propagator (or a no-op one when `PROPAGATION=off`),
//!    which the HTTP server layer and the HTTP client middleware use;
//! 2. a tracer provider, configured by the standard `OTEL_*` variables, whose span processors
//!    copy the request's baggage onto each span ([`baggage`]), then queue it for a batch
//!    processor and an OTLP exporter, counting what never reaches the collector ([`export`]);
//!    the sampler is parent-based, with per-route rules ([`sampler`]);
//! 3. a `tracing` subscriber with two layers: the OpenTelemetry layer, which turns `tracing`
//!    spans into OpenTelemetry spans, and the log layer, which prints events.
//!
//! It returns a [`TelemetryGuard`]: call [`TelemetryGuard::shutdown`] when the server has
//! stopped, so the spans still queued in the batch processor are exported before exit.

pub mod baggage;
pub mod export;
mod logs;
pub mod sampler;

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{Status, TraceContextExt, TracerProvider as _, noop::NoopTracer},
};
use opentelemetry_sdk::{
    Resource,
    trace::{BatchSpanProcessor, SdkTracerProvider},
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::{LevelFilter, Targets},
    layer::{Filter, SubscriberExt},
    util::SubscriberInitExt,
};

pub use logs::{EventFormat, LogFormat, LogLayer};

use crate::{
    config::{ConfigError, Vars},
    propagation::{BaggagePropagator, TraceContextPropagator, composite},
};

/// Crates whose own `tracing` spans must never become OpenTelemetry spans. They are the HTTP,
/// gRPC and database plumbing, including the exporter's own HTTP and gRPC clients: a span for
/// an export call would be exported in the next batch, whose export makes another span, and
/// so on forever. The project's own spans describe these calls (HTTP client spans, DB spans).
const PLUMBING_TARGETS: [&str; 11] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "sqlx",
];

/// How spans leave the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exporter {
    OtlpGrpc,
    OtlpHttp,
    /// `OTEL_TRACES_EXPORTER=none`: spans are sampled and propagated but not sent anywhere.
    None,
}

/// Everything `init` reads from the environment, parsed and validated up front so a bad value
/// stops start-up with the variable's name instead of being silently ignored (which is what
/// the SDK does with, for example, an unknown protocol).
#[derive(Debug)]
pub struct TelemetrySettings {
    pub service_name: String,
    /// `OTEL_SDK_DISABLED=true`: no spans at all; context still passes through unchanged.
    pub sdk_disabled: bool,
    pub exporter: Exporter,
    pub log_format: LogFormat,
    /// `PROPAGATION=off` stops this service from reading and writing trace context and
    /// baggage headers: its spans start a new trace (the tutorial's broken propagation).
    pub propagation: bool,
    pub sampler: sampler::RouteRuleSampler,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: at most this many spans wait for export; more are dropped.
    pub max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`: how often a batch is exported.
    pub schedule_delay: Duration,
}

impl TelemetrySettings {
    pub fn from_vars(vars: &Vars, default_service_name: &str) -> Result<Self, ConfigError> {
        let sdk_disabled = vars.bool_or("OTEL_SDK_DISABLED", false)?;
        let exporter = match vars.get("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => otlp_protocol(vars)?,
            Some("none") => Exporter::None,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "OTEL_TRACES_EXPORTER",
                    other,
                    "expected otlp or none",
                ));
            }
        };
        for name in [
            "OTEL_BSP_SCHEDULE_DELAY",
            "OTEL_BSP_EXPORT_TIMEOUT",
            "OTEL_BSP_MAX_QUEUE_SIZE",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        ] {
            if let Some(raw) = vars.get(name) {
                raw.trim()
                    .parse::<u64>()
                    .map_err(|_| ConfigError::invalid(name, &raw, "expected a whole number"))?;
            }
        }
        Ok(TelemetrySettings {
            max_queue_size: vars.or("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?,
            schedule_delay: Duration::from_millis(vars.or("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
            service_name: service_name(vars, default_service_name),
            sdk_disabled,
            exporter,
            log_format: LogFormat::from_vars(vars)?,
            propagation: vars.bool_or("PROPAGATION", true)?,
            sampler: sampler::from_vars(vars)?,
        })
    }
}

fn otlp_protocol(vars: &Vars) -> Result<Exporter, ConfigError> {
    // The signal-specific variable wins over the general one, as the specification says.
    let (name, raw) = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| vars.get(name).map(|v| (name, v)))
    .unwrap_or(("", "http/protobuf".to_owned()));
    match raw.trim() {
        "grpc" => Ok(Exporter::OtlpGrpc),
        "http/protobuf" => Ok(Exporter::OtlpHttp),
        other => Err(ConfigError::Invalid {
            name: if name.is_empty() {
                "OTEL_EXPORTER_OTLP_PROTOCOL"
            } else {
                name
            },
            value: other.to_owned(),
            reason: "expected grpc or http/protobuf (http/json is not built in)".into(),
        }),
    }
}

/// `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the binary's.
fn service_name(vars: &Vars, default: &str) -> String {
    vars.get("OTEL_SERVICE_NAME")
        .or_else(|| {
            vars.get("OTEL_RESOURCE_ATTRIBUTES")?
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == "service.name")
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| default.to_owned())
}

/// Keeps the tracer provider alive, and shuts it down.
///
/// Created by [`init`] in `main`, bound to a named variable (`let telemetry = ...`; with
/// `let _ = ...` it would be dropped, and the provider shut down, at once). Its
/// [`shutdown`](Self::shutdown) runs after the HTTP server has drained its in-flight requests,
/// so every span of a completed request is in the queue it flushes.
#[must_use = "dropping the guard shuts the tracer provider down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports what is queued and stops the exporter. Waits at most `OTEL_BSP_EXPORT_TIMEOUT`.
    pub async fn shutdown(mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // `shutdown` blocks until the batch processor's thread has exported the last batch.
        // That export may need this runtime (the gRPC exporter's channel lives on it), so the
        // blocking call must not occupy an async worker: run it on the blocking pool.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => tracing::debug!("tracer provider shut down"),
            Ok(Err(e)) => eprintln!("telemetry: tracer provider shutdown failed: {e}"),
            Err(e) => eprintln!("telemetry: tracer provider shutdown panicked: {e}"),
        }
    }
}

impl Drop for TelemetryGuard {
    /// A fallback for early returns (a failed start-up): still flush what was recorded.
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let shutdown = move || provider.shutdown();
            let result = match tokio::runtime::Handle::try_current() {
                Ok(handle)
                    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
                {
                    tokio::task::block_in_place(shutdown)
                }
                _ => shutdown(),
            };
            if let Err(e) = result {
                eprintln!("telemetry: tracer provider shutdown failed: {e}");
            }
        }
    }
}

/// Sets up propagation, tracing and logging for the service named `service_name` (the
/// default for `service.name`), version `version`. Reads the environment; see the README for
/// every variable.
pub fn init(service_name: &str, version: &str) -> anyhow::Result<TelemetryGuard> {
    let settings = TelemetrySettings::from_vars(&Vars::from_env(), service_name)?;
    init_with(settings, version)
}

/// [`init`] with settings parsed elsewhere.
pub fn init_with(settings: TelemetrySettings, version: &str) -> anyhow::Result<TelemetryGuard> {
    if settings.propagation {
        opentelemetry::global::set_text_map_propagator(propagator());
    } else {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry::trace::noop::NoopTextMapPropagator::new(),
        );
    }

    let (otel_layer, provider): (Box<dyn Layer<Registry> + Send + Sync>, _) =
        if settings.sdk_disabled {
            // The API's no-op tracer hands every span its parent's span context, so trace ids in
            // logs and responses, and propagation to the next service, work as if this service
            // were not there.
            (Box::new(otel_layer(NoopTracer::new())), None)
        } else {
            let provider = tracer_provider(&settings, version)?;
            let tracer = provider.tracer(settings.service_name.clone());
            opentelemetry::global::set_tracer_provider(provider.clone());
            (Box::new(otel_layer(tracer)), Some(provider))
        };

    let log_filter = log_filter(std::env::var("RUST_LOG").ok().as_deref())?;
    let log_layer = log_layer(
        &settings.service_name,
        settings.log_format,
        log_filter,
        std::io::stdout,
    );

    // The OpenTelemetry layer goes first: it has built a span's OpenTelemetry data before
    // any layer after it sees the span, and the log layer asks it for the context (trace id,
    // span id, baggage) of the span each line is written in.
    tracing_subscriber::registry()
        .with(otel_layer.with_filter(span_filter()))
        .with(log_layer)
        .try_init()
        .context("installing the tracing subscriber")?;

    tracing::info!(
        service.name = %settings.service_name,
        exporter = ?settings.exporter,
        sdk_disabled = settings.sdk_disabled,
        propagation = settings.propagation,
        "telemetry initialised"
    );
    Ok(TelemetryGuard { provider })
}

/// Which spans become OpenTelemetry spans: `info` and above, none of the plumbing's
/// ([`PLUMBING_TARGETS`]). Independent of `RUST_LOG`: turning logs down to `warn` must not
/// remove the `info` spans a trace is made of, and turning them up to `debug` must not make
/// the plumbing's spans (and the exporter's own calls) part of the trace. Public, like
/// [`otel_layer`], for the instrumentation benchmark.
///
/// A [`Targets`] filter rather than an `EnvFilter`: the directives are fixed targets and
/// levels, which `Targets` decides from the span's metadata alone, where an `EnvFilter`, as
/// a per-layer filter, takes a process-wide lock on every span's creation, enter, exit and
/// close, in case a directive filters on span fields (none here does).
pub fn span_filter() -> Targets {
    Targets::new()
        .with_default(tracing::Level::INFO)
        .with_targets(PLUMBING_TARGETS.map(|target| (target, LevelFilter::OFF)))
}

/// Which events become log lines: `RUST_LOG` when set, else `info` with sqlx at `warn`.
///
/// A [`Targets`] filter when every directive is a target and a level, as the default is; an
/// `EnvFilter` only when a directive names a span or a field value (`[charge_card]=debug`,
/// the only kind with `[` in it). The two read targets and levels alike, but an `EnvFilter`,
/// as a per-layer filter, takes process-wide locks on every span's creation, enter, exit and
/// close, to know which spans such directives match: a price every span would pay, logged in
/// or not, for directives that are seldom there.
pub fn log_filter<S>(
    rust_log: Option<&str>,
) -> Result<Box<dyn Filter<S> + Send + Sync + 'static>, ConfigError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // sqlx logs every statement at info (the DB spans already show them) and relays
    // Postgres notices such as "relation already exists, skipping" from migrations.
    let directives = rust_log
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or("info,sqlx=warn");
    // Parsed as an `EnvFilter` first, always: its grammar and its errors are RUST_LOG's.
    let env_filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| ConfigError::invalid("RUST_LOG", directives, e))?;
    if !directives.contains('[') {
        let targets = directives
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join(",")
            .parse::<Targets>();
        if let Ok(targets) = targets {
            return Ok(Box::new(targets));
        }
    }
    Ok(Box::new(env_filter))
}

/// The log layer every service installs: [`EventFormat`] lines, filtered by `filter`, written
/// to `writer` (stdout in the services). Public, like [`otel_layer`], so the instrumentation
/// benchmark measures this layer, not a copy of it.
pub fn log_layer<S, W>(
    service_name: &str,
    format: LogFormat,
    filter: Box<dyn Filter<S> + Send + Sync + 'static>,
    writer: W,
) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    LogLayer::new(EventFormat::new(service_name, format), writer).with_filter(filter)
}

/// The propagators every service uses: W3C Trace Context and W3C Baggage.
pub fn propagator() -> impl TextMapPropagator + Send + Sync + 'static {
    composite(
        TraceContextPropagator::default(),
        BaggagePropagator::default(),
    )
}

/// The `tracing` to OpenTelemetry layer with the settings every service uses. Public so the
/// instrumentation benchmark (`common/benches/instrumentation.rs`) measures this layer, not a
/// copy of it.
pub fn otel_layer<T>(tracer: T) -> tracing_opentelemetry::OpenTelemetryLayer<Registry, T>
where
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Errors are recorded explicitly, by `record_error`, following the conventions
        // (an `exception` event with type and message). The layer's own mapping would copy
        // `exception.*` onto span attributes and put the cause chain in a stack-trace field.
        .with_error_fields_to_exceptions(false)
        .with_error_records_to_exceptions(false)
        // Thread ids, busy/idle times and `target` are noise in a waterfall.
        .with_threads(false)
        // Nor is the source location (`code.file.path`, `code.module.name`,
        // `code.line.number`): the span names already say where a span comes from, and the
        // three attributes went on every span and every log event recorded as a span event,
        // to be copied, encoded and shipped with each one. Off, 100% sampling costs fewer
        // allocations and bytes per span (bench/RESULTS.md).
        .with_location(false)
        .with_tracked_inactivity(false)
        // Nor is the OpenTelemetry context made current on every enter: a future enters its
        // span on every poll (a request's spans 12-56 times in each service), and each enter
        // cloned and attached the context, for `Context::current()`, which nothing reads: the
        // log layer asks for its span's context, the client middleware and the server layer
        // for theirs. Parents still come from the `tracing` span tree. callgrind, 200 orders
        // (bench/RESULTS.md): about 650 instructions less on each of ~115 enters a request.
        .with_context_activation(false)
        .with_target(false)
}

fn tracer_provider(
    settings: &TelemetrySettings,
    version: &str,
) -> anyhow::Result<SdkTracerProvider> {
    // The default resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the service
    // name we computed applies the same precedence and adds the binary's name as the default.
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", version.to_owned()))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(settings.sampler.clone());
    let exporter = match settings.exporter {
        Exporter::OtlpGrpc => Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .context("building the OTLP/gRPC span exporter")?,
        ),
        Exporter::OtlpHttp => Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .context("building the OTLP/HTTP span exporter")?,
        ),
        Exporter::None => None,
    };
    if let Some(exporter) = exporter {
        // The batch processor reads OTEL_BSP_* itself. It runs on its own thread, so the
        // HTTP exporter uses a blocking client there, and request handling never waits on
        // the collector: a full queue drops spans instead. The wrappers count what is lost.
        let stats = export::ExportStats::new(settings.max_queue_size);
        let exporter = export::CountingExporter::new(exporter, stats.clone());
        let batch = BatchSpanProcessor::builder(exporter).build();
        // One processor, not the baggage processor beside the batch one: the SDK copies
        // each ended span once per processor when there are several (see `WithBaggage`).
        // The baggage goes on first, as attributes must be on the span before it is queued.
        builder = builder.with_span_processor(baggage::WithBaggage(export::Admission::new(
            batch,
            stats.clone(),
        )));
        export::install(stats.clone());
        export::spawn_reporter(stats, settings.schedule_delay.max(Duration::from_secs(1)));
    } else {
        // Nothing is exported, but spans are still sampled, and carry the baggage.
        builder = builder.with_span_processor(baggage::BaggageSpanProcessor);
    }
    Ok(builder.build())
}

/// The `error.type`, exception type and message of a failure, for [`record_failure`].
#[derive(Clone, Debug)]
pub struct Failure {
    /// Low-cardinality identifier: a code (`payment_declined`), an SQLSTATE, a status code.
    pub error_type: String,
    /// What failed, e.g. the Rust type of the error.
    pub exception_type: String,
    /// The whole cause chain, outermost first.
    pub message: String,
}

impl Failure {
    pub fn of<E: std::error::Error + 'static>(error_type: impl Into<String>, error: &E) -> Self {
        Failure {
            error_type: error_type.into(),
            exception_type: std::any::type_name::<E>().to_owned(),
            message: error_chain(error),
        }
    }
}

/// Marks `span` failed the way the OpenTelemetry conventions describe: status ERROR with a
/// description, an `error.type` attribute, and an `exception` event. This is the one place
/// spans learn about errors, so every red span in Jaeger looks the same.
pub fn record_failure(span: &Span, failure: &Failure) {
    span.set_attribute("error.type", failure.error_type.clone());
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", failure.exception_type.clone()),
            KeyValue::new("exception.message", failure.message.clone()),
        ],
    );
    span.set_status(Status::error(failure.message.clone()));
}

/// An error that knows whether, and how, it marks a span failed: a service's error enum says
/// which of its variants are the service's own failures (red in the waterfall) and which are
/// the caller's mistakes (a 4xx that leaves the span alone).
pub trait SpanFailure {
    fn failure(&self) -> Option<Failure>;
}

/// Marks the current span failed when `result` is such an error, and hands `result` back. For
/// the INTERNAL span of a handler (`save_order`, `charge_card`): the SERVER span is marked by
/// the server layer from the response.
pub fn record_result<T, E: SpanFailure>(result: Result<T, E>) -> Result<T, E> {
    if let Err(error) = &result
        && let Some(failure) = error.failure()
    {
        record_failure(&Span::current(), &failure);
    }
    result
}

/// [`record_failure`] for an error value.
pub fn record_error<E: std::error::Error + 'static>(span: &Span, error_type: &str, error: &E) {
    record_failure(span, &Failure::of(error_type, error));
}

/// `outer: cause: root cause`, the way `anyhow` prints `{:#}`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Wrapping errors often repeat their source's text; print each message once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The trace id of `span` as 32 lowercase hex digits, if it is part of a trace.
fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The trace id of the current span, as 32 lowercase hex digits, if it is part of a trace.
pub fn current_trace_id() -> Option<String> {
    trace_id(&Span::current())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_defaults_to_http_protobuf_as_the_specification_says() {
        let s = TelemetrySettings::from_vars(&Vars::from_pairs([]), "gateway").unwrap();
        assert_eq!(s.exporter, Exporter::OtlpHttp);
        assert_eq!(s.service_name, "gateway");
        assert!(s.propagation);
        assert!(!s.sdk_disabled);
    }

    #[test]
    fn the_traces_protocol_variable_wins_over_the_general_one() {
        let s = TelemetrySettings::from_vars(
            &Vars::from_pairs([
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ]),
            "gateway",
        )
        .unwrap();
        assert_eq!(s.exporter, Exporter::OtlpGrpc);
    }

    #[test]
    fn an_unknown_protocol_stops_start_up_with_the_variable_named() {
        let err = TelemetrySettings::from_vars(
            &Vars::from_pairs([("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            "gateway",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL has an invalid value"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_batch_processor_setting_is_rejected() {
        let err = TelemetrySettings::from_vars(
            &Vars::from_pairs([("OTEL_BSP_SCHEDULE_DELAY", "5s")]),
            "gateway",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "OTEL_BSP_SCHEDULE_DELAY",
                ..
            }
        ));
    }

    #[test]
    fn the_service_name_comes_from_otel_service_name_then_resource_attributes() {
        let name = |pairs: &[(&str, &str)]| {
            TelemetrySettings::from_vars(&Vars::from_pairs(pairs.iter().copied()), "default")
                .unwrap()
                .service_name
        };
        assert_eq!(name(&[]), "default");
        assert_eq!(
            name(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=dev,service.name=from-attrs"
            )]),
            "from-attrs"
        );
        assert_eq!(
            name(&[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
                ("OTEL_SERVICE_NAME", "from-name")
            ]),
            "from-name"
        );
    }

    #[test]
    fn propagation_can_be_switched_off() {
        let s = TelemetrySettings::from_vars(
            &Vars::from_pairs([("PROPAGATION", "off")]),
            "payment-service",
        )
        .unwrap();
        assert!(!s.propagation);
    }

    #[test]
    fn the_span_filter_keeps_info_spans_and_none_of_the_plumbing() {
        use tracing::Level;
        let filter = span_filter();
        for target in ["order_service::orders", "common::db", "gateway"] {
            assert!(filter.would_enable(target, &Level::INFO), "{target}");
            assert!(filter.would_enable(target, &Level::WARN), "{target}");
            assert!(!filter.would_enable(target, &Level::DEBUG), "{target}");
        }
        for target in PLUMBING_TARGETS {
            assert!(!filter.would_enable(target, &Level::ERROR), "{target}");
        }
        for target in [
            "sqlx::query",
            "hyper_util::client",
            "opentelemetry_otlp::exporter",
        ] {
            assert!(!filter.would_enable(target, &Level::INFO), "{target}");
        }
    }

    /// The messages of the events `f` logs under `log_filter(rust_log)`.
    fn logged(rust_log: Option<&str>, f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(log_layer(
            "test",
            LogFormat::Json,
            log_filter(rust_log).unwrap(),
            move || writer.clone(),
        ));
        tracing::subscriber::with_default(subscriber, f);
        let out = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        out.lines()
            .map(|line| {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                line["message"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn the_default_log_filter_is_info_with_sqlx_at_warn() {
        let out = logged(None, || {
            tracing::info!(target: "order_service", "kept");
            tracing::debug!(target: "order_service", "too verbose");
            tracing::info!(target: "sqlx::query", "a statement");
            tracing::warn!(target: "sqlx::postgres::notice", "a notice");
        });
        assert_eq!(out, ["kept", "a notice"]);
    }

    #[test]
    fn rust_log_sets_levels_per_target_and_may_filter_by_span() {
        let out = logged(Some(" order_service=debug, "), || {
            tracing::debug!(target: "order_service", "kept");
            tracing::info!(target: "gateway", "no directive for this target");
        });
        assert_eq!(out, ["kept"]);

        // A span directive: only what is logged inside `charge_card`.
        let out = logged(Some("info,[charge_card]=debug"), || {
            tracing::debug!("outside");
            tracing::info_span!("charge_card").in_scope(|| tracing::debug!("inside"));
            tracing::info!("info everywhere");
        });
        assert_eq!(out, ["inside", "info everywhere"]);
    }

    #[test]
    fn a_malformed_rust_log_is_rejected_with_the_variable_named() {
        let Err(err) = log_filter::<Registry>(Some("order_service=loud")) else {
            panic!("a level that does not exist parsed");
        };
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: "RUST_LOG",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("inserting order")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_chain_prints_every_cause_once() {
        let err = Outer(std::io::Error::other("connection reset"));
        assert_eq!(error_chain(&err), "inserting order: connection reset");
    }
}
