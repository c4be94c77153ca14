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
pub mod otlp;
pub mod sampler;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use opentelemetry::{
    InstrumentationScope, KeyValue,
    propagation::TextMapPropagator,
    trace::{Status, TraceContextExt, TracerProvider as _, noop::NoopTracer},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    trace::{
        BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanProcessor,
        TracerProviderBuilder,
    },
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
    config::{self, ConfigError, Unset, Vars, shared as var},
    propagation::{BaggagePropagator, TraceContextPropagator, composite},
};

/// Crates whose own `tracing` spans must never become OpenTelemetry spans. They are the HTTP,
/// gRPC and database plumbing, including the exporter's own HTTP and gRPC clients: a span for
/// an export call would be exported in the next batch, whose export makes another span, and
/// so on forever. The project's own spans describe these calls (HTTP client spans, DB spans).
const PLUMBING_TARGETS: [&str; 10] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
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

/// Everything `init` reads from the environment (the variables of `config::shared::SERVICE`),
/// parsed and validated up front so a bad value stops start-up with the variable's name
/// instead of being silently ignored (which is what the SDK does with, for example, an
/// unknown protocol). Part of each service's `Config`; `main` hands it to [`init`].
///
/// For gRPC, `opentelemetry-otlp` reads the endpoint and headers again itself; they are
/// checked here first, and the HTTP exporter takes them from here.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    pub service_name: String,
    /// `OTEL_SDK_DISABLED=true`: no spans at all; context still passes through unchanged.
    pub sdk_disabled: bool,
    pub exporter: Exporter,
    /// Where spans go, and the headers that go with them.
    pub otlp: otlp::OtlpTarget,
    pub log_format: LogFormat,
    /// `RUST_LOG` (or its declared default): the log filter's directives, known to parse.
    pub log_directives: String,
    /// `PROPAGATION=off` stops this service from reading and writing trace context and
    /// baggage headers: its spans start a new trace (the tutorial's broken propagation).
    pub propagation: bool,
    pub sampler: sampler::RouteRuleSampler,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: at most this many spans wait for export; more are dropped.
    pub max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`: how often a batch is exported.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: the most spans in one export.
    pub max_export_batch_size: usize,
    /// `OTEL_BSP_EXPORT_TIMEOUT`: how long one export may take. The SDK's batch processor
    /// (the thread-based one) keeps no timer of its own, so this bounds each export through
    /// the exporter's timeout: see [`export_timeout`](Self::export_timeout).
    pub bsp_export_timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`.
    pub otlp_timeout: Duration,
}

impl TelemetrySettings {
    pub fn from_vars(vars: &Vars, default_service_name: &str) -> Result<Self, ConfigError> {
        let sdk_disabled = vars.flag(&var::OTEL_SDK_DISABLED)?;
        // Read whatever the exporter is, but checked only for OTLP (`none` uses no protocol).
        let protocol = otlp_protocol(vars);
        let exporter = if vars.read(&var::OTEL_TRACES_EXPORTER, |raw| match raw {
            "otlp" => Ok(true),
            "none" => Ok(false),
            _ => Err("expected otlp or none".to_owned()),
        })? {
            protocol?
        } else {
            Exporter::None
        };
        let log_directives = vars.read(&var::RUST_LOG, |raw| Ok(raw.to_owned()))?;
        log_filter::<Registry>(Some(&log_directives))?;
        // The signal-specific timeout wins over the general one, as the specification says;
        // both must parse when set.
        let general_timeout = vars.millis(&var::OTEL_EXPORTER_OTLP_TIMEOUT)?;
        let traces_timeout =
            vars.read_optional(&var::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, config::millis)?;
        Ok(TelemetrySettings {
            max_queue_size: vars.parse(&var::OTEL_BSP_MAX_QUEUE_SIZE)?,
            schedule_delay: vars.millis(&var::OTEL_BSP_SCHEDULE_DELAY)?,
            max_export_batch_size: vars.parse(&var::OTEL_BSP_MAX_EXPORT_BATCH_SIZE)?,
            bsp_export_timeout: vars.millis(&var::OTEL_BSP_EXPORT_TIMEOUT)?,
            otlp_timeout: traces_timeout.unwrap_or(general_timeout),
            service_name: service_name(vars, default_service_name),
            sdk_disabled,
            exporter,
            otlp: otlp::OtlpTarget::from_vars(vars)?,
            log_format: LogFormat::from_vars(vars)?,
            log_directives,
            propagation: vars.flag(&var::PROPAGATION)?,
            sampler: sampler::from_vars(vars)?,
        })
    }

    /// The bound on one export: the smaller of the batch processor's and the exporter's.
    pub fn export_timeout(&self) -> Duration {
        self.bsp_export_timeout.min(self.otlp_timeout)
    }

    /// The batch span processor's settings. Each is set here, so the values in effect are
    /// these, not what the SDK would read from the process environment on its own.
    pub fn batch_config(&self) -> BatchConfig {
        BatchConfigBuilder::default()
            .with_max_queue_size(self.max_queue_size)
            .with_scheduled_delay(self.schedule_delay)
            .with_max_export_batch_size(self.max_export_batch_size)
            .build()
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`: the
/// signal-specific variable wins over the general one, as the specification says.
fn otlp_protocol(vars: &Vars) -> Result<Exporter, ConfigError> {
    let protocol = |raw: &str| match raw {
        "grpc" => Ok(Exporter::OtlpGrpc),
        "http/protobuf" => Ok(Exporter::OtlpHttp),
        _ => Err("expected grpc or http/protobuf (http/json is not built in)".to_owned()),
    };
    let traces = vars.read_optional(&var::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, protocol);
    let general = vars.read(&var::OTEL_EXPORTER_OTLP_PROTOCOL, protocol);
    match traces? {
        Some(exporter) => Ok(exporter),
        None => general,
    }
}

/// `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the binary's.
fn service_name(vars: &Vars, default: &str) -> String {
    let attributes = vars.get(&var::OTEL_RESOURCE_ATTRIBUTES);
    vars.get(&var::OTEL_SERVICE_NAME)
        .or_else(|| {
            attributes?
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
    /// Exports what is queued and stops the exporter. Waits at most the SDK's shutdown timeout
    /// (5 seconds), the last export included.
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

/// Sets up propagation, tracing and logging as `settings` say (the `telemetry` part of the
/// service's `Config`), for a service of version `version`.
pub fn init(settings: &TelemetrySettings, version: &str) -> anyhow::Result<TelemetryGuard> {
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
            let provider = tracer_provider(settings, version)?;
            let tracer = provider.tracer_with_scope(instrumentation_scope());
            opentelemetry::global::set_tracer_provider(provider.clone());
            (Box::new(otel_layer(tracer)), Some(provider))
        };

    let log_filter = log_filter(Some(&settings.log_directives))?;
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

/// The instrumentation scope of every span: the instrumentation is this crate's layer, which
/// turns the services' `tracing` spans into OpenTelemetry spans (the service is the
/// resource's `service.name`). Static text on purpose: every ended span carries a clone of
/// its scope, and a clone of a borrowed name copies a pointer, where an owned one (the
/// service name, as this was before) allocated and freed a `String` for every span.
fn instrumentation_scope() -> InstrumentationScope {
    InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
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

/// Which events become log lines: `rust_log` (`RUST_LOG`) when set, else its declared default,
/// `info` with sqlx at `warn`.
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
    let directives = rust_log
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_LOG_DIRECTIVES);
    // Parsed as an `EnvFilter` first, always: its grammar and its errors are RUST_LOG's.
    let env_filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| ConfigError::invalid(var::RUST_LOG.name, directives, e))?;
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

/// `RUST_LOG`'s declared default. sqlx logs every statement at info (the DB spans already show
/// them) and relays Postgres notices such as "relation already exists, skipping" from
/// migrations, hence `sqlx=warn`.
const DEFAULT_LOG_DIRECTIVES: &str = match var::RUST_LOG.unset {
    Unset::Default(directives) => directives,
    _ => panic!("RUST_LOG declares a default"),
};

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
        // Errors are recorded explicitly, by `record_failure`, following the conventions
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
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(settings.sampler.clone());
    let builder = match settings.exporter {
        Exporter::OtlpGrpc => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(settings.export_timeout())
                .build()
                .context("building the OTLP/gRPC span exporter")?;
            with_export(builder, settings, |stats| {
                let exporter = export::CountingExporter::new(exporter, stats);
                Ok(BatchSpanProcessor::builder(exporter)
                    .with_batch_config(settings.batch_config())
                    .build())
            })?
        }
        Exporter::OtlpHttp => {
            let exporter = otlp::HttpExporter::new(
                settings.otlp.http_traces_url(),
                settings.otlp.headers.clone(),
                settings.export_timeout(),
            )
            .context("building the OTLP/HTTP span exporter")?;
            with_export(builder, settings, |stats| {
                otlp::EncodingBatchProcessor::new(
                    exporter,
                    stats,
                    settings.schedule_delay,
                    // As the SDK's `BatchConfig` does: a batch never outgrows the queue.
                    settings.max_export_batch_size.min(settings.max_queue_size),
                )
                .context("starting the OTLP/HTTP export thread")
            })?
        }
        // Nothing is exported, but spans are still sampled, and carry the baggage.
        Exporter::None => builder.with_span_processor(baggage::BaggageSpanProcessor),
    };
    Ok(builder.build())
}

/// `builder` with a batch processor, made by `batch` with the counters it settles its spans
/// in, and the wrappers every service uses.
///
/// The batch processor has its `OTEL_BSP_*` settings from `settings`. It runs on its own
/// thread, where the export does its work (the HTTP one with a blocking client), so request
/// handling never waits on the collector: a full queue drops spans instead. The wrappers
/// count what is lost.
fn with_export<P: SpanProcessor + 'static>(
    builder: TracerProviderBuilder,
    settings: &TelemetrySettings,
    batch: impl FnOnce(Arc<export::ExportStats>) -> anyhow::Result<P>,
) -> anyhow::Result<TracerProviderBuilder> {
    let stats = export::ExportStats::new(settings.max_queue_size);
    let batch = batch(stats.clone())?;
    export::install(stats.clone());
    export::spawn_reporter(
        stats.clone(),
        settings.schedule_delay.max(Duration::from_secs(1)),
    );
    // One processor, not the baggage processor beside the batch one: the SDK copies each
    // ended span once per processor when there are several (see `WithBaggage`). The baggage
    // goes on first, as attributes must be on the span before it is queued.
    Ok(builder.with_span_processor(baggage::WithBaggage(export::Admission::new(batch, stats))))
}

/// A failure to record on a span, for [`record_failure`]: its `error.type`, and the
/// exception, when there is one.
#[must_use = "a failure does nothing until it is recorded or answered"]
#[derive(Clone, Debug)]
pub struct Failure {
    /// Low-cardinality identifier: a code (`payment_declined`), an SQLSTATE, a status code.
    pub error_type: std::borrow::Cow<'static, str>,
    /// What was thrown, for the `exception` event. `None` for a failure that is only a status
    /// code (a 5xx answered, a 4xx received), which the HTTP conventions record with
    /// `error.type` alone.
    pub exception: Option<Exception>,
}

/// The `exception` event of a [`Failure`].
#[derive(Clone, Debug)]
pub struct Exception {
    /// What failed, e.g. the Rust type of the error.
    pub exception_type: std::borrow::Cow<'static, str>,
    /// The whole cause chain, outermost first.
    pub message: String,
}

impl Failure {
    /// `error`, with its Rust type and its cause chain as the exception.
    pub fn of<E: std::error::Error + 'static>(
        error_type: impl Into<std::borrow::Cow<'static, str>>,
        error: &E,
    ) -> Self {
        Failure::exception(error_type, std::any::type_name::<E>(), error_chain(error))
    }

    /// A failure that is no Rust error value (a panic, a processor's decline).
    pub fn exception(
        error_type: impl Into<std::borrow::Cow<'static, str>>,
        exception_type: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            error_type: error_type.into(),
            exception: Some(Exception {
                exception_type: exception_type.into(),
                message: message.into(),
            }),
        }
    }

    /// An HTTP status that is a failure, with no exception: `error.type` is the code (`500`).
    pub fn status(status: http::StatusCode) -> Self {
        Failure {
            error_type: status.as_str().to_owned().into(),
            exception: None,
        }
    }

    /// What went wrong, in words: the exception's message, else the `error.type`.
    pub fn description(&self) -> &str {
        match &self.exception {
            Some(exception) => &exception.message,
            None => &self.error_type,
        }
    }
}

/// Marks `span` failed the way the OpenTelemetry conventions describe: status ERROR, an
/// `error.type` attribute, and, for a failure with an exception, an `exception` event and the
/// exception's message as the status description. This is the one place spans learn about
/// errors, so every red span in Jaeger looks the same.
pub fn record_failure(span: &Span, failure: &Failure) {
    span.set_attribute("error.type", failure.error_type.clone());
    let description = match &failure.exception {
        Some(exception) => {
            span.add_event(
                "exception",
                vec![
                    KeyValue::new("exception.type", exception.exception_type.clone()),
                    KeyValue::new("exception.message", exception.message.clone()),
                ],
            );
            exception.message.clone()
        }
        // A status code says all there is: no event, no description.
        None => String::new(),
    };
    span.set_status(Status::error(description));
}

/// Marks the current span failed when `result` is an error its [`Classification`] calls a
/// failure, and hands `result` back. For the INTERNAL span of a handler (`save_order`,
/// `charge_card`): the SERVER span is marked by the server layer from the response.
///
/// [`Classification`]: crate::error::Classification
pub fn record_result<T, E: crate::error::Classify>(result: Result<T, E>) -> Result<T, E> {
    if let Err(error) = &result
        && let Some(error_type) = error.classify().error_type
    {
        record_failure(&Span::current(), &Failure::of(error_type, error));
    }
    result
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
    let span_ref = cx.span();
    let span_context = span_ref.span_context();
    // Every answer carries it: hex-encoded as the log lines' ids are, not `to_string()`
    // through `fmt`.
    span_context
        .is_valid()
        .then(|| logs::HexIds::new(span_context).trace_id().to_owned())
}

/// The trace id of the current span, as 32 lowercase hex digits, if it is part of a trace.
pub fn current_trace_id() -> Option<String> {
    trace_id(&Span::current())
}

/// Keeps the spans that end, for the telemetry tests (the SDK's in-memory exporter needs its
/// `testing` feature, which would switch on metrics and logs for every test build).
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct Collect(
    std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>,
);

#[cfg(test)]
impl Collect {
    /// The spans that ended so far.
    pub(crate) fn spans(&self) -> Vec<opentelemetry_sdk::trace::SpanData> {
        self.0.lock().unwrap().clone()
    }
}

#[cfg(test)]
impl opentelemetry_sdk::trace::SpanProcessor for Collect {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.lock().unwrap().push(span);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
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
    fn every_batch_processor_setting_takes_effect() {
        let defaults = TelemetrySettings::from_vars(&Vars::from_pairs([]), "gateway").unwrap();
        let set = TelemetrySettings::from_vars(
            &Vars::from_pairs([
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
            ]),
            "gateway",
        )
        .unwrap();
        // `BatchConfig`'s fields are the SDK's own; its `Debug` shows what the processor gets.
        for (settings, fields) in [
            (
                &defaults,
                [
                    "max_queue_size: 2048",
                    "scheduled_delay: 5s",
                    "max_export_batch_size: 512",
                ],
            ),
            (
                &set,
                [
                    "max_queue_size: 100",
                    "scheduled_delay: 200ms",
                    "max_export_batch_size: 10",
                ],
            ),
        ] {
            let config = format!("{:?}", settings.batch_config());
            for field in fields {
                assert!(config.contains(field), "{field} in {config}");
            }
        }
        // An export is bounded by the smaller of the processor's and the exporter's timeouts.
        assert_eq!(defaults.export_timeout(), Duration::from_secs(10));
        assert_eq!(set.export_timeout(), Duration::from_secs(3));
        let traces = TelemetrySettings::from_vars(
            &Vars::from_pairs([
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "4000"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2000"),
            ]),
            "gateway",
        )
        .unwrap();
        assert_eq!(traces.export_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn rust_log_is_read_with_the_other_settings_and_checked_there() {
        let s = TelemetrySettings::from_vars(
            &Vars::from_pairs([("RUST_LOG", "order_service=debug")]),
            "gateway",
        )
        .unwrap();
        assert_eq!(s.log_directives, "order_service=debug");
        let defaults = TelemetrySettings::from_vars(&Vars::from_pairs([]), "gateway").unwrap();
        assert_eq!(defaults.log_directives, "info,sqlx=warn");
        let err = TelemetrySettings::from_vars(
            &Vars::from_pairs([("RUST_LOG", "order_service=loud")]),
            "gateway",
        )
        .unwrap_err();
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

    /// The spans `f` ends, recorded through the services' OpenTelemetry layer.
    fn recorded(f: impl FnOnce()) -> Vec<opentelemetry_sdk::trace::SpanData> {
        let collected = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(collected.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(otel_layer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
        collected.spans()
    }

    #[test]
    fn a_status_failure_marks_the_span_without_an_exception_and_an_error_with_one() {
        let spans = recorded(|| {
            let span = tracing::info_span!("POST /orders");
            record_failure(&span, &Failure::status(http::StatusCode::BAD_GATEWAY));
            drop(span);
            let span = tracing::info_span!("save_order");
            let err = Outer(std::io::Error::other("connection reset"));
            record_failure(&span, &Failure::of("database_error", &err));
        });
        let span = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        let error_type = |s: &opentelemetry_sdk::trace::SpanData| {
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "error.type")
                .map(|kv| kv.value.to_string())
        };

        let status = span("POST /orders");
        assert_eq!(status.status, Status::error(""));
        assert_eq!(error_type(status).as_deref(), Some("502"));
        assert!(status.events.is_empty(), "{:?}", status.events);

        let error = span("save_order");
        assert_eq!(
            error.status,
            Status::error("inserting order: connection reset")
        );
        assert_eq!(error_type(error).as_deref(), Some("database_error"));
        let exception = error.events.iter().next().unwrap();
        assert_eq!(exception.name, "exception");
    }
}
